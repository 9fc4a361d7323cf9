"""Celery entry points: thin wrappers that take ids and call the services. Each keeps the name it was
first registered under (`curation.tasks.…`), which the beat schedule, the routes and queued messages use."""

from celery import shared_task


@shared_task(name="curation.tasks.dataset_embed_task", acks_late=True, reject_on_worker_lost=True)
def dataset_embed_task(job_id: int) -> None:
    # A redelivered task embeds only the entries the first run had not committed (their embeddings are fresh).
    from curation.datasets.dedup.services import dataset_embed

    dataset_embed(job_id=job_id)
