"""Celery entry points for fine-tuning: thin wrappers that take ids and call the services. Each keeps the name it
was first registered under (`training.tasks.…`), which the routes, the beat schedule and queued messages use.

Everything here but the reaper and loss previews runs on the `gpu` queue (CELERY_TASK_ROUTES). The GPU
tasks are acknowledged on receipt (acks_late=False): a fine-tune can outlast the broker's visibility timeout,
and a redelivery of a running job must never start it twice. A worker that dies mid-job is noticed by the
reaper instead, through the job's heartbeat."""

import socket

from celery import Task, shared_task


@shared_task(name="training.tasks.finetune_run_task", bind=True, acks_late=False, reject_on_worker_lost=False)
def finetune_run_task(self: Task, job_id: int) -> None:
    from training.finetunes.runner import finetune_run

    finetune_run(job_id=job_id, worker=self.request.hostname or socket.gethostname())


@shared_task(name="training.tasks.finetune_reap_task")
def finetune_reap_task() -> None:
    """Every minute (CELERY_BEAT_SCHEDULE), on the default queue: re-queue or fail the jobs of dead workers."""
    from training.finetunes.runner import finetune_reap

    finetune_reap()
