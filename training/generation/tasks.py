"""Celery entry point of generation jobs: on the default queue, since the work is calls to an endpoint."""

from celery import shared_task


@shared_task(name="training.tasks.data_generation_run_task", acks_late=False, reject_on_worker_lost=False)
def data_generation_run_task(job_id: int) -> None:
    from training.generation.services import generation_run

    generation_run(job_id=job_id)


@shared_task(name="training.tasks.data_generation_reap_task")
def data_generation_reap_task() -> None:
    """Every minute (CELERY_BEAT_SCHEDULE): fail the generation jobs whose worker stopped, keeping their rows."""
    from training.generation.services import generation_jobs_reap

    generation_jobs_reap()
