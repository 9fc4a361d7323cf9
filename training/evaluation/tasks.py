"""Celery entry points of evaluation runs: answering on the GPU queue, scoring on the default queue."""

from celery import shared_task


@shared_task(name="training.tasks.evaluation_answers_task", acks_late=False, reject_on_worker_lost=False)
def evaluation_answers_task(run_id: int) -> None:
    from training.evaluation.services import evaluation_answers_run

    evaluation_answers_run(run_id=run_id)


@shared_task(name="training.tasks.evaluation_score_task", acks_late=False, reject_on_worker_lost=False)
def evaluation_score_task(run_id: int) -> None:
    """On the default queue (CELERY_TASK_ROUTES): metrics and judge calls need no GPU."""
    from training.evaluation.services import evaluation_score_run

    evaluation_score_run(run_id=run_id)
