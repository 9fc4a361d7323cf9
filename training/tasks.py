"""Celery entry points for fine-tuning: thin wrappers that take ids and call the services.

Everything here but the reaper and loss previews runs on the `gpu` queue (CELERY_TASK_ROUTES). The GPU
tasks are acknowledged on receipt (acks_late=False): a fine-tune can outlast the broker's visibility timeout,
and a redelivery of a running job must never start it twice. A worker that dies mid-job is noticed by the
reaper instead, through the job's heartbeat.
"""

import socket

from celery import Task, shared_task


@shared_task(bind=True, acks_late=False, reject_on_worker_lost=False)
def finetune_run_task(self: Task, job_id: int) -> None:
    from training.services.runner import finetune_run

    finetune_run(job_id=job_id, worker=self.request.hostname or socket.gethostname())


@shared_task(acks_late=False, reject_on_worker_lost=False)
def finetune_merge_task(job_id: int) -> None:
    from training.services.playground import finetune_merge

    finetune_merge(job_id=job_id)


@shared_task(acks_late=False, reject_on_worker_lost=False)
def generation_run_task(generation_id: int) -> None:
    from training.services.playground import generation_run

    generation_run(generation_id=generation_id)


@shared_task
def loss_preview_task(preview_id: int) -> None:
    """On the default queue (CELERY_TASK_ROUTES): a tokenizer needs no GPU, and a preview must not wait for one."""
    from training.services.playground import loss_preview_run

    loss_preview_run(preview_id=preview_id)


@shared_task
def finetune_reap_task() -> None:
    """Every minute (CELERY_BEAT_SCHEDULE), on the default queue: re-queue or fail the jobs of dead workers."""
    from training.services.runner import finetune_reap

    finetune_reap()
