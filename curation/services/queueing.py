"""What background jobs share for outages: handing a job row's task to the broker without losing the job when the
broker is down, and telling a database that went away from a job that failed."""

import logging

from celery import Task
from django.db import InterfaceError, OperationalError, connection
from django.db.models import QuerySet
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnavailable

from curation.models import JobStatus

logger = logging.getLogger(__name__)


def task_send_or_mark_unsent(task: Task, job_id: int, *, queued: QuerySet, event: str) -> bool:
    """Send `task(job_id)`. When the broker is down, the job (`queued`: its row, still queued) is marked unsent
    (`enqueued_at` null) for its reaper to send once the broker is back, and the caller goes on: nothing
    accepted is lost. Returns whether the task was sent."""
    try:
        task.delay(job_id)
    except BrokerUnavailable as exc:
        queued.update(enqueued_at=None)
        logger.warning("%s job=%s: %s (the reaper sends it when the broker is back)", event, job_id, exc)
        return False
    return True


def task_send_or_fail(
    task: Task,
    *args: object,
    job: QuerySet,
    event: str,
    status: str = "status",
    error: str = "error",
    finished: str | None = "finished_at",
) -> bool:
    """Send `task(*args)`. When the broker is down, the job (`job`: its row; `status`, `error` and `finished`
    name its fields) is marked failed, saying so, and the caller goes on: for work that only computes from
    what is stored (embeddings, snapshots, merges, previews), asking again later loses
    nothing, so the job needs no reaper, and the page shows why instead of a job queued forever.
    Returns whether the task was sent."""
    try:
        task.delay(*args)
    except BrokerUnavailable as exc:
        changes: dict[str, object] = {
            status: JobStatus.FAILED,
            error: f"The task queue is unreachable ({exc}); try again once it is back.",
        }
        if finished:
            changes[finished] = timezone.now()
        job.update(**changes)
        logger.warning("%s %s: %s", event, args, exc)
        return False
    return True


def database_gone(exc: Exception) -> bool:
    """Whether the database went away: Django's errors, or the driver's own from code on the raw cursor (COPY)."""
    driver = connection.Database  # type: ignore[attr-defined]
    return isinstance(exc, (OperationalError, InterfaceError, driver.OperationalError, driver.InterfaceError))
