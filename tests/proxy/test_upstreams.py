"""Where a project's proxied calls go: owners set the upstream URLs on the project page, within the hosts the
server allows (LOGTUNE_PROXY_UPSTREAM_HOSTS), and each change is audited."""

import os
import subprocess
import sys

import pytest

from curation.models import AuditEvent
from curation.proxy.upstreams import upstream_url_problem

pytestmark = pytest.mark.django_db


@pytest.fixture
def allowed(settings):
    settings.LOGTUNE_PROXY_UPSTREAM_HOSTS = ["api.openai.com", "api.anthropic.com", "my-vllm.internal.example:8000"]


def save(client, user, **fields: str):
    client.force_login(user)
    data = {"openai_base_url": "https://api.openai.com/v1", "anthropic_base_url": "https://api.anthropic.com"}
    data.update(fields)
    return client.post("/p/acme/upstreams", data, follow=True)


def test_a_new_project_forwards_to_the_providers_own_apis(project):
    assert project.openai_base_url == "https://api.openai.com/v1"
    assert project.anthropic_base_url == "https://api.anthropic.com"


def test_the_owner_sees_and_changes_the_upstreams_and_the_change_is_audited(client, owner, project, allowed):
    client.force_login(owner)
    assert b"Proxy upstreams" in client.get("/p/acme/").content

    response = save(client, owner, openai_base_url="http://my-vllm.internal.example:8000/v1/")

    assert b"Proxy upstreams saved." in response.content
    project.refresh_from_db()
    assert project.openai_base_url == "http://my-vllm.internal.example:8000/v1"
    event = AuditEvent.objects.get(project=project, action="project.update")
    assert event.actor == owner
    assert event.detail == {
        "openai_base_url": {"from": "https://api.openai.com/v1", "to": "http://my-vllm.internal.example:8000/v1"}
    }


def test_saving_the_same_urls_records_nothing(client, owner, project, allowed):
    save(client, owner)

    assert not AuditEvent.objects.filter(action="project.update").exists()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://api.openai.com/v1", "http"),
        ("file:///etc/passwd", "http"),
        ("http://169.254.169.254/latest", "LOGTUNE_PROXY_UPSTREAM_HOSTS"),
        ("http://127.0.0.1:5432", "LOGTUNE_PROXY_UPSTREAM_HOSTS"),
        ("https://api.openai.com:6379/v1", "port 6379 of api.openai.com"),
        ("http://my-vllm.internal.example/v1", "port 80 of my-vllm.internal.example"),
        ("https://user:secret@api.openai.com/v1", "credentials"),
    ],
)
def test_a_url_the_server_must_not_call_is_refused_with_a_form_error(client, owner, project, allowed, url, problem):
    response = save(client, owner, openai_base_url=url)

    assert problem in response.content.decode()
    project.refresh_from_db()
    assert project.openai_base_url == "https://api.openai.com/v1"
    assert not AuditEvent.objects.filter(action="project.update").exists()


def test_an_editor_cannot_change_the_upstreams_nor_sees_the_form(client, editor, project, allowed):
    client.force_login(editor)
    assert b"Proxy upstreams" not in client.get("/p/acme/").content

    response = client.post("/p/acme/upstreams", {"openai_base_url": "https://api.anthropic.com"})

    assert response.status_code == 403
    project.refresh_from_db()
    assert project.openai_base_url == "https://api.openai.com/v1"


def test_an_outsider_gets_404(client, outsider, project, allowed):
    client.force_login(outsider)

    assert client.post("/p/acme/upstreams", {"openai_base_url": "https://api.anthropic.com"}).status_code == 404


def test_a_star_allows_any_host(settings):
    settings.LOGTUNE_PROXY_UPSTREAM_HOSTS = ["*"]

    assert upstream_url_problem("http://10.0.0.5:8000/v1") == ""
    assert upstream_url_problem("gopher://10.0.0.5") == "must start with http:// or https://"


def test_hosts_are_compared_without_case(settings):
    settings.LOGTUNE_PROXY_UPSTREAM_HOSTS = ["API.openai.com"]

    assert upstream_url_problem("https://api.OPENAI.com/v1") == ""


def test_a_host_alone_allows_only_its_schemes_default_port(settings):
    settings.LOGTUNE_PROXY_UPSTREAM_HOSTS = ["api.openai.com"]

    assert upstream_url_problem("https://api.openai.com/v1") == ""
    assert upstream_url_problem("https://api.openai.com:443/v1") == ""
    assert upstream_url_problem("http://api.openai.com/v1") == ""
    assert "port 8443 of api.openai.com" in upstream_url_problem("https://api.openai.com:8443/v1")
    assert "port 80 of api.openai.com" in upstream_url_problem("https://api.openai.com:80/v1")
    assert "port 443 of api.openai.com" in upstream_url_problem("http://api.openai.com:443/v1")


def test_a_host_with_a_port_allows_that_port_only(settings):
    settings.LOGTUNE_PROXY_UPSTREAM_HOSTS = ["vllm.example:8000"]

    assert upstream_url_problem("http://vllm.example:8000/v1") == ""
    assert upstream_url_problem("https://VLLM.example:8000/v1") == ""
    assert "port 80 of vllm.example" in upstream_url_problem("http://vllm.example/v1")
    assert "port 5432 of vllm.example" in upstream_url_problem("http://vllm.example:5432")


def test_a_host_with_a_star_allows_any_of_its_ports_and_no_other_host(settings):
    settings.LOGTUNE_PROXY_UPSTREAM_HOSTS = ["127.0.0.1:*"]

    assert upstream_url_problem("http://127.0.0.1:41234/v1") == ""
    assert upstream_url_problem("http://127.0.0.1/v1") == ""
    assert "host 127.0.0.2" in upstream_url_problem("http://127.0.0.2:41234/v1")


def test_ipv6_hosts_take_brackets_to_name_a_port(settings):
    settings.LOGTUNE_PROXY_UPSTREAM_HOSTS = ["[fd00::1]:8000", "::2"]

    assert upstream_url_problem("http://[fd00::1]:8000/v1") == ""
    assert "port 80 of [fd00::1]" in upstream_url_problem("http://[fd00::1]/v1")
    assert upstream_url_problem("https://[::2]/v1") == ""
    assert "port 8000 of [::2]" in upstream_url_problem("https://[::2]:8000/v1")


def test_an_invalid_port_in_the_url_is_refused(settings):
    settings.LOGTUNE_PROXY_UPSTREAM_HOSTS = ["*"]

    assert upstream_url_problem("http://api.openai.com:99999/v1") == "is not a URL"


@pytest.mark.parametrize("entry", ["api.openai.com:http", "api.openai.com:0", "http://api.openai.com", "a b"])
def test_a_malformed_entry_stops_start_up(entry):
    result = subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        env={**os.environ, "DEBUG": "1", "LOGTUNE_PROXY_UPSTREAM_HOSTS": f"api.anthropic.com,{entry}"},
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode != 0
    assert "is not host, host:port, host:* or *" in result.stderr
