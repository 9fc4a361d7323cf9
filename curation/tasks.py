"""Celery entry points: thin wrappers that take ids and call the services."""

from celery import shared_task

from curation.services.imports import import_job_run


@shared_task(acks_late=True, reject_on_worker_lost=True)
def import_logs_run(job_id: int) -> None:
    import_job_run(job_id=job_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def bulk_job_run_task(job_id: int) -> None:
    from curation.services.bulk import bulk_job_run

    bulk_job_run(job_id=job_id)
