"""The proxy's world: a stand-in upstream, the app served by live_server, and a project pointed at both."""

from collections.abc import Iterator

import pytest

from curation.models import Project, Role
from tests.factories import ApiKeyFactory
from tests.proxy.upstream import StandIn, start_stand_in

PROVIDER_KEY = "sk-caller-provider-key-0123456789abcdef"
ANTHROPIC_PROVIDER_KEY = "sk-ant-caller-provider-key-0123456789"


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    server = start_stand_in()
    yield server
    server.close()


@pytest.fixture
def proxied(project: Project, stand_in: StandIn, settings) -> Project:
    """The acme project, its upstreams on the stand-in (the host and port this server's setting allows)."""
    settings.LOGTUNE_PROXY_UPSTREAM_HOSTS = [f"127.0.0.1:{stand_in.port}"]
    project.openai_base_url = f"{stand_in.url}/v1"
    project.anthropic_base_url = stand_in.url
    project.save()
    return project


@pytest.fixture
def editor_key(proxied: Project) -> str:
    return ApiKeyFactory(project=proxied, name="app", role=Role.EDITOR).raw
