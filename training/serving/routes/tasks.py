from celery import shared_task


@shared_task(name="training.tasks.route_pairs_judge_task", acks_late=True, reject_on_worker_lost=True)
def route_pairs_judge_task(call_id: int) -> None:
    """On the default queue (CELERY_TASK_ROUTES): it only calls the judge endpoint."""
    from training.serving.routes.judging import route_pairs_judge

    route_pairs_judge(call_id=call_id)
