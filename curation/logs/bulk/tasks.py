"""Celery entry points: thin wrappers that take ids and call the services. Each keeps the name it was
first registered under (`curation.tasks.…`), which the beat schedule, the routes and queued messages use."""

from celery import Task, shared_task


@shared_task(name="curation.tasks.bulk_job_run_task", bind=True, acks_late=True, reject_on_worker_lost=True)
def bulk_job_run_task(self: Task, job_id: int) -> None:
    # As for imports: a second delivery while a run is alive does nothing; one after its worker died resumes the job.
    from curation.logs.bulk.services import bulk_job_run

    bulk_job_run(job_id=job_id, worker=self.request.hostname or "")


@shared_task(name="curation.tasks.bulk_reap_task")
def bulk_reap_task() -> None:
    """Every minute (CELERY_BEAT_SCHEDULE): re-queue the bulk jobs of dead workers, send those the broker never got."""
    from curation.logs.bulk.services import bulk_jobs_reap

    bulk_jobs_reap()
