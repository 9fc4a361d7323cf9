"""Celery entry points: thin wrappers that take ids and call the services. Each keeps the name it was
first registered under (`curation.tasks.…`), which the beat schedule, the routes and queued messages use."""

from celery import shared_task


@shared_task(name="curation.tasks.logs_pii_pending_task", acks_late=True, reject_on_worker_lost=True)
def logs_pii_pending_task(project_id: int) -> None:
    """Scan the logs a request stored without finding their personal data (it had spent its time for it)."""
    from curation.logs.pii.services import logs_pii_pending_fill

    logs_pii_pending_fill(project_id=project_id)


@shared_task(name="curation.tasks.logs_pii_pending_reap_task")
def logs_pii_pending_reap_task() -> None:
    """Every minute (CELERY_BEAT_SCHEDULE): send the scans of unscanned logs the broker never got."""
    from curation.logs.pii.services import logs_pii_pending_reap

    logs_pii_pending_reap()
