"""Handing a job row's task to the broker without losing the job when the broker is down."""

import logging

from celery import Task
from django.db.models import QuerySet
from kombu.exceptions import OperationalError as BrokerUnavailable

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
