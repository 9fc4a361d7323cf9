"""The log explorer, log detail, tags and audit pages, through the Django test client on PostgreSQL."""

import re
from collections import Counter
from urllib.parse import parse_qs, urlparse

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from curation.common import counts
from curation.common.counts import fetch
from curation.logs import selectors as log_selectors
from curation.logs import views as explorer_views
from curation.logs.bulk import services as bulk
from curation.logs.bulk.services import bulk_job_run
from curation.logs.selectors import _window_counts
from curation.logs.services import logs_ingest
from curation.models import AuditEvent, BulkJob, Dataset, DatasetEntry, JobStatus, LogEntry, Role, SavedView, Tag
from tests.curation.samples import anthropic_log, openai_log
from tests.factories import (
    DatasetEntryFactory,
    DatasetFactory,
    LogEntryFactory,
    MembershipFactory,
    ProjectFactory,
    SavedViewFactory,
    TagFactory,
)

pytestmark = pytest.mark.django_db

LOGS = "/p/acme/logs/"


def chat(prompt: str, *, minute: int, completion: str = "ok", **fields: object) -> dict:
    return {"prompt": prompt, "completion": completion, "created_at": f"2026-09-01T10:{minute:02d}:00Z", **fields}


@pytest.fixture
def five_logs(project) -> list[LogEntry]:
    """Five logs, newest last: two models, two tags, one error, metadata on two."""
    items = [
        chat("What is 2 + 2?", minute=1, model="gpt-4o", tags=["math"], metadata={"env": "prod"}),
        chat("Bonjour, ça va ?", minute=2, model="gpt-4o", tags=["french"]),
        chat("Integrate x²", minute=3, model="claude-3-5-sonnet", tags=["math", "hard"], metadata={"env": "dev"}),
        chat("Write a haiku", minute=4, model="claude-3-5-sonnet", status_code=500, completion=""),
        chat("東京の天気は？", minute=5, model="gpt-4o", completion="晴れです"),
    ]
    return LogEntryFactory.ingest(project=project, items=items)


def log_ids_shown(response) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-id="(\d+)"', response.content.decode())]


def tag_names(log: LogEntry) -> set[str]:
    return {tag.name for tag in Tag.objects.filter(logs=log)}


@pytest.fixture
def as_editor(client, editor):
    client.force_login(editor)
    return client


# --- the list ------------------------------------------------------------------------------------------


def test_the_explorer_lists_logs_newest_first_with_first_message_and_reply(as_editor, five_logs):
    response = as_editor.get(LOGS)

    assert response.status_code == 200
    assert log_ids_shown(response) == [log.pk for log in reversed(five_logs)]
    html = response.content.decode()
    assert "東京の天気は？" in html and "晴れです" in html
    assert "claude-3-5-sonnet" in html
    assert 'hx-get="/p/acme/logs/facets/"' in html  # the counts follow in their own request


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("model=gpt-4o", [5, 2, 1]),
        ("status=error", [4]),
        ("tag=math", [3, 1]),
        ("tag=math,hard", [3]),
        ("tag_any=french,hard", [3, 2]),
        ("tag_none=math", [5, 4, 2]),
        ("metadata=env:prod", [1]),
        ("q=haiku", [4]),
        ("q=天気", [5]),
        ("created_after=2026-09-01T10:02:00Z&created_before=2026-09-01T10:04:00Z", [3, 2]),
        ("model=gpt-4o&tag_none=french", [5, 1]),
    ],
)
def test_filters_in_the_url_narrow_the_table(as_editor, five_logs, query, expected):
    response = as_editor.get(f"{LOGS}?{query}")

    assert log_ids_shown(response) == [five_logs[n - 1].pk for n in expected]


def test_filters_by_dataset_membership(as_editor, project, five_logs):
    dataset = DatasetFactory(project=project)
    DatasetEntryFactory(dataset=dataset, log=five_logs[1])

    inside = as_editor.get(f"{LOGS}?in_dataset={dataset.pk}")
    outside = as_editor.get(f"{LOGS}?not_in_dataset={dataset.pk}")

    assert log_ids_shown(inside) == [five_logs[1].pk]
    assert five_logs[1].pk not in log_ids_shown(outside) and len(log_ids_shown(outside)) == 4


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("min_tokens=lots", "Min tokens:"),
        ("created_after=yesterday", "From:"),
        ("metadata=nocolon", "is not key:value"),
        ("status=maybe", "Status:"),
        ("cursor=garbage", "Invalid cursor"),
    ],
)
def test_a_bad_filter_value_is_explained_in_the_filter_bar(as_editor, five_logs, query, message):
    response = as_editor.get(f"{LOGS}?{query}")

    assert response.status_code == 200
    errors = response.content.decode().split('id="filter-errors"')[1].split("</div>")[0]
    assert message in errors
    assert log_ids_shown(response) == []


def test_a_filter_change_from_htmx_returns_the_table_and_its_errors_out_of_band(as_editor, five_logs):
    headers = {"HX-Request": "true", "HX-Target": "explorer-body", "HX-Trigger": "filters"}

    good = as_editor.get(f"{LOGS}?model=gpt-4o", headers=headers).content.decode()
    bad = as_editor.get(f"{LOGS}?max_latency_ms=-1", headers=headers).content.decode()

    assert good.lstrip().startswith('<div id="explorer-body"') and "<html" not in good
    assert '<div id="bulk-panel" class="bulk-panel" hx-swap-oob="true">' in good  # a stale confirmation goes
    assert 'id="filter-errors" class="filter-errors" role="alert" hx-swap-oob="true"' in bad
    assert "Max latency:" in bad


def test_facets_count_models_statuses_and_tags_of_the_current_filter(as_editor, five_logs):
    response = as_editor.get(f"{LOGS}facets/?tag_none=french")
    found = response.context["facets"]

    assert '<strong id="total-count">4</strong> logs match' in response.content.decode()

    assert [(f["label"], str(f["count"])) for f in found["models"]] == [("claude-3-5-sonnet", "2"), ("gpt-4o", "2")]
    assert [(f["value"], str(f["count"])) for f in found["statuses"]] == [("success", "3"), ("error", "1")]
    assert [(f["label"], str(f["count"])) for f in found["tags"]] == [("math", "2"), ("hard", "1")]
    math = next(f for f in found["tags"] if f["label"] == "math")
    assert parse_qs(urlparse(math["url"]).query) == {"tag": ["math"], "tag_none": ["french"]}


def test_a_facet_link_adds_its_value_to_the_filter_or_takes_it_away(as_editor, five_logs):
    found = as_editor.get(f"{LOGS}facets/?tag=math&model=gpt-4o").context["facets"]

    math = next(f for f in found["tags"] if f["label"] == "math")
    gpt = next(f for f in found["models"] if f["label"] == "gpt-4o")
    assert math["active"] and parse_qs(urlparse(math["url"]).query) == {"model": ["gpt-4o"]}
    assert gpt["active"] and parse_qs(urlparse(gpt["url"]).query) == {"tag": ["math"]}
    found = as_editor.get(f"{LOGS}facets/?tag=hard").context["facets"]
    math = next(f for f in found["tags"] if f["label"] == "math")
    assert not math["active"] and parse_qs(urlparse(math["url"]).query) == {"tag": ["hard,math"]}


def test_over_the_cap_the_total_shows_a_plus_and_the_facets_count_the_newest_matches(
    as_editor, five_logs, monkeypatch
):
    monkeypatch.setattr(counts, "COUNT_CAP", 2)
    newest = sorted(five_logs, key=lambda log: log.pk)[-3:]  # the window: the cap, and one more to know it is over

    response = as_editor.get(f"{LOGS}facets/")
    found = response.context["facets"]

    page = response.content.decode()
    assert '<strong id="total-count">2+</strong> logs' in page
    assert '<span id="matching-count" hx-swap-oob="true">2+</span>' in page
    assert "Over 2 logs match: counts of the newest 3." in page
    assert {f["label"]: f["count"].value for f in found["models"]} == dict(Counter(log.model for log in newest))
    assert {f["value"]: f["count"].value for f in found["statuses"]} == dict(Counter(log.status for log in newest))


def test_facets_that_take_too_long_say_so_instead_of_holding_the_database(as_editor, five_logs, postgres, monkeypatch):
    slow_window = _window_counts

    def slow(five_logs):
        fetch("SELECT pg_sleep(0.5)", [])
        return slow_window(five_logs)

    monkeypatch.setattr(log_selectors, "FACETS_TIMEOUT_MS", 50)
    monkeypatch.setattr(log_selectors, "_window_counts", slow)

    response = as_editor.get(f"{LOGS}facets/")

    assert response.status_code == 200
    assert "Too many logs to count quickly" in response.content.decode()
    assert as_editor.get(LOGS).status_code == 200  # the connection is usable afterwards


def test_the_filter_bar_suggests_the_projects_models_and_tags(as_editor, outsider, five_logs):
    LogEntryFactory(project=outsider.projects.get(), model="theirs-1")

    context = as_editor.get(LOGS).context

    assert context["model_names"] == ["claude-3-5-sonnet", "gpt-4o"]
    assert context["tag_names"] == ["french", "hard", "math"]


def test_pages_follow_a_keyset_cursor_in_the_url(as_editor, five_logs, monkeypatch):
    monkeypatch.setattr(explorer_views, "PAGE_SIZE", 2)

    first = as_editor.get(f"{LOGS}?model=gpt-4o,claude-3-5-sonnet")
    second = as_editor.get(first.context["next_url"])
    third = as_editor.get(second.context["next_url"])

    assert "cursor=" in first.context["next_url"] and "model=" in first.context["next_url"]
    assert [log_ids_shown(r) for r in (first, second, third)] == [
        [five_logs[4].pk, five_logs[3].pk],
        [five_logs[2].pk, five_logs[1].pk],
        [five_logs[0].pk],
    ]
    assert third.context["next_url"] is None


def test_the_list_costs_the_same_queries_for_few_and_many_logs(as_editor, project, five_logs):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert as_editor.get(LOGS).status_code == 200
        return len(captured)

    few = queries()
    more = [chat(f"more {i}", minute=10 + i, tags=[f"t{i}", "bulk"]) for i in range(30)]
    logs_ingest(project=project, items=more)

    assert queries() == few


def test_the_project_switcher_lists_only_the_users_projects(client, project, owner, outsider):
    MembershipFactory(project=ProjectFactory(slug="second"), user=owner, role=Role.VIEWER)
    client.force_login(owner)

    html = client.get(LOGS).content.decode()

    assert 'href="/p/second/logs/"' in html and 'href="/p/acme/logs/"' in html
    assert "/p/other/" not in html


# --- saved views ---------------------------------------------------------------------------------------


def test_a_saved_view_keeps_the_filter_and_opens_it_again(as_editor, project, five_logs):
    response = as_editor.post(f"{LOGS}views/new", {"name": "Math in prod", "query": "tag=math&metadata=env:prod&q="})

    view = SavedView.objects.get(project=project)
    assert (view.name, view.query) == ("Math in prod", "tag=math&metadata=env%3Aprod")
    assert response.url == f"{LOGS}?tag=math&metadata=env%3Aprod"
    page = as_editor.get(response.url)
    assert log_ids_shown(page) == [five_logs[0].pk]
    assert '<li class="active">' in page.content.decode()


def test_a_saved_view_needs_a_free_name_and_a_working_filter(as_editor, project, five_logs):
    SavedViewFactory(project=project, name="mine")

    as_editor.post(f"{LOGS}views/new", {"name": "mine", "query": "tag=hard"})
    as_editor.post(f"{LOGS}views/new", {"name": "broken", "query": "min_tokens=x"})

    assert list(SavedView.objects.values_list("name", "query")) == [("mine", "tag=math")]
    messages = [str(m) for m in as_editor.get(LOGS).context["messages"]]
    assert any("already exists" in m for m in messages) and any("Fix the filter" in m for m in messages)


# --- bulk actions --------------------------------------------------------------------------------------


def test_the_preview_names_the_exact_count_even_above_the_display_cap(as_editor, five_logs, monkeypatch):
    monkeypatch.setattr(counts, "COUNT_CAP", 2)

    response = as_editor.get(
        f"{LOGS}bulk/", {"action": "tag_add", "scope": "matching", "tags": "seen", "filter": "model=gpt-4o"}
    )

    html = response.content.decode()
    assert "Add seen to 3 logs matching this filter." in html
    assert 'name="expected" value="3"' in html
    assert not Tag.objects.filter(name="seen").exists()  # nothing happens before the confirmation


def test_tagging_a_selection_tags_only_those_logs(as_editor, project, five_logs, editor):
    chosen = [five_logs[0].pk, five_logs[3].pk]

    response = as_editor.post(
        f"{LOGS}bulk/run",
        {"action": "tag_add", "scope": "selected", "ids": chosen, "tags": "reviewed, good", "expected": 2},
        headers={"HX-Request": "true"},
    )

    assert response.status_code == 200
    assert response["HX-Trigger"] == "logtune:logs-changed"
    assert "Tagged 2 logs with reviewed, good." in response.content.decode()
    assert [("reviewed" in tag_names(log)) for log in five_logs] == [True, False, False, True, False]
    event = AuditEvent.objects.exclude(action__startswith="key.").get(project=project)
    assert (event.action, event.count, event.actor) == ("logs.tag_add", 4, editor)


def test_tagging_all_matching_a_small_filter_runs_at_once_and_names_the_filter(as_editor, project, five_logs):
    as_editor.post(
        f"{LOGS}bulk/run",
        {"action": "tag_add", "scope": "matching", "tags": "gpt", "filter": "model=gpt-4o", "expected": 3},
    )

    assert [("gpt" in tag_names(log)) for log in five_logs] == [True, True, False, False, True]
    assert not BulkJob.objects.exists()
    event = AuditEvent.objects.exclude(action__startswith="key.").get(project=project)
    assert (event.action, event.count, event.query) == ("logs.tag_add", 3, "model=gpt-4o")


def test_tagging_all_matching_above_the_inline_limit_runs_as_a_job(as_editor, project, five_logs, monkeypatch):
    monkeypatch.setattr(bulk, "INLINE_LIMIT", 3)

    response = as_editor.post(
        f"{LOGS}bulk/run",
        {"action": "tag_add", "scope": "matching", "tags": "later", "filter": "tag_none=french", "expected": 4},
        headers={"HX-Request": "true"},
    )

    job = BulkJob.objects.get(project=project)
    assert (job.action, job.total, job.query, job.status) == ("tag_add", 4, "tag_none=french", JobStatus.QUEUED)
    html = response.content.decode()
    assert 'hx-swap-oob="afterbegin:#jobs"' in html and f"/logs/bulk/jobs/{job.pk}/?polling=1" in html
    assert not any("later" in tag_names(log) for log in five_logs)  # the worker does it

    bulk_job_run(job_id=job.pk)

    panel = as_editor.get(f"{LOGS}bulk/jobs/{job.pk}/?polling=1")
    assert 'value="1.000"' in panel.content.decode() and "Succeeded" in panel.content.decode()
    assert panel["HX-Trigger"] == "logtune:logs-changed"
    assert [("later" in tag_names(log)) for log in five_logs] == [True, False, True, True, True]
    assert AuditEvent.objects.exclude(action__startswith="key.").get(project=project).query == "tag_none=french"


def test_a_count_that_changed_since_the_preview_asks_again_and_changes_nothing(as_editor, five_logs):
    response = as_editor.post(
        f"{LOGS}bulk/run",
        {"action": "delete", "scope": "matching", "filter": "model=gpt-4o", "expected": 2},
        headers={"HX-Request": "true"},
    )

    html = response.content.decode()
    assert "changed since you reviewed it (2 → 3)" in html
    assert 'name="expected" value="3"' in html
    assert LogEntry.objects.count() == 5


def test_an_action_needs_a_reviewed_count(as_editor, five_logs):
    as_editor.post(f"{LOGS}bulk/run", {"action": "delete", "scope": "matching", "filter": ""})

    assert LogEntry.objects.count() == 5


def test_deleting_all_matching_records_who_what_filter_and_how_many(client, owner, project, five_logs):
    client.force_login(owner)
    preview = client.get(f"{LOGS}bulk/", {"action": "delete", "scope": "matching", "filter": "tag=math"})
    assert "Delete 2 logs matching this filter. None of them is in a dataset. This cannot be undone." in (
        preview.content.decode()
    )

    response = client.post(
        f"{LOGS}bulk/run",
        {"action": "delete", "scope": "matching", "filter": "tag=math", "expected": 2, "next": f"{LOGS}?tag=math"},
    )

    assert response.url == f"{LOGS}?tag=math"
    assert set(LogEntry.objects.values_list("pk", flat=True)) == {five_logs[1].pk, five_logs[3].pk, five_logs[4].pk}
    event = AuditEvent.objects.exclude(action__startswith="key.").get(project=project)
    assert (event.action, event.actor, event.query, event.count) == ("logs.delete", owner, "tag=math", 2)
    audit = client.get("/p/acme/audit/").content.decode()
    assert "logs.delete" in audit and "tag=math" in audit and "alice" in audit


def test_the_delete_confirmation_says_how_many_logs_are_in_datasets_and_the_entries_say_who_deleted_them(
    as_editor, project, five_logs
):
    dataset = DatasetFactory(project=project, name="Kept copies")
    copied = [DatasetEntryFactory(dataset=dataset, log=log) for log in five_logs[:2]]
    DatasetEntryFactory(dataset__project=project, log=five_logs[0])  # in two datasets: one log

    matching = as_editor.get(f"{LOGS}bulk/", {"action": "delete", "scope": "matching", "filter": ""})
    selected = as_editor.get(f"{LOGS}bulk/", {"action": "delete", "scope": "selected", "ids": [five_logs[1].pk]})
    as_editor.post(f"{LOGS}bulk/run", {"action": "delete", "scope": "matching", "filter": "", "expected": 5})

    assert (
        "Delete 5 logs matching this filter. 2 of these 5 logs are in datasets; their entries keep their copies. "
        "This cannot be undone." in matching.content.decode()
    )
    assert "Delete 1 log selected. It is in a dataset; its entries keep their copy." in selected.content.decode()
    assert not LogEntry.objects.exists() and DatasetEntry.objects.count() == 3
    page = as_editor.get(f"/p/acme/datasets/{dataset.pk}/entries/{copied[0].pk}/").content.decode()
    entry = DatasetEntry.objects.get(pk=copied[0].pk)
    when = entry.source_deleted_at.strftime("%Y-%m-%d %H:%M")
    assert f"Source log #{five_logs[0].pk} deleted on {when} by bob" in page
    assert "imported, no source log" not in page
    listing = as_editor.get(f"/p/acme/datasets/{dataset.pk}/").content.decode()
    assert (
        f"source log #{five_logs[0].pk} deleted</span>" in listing
        and f"source log #{five_logs[1].pk} deleted" in listing
    )
    stats = as_editor.get(f"/p/acme/datasets/{dataset.pk}/stats").content.decode()
    assert "0 imported · 2 whose log was deleted" in stats


def test_deleting_one_log_from_its_page_asks_first_then_returns_to_the_list(as_editor, five_logs):
    target = five_logs[2]
    confirm = as_editor.get(
        f"{LOGS}bulk/", {"action": "delete", "scope": "selected", "ids": target.pk, "next": f"{LOGS}?tag=math"}
    )
    html = confirm.content.decode()
    assert "<html" in html and "Delete 1 log selected" in html and ">Delete 1 log</button>" in html
    assert LogEntry.objects.filter(pk=target.pk).exists()

    done = as_editor.post(
        f"{LOGS}bulk/run",
        {"action": "delete", "scope": "selected", "ids": target.pk, "expected": 1, "next": f"{LOGS}?tag=math"},
    )

    assert done.url == f"{LOGS}?tag=math"
    assert not LogEntry.objects.filter(pk=target.pk).exists()


def test_an_outside_next_url_is_not_followed(as_editor, five_logs):
    response = as_editor.post(
        f"{LOGS}bulk/run",
        {"action": "tag_add", "scope": "selected", "ids": five_logs[0].pk, "tags": "x", "expected": 1,
         "next": "https://evil.example/p/acme/"},
    )  # fmt: skip

    assert response.url == LOGS


def test_a_selection_goes_into_a_new_dataset_named_on_the_spot(as_editor, project, five_logs):
    as_editor.post(
        f"{LOGS}bulk/run",
        {"action": "dataset_add", "scope": "selected", "ids": [five_logs[0].pk, five_logs[1].pk], "dataset": "new",
         "new_dataset": "golden", "expected": 2},
    )  # fmt: skip

    dataset = Dataset.objects.get(project=project, name="golden")
    assert set(DatasetEntry.objects.filter(dataset=dataset).values_list("log_id", flat=True)) == {
        five_logs[0].pk,
        five_logs[1].pk,
    }


def test_all_matching_go_into_an_existing_dataset_once(as_editor, project, five_logs):
    dataset = DatasetFactory(project=project, name="math set")
    DatasetEntryFactory(dataset=dataset, log=five_logs[0])

    response = as_editor.post(
        f"{LOGS}bulk/run",
        {"action": "dataset_add", "scope": "matching", "filter": "tag=math", "dataset": dataset.pk, "expected": 2},
        headers={"HX-Request": "true"},
    )

    added = f'Added 1 log to <a href="/p/acme/datasets/{dataset.pk}/">math set</a> (1 were already in it).'
    assert added in response.content.decode()
    assert DatasetEntry.objects.filter(dataset=dataset).count() == 2


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"action": "tag_add", "scope": "selected", "tags": "x"}, "Select logs first"),
        ({"action": "tag_add", "scope": "matching", "tags": " , "}, "Name at least one tag."),
        ({"action": "dataset_add", "scope": "matching"}, "Pick a dataset, or name a new one."),
        ({"action": "delete", "scope": "matching", "filter": "min_tokens=x"}, "min_tokens"),
    ],
)
def test_a_bad_bulk_request_is_explained(as_editor, five_logs, fields, message):
    response = as_editor.get(f"{LOGS}bulk/", fields, headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert message in response.content.decode()


# --- the detail page -----------------------------------------------------------------------------------


def test_the_detail_page_shows_the_conversation_facts_and_original(as_editor, project):
    logs_ingest(project=project, items=[openai_log()])
    log = LogEntry.objects.get()

    html = as_editor.get(f"{LOGS}{log.pk}/").content.decode()

    assert '<div class="turn role-system">' in html and "You are a math tutor." in html
    assert '<div class="turn role-user">' in html and "What is 2 + 2?" in html
    assert '<div class="turn role-assistant">' in html
    assert "21 <span" in html and "= 20 in + 1 out" in html  # tokens
    assert "812 ms" in html
    assert "&quot;temperature&quot;: 0.2" in html  # the raw original, pretty-printed
    assert "&quot;user_id&quot;: 42" in html  # metadata


def test_the_detail_page_renders_tool_calls_tool_results_and_images_as_links(as_editor, project):
    log = anthropic_log()
    log["request"]["messages"][0]["content"] = [
        {"type": "text", "text": "Weather in **Paris**? See"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/sky.png"}},
    ]
    logs_ingest(project=project, items=[log])

    html = as_editor.get(f"{LOGS}{LogEntry.objects.get().pk}/").content.decode()

    assert "Weather in <strong>Paris</strong>?" in html
    assert '<a class="media" href="https://example.com/sky.png"' in html and "<img" not in html
    assert "Tool call <strong>get_weather</strong>" in html
    assert "&quot;city&quot;: &quot;Paris&quot;" in html
    assert '<div class="turn role-tool">' in html and "18°C, sunny" in html


def test_the_detail_page_steps_to_newer_and_older_logs_of_the_filter(as_editor, five_logs):
    page = as_editor.get(f"{LOGS}{five_logs[2].pk}/?tag=math")

    assert page.context["older_url"] == f"{LOGS}{five_logs[0].pk}/?tag=math"
    assert page.context["newer_url"] is None
    assert page.context["back_url"] == f"{LOGS}?tag=math"


def test_a_script_in_a_message_is_shown_as_text_and_javascript_links_are_dropped(as_editor, project):
    attack = (
        '<script>alert("x")</script> [click me](javascript:alert(1)) then <b>bold</b> <img src=x onerror=alert(2)>'
    )
    logs_ingest(project=project, items=[{"prompt": attack, "completion": "[ok](JaVaScRiPt:alert(3))"}])
    log = LogEntry.objects.get()

    listing = as_editor.get(LOGS).content.decode()
    detail = as_editor.get(f"{LOGS}{log.pk}/").content.decode()
    conversation = detail.split('<div class="conversation">')[1].split('<details class="block" id="raw">')[0]

    for html in (listing, conversation):
        assert '<script>alert("x")' not in html and "<img src=x" not in html and "<b>bold" not in html
        assert "&lt;script&gt;alert(" in html
    assert "then &lt;b&gt;bold&lt;/b&gt; &lt;img src=x onerror=alert(2)&gt;" in conversation  # shown, not obeyed
    assert not re.search(r'href="\s*javascript:', detail, re.IGNORECASE)
    assert ">click me</a>" in conversation and ">ok</a>" in conversation


def test_a_log_of_another_project_is_not_found(as_editor, outsider, five_logs):
    theirs = LogEntryFactory(project=outsider.projects.get())

    assert as_editor.get(f"{LOGS}{theirs.pk}/").status_code == 404


# --- tags page -----------------------------------------------------------------------------------------


def test_the_tags_page_lists_tags_with_their_log_counts(as_editor, five_logs):
    tags = as_editor.get("/p/acme/tags/").context["tags"]

    assert [(tag.name, str(count)) for tag, count in tags] == [("french", "1"), ("hard", "1"), ("math", "2")]


def test_a_tag_is_renamed_and_recoloured(as_editor, project, five_logs):
    tag = Tag.objects.get(project=project, name="math")

    as_editor.post(f"/p/acme/tags/{tag.pk}/edit", {"name": "maths", "color": "#ff8800"})

    tag.refresh_from_db()
    assert (tag.name, tag.color) == ("maths", "#ff8800")
    assert AuditEvent.objects.get(action="tag.rename").detail == {"from": "math", "to": "maths"}
    recoloured = AuditEvent.objects.get(action="tag.recolour")
    assert (recoloured.detail["name"], recoloured.detail["to"], recoloured.actor.username) == (
        "maths",
        "#ff8800",
        "bob",
    )


def test_a_rename_to_a_taken_name_is_refused_with_a_message(as_editor, project, five_logs):
    tag = Tag.objects.get(project=project, name="math")

    response = as_editor.post(f"/p/acme/tags/{tag.pk}/edit", {"name": "hard", "color": "#000000"}, follow=True)

    assert Tag.objects.get(pk=tag.pk).name == "math"
    assert "already exists: merge into it instead" in response.content.decode()


def test_merging_moves_the_logs_and_deleting_keeps_them(as_editor, project, five_logs):
    math, hard, french = (Tag.objects.get(project=project, name=n) for n in ("math", "hard", "french"))

    as_editor.post(f"/p/acme/tags/{hard.pk}/merge", {"into": math.pk})
    as_editor.post(f"/p/acme/tags/{french.pk}/delete")

    assert set(Tag.objects.filter(project=project).values_list("name", flat=True)) == {"math"}
    assert [tag_names(log) for log in five_logs] == [{"math"}, set(), {"math"}, set(), set()]
    assert LogEntry.objects.count() == 5
    events = dict(AuditEvent.objects.values_list("action", "count"))
    assert events == {"tag.merge": 0, "tag.delete": 1}


def test_a_tag_cannot_be_merged_into_a_tag_of_another_project(as_editor, project, outsider, five_logs):
    theirs = TagFactory(project=outsider.projects.get())
    math = Tag.objects.get(project=project, name="math")

    response = as_editor.post(f"/p/acme/tags/{math.pk}/merge", {"into": theirs.pk})

    assert response.status_code == 404
    assert Tag.objects.filter(pk=math.pk).exists()


# --- who may do what -----------------------------------------------------------------------------------


READ_PAGES = [LOGS, f"{LOGS}?q=math", f"{LOGS}facets/?tag=math", "/p/acme/tags/"]


def writes(project) -> list[tuple[str, dict]]:
    log = LogEntry.objects.filter(project=project).first()
    tag = Tag.objects.get(project=project, name="math")
    other = Tag.objects.get(project=project, name="hard")
    view = SavedViewFactory(project=project, name="v")
    return [
        (f"{LOGS}bulk/run", {"action": "tag_add", "scope": "selected", "ids": log.pk, "tags": "x", "expected": 1}),
        (f"{LOGS}bulk/run", {"action": "delete", "scope": "matching", "filter": "", "expected": 5}),
        (f"{LOGS}views/new", {"name": "w", "query": ""}),
        (f"{LOGS}views/{view.pk}/delete", {}),
        (f"/p/acme/tags/{tag.pk}/edit", {"name": "renamed"}),
        (f"/p/acme/tags/{tag.pk}/merge", {"into": other.pk}),
        (f"/p/acme/tags/{tag.pk}/delete", {}),
    ]


def test_a_viewer_reads_everything_but_changes_nothing(client, viewer, project, five_logs):
    client.force_login(viewer)
    log = five_logs[0]

    for url in [*READ_PAGES, f"{LOGS}{log.pk}/"]:
        assert client.get(url).status_code == 200, url
    page = client.get(LOGS).content.decode()
    assert 'id="bulk-form"' not in page and 'name="ids"' not in page
    assert client.get(f"{LOGS}bulk/", {"action": "delete", "scope": "matching"}).status_code == 403
    for url, data in writes(project):
        assert client.post(url, data).status_code == 403, url
    assert LogEntry.objects.count() == 5
    assert Tag.objects.filter(project=project, name="math").exists()
    assert SavedView.objects.count() == 1


def test_an_outsider_gets_not_found_on_every_page(client, outsider, project, five_logs):
    client.force_login(outsider)
    job = BulkJob.objects.create(project=project, action="delete", total=1)

    for url in [*READ_PAGES, f"{LOGS}{five_logs[0].pk}/", f"{LOGS}bulk/?action=delete&scope=matching",
                f"{LOGS}bulk/jobs/{job.pk}/", "/p/acme/audit/"]:  # fmt: skip
        assert client.get(url).status_code == 404, url
    for url, data in writes(project):
        assert client.post(url, data).status_code == 404, url
    assert LogEntry.objects.count() == 5


def test_the_audit_page_is_for_owners_only(client, owner, editor, viewer, project):
    for user, status in ((viewer, 403), (editor, 403), (owner, 200)):
        client.force_login(user)
        assert client.get("/p/acme/audit/").status_code == status


def test_pages_need_a_login(client, project):
    assert client.get(LOGS).url.startswith("/login/")
    assert client.get("/p/acme/tags/").url.startswith("/login/")
