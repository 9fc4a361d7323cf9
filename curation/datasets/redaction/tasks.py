"""Celery entry points: thin wrappers that take ids and call the services. Each keeps the name it was
first registered under (`curation.tasks.…`), which the beat schedule, the routes and queued messages use."""

from celery import shared_task


@shared_task(name="curation.tasks.dataset_redact_task", acks_late=True, reject_on_worker_lost=True)
def dataset_redact_task(job_id: int) -> None:
    # A redelivered task goes on after the job's last committed batch; one sent twice takes turns with the other.
    from curation.datasets.redaction.services import redaction_job_run

    redaction_job_run(job_id=job_id)


@shared_task(name="curation.tasks.redaction_reap_task")
def redaction_reap_task() -> None:
    """Every minute (CELERY_BEAT_SCHEDULE): send again the redaction jobs the broker never got or lost."""
    from curation.datasets.redaction.services import redaction_jobs_reap

    redaction_jobs_reap()
