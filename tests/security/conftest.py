import pytest

from tests.security.tenants import Tenant, tenant_create


@pytest.fixture
def world(settings, tmp_path) -> tuple[Tenant, Tenant]:
    settings.MEDIA_ROOT = tmp_path / "media"
    return tenant_create("own"), tenant_create("other")
