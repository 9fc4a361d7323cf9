"""What every page shares: never served stale from the browser's cache, friendly 404 and 500 pages (with DEBUG on
too), the favicon and one top navigation; and the small things of the project and dataset pages: links, thousands
separators, long file names, identical snapshots on one line. Also the noise kept out of logs."""

import logging
import re
import signal
import sys
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from curation.datasets.selectors import snapshots_collapsed
from curation.models import DatasetSnapshot, JobStatus
from curation.templatetags.logtune import thousands
from tests.factories import DatasetSnapshotFactory, ImportJobFactory, LogEntryFactory
from tests.test_embedded import ROOT
from training.processes import spawn_group

pytestmark = pytest.mark.django_db


# --- caching ----------------------------------------------------------------------------------------------------


def test_a_signed_in_page_is_never_stored_by_the_browser(client, owner, dataset):
    client.force_login(owner)

    page = client.get(f"/p/acme/datasets/{dataset.pk}/")
    api = client.get("/api/v1/datasets?project=acme")

    assert page["Cache-Control"] == "no-store, private"
    assert api["Cache-Control"] == "no-store, private"


def test_an_answer_without_a_session_keeps_its_own_caching(client, key_client, project):
    assert client.get("/login/")["Cache-Control"] == "max-age=0, no-cache, no-store, must-revalidate, private"
    assert key_client.get("/api/v1/datasets?project=acme").get("Cache-Control") != "no-store, private"


# --- 404 and 500 ------------------------------------------------------------------------------------------------


def test_a_missing_page_is_the_friendly_404(client, owner, settings):
    settings.DEBUG = False
    client.force_login(owner)

    response = client.get("/no/such/page/")

    assert response.status_code == 404
    assert "Nothing here" in response.content.decode() and "/no/such/page/" in response.content.decode()


def test_with_debug_on_a_member_gets_the_friendly_404_not_the_list_of_urls(client, owner, settings):
    settings.DEBUG = True
    client.force_login(owner)

    page = client.get("/no/such/page/").content.decode()
    missing_project = client.get("/p/nope/logs/")

    assert "Nothing here" in page and "Using the URLconf defined in" not in page  # it lists every URL pattern
    assert missing_project.status_code == 404 and "Nothing here" in missing_project.content.decode()


def test_with_debug_on_staff_still_get_djangos_debug_page(client, owner, settings):
    settings.DEBUG = True
    User.objects.filter(pk=owner.pk).update(is_staff=True)
    client.force_login(owner)

    page = client.get("/no/such/page/").content.decode()

    assert "Nothing here" not in page and "Using the URLconf defined in" in page


def test_the_api_still_answers_a_missing_endpoint_in_json_with_debug_on(key_client, settings):
    settings.DEBUG = True

    response = key_client.get("/api/v1/no-such-thing")

    assert response.status_code == 404 and response.json() == {"detail": "No API endpoint at /api/v1/no-such-thing."}


def test_a_server_error_is_the_friendly_500_page(client, owner, settings, monkeypatch):
    settings.DEBUG = False
    client.force_login(owner)
    client.raise_request_exception = False

    def broken(**kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("curation.projects.views.projects_for_user", broken)
    response = client.get("/")

    assert response.status_code == 500
    assert "Something went wrong" in response.content.decode() and "boom" not in response.content.decode()


# --- what every page has ----------------------------------------------------------------------------------------


def test_every_page_has_the_favicon_and_the_same_navigation(client, owner, dataset):
    client.force_login(owner)
    pages = [
        "/",
        "/p/acme/",
        "/p/acme/logs/",
        f"/p/acme/datasets/{dataset.pk}/",
        "/p/acme/finetunes/",
        "/p/acme/tags/",
    ]

    navs = set()
    for url in pages:
        html = client.get(url, follow=True).content.decode()
        assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in html, url
        links = re.findall(r'<a href="([^"]+)"', re.search(r"<nav>(.*?)</nav>", html, re.S)[1])
        navs.add(tuple(link for link in links if not link.startswith("/p/acme/audit")))
    project_pages = {nav for nav in navs if "/p/acme/logs/" in nav}

    assert len(project_pages) == 1, project_pages  # the same links, in the same order, on every project page
    assert (ROOT / "static" / "favicon.svg").read_text().startswith("<svg ")


# --- project and dataset pages ----------------------------------------------------------------------------------


def test_the_project_pages_recent_logs_link_to_each_log_with_thousands_separated(client, viewer, project):
    log = LogEntryFactory(
        project=project, usage={"prompt_tokens": 12_000, "completion_tokens": 345, "total_tokens": 12_345}
    )
    client.force_login(viewer)

    page = client.get("/p/acme/").content.decode()

    assert f'<a href="/p/acme/logs/{log.pk}/">' in page
    assert ">12,345<" in page


def test_a_long_file_name_wraps_inside_its_cell(client, owner, project):
    ImportJobFactory(project=project, source_name="x" * 240 + ".jsonl.gz", accepted=12_345)
    client.force_login(owner)

    page = client.get("/p/acme/").content.decode()

    assert re.search(r'<td class="file-name" title="x{240}\.jsonl\.gz">', page)
    assert ">12,345<" in page
    css = (ROOT / "static" / "css" / "app.css").read_text()
    assert re.search(r"\.file-name \{[^}]*overflow-wrap: anywhere", css)


def test_delete_dataset_is_beside_rename_not_inside_it(client, owner, dataset):
    client.force_login(owner)

    page = client.get(f"/p/acme/datasets/{dataset.pk}/").content.decode()

    popover = re.search(r'<details class="popover">.*?</details>', page, re.S)[0]
    assert "Delete dataset" not in popover
    assert f'href="/p/acme/datasets/{dataset.pk}/delete/"' in page or "Delete dataset…" in page


def test_identical_snapshots_share_one_line_with_their_count(client, viewer, dataset):
    now = timezone.now()
    for minutes in (3, 2, 1):
        DatasetSnapshotFactory(dataset=dataset, status=JobStatus.SUCCEEDED, sha256="a" * 64,
                               created_at=now - timedelta(minutes=minutes))  # fmt: skip
    other = DatasetSnapshotFactory(dataset=dataset, status=JobStatus.SUCCEEDED, sha256="b" * 64, created_at=now)
    client.force_login(viewer)

    page = client.get(f"/p/acme/datasets/{dataset.pk}/snapshots/").content.decode()

    assert page.count("<tr>") == 3  # the head's and two lines
    assert 'data-copies="3"' in page and "× 3 identical" in page
    assert page.index("bbbbbbbbbbbb") < page.index("aaaaaaaaaaaa")  # newest first
    assert other.sha256[:12] in page


def test_snapshots_being_written_are_never_folded():
    pending = [DatasetSnapshot(status=JobStatus.RUNNING, sha256="") for _ in range(2)]

    assert [line.copies for line in snapshots_collapsed(pending)] == [1, 1]


# --- logs -------------------------------------------------------------------------------------------------------


def test_kombus_no_hostname_line_is_dropped_and_its_other_lines_kept(caplog):
    kombu = logging.getLogger("kombu.connection")

    with caplog.at_level(logging.WARNING, logger="kombu.connection"):
        kombu.warning("No hostname was supplied. Reverting to default '%s'", "localhost")
        kombu.warning("Connection refused")

    assert [record.getMessage() for record in caplog.records] == ["Connection refused"]


def test_a_child_process_log_is_spared_the_libraries_warnings_and_progress_bars(tmp_path):
    script = (
        "import os, warnings\n"
        "warnings.warn('old API', FutureWarning)\n"
        "warnings.warn('older API', DeprecationWarning)\n"
        "print(os.environ['HF_HUB_DISABLE_PROGRESS_BARS'], os.environ['TRANSFORMERS_VERBOSITY'])\n"
        "warnings.warn('a real problem', UserWarning)\n"
    )
    log = tmp_path / "child.log"

    process = spawn_group([sys.executable, "-c", script], log, signal.SIGKILL)
    process.wait(timeout=30)

    text = log.read_text()
    assert "1 error" in text and "a real problem" in text
    assert "old API" not in text and "older API" not in text


def test_counts_are_written_with_thousands_separators():
    assert (thousands(1_234_567), thousands(None), thousands(""), thousands(0)) == ("1,234,567", "—", "", "0")
