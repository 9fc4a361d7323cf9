"""The GPU worker's side, with a fake trainer that keeps the trainer's contract (events, adapter, losses,
evaluation, CANCEL) and is launched through the real accelerate launcher: outcomes, cancel and its grace
period, and that nothing of a run outlives it. The real trainer runs in test_jobs_e2e.py."""

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from curation.models import DatasetEntry
from tests.waiting import wait_until_finished
from training.finetunes import runner
from training.finetunes.runner import finetune_run
from training.finetunes.services import finetune_cancel, finetune_create
from training.models import ExampleLoss, FineTuneJob, FineTuneStatus, MetricPoint

pytestmark = pytest.mark.django_db


def submit(dataset, base_model, mode: str = "ok", **params: object) -> FineTuneJob:
    hyperparameters = {"max_steps": 5, "extra": {"fake": mode}, **params}
    return finetune_create(dataset=dataset, base_model=base_model, hyperparameters=hyperparameters)


def wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"still waiting after {seconds}s for {what}")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")  # a zombie has stopped; only its exit status is left


def trainer_pids(job: FineTuneJob) -> list[int]:
    path = job.output_dir / "pids"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def test_a_job_runs_to_success_with_metrics_evaluation_losses_and_an_adapter(dataset, base_model, fake_trainer):
    job = submit(dataset, base_model)

    finetune_run(job_id=job.pk, worker="gpu@test")

    job.refresh_from_db()
    assert job.status == FineTuneStatus.SUCCEEDED, job.error
    assert (job.step, job.total_steps, job.progress, job.attempts, job.worker) == (5, 5, 1.0, 1, "gpu@test")
    assert job.evaluation["tuned"] == {"eval_loss": 1.0, "perplexity": 2.72}
    assert job.summary["done"]["train_loss"] == 0.4 and job.finished_at is not None
    points = MetricPoint.objects.filter(job=job)
    assert [p.step for p in points if p.train_loss is not None] == [1, 2, 3, 4, 5]
    assert [p.step for p in points if p.eval_loss is not None] == [0, 5]
    train = set(DatasetEntry.objects.filter(dataset=dataset, split="train").values_list("pk", flat=True))
    assert set(ExampleLoss.objects.filter(job=job).values_list("entry_id", flat=True)) == train
    config = json.loads((job.output_dir / "config.json").read_text())
    assert (config["model"], config["method"], config["max_steps"]) == ("/models/tiny", "lora", 5)
    assert (config["data_path"], config["output_dir"]) == (job.snapshot.file.path, str(job.output_dir))
    assert (job.adapter_dir / "adapter_model.safetensors").exists()
    assert job.log_path.exists()
    assert not any(alive(pid) for pid in trainer_pids(job))


def test_the_trainers_error_event_is_the_jobs_error(dataset, base_model, fake_trainer):
    job = submit(dataset, base_model, "error")

    finetune_run(job_id=job.pk, worker="gpu@test")

    job.refresh_from_db()
    assert job.status == FineTuneStatus.FAILED
    assert job.error == "example 3 has no trained token: its assistant turn is empty"
    assert not ExampleLoss.objects.filter(job=job).exists() and job.evaluation == {}


def test_a_crash_fails_the_job_with_the_end_of_its_log(dataset, base_model, fake_trainer):
    job = submit(dataset, base_model, "crash")

    finetune_run(job_id=job.pk, worker="gpu@test")

    job.refresh_from_db()
    assert job.status == FineTuneStatus.FAILED
    assert job.error.startswith("The trainer exited with code ")
    assert "RuntimeError: out of memory" in job.error


def test_a_job_resumes_from_the_checkpoint_an_interrupted_attempt_left(dataset, base_model, fake_trainer):
    job = submit(dataset, base_model, max_steps=6)
    job.output_dir.mkdir(parents=True)
    for n in (1, 2, 3):
        (job.output_dir / "checkpoints" / f"step-{n}").mkdir(parents=True)

    finetune_run(job_id=job.pk, worker="gpu@test")

    job.refresh_from_db()
    assert job.status == FineTuneStatus.SUCCEEDED, job.error
    assert job.summary["start"]["resumed_from_step"] == 3
    steps = list(MetricPoint.objects.filter(job=job, train_loss__isnull=False).values_list("step", flat=True))
    assert steps == [4, 5, 6]


@pytest.mark.django_db(transaction=True)
def test_cancel_stops_a_running_job_within_seconds(gpu_worker, dataset, base_model, fake_trainer):
    job = submit(dataset, base_model, "slow", max_steps=1000)
    wait_for(lambda: FineTuneJob.objects.get(pk=job.pk).step >= 1, 60, "the first step")

    asked = time.monotonic()
    finetune_cancel(job=job)
    job = wait_until_finished(job, 15)

    assert job.status == FineTuneStatus.CANCELLED
    assert time.monotonic() - asked < 5
    assert job.summary["cancelled"]["step"] >= 1 and job.worker
    wait_for(lambda: not any(alive(pid) for pid in trainer_pids(job)), 5, "the trainer to exit")


@pytest.mark.django_db(transaction=True)
def test_a_trainer_that_ignores_the_cancel_is_terminated_after_the_grace_period(
    gpu_worker, dataset, base_model, fake_trainer, settings, monkeypatch
):
    settings.LOGTUNE_FINETUNE_CANCEL_GRACE_S = 1
    monkeypatch.setattr(runner, "KILL_AFTER_TERM_S", 1.0)
    job = submit(dataset, base_model, "stubborn", max_steps=1000)
    wait_for(lambda: FineTuneJob.objects.get(pk=job.pk).step >= 1, 60, "the first step")

    asked = time.monotonic()
    finetune_cancel(job=job)
    job = wait_until_finished(job, 15)

    assert job.status == FineTuneStatus.CANCELLED
    assert 1 <= time.monotonic() - asked < 8
    assert "cancelled" not in job.summary  # it never stopped by itself
    wait_for(lambda: not any(alive(pid) for pid in trainer_pids(job)), 5, "the trainer to be killed")
