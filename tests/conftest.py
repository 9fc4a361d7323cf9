"""Personas (owner, editor teammate, viewer, outsider), the data most tests start from, API clients, and the
real services. Data a module needs for itself lives in that module, under a name that says what it holds.

A test that needs PostgreSQL, Redis or a Celery worker it cannot reach is skipped on a laptop, and
fails when LOGTUNE_STRICT_SKIPS=1 (CI sets it): in CI every skip is a failure.
"""

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from curation.models import Dataset, Role, Split
from tests.factories import (
    ApiKeyFactory,
    BaseModelFactory,
    DatasetEntryFactory,
    DatasetFactory,
    ProjectFactory,
    UserFactory,
    qa,
)
from training.models import BaseModel

STRICT_SKIPS = os.environ.get("LOGTUNE_STRICT_SKIPS") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if STRICT_SKIPS and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"Skipped under LOGTUNE_STRICT_SKIPS=1 (skips are failures in CI): {reason}"


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def media(settings, tmp_path: Path) -> Path:
    """Each test writes uploads, snapshots and weights to a media folder of its own (its app and worker processes
    are given the same one)."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MEDIA_ROOT.mkdir()
    settings.LOGTUNE_INDEX_DIR = tmp_path / "index"  # the files of log vectors searches map (a cache)
    return settings.MEDIA_ROOT


@pytest.fixture
def postgres(db: None) -> None:
    """The test needs PostgreSQL (full-text search, jsonb containment, COPY, concurrency)."""
    if connection.vendor != "postgresql":
        pytest.skip(f"needs PostgreSQL, the test database is {connection.vendor}")


@pytest.fixture(scope="session")
def redis_broker_url() -> str:
    url = settings.CELERY_BROKER_URL
    if not url.startswith("redis://"):
        pytest.skip(f"needs a Redis broker, CELERY_BROKER_URL is {url}")
    if not _reachable(url, 6379):
        pytest.skip(f"Redis is not reachable at {url}")
    return url


@pytest.fixture(scope="session")
def celery_session_app(redis_broker_url: str):
    from config.celery import app

    app.conf.broker_url = redis_broker_url
    # Every task module imported now, before any worker starts: a module first imported later, by a request thread of
    # the live server (a task sent from a code path not taken before), would register its tasks while a starting
    # worker walks the registry ("dictionary changed size during iteration").
    app.loader.import_default_modules()
    return app


@pytest.fixture
def celery_worker(celery_session_app, transactional_db: None) -> Iterator[object]:
    """A real Celery worker (in a thread of this process) consuming the real Redis broker.
    Tests using it see committed data only, hence transactional_db."""
    from celery.contrib.testing.worker import start_worker

    celery_session_app.control.purge()
    for attempt in (1, 2):
        starting = start_worker(
            celery_session_app, pool="solo", perform_ping_check=False, queues=["default"], shutdown_timeout=30
        )
        try:
            worker = starting.__enter__()
        except RuntimeError as exc:
            # The worker thread walks dicts of Celery's (the registry, the signals' receivers) as it starts, while the
            # live server's threads may still be serving the last test's requests; once, it met one mid-change.
            if attempt == 2 or "changed size during iteration" not in str(exc):
                raise
            continue
        break
    try:
        yield worker
    finally:
        starting.__exit__(None, None, None)


# --- Personas -------------------------------------------------------------------------------------


@pytest.fixture
def project(db: None):
    return ProjectFactory(slug="acme", name="Acme")


@pytest.fixture
def owner(project):
    return UserFactory(username="alice", memberships=[(project, Role.OWNER)])


@pytest.fixture
def editor(project):
    return UserFactory(username="bob", memberships=[(project, Role.EDITOR)])


@pytest.fixture
def viewer(project):
    return UserFactory(username="carol", memberships=[(project, Role.VIEWER)])


@pytest.fixture
def outsider(db: None):
    other = ProjectFactory(slug="other", name="Other")
    return UserFactory(username="mallory", memberships=[(other, Role.OWNER)])


# --- Data --------------------------------------------------------------------------------------------------


@pytest.fixture
def dataset(project) -> Dataset:
    """Math: three sums to train on (10, 20 and 30 tokens) and one held out for validation (5 tokens)."""
    dataset = DatasetFactory(project=project, name="Math")
    for i in range(3):
        DatasetEntryFactory(dataset=dataset, messages=qa(f"{i}+{i}?", str(2 * i)), est_tokens=10 * (i + 1))
    DatasetEntryFactory(dataset=dataset, messages=qa("2+2?", "4"), split=Split.VALIDATION, est_tokens=5)
    return dataset


@pytest.fixture
def base_model(db: None) -> BaseModel:
    """A base model registered under the name "tiny" (the fine-tune forms' and API's default in tests)."""
    return BaseModelFactory(name="tiny", path="/models/tiny", description="for tests")


# --- Keys and clients ---------------------------------------------------------------------------------------


@pytest.fixture
def api_key(project) -> str:
    """The secret of an editor key of the project."""
    return ApiKeyFactory(project=project, name="tests").raw


@pytest.fixture
def key_client(api_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    return client


@pytest.fixture
def client_for():
    def make(user) -> APIClient:
        client = APIClient()
        client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def broker_down(monkeypatch) -> Callable[..., None]:
    """`broker_down(task, ...)`: each task's `delay` and `apply_async` fail as they do when Redis refuses the
    connection."""
    from kombu.exceptions import OperationalError

    def unreachable(*args: object, **kwargs: object) -> None:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    def down(*tasks: object) -> None:
        for task in tasks:
            monkeypatch.setattr(task, "delay", unreachable)
            monkeypatch.setattr(task, "apply_async", unreachable)

    return down
