"""Celery entry point of exports: converting a fine-tune to GGUF, on the `gpu` queue (CELERY_TASK_ROUTES: the GPU
workers hold the weights' folder, torch and the converter). Acknowledged on receipt, like a merge: a conversion
left running by a dead worker is failed by the fine-tune reaper and can be asked for again."""

from celery import shared_task


@shared_task(name="training.tasks.finetune_gguf_task", acks_late=False, reject_on_worker_lost=False)
def finetune_gguf_task(job_id: int) -> None:
    from training.exports.services import finetune_gguf_convert

    finetune_gguf_convert(job_id=job_id)
