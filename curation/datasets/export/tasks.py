"""Celery entry points: thin wrappers that take ids and call the services. Each keeps the name it was
first registered under (`curation.tasks.…`), which the beat schedule, the routes and queued messages use."""

from celery import shared_task


@shared_task(name="curation.tasks.snapshot_build_task", acks_late=True, reject_on_worker_lost=True)
def snapshot_build_task(snapshot_id: int, api_key_id: int | None = None) -> None:
    from curation.datasets.export.snapshots import snapshot_build
    from curation.models import ApiKey

    api_key = ApiKey.objects.filter(pk=api_key_id).first() if api_key_id else None
    snapshot_build(snapshot_id=snapshot_id, api_key=api_key)
