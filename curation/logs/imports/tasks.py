"""Celery entry points: thin wrappers that take ids and call the services."""

from celery import Task, shared_task

from curation.logs.imports.run import import_job_run
from curation.logs.imports.services import import_jobs_reap


@shared_task(name="curation.tasks.import_logs_run", bind=True, acks_late=True, reject_on_worker_lost=True)
def import_logs_run(self: Task, job_id: int) -> None:
    # A redelivery while the first run is alive (an import outlasting the broker's visibility timeout) finds
    # the job claimed and does nothing; one after its worker died resumes it.
    import_job_run(job_id=job_id, worker=self.request.hostname or "")


@shared_task(name="curation.tasks.import_reap_task")
def import_reap_task() -> None:
    """Every minute (CELERY_BEAT_SCHEDULE): re-queue the imports of dead workers, send those the broker never got."""
    import_jobs_reap()
