"""Celery entry points of serving: thin wrappers that call the services."""

from celery import shared_task


@shared_task(name="training.tasks.routed_call_store_task", acks_late=True, reject_on_worker_lost=True)
def routed_call_store_task(log: dict, routed: dict) -> None:
    # On the default queue: a routed call's log, as the proxy's own task stores any call's (curation.proxy.tasks).
    from training.serving.calls import routed_call_store

    routed_call_store(log=log, routed=routed)


@shared_task(name="training.tasks.routed_shadow_task", acks_late=True, reject_on_worker_lost=True)
def routed_shadow_task(log: dict, routed: dict) -> None:
    # On the `shadow` queue: it waits for the fine-tune's whole answer, so it has workers of its own (threads).
    from training.serving.calls import routed_shadow_run

    routed_shadow_run(log=log, routed=routed)
