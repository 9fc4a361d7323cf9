"""What background jobs share for outages: handing a job row's task to the broker without losing the job when the
broker is down, one run at a time with a claim and heartbeats, and telling a database that went away from a job
that failed."""

import logging
from datetime import timedelta

from celery import Task
from django.db import InterfaceError, OperationalError, connection
from django.db.models import F, Model, Q, QuerySet
from django.db.models.functions import Coalesce
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
    queue: str | None = None,
) -> bool:
    """Send `task(*args)`, to `queue` if given (else where CELERY_TASK_ROUTES sends it). When the broker is down, the
    job (`job`: its row; `status`, `error` and `finished` name its fields) is marked failed, saying so, and the
    caller goes on: for work that only computes from what is stored (embeddings, snapshots, merges, previews),
    asking again later loses nothing, so the job needs no reaper, and the page shows why instead of a job queued
    forever. Returns whether the task was sent."""
    try:
        if queue is None:
            task.delay(*args)
        else:
            task.apply_async(args, queue=queue)
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


def job_claim(model: type[Model], *, job_id: int, worker: str, heartbeat_timeout_s: int, max_attempts: int) -> bool:
    """Take a job row (imports, bulk jobs: `status`, `attempts`, `worker`, `heartbeat_at`, `started_at`) for one run,
    atomically: a queued job, or a running one whose run stopped sending heartbeats (the task redelivered after its
    worker died) and has attempts left. False when it is finished or another run is alive."""
    now = timezone.now()
    stale = now - timedelta(seconds=heartbeat_timeout_s)
    abandoned = Q(status=JobStatus.RUNNING, attempts__lt=max_attempts) & (
        Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=stale)
    )
    claimed = model._default_manager.filter(Q(status=JobStatus.QUEUED) | abandoned, pk=job_id).update(
        status=JobStatus.RUNNING, attempts=F("attempts") + 1, worker=worker[:255], heartbeat_at=now,
        started_at=Coalesce(F("started_at"), now),
    )  # fmt: skip
    return bool(claimed)


def job_save_owned(job: Model, *names: str) -> bool:
    """Write these fields of a claimed job only while the row is still this run's (running, same attempt): False
    when another run took the job over."""
    rows = type(job)._default_manager.filter(pk=job.pk, status=JobStatus.RUNNING, attempts=job.attempts)  # type: ignore[attr-defined]
    return bool(rows.update(**{name: getattr(job, name) for name in names}))
