"""Waiting for what a real Celery worker does in the background."""

import time
from typing import TypeVar

from curation.models import BackgroundWork

Work = TypeVar("Work", bound=BackgroundWork)


def wait_until_finished(work: Work, seconds: float = 30) -> Work:
    """Reload `work` (an import, a bulk job, a snapshot) until it has succeeded or failed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        work.refresh_from_db()  # type: ignore[attr-defined]
        if work.is_finished:
            return work
        time.sleep(0.1)
    raise AssertionError(f"{work} still {work.status} after {seconds}s")
