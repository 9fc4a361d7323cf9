"""The proxy's key lookup: remembered for a few seconds, so a proxied call costs no database round trip."""

import pytest

from curation.models import Role
from curation.projects.services import api_key_create, api_key_revoke
from curation.proxy import keys

pytestmark = pytest.mark.django_db


def test_a_key_that_authenticated_is_remembered_without_asking_the_database(project, django_assert_num_queries):
    key, raw = api_key_create(project=project, name="app", role=Role.EDITOR)
    assert keys.proxy_key_authenticate(raw=raw) == key

    with django_assert_num_queries(0):
        remembered = keys.proxy_key_authenticate(raw=raw)

    assert remembered is not None and remembered.project == project


def test_a_revoked_key_is_refused_once_its_memory_has_expired(project, monkeypatch):
    key, raw = api_key_create(project=project, name="app", role=Role.EDITOR)
    assert keys.proxy_key_authenticate(raw=raw) == key
    api_key_revoke(key=key)

    monkeypatch.setattr(keys, "KEY_CACHE_SECONDS", 0.0)

    assert keys.proxy_key_authenticate(raw=raw) is None


def test_unknown_keys_are_not_remembered(project, django_assert_num_queries):
    keys.proxy_key_authenticate(raw="lt_unknown_key")

    with django_assert_num_queries(1):
        assert keys.proxy_key_authenticate(raw="lt_unknown_key") is None
