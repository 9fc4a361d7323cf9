import os
from pathlib import Path

from celery import Celery

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
