"""Celery entry points: thin wrappers that take ids and call the services. Each keeps the name it was
first registered under (`curation.tasks.…`), which the beat schedule, the routes and queued messages use."""

from celery import shared_task

from curation.proxy.logs import proxy_log_store


@shared_task(name="curation.tasks.proxy_log_store_task", acks_late=True, reject_on_worker_lost=True)
def proxy_log_store_task(log: dict) -> None:
    # One call through the proxy, queued once its answer was sent. There is no row before the log itself, so the
    # task carries the call; its external_id makes a redelivery a duplicate that stores nothing.
    proxy_log_store(**log)
