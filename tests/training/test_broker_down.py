"""Merges, playground answers and loss previews asked for while the broker is down: the request answers as
usual and the row is failed at once with the reason, instead of waiting forever for a worker that was never
told; asking again once the broker is back queues it. (A fine-tune itself is kept and resent by the reaper:
tests/faults/test_finetune_broker_down.py.)"""

import pytest

from curation.models import DatasetEntry
from training.finetunes.services import finetune_create
from training.models import FineTuneJob, FineTuneStatus, Generation, LossPreview
from training.playground.services import finetune_merge_request, generation_create, loss_preview_request
from training.playground.tasks import finetune_merge_task, generation_run_task, loss_preview_task

pytestmark = pytest.mark.django_db

UNREACHABLE = "The task queue is unreachable (Error 111 connecting to 127.0.0.1:6379. Connection refused.)"


@pytest.fixture
def succeeded(dataset, base_model) -> FineTuneJob:
    job = finetune_create(dataset=dataset, base_model=base_model, hyperparameters={"max_steps": 4})
    FineTuneJob.objects.filter(pk=job.pk).update(status=FineTuneStatus.SUCCEEDED)
    job.refresh_from_db()
    return job


def test_a_merge_fails_saying_so_and_can_be_asked_again(
    succeeded, broker_down, monkeypatch, django_capture_on_commit_callbacks
):
    broker_down(finetune_merge_task)

    with django_capture_on_commit_callbacks(execute=True):
        finetune_merge_request(job=succeeded)

    succeeded.refresh_from_db()
    assert succeeded.merge_status == FineTuneStatus.FAILED and succeeded.merge_error.startswith(UNREACHABLE)
    monkeypatch.undo()
    sent: list[int] = []
    monkeypatch.setattr(finetune_merge_task, "delay", sent.append)
    with django_capture_on_commit_callbacks(execute=True):
        assert finetune_merge_request(job=succeeded).merge_status == FineTuneStatus.QUEUED
    assert sent == [succeeded.pk]


def test_a_playground_question_fails_saying_so(succeeded, broker_down, django_capture_on_commit_callbacks):
    broker_down(generation_run_task)

    with django_capture_on_commit_callbacks(execute=True):
        generation = generation_create(job=succeeded, messages=[{"role": "user", "content": "2+2?"}])

    generation = Generation.objects.get(pk=generation.pk)
    assert generation.status == FineTuneStatus.FAILED and generation.error.startswith(UNREACHABLE)
    assert generation.finished_at is not None


def test_a_loss_preview_fails_saying_so_and_the_next_look_asks_again(
    dataset, base_model, broker_down, monkeypatch, django_capture_on_commit_callbacks
):
    broker_down(loss_preview_task)
    entry = DatasetEntry.objects.filter(dataset=dataset).first()

    with django_capture_on_commit_callbacks(execute=True):
        preview = loss_preview_request(entry=entry, base_model="tiny")

    preview = LossPreview.objects.get(pk=preview.pk)
    assert preview.status == FineTuneStatus.FAILED and preview.error.startswith(UNREACHABLE)
    monkeypatch.undo()
    monkeypatch.setattr(loss_preview_task, "delay", lambda preview_id: None)
    with django_capture_on_commit_callbacks(execute=True):
        again = loss_preview_request(entry=entry, base_model="tiny")
    assert again.pk != preview.pk and again.status == FineTuneStatus.QUEUED
