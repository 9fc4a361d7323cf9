"""Celery entry points: thin wrappers that take ids and call the services. Each keeps the name it was
first registered under (`training.tasks.…`), which the routes, the beat schedule and queued messages use."""

from celery import shared_task


@shared_task(name="training.tasks.finetune_merge_task", acks_late=False, reject_on_worker_lost=False)
def finetune_merge_task(job_id: int) -> None:
    from training.playground.services import finetune_merge

    finetune_merge(job_id=job_id)


@shared_task(name="training.tasks.generation_run_task", acks_late=False, reject_on_worker_lost=False)
def generation_run_task(generation_id: int) -> None:
    from training.playground.services import generation_run

    generation_run(generation_id=generation_id)


@shared_task(name="training.tasks.loss_preview_task")
def loss_preview_task(preview_id: int) -> None:
    """On the default queue (CELERY_TASK_ROUTES): a tokenizer needs no GPU, and a preview must not wait for one."""
    from training.playground.services import loss_preview_run

    loss_preview_run(preview_id=preview_id)
