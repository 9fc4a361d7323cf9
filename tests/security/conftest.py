import pytest

from tests.security.tenants import Tenant, tenant_create


@pytest.fixture
def world() -> tuple[Tenant, Tenant]:
    return tenant_create("own"), tenant_create("other")
