"""Celery entry point of the topics job: a thin wrapper that takes the job's id and calls the service."""

from celery import shared_task


@shared_task(name="curation.tasks.topics_compute_task", acks_late=True, reject_on_worker_lost=True)
def topics_compute_task(job_id: int) -> None:
    # A redelivered task starts the computation over: nothing of a run is stored until its last transaction.
    from curation.logs.topics.services import topics_compute

    topics_compute(job_id=job_id)
