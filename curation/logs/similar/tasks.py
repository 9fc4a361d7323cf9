"""Celery entry points: thin wrappers that take ids and call the services. Each keeps the name it was
first registered under (`curation.tasks.…`), which the beat schedule, the routes and queued messages use."""

from celery import shared_task


@shared_task(name="curation.tasks.project_embed_logs_task", acks_late=True, reject_on_worker_lost=True)
def project_embed_logs_task(job_id: int) -> None:
    # A redelivered task embeds only the logs the first run had not committed (their embeddings are fresh).
    from curation.logs.similar.services import project_embed_logs

    project_embed_logs(job_id=job_id)
