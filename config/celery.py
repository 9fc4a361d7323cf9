import os
from pathlib import Path

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("logtune")
app.config_from_object("django.conf:settings", namespace="CELERY")

ROOT = Path(__file__).resolve().parent.parent


def task_packages() -> list[str]:
    """Every package of ours with a tasks.py: each feature keeps its tasks next to its services."""
    found = (
        path.parent.relative_to(ROOT).parts
        for app in ("curation", "training")
        for path in (ROOT / app).rglob("tasks.py")
    )
    return sorted(".".join(parts) for parts in found)


app.autodiscover_tasks(task_packages)


@signals.worker_ready.connect
def gpu_worker_heartbeat_start(sender, **kwargs) -> None:
    """A worker of the gpu queue with a CUDA device says when it is free, so embedding jobs go to it then."""
    from curation.common.gpu_workers import gpu_worker_heartbeat_start

    queues = set(sender.app.amqp.queues.consume_from or sender.app.amqp.queues)
    gpu_worker_heartbeat_start(worker=sender.hostname, queues=queues, concurrency=sender.pool.num_processes)
