"""Fault tests: real web, worker and Redis processes, killed, restarted and cut off while they work."""

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.processes import PrivateRedis, Service


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Start a process for this test; all are stopped after it, and their logs printed (shown when it fails)."""
    started: list[Service] = []

    def start(name: str, command: list[str], env: dict) -> Service:
        service = Service(name, command, env, tmp_path)
        started.append(service)
        return service

    yield start
    for service in reversed(started):
        service.stop()
        print(service.tail())


@pytest.fixture
def private_redis(spawn: Callable[..., Service]) -> PrivateRedis:
    """A redis-server of this test's own, started, to stop and start again (never the machine's Redis)."""
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server on PATH to run a private Redis")
    redis = PrivateRedis(spawn)
    redis.start()
    return redis
