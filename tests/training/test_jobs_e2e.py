"""End to end with the real trainer on a tiny local model, on CPU: a dataset is frozen, trained on by a real
GPU-queue worker, evaluated against its base model, answered in the playground and merged; a cancel stops a
running job; a killed worker leaves its job to the reaper, which re-queues it to resume from its checkpoint."""

import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from django.conf import settings

from curation.models import Dataset, DatasetEntry
from tests.training.conftest import _purge, worker_env
from tests.training.test_jobs_runner import wait_for
from tests.training.tiny import FRUITS, colour_conversation
from tests.waiting import wait_until_finished
from training.finetunes.runner import finetune_reap, finetune_run
from training.finetunes.services import finetune_cancel, finetune_create
from training.models import ExampleLoss, FineTuneJob, FineTuneStatus, Generation, LossPreview, MetricPoint
from training.playground.services import loss_preview_request, loss_preview_run

pytestmark = pytest.mark.django_db(transaction=True)

# A few seconds of CPU: the tiny model learns one colour word per fruit well before 24 steps.
FAST = {"learning_rate": 1e-2, "epochs": 10, "max_steps": 24, "batch_size": 8, "gradient_accumulation": 1,
        "lora_dropout": 0.0, "eval_every_steps": 12, "checkpoint_every_steps": 0, "eval_generations": 2,
        "max_new_tokens": 8, "max_seq_length": 128, "warmup_ratio": 0.0}  # fmt: skip


@pytest.fixture
def colour_dataset(project, tiny_model) -> Dataset:
    """Colours: forty one-word colour questions about fruits, the last eight held out; the tiny model is offered as
    tiny-llama."""
    from training.models import BaseModel

    BaseModel.objects.create(name="tiny-llama", path=str(tiny_model))
    dataset = Dataset.objects.create(project=project, name="Colours")
    fruits = sorted(FRUITS)
    for index in range(40):
        DatasetEntry.objects.create(
            dataset=dataset, messages=colour_conversation(fruits[index % len(fruits)])["messages"], est_tokens=20,
            split="train" if index < 32 else "validation",
        )  # fmt: skip
    return dataset


def trainer_processes(job: FineTuneJob) -> list[int]:
    """Processes whose command line names this job's config (the launcher and the trainer)."""
    config = str(job.output_dir / "config.json").encode()
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if config in cmdline.read_bytes() and Path(cmdline.parent, "stat").read_text().split(") ")[1][0] != "Z":
                pids.append(int(cmdline.parent.name))
        except (OSError, IndexError):
            continue
    return pids


def test_a_dataset_is_fine_tuned_evaluated_answered_and_merged(gpu_worker, key_client, colour_dataset, client, owner):
    """The issue's whole path: dataset → snapshot → job on a GPU worker → adapter → evaluation → playground."""
    created = key_client.post("/api/v1/finetunes", {"dataset": colour_dataset.pk, "base_model": "tiny-llama",
                                                    "hyperparameters": FAST}, format="json")  # fmt: skip
    assert created.status_code == 201, created.content

    job = wait_until_finished(FineTuneJob.objects.get(pk=created.json()["id"]), 300)

    assert job.status == FineTuneStatus.SUCCEEDED, job.error
    assert (job.step, job.total_steps, job.summary["start"]["examples_train"]) == (24, 24, 32)
    assert job.evaluation["tuned"]["eval_loss"] < job.evaluation["base"]["eval_loss"]
    assert len(job.evaluation["generations"]) == 2
    points = MetricPoint.objects.filter(job=job)
    assert points.filter(train_loss__isnull=False).count() == 24
    assert list(points.filter(eval_loss__isnull=False).values_list("step", flat=True)) == [0, 12, 24]
    losses = ExampleLoss.objects.filter(job=job)
    assert losses.count() == 32 and not losses.filter(entry__isnull=True).exists()
    adapter = key_client.get(f"/api/v1/finetunes/{job.pk}/adapter")
    names = zipfile.ZipFile(io.BytesIO(b"".join(adapter.streaming_content))).namelist()
    assert f"finetune-{job.pk}-adapter/adapter_config.json" in names

    prompt = {"prompt": "What colour is a lemon?", "max_new_tokens": 8}
    asked = key_client.post(f"/api/v1/finetunes/{job.pk}/generate", prompt, format="json")
    generation = wait_until_finished(Generation.objects.get(pk=asked.json()["id"]), 180)
    assert generation.status == FineTuneStatus.SUCCEEDED, generation.error
    assert isinstance(generation.base_output, str) and generation.tuned_output.strip()

    assert key_client.post(f"/api/v1/finetunes/{job.pk}/merge").status_code == 202
    wait_for(lambda: FineTuneJob.objects.get(pk=job.pk).merge_status in ("succeeded", "failed"), 180, "the merge")
    job.refresh_from_db()
    assert job.merge_status == FineTuneStatus.SUCCEEDED, job.merge_error
    assert (job.merged_dir / "config.json").exists()

    client.force_login(owner)
    worst = client.get(f"/p/acme/datasets/{colour_dataset.pk}/?loss_job={job.pk}")
    assert len(worst.context["page"].entries) == 32


def test_a_loss_preview_is_worked_out_by_a_default_queue_worker(celery_worker, colour_dataset, client, editor):
    entry = DatasetEntry.objects.filter(dataset=colour_dataset).first()
    client.force_login(editor)
    url = f"/p/acme/datasets/{colour_dataset.pk}/entries/{entry.pk}/loss-preview"

    asked = client.post(url, {"base_model": "tiny-llama"}, follow=True)
    preview = wait_until_finished(LossPreview.objects.get(entry=entry), 120)

    assert asked.status_code == 200 and "on a worker" in asked.content.decode()
    assert preview.status == FineTuneStatus.SUCCEEDED, preview.error
    assert 0 < preview.trained_tokens < preview.tokens
    trained = "".join(piece["text"] for piece in preview.pieces if piece["trained"])
    assert entry.messages[-1]["content"] in trained and "What colour" not in trained
    panel = client.get(f"{url}/{preview.pk}").content.decode()
    assert 'class="trained"' in panel and "hx-trigger" not in panel
    assert client.get(url, {"base_model": "tiny-llama"}).context["preview"] == preview  # asked again: the same


def test_an_entry_that_cannot_be_trained_on_says_why(colour_dataset):
    entry = DatasetEntry.objects.create(dataset=colour_dataset, messages=[{"role": "user", "content": "No answer"}])
    preview = loss_preview_request(entry=entry, base_model="tiny-llama")

    loss_preview_run(preview_id=preview.pk)

    preview.refresh_from_db()
    assert preview.status == FineTuneStatus.FAILED and preview.error


def test_a_cancel_stops_a_running_fine_tune_within_seconds(gpu_worker, colour_dataset):
    job = finetune_create(
        dataset=colour_dataset, base_model="tiny-llama", hyperparameters={**FAST, "epochs": 100, "max_steps": 100_000}
    )
    wait_for(lambda: FineTuneJob.objects.get(pk=job.pk).step >= 2, 120, "the job to train")

    asked = time.monotonic()
    finetune_cancel(job=job)
    job = wait_until_finished(job, 30)

    assert job.status == FineTuneStatus.CANCELLED
    assert time.monotonic() - asked < 10
    assert "cancelled" in job.summary and not (job.adapter_dir / "adapter_config.json").exists()
    wait_for(lambda: not trainer_processes(job), 10, "the trainer to exit")


def test_a_killed_worker_leaves_its_job_to_the_reaper_which_requeues_it_to_resume(
    celery_session_app, colour_dataset, tmp_path, monkeypatch
):
    _purge(celery_session_app, "gpu")
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "gpu", "--pool", "prefork", "--concurrency",
         "1", "-n", "doomed@%h", "--without-gossip", "--without-mingle", "-l", "INFO"],
        cwd=settings.BASE_DIR, env=worker_env(tmp_path, settings.MEDIA_ROOT), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        hyperparameters = {**FAST, "epochs": 100, "max_steps": 120, "checkpoint_every_steps": 2, "eval_every_steps": 0}
        job = finetune_create(dataset=colour_dataset, base_model="tiny-llama", hyperparameters=hyperparameters)
        wait_for(lambda: "checkpoint" in FineTuneJob.objects.get(pk=job.pk).summary, 180, "a checkpoint")
        job.refresh_from_db()
        assert job.status == FineTuneStatus.RUNNING and job.worker.startswith("doomed@")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
        log.close()

    wait_for(lambda: not trainer_processes(job), 15, "the trainer to die with its worker")
    stopped_at = FineTuneJob.objects.get(pk=job.pk).step
    monkeypatch.setattr(settings, "LOGTUNE_FINETUNE_HEARTBEAT_TIMEOUT_S", 1)
    time.sleep(1.5)

    assert finetune_reap() == 1

    job.refresh_from_db()
    assert job.status == FineTuneStatus.QUEUED and job.attempts == 1
    interruption = job.summary["interruptions"][0]
    assert interruption["worker"].startswith("doomed@") and interruption["step"] == stopped_at
    assert job.step < 120

    finetune_run(job_id=job.pk, worker="gpu@rescue")  # the re-queued task, run here: it resumes

    job.refresh_from_db()
    assert job.status == FineTuneStatus.SUCCEEDED, job.error
    assert (job.attempts, job.worker) == (2, "gpu@rescue")
    assert job.summary["start"]["resumed_from_step"] >= 2
    steps = list(MetricPoint.objects.filter(job=job, train_loss__isnull=False).values_list("step", flat=True))
    assert steps == list(range(1, 121))  # every step once, none twice after the resume
    _purge(celery_session_app, "gpu")
    assert os.path.exists(job.adapter_dir / "adapter_config.json")
