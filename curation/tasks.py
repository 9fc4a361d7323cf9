"""Celery entry points: thin wrappers that take ids and call the services."""

from celery import Task, shared_task

from curation.services.imports import import_job_run, import_jobs_reap


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def import_logs_run(self: Task, job_id: int) -> None:
    # A redelivery while the first run is alive (an import outlasting the broker's visibility timeout) finds
    # the job claimed and does nothing; one after its worker died resumes it.
    import_job_run(job_id=job_id, worker=self.request.hostname or "")


@shared_task
def import_reap_task() -> None:
    """Every minute (CELERY_BEAT_SCHEDULE): re-queue the imports of dead workers, send those the broker never got."""
    import_jobs_reap()


@shared_task(acks_late=True, reject_on_worker_lost=True)
def logs_pii_pending_task(project_id: int) -> None:
    """Scan the logs a request stored without finding their personal data (it had spent its time for it)."""
    from curation.services.log_pii import logs_pii_pending_fill

    logs_pii_pending_fill(project_id=project_id)


@shared_task
def logs_pii_pending_reap_task() -> None:
    """Every minute (CELERY_BEAT_SCHEDULE): send the scans of unscanned logs the broker never got."""
    from curation.services.log_pii import logs_pii_pending_reap

    logs_pii_pending_reap()


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def bulk_job_run_task(self: Task, job_id: int) -> None:
    # As for imports: a second delivery while a run is alive does nothing; one after its worker died resumes the job.
    from curation.services.bulk import bulk_job_run

    bulk_job_run(job_id=job_id, worker=self.request.hostname or "")


@shared_task
def bulk_reap_task() -> None:
    """Every minute (CELERY_BEAT_SCHEDULE): re-queue the bulk jobs of dead workers, send those the broker never got."""
    from curation.services.bulk import bulk_jobs_reap

    bulk_jobs_reap()


@shared_task(acks_late=True, reject_on_worker_lost=True)
def snapshot_build_task(snapshot_id: int, api_key_id: int | None = None) -> None:
    from curation.export import snapshot_build
    from curation.models import ApiKey

    api_key = ApiKey.objects.filter(pk=api_key_id).first() if api_key_id else None
    snapshot_build(snapshot_id=snapshot_id, api_key=api_key)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def proxy_log_store_task(log: dict) -> None:
    # One call through the proxy, queued once its answer was sent. There is no row before the log itself, so the
    # task carries the call; its external_id makes a redelivery a duplicate that stores nothing.
    from curation.services.proxy import proxy_log_store

    proxy_log_store(**log)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def dataset_embed_task(job_id: int) -> None:
    # A redelivered task embeds only the entries the first run had not committed (their embeddings are fresh).
    from curation.services.embeddings import dataset_embed

    dataset_embed(job_id=job_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def project_embed_logs_task(job_id: int) -> None:
    # A redelivered task embeds only the logs the first run had not committed (their embeddings are fresh).
    from curation.services.similar import project_embed_logs

    project_embed_logs(job_id=job_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def dataset_redact_task(job_id: int) -> None:
    # A redelivered task goes on after the job's last committed batch; one sent twice takes turns with the other.
    from curation.services.redaction import redaction_job_run

    redaction_job_run(job_id=job_id)


@shared_task
def redaction_reap_task() -> None:
    """Every minute (CELERY_BEAT_SCHEDULE): send again the redaction jobs the broker never got or lost."""
    from curation.services.redaction import redaction_jobs_reap

    redaction_jobs_reap()
