"""Fine-tune jobs from the web side and the worker's bookkeeping: submit, validate, estimate, claim, cancel,
relay events, load losses, reap. No trainer runs here (see test_jobs_runner.py and test_jobs_e2e.py)."""

import importlib.util
import io
import json
import math
import threading
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from curation.models import AuditEvent, Dataset, DatasetEntry, DatasetSnapshot, JobStatus
from tests.factories import DatasetEntryFactory, DatasetFactory, DatasetSnapshotFactory, FineTuneJobFactory
from training.finetunes import runner
from training.finetunes.events import example_losses_load, finetune_relay_events
from training.finetunes.runner import finetune_claim, finetune_reap, finetune_run
from training.finetunes.services import (
    QLORA_NEEDS_BITSANDBYTES,
    QLORA_NEEDS_CUDA,
    base_model_names,
    finetune_cancel,
    finetune_create,
    finetune_estimate,
    hyperparameters_clean,
)
from training.models import ExampleLoss, FineTuneJob, FineTuneStatus, MetricPoint

pytestmark = pytest.mark.django_db


def write_events(job: FineTuneJob, events: list[dict], tail: str = "") -> None:
    job.output_dir.mkdir(parents=True, exist_ok=True)
    with (job.output_dir / "events.jsonl").open("a") as out:
        out.write("".join(json.dumps(event) + "\n" for event in events) + tail)


# --- submitting -------------------------------------------------------------------------------------


def test_a_job_freezes_a_snapshot_stores_resolved_hyperparameters_and_is_audited(dataset, base_model, owner):
    job = finetune_create(dataset=dataset, base_model="tiny", method="lora",
                          hyperparameters={"epochs": 1, "lora_rank": 8}, created_by=owner)  # fmt: skip

    assert (job.status, job.model, job.base_model, job.created_by) == ("queued", "/models/tiny", base_model, owner)
    assert job.snapshot.status == JobStatus.SUCCEEDED and job.snapshot.rows_train == 3
    params = job.hyperparameters
    assert (params["epochs"], params["lora_rank"], params["lora_alpha"], params["learning_rate"]) == (1.0, 8, 16, 2e-4)
    assert "model" not in params and "output_dir" not in params and "data_path" not in params
    event = AuditEvent.objects.get(action="finetune.start")
    assert (event.actor, event.count, event.detail["job_id"], event.detail["model"]) == (
        owner,
        3,
        job.pk,
        "/models/tiny",
    )


def test_a_job_trains_on_a_chosen_snapshot_of_its_dataset_only(dataset, base_model, project):
    chosen = finetune_create(dataset=dataset, base_model=base_model).snapshot
    other = DatasetFactory(project=project)
    DatasetEntryFactory(dataset=other)

    again = finetune_create(dataset=dataset, base_model=base_model, snapshot=chosen)
    with pytest.raises(ValidationError) as refused:
        finetune_create(dataset=other, base_model=base_model, snapshot=chosen)

    assert again.snapshot == chosen and DatasetSnapshot.objects.filter(dataset=dataset).count() == 1
    assert "snapshot" in refused.value.message_dict


def test_a_dataset_without_train_entries_cannot_be_fine_tuned(dataset, base_model):
    DatasetEntry.objects.filter(dataset=dataset).update(split="validation")

    with pytest.raises(ValidationError) as refused:
        finetune_create(dataset=dataset, base_model=base_model)

    assert refused.value.message_dict == {"dataset": ["The dataset has no train entries to learn from."]}
    assert not FineTuneJob.objects.exists() and not DatasetSnapshot.objects.exists()


def test_only_base_models_on_offer_can_be_trained(dataset, base_model, settings):
    settings.LOGTUNE_BASE_MODELS = ["Qwen/Qwen2.5-0.5B-Instruct"]

    from_settings = finetune_create(dataset=dataset, base_model="Qwen/Qwen2.5-0.5B-Instruct")
    with pytest.raises(ValidationError) as refused:
        finetune_create(dataset=dataset, base_model="/etc/passwd")

    assert (from_settings.model, from_settings.base_model) == ("Qwen/Qwen2.5-0.5B-Instruct", None)
    message = refused.value.message_dict["base_model"][0]
    assert "Unknown base model '/etc/passwd'" in message and "tiny, Qwen/Qwen2.5-0.5B-Instruct" in message


@pytest.mark.parametrize(
    ("hyperparameters", "field", "message"),
    [
        ({"learning_rate": 2}, "learning_rate", "must be in (0, 1)"),
        ({"batch_size": 0}, "batch_size", "must be at least 1"),
        ({"batch_size": "4"}, "batch_size", "must be an integer"),
        ({"epochs": True}, "epochs", "must be a number"),
        ({"max_steps": 2.5}, "max_steps", "must be an integer or null"),
        ({"target_modules": [1]}, "target_modules", "must be a list of text or text"),
        ({"scheduler": "step"}, "scheduler", "must be one of cosine, linear, constant"),
        ({"output_dir": "/etc"}, "output_dir", "set by Logtune for every job"),
        ({"method": "full"}, "method", "give it as the job's method"),
        ({"learnin_rate": 1e-4}, "learnin_rate", "unknown setting"),
    ],
)
def test_a_bad_hyperparameter_is_refused_naming_it(hyperparameters, field, message):
    with pytest.raises(ValidationError) as refused:
        hyperparameters_clean(model="m", method="lora", hyperparameters=hyperparameters)

    assert refused.value.message_dict == {field: [message]}


def test_freeze_needs_layers_to_freeze_as_the_trainer_config_says():
    with pytest.raises(ValidationError) as refused:
        hyperparameters_clean(model="m", method="freeze", hyperparameters={})

    assert refused.value.message_dict == {"freeze_layers": ["method freeze needs at least 1"]}
    assert hyperparameters_clean(model="m", method="full", hyperparameters={})["learning_rate"] == 1e-5


def test_qlora_is_refused_without_cuda_workers_or_bitsandbytes(dataset, base_model, settings, monkeypatch):
    settings.LOGTUNE_GPU_CUDA = False
    with pytest.raises(ValidationError) as no_cuda:
        finetune_create(dataset=dataset, base_model=base_model, method="qlora")

    settings.LOGTUNE_GPU_CUDA = True
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValidationError) as no_bitsandbytes:
        finetune_create(dataset=dataset, base_model=base_model, method="qlora")

    assert no_cuda.value.message_dict["method"] == [QLORA_NEEDS_CUDA]
    assert no_bitsandbytes.value.message_dict["method"] == [QLORA_NEEDS_BITSANDBYTES]
    assert not FineTuneJob.objects.exists()


def test_the_estimate_counts_train_examples_tokens_cut_at_the_max_length_and_steps(dataset, settings):
    settings.LOGTUNE_GPU_PROCESSES = 0
    params = {"batch_size": 1, "gradient_accumulation": 2, "epochs": 2, "max_seq_length": 16}

    estimate = finetune_estimate(dataset=dataset, hyperparameters=params)
    capped = finetune_estimate(dataset=dataset, hyperparameters={**params, "max_steps": 3})

    # 3 train entries of 10, 20, 30 estimated tokens, cut at 16; 2 examples per step: 2 steps an epoch.
    counts = {key: estimate[key] for key in ("examples", "validation_examples", "tokens", "steps", "steps_per_epoch",
                                             "processes")}  # fmt: skip
    assert counts == {"examples": 3, "validation_examples": 1, "tokens": 42, "steps": 4, "steps_per_epoch": 2,
                      "processes": 1}  # fmt: skip
    assert capped["steps"] == 3
    assert (estimate["seconds"], estimate["cost_usd"]) == (None, None)  # no base model, no rate


def test_the_estimate_times_and_prices_a_run_at_the_rate_of_the_base_models_last_fine_tune(
    dataset, base_model, settings
):
    settings.LOGTUNE_GPU_PROCESSES = 2
    settings.LOGTUNE_GPU_HOUR_USD = 3.6
    FineTuneJobFactory(model=base_model.path, status=FineTuneStatus.SUCCEEDED, finished_at=timezone.now(),
                       summary={"last_step": {"tokens_per_second": 0.02}})  # fmt: skip
    FineTuneJobFactory(model="/models/other", status=FineTuneStatus.SUCCEEDED, finished_at=timezone.now(),
                       summary={"last_step": {"tokens_per_second": 1000.0}})  # fmt: skip
    params = {"batch_size": 1, "gradient_accumulation": 1, "epochs": 2, "max_seq_length": 16}

    estimate = finetune_estimate(dataset=dataset, hyperparameters=params, base_model=base_model.name)

    # 42 tokens an epoch, two epochs, at 0.02 tokens a second: 4,200 s; two processes at $3.60 an hour each.
    assert estimate["tokens_per_second"] == 0.02
    assert estimate["seconds"] == pytest.approx(4200)
    assert estimate["cost_usd"] == pytest.approx(8.4)


def test_the_estimate_says_whether_a_fine_tune_could_start_and_warns_under_200_entries(dataset, settings):
    settings.LOGTUNE_FINETUNE_MIN_TRAIN_ENTRIES = 10
    too_few = finetune_estimate(dataset=dataset, hyperparameters={})
    DatasetEntryFactory.create_batch(7, dataset=dataset)

    enough = finetune_estimate(dataset=dataset, hyperparameters={})

    assert (too_few["can_start"], too_few["minimum_examples"]) == (False, 10)
    assert enough["can_start"] is True
    assert "Fewer than 200 train entries" in enough["warning"]


def test_a_fine_tune_below_the_minimum_of_train_entries_is_refused(dataset, base_model, settings):
    settings.LOGTUNE_FINETUNE_MIN_TRAIN_ENTRIES = 10

    with pytest.raises(ValidationError) as refused:
        finetune_create(dataset=dataset, base_model=base_model)

    assert refused.value.message_dict["dataset"] == [
        "The dataset has 3 train entries; a fine-tune needs at least 10 (a few hundred to learn a task). "
        "Add entries, or split fewer into validation."
    ]
    assert not FineTuneJob.objects.exists()


def test_a_written_snapshot_below_the_minimum_is_refused_too(dataset, base_model, settings):
    settings.LOGTUNE_FINETUNE_MIN_TRAIN_ENTRIES = 10
    snapshot = DatasetSnapshotFactory(dataset=dataset, status=JobStatus.SUCCEEDED, rows_train=9, rows_total=10)

    with pytest.raises(ValidationError) as refused:
        finetune_create(dataset=dataset, base_model=base_model, snapshot=snapshot)

    assert "has 9 train entries; a fine-tune needs at least 10" in refused.value.message_dict["snapshot"][0]


def test_a_base_models_defaults_apply_under_the_hyperparameters_given(dataset, base_model):
    base_model.default_hyperparameters = {"learning_rate": 0.01, "epochs": 10}
    base_model.save()

    job = finetune_create(dataset=dataset, base_model=base_model, hyperparameters={"epochs": 2})
    estimate = finetune_estimate(dataset=dataset, hyperparameters={}, base_model="tiny")

    assert (job.hyperparameters["learning_rate"], job.hyperparameters["epochs"]) == (0.01, 2.0)
    assert estimate["steps"] == 10  # 3 entries, 4 x 4 a step: one step an epoch, ten epochs


def test_the_estimate_refuses_what_a_job_would_refuse(dataset):
    with pytest.raises(ValidationError) as refused:
        finetune_estimate(dataset=dataset, hyperparameters={"epochs": 0})

    assert refused.value.message_dict == {"epochs": ["must be positive"]}


# --- claiming and cancelling ------------------------------------------------------------------------


def test_a_job_is_claimed_once_so_a_second_delivery_is_a_no_op(job, monkeypatch):
    def launch(*args):
        raise AssertionError("a job that is not queued must not be launched")

    assert finetune_claim(job_id=job.pk, worker="gpu@a") is True
    monkeypatch.setattr(runner, "_launch", launch)
    finetune_run(job_id=job.pk, worker="gpu@b")

    job.refresh_from_db()
    assert (job.status, job.worker, job.attempts) == ("running", "gpu@a", 1)
    assert job.heartbeat_at is not None and job.started_at is not None
    assert finetune_claim(job_id=job.pk, worker="gpu@b") is False


@pytest.mark.django_db(transaction=True)
def test_two_workers_claiming_at_once_get_the_job_once(postgres, dataset, base_model):
    job = finetune_create(dataset=dataset, base_model=base_model)
    barrier, results = threading.Barrier(2), []

    def claim(name: str) -> None:
        barrier.wait()
        results.append(finetune_claim(job_id=job.pk, worker=name))
        connection.close()

    threads = [threading.Thread(target=claim, args=(f"gpu@{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False, True]
    assert FineTuneJob.objects.get(pk=job.pk).attempts == 1


def test_cancelling_a_queued_job_cancels_it_at_once_and_no_worker_runs_it(job, owner, monkeypatch):
    monkeypatch.setattr(runner, "_launch", lambda *args: pytest.fail("a cancelled job must not run"))

    cancelled = finetune_cancel(job=job, actor=owner)
    finetune_run(job_id=job.pk, worker="gpu@a")

    job.refresh_from_db()
    assert cancelled.status == job.status == FineTuneStatus.CANCELLED
    assert job.finished_at is not None and job.attempts == 0
    event = AuditEvent.objects.get(action="finetune.cancel")
    assert (event.actor, event.detail["was"]) == (owner, "queued")
    assert job.is_finished and job.progress == 0.0


def test_cancelling_a_running_job_asks_its_worker_to_stop_once(job, owner):
    finetune_claim(job_id=job.pk, worker="gpu@a")

    first = finetune_cancel(job=job, actor=owner)
    asked_at = first.cancel_requested_at
    second = finetune_cancel(job=job, actor=owner)

    assert first.status == second.status == FineTuneStatus.RUNNING
    assert asked_at is not None and second.cancel_requested_at == asked_at
    assert AuditEvent.objects.filter(action="finetune.cancel").count() == 1


def test_a_finished_job_cannot_be_cancelled(job):
    FineTuneJob.objects.filter(pk=job.pk).update(status=FineTuneStatus.SUCCEEDED)

    with pytest.raises(ValidationError) as refused:
        finetune_cancel(job=job)

    assert "already succeeded" in refused.value.message_dict["status"][0]


def test_a_job_waits_on_the_gpu_queue_until_its_snapshot_is_written(job, monkeypatch):
    DatasetSnapshot.objects.filter(pk=job.snapshot_id).update(status=JobStatus.RUNNING)
    later = []
    monkeypatch.setattr(
        "training.finetunes.tasks.finetune_run_task.apply_async", lambda args, countdown: later.append(args)
    )

    finetune_run(job_id=job.pk, worker="gpu@a")

    assert later == [(job.pk,)]
    assert FineTuneJob.objects.get(pk=job.pk).status == FineTuneStatus.QUEUED


def test_a_job_whose_snapshot_failed_fails_with_the_snapshot_error(job):
    DatasetSnapshot.objects.filter(pk=job.snapshot_id).update(status=JobStatus.FAILED, error="disk full")

    finetune_run(job_id=job.pk, worker="gpu@a")

    job.refresh_from_db()
    assert job.status == FineTuneStatus.FAILED
    assert job.error == "The snapshot it was to train on could not be written: disk full"


def test_snapshot_lines_carry_the_entry_id_so_losses_map_back(job):
    lines = [json.loads(line) for line in job.snapshot.file.open("rb").read().splitlines()]

    entries = list(DatasetEntry.objects.filter(dataset=job.dataset).order_by("id").values_list("id", "split"))
    assert [(line["entry_id"], line["split"]) for line in lines] == entries


# --- relaying events --------------------------------------------------------------------------------

T0 = 1_764_000_000.0
START = {"type": "start", "time": T0, "examples_train": 3, "examples_validation": 1, "tokens_train": 60,
         "trained_tokens_train": 9, "dropped": 0, "total_steps": 4, "steps_per_epoch": 2, "world_size": 1,
         "device": "cpu", "precision": "fp32", "trainable_params": 10, "total_params": 100,
         "resumed_from_step": 0}  # fmt: skip


def step(n: int, loss: float = 1.0, **extra: object) -> dict:
    return {"type": "step", "time": T0 + n, "step": n, "total_steps": 4, "epoch": n / 2, "loss": loss,
            "learning_rate": 1e-4 * n, "grad_norm": 0.5, "tokens_per_second": 120.0 + n, "elapsed_s": n,
            "eta_s": 4.0 - n, **extra}  # fmt: skip


def test_the_relay_turns_events_into_metric_points_and_progress(job):
    finetune_claim(job_id=job.pk, worker="gpu@a")
    job.refresh_from_db()
    write_events(job, [
        START,
        {"type": "eval", "time": T0, "step": 0, "eval_loss": 2.5, "perplexity": 12.18},
        step(1, 2.25),
        step(2, 1.5),
        {"type": "warning", "time": T0 + 2, "message": "2 examples were cut to max_seq_length"},
        {"type": "checkpoint", "time": T0 + 2, "step": 2, "path": "checkpoints/step-2"},
        {"type": "eval", "time": T0 + 2, "step": 2, "eval_loss": 1.75, "perplexity": 5.75},
    ])  # fmt: skip

    assert finetune_relay_events(job=job) == 7

    job.refresh_from_db()
    points = list(MetricPoint.objects.filter(job=job).values_list("step", "train_loss", "eval_loss", "learning_rate"))
    assert points == [(0, None, 2.5, None), (1, 2.25, None, 1e-4), (2, 1.5, None, 2e-4), (2, None, 1.75, None)]
    assert (job.step, job.total_steps, job.eta_seconds, job.progress) == (2, 4, 2.0, 0.5)
    assert job.summary["start"]["trainable_params"] == 10
    assert job.summary["warnings"] == ["2 examples were cut to max_seq_length"]
    assert job.summary["checkpoint"] == {"time": T0 + 2, "step": 2, "path": "checkpoints/step-2"}
    assert job.summary["last_step"]["tokens_per_second"] == 122.0
    point = MetricPoint.objects.get(job=job, step=1)
    assert (point.tokens_per_second, point.grad_norm, point.epoch) == (121.0, 0.5, 0.5)
    assert point.time.timestamp() == T0 + 1


def test_the_relay_never_relays_an_event_twice_and_waits_for_a_line_being_written(job):
    finetune_claim(job_id=job.pk, worker="gpu@a")
    job.refresh_from_db()
    line = json.dumps(step(2))
    write_events(job, [START, step(1)], tail=line[:20])

    assert finetune_relay_events(job=job) == 2
    assert finetune_relay_events(job=job) == 0
    write_events(job, [], tail=line[20:] + "\n")
    assert finetune_relay_events(job=job) == 1

    assert list(MetricPoint.objects.filter(job=job).values_list("step", flat=True)) == [1, 2]
    reloaded = FineTuneJob.objects.get(pk=job.pk)
    assert reloaded.events_offset == (job.output_dir / "events.jsonl").stat().st_size
    again = FineTuneJob.objects.get(pk=job.pk)  # a new run of the worker starts from the stored offset
    assert finetune_relay_events(job=again) == 0


def test_a_resumed_run_replaces_what_came_after_its_checkpoint(job):
    finetune_claim(job_id=job.pk, worker="gpu@a")
    job.refresh_from_db()
    write_events(job, [START, step(1), step(2), step(3, 0.9)])
    finetune_relay_events(job=job)

    write_events(job, [{**START, "resumed_from_step": 2}, step(3, 0.8), step(4, 0.7)])
    finetune_relay_events(job=job)

    assert list(MetricPoint.objects.filter(job=job).values_list("step", "train_loss")) == [
        (1, 1.0), (2, 1.0), (3, 0.8), (4, 0.7),
    ]  # fmt: skip
    assert FineTuneJob.objects.get(pk=job.pk).step == 4


def test_a_diverging_loss_and_a_broken_line_do_not_stop_the_relay(job):
    finetune_claim(job_id=job.pk, worker="gpu@a")
    job.refresh_from_db()
    job.output_dir.mkdir(parents=True)
    (job.output_dir / "events.jsonl").write_text(
        json.dumps(START)
        + "\n"
        + json.dumps(step(1, math.nan))
        + "\n{not json\n"
        + json.dumps(step(2, math.inf))
        + "\n"
    )

    assert finetune_relay_events(job=job) == 4

    assert list(MetricPoint.objects.filter(job=job).values_list("step", "train_loss")) == [(1, None), (2, None)]
    assert FineTuneJob.objects.get(pk=job.pk).summary["last_step"]["loss"] is None


def test_the_error_event_becomes_the_job_error(job):
    finetune_claim(job_id=job.pk, worker="gpu@a")
    job.refresh_from_db()
    write_events(job, [START, {"type": "error", "time": T0, "message": "example 2 has no trained token"}])

    finetune_relay_events(job=job)

    assert FineTuneJob.objects.get(pk=job.pk).error == "example 2 has no trained token"


def test_example_losses_are_loaded_and_linked_to_the_entries_still_there(job, dataset):
    first, second, third = DatasetEntry.objects.filter(dataset=dataset, split="train").order_by("id")
    third.delete()
    job.output_dir.mkdir(parents=True)
    rows = [{"line": 1, "entry_id": first.pk, "loss": 0.2, "tokens": 3},
            {"line": 2, "entry_id": second.pk, "loss": 3.5, "tokens": 4},
            {"line": 3, "entry_id": third.pk, "loss": 1.0, "tokens": 5}]  # fmt: skip
    (job.output_dir / "example_losses.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))

    assert example_losses_load(job=job) == 3
    assert example_losses_load(job=job) == 3  # loading again replaces

    losses = list(ExampleLoss.objects.filter(job=job).order_by("-loss").values_list("entry_id", "loss", "tokens"))
    assert losses == [(second.pk, 3.5, 4), (None, 1.0, 5), (first.pk, 0.2, 3)]


# --- the reaper -------------------------------------------------------------------------------------


def stall(job: FineTuneJob, worker: str, minutes: int = 5) -> None:
    finetune_claim(job_id=job.pk, worker=worker)
    FineTuneJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=minutes), step=3)


def test_the_reaper_requeues_a_stalled_job_once_then_fails_it_with_the_reason(
    job, settings, django_capture_on_commit_callbacks
):
    settings.LOGTUNE_FINETUNE_HEARTBEAT_TIMEOUT_S, settings.LOGTUNE_FINETUNE_MAX_ATTEMPTS = 60, 2
    stall(job, "gpu@lost-1")

    with django_capture_on_commit_callbacks() as requeued:
        assert finetune_reap() == 1
    job.refresh_from_db()
    assert (job.status, job.worker, job.heartbeat_at, job.error) == ("queued", "", None, "")
    assert [i["worker"] for i in job.summary["interruptions"]] == ["gpu@lost-1"]
    assert len(requeued) == 1  # the task is sent again once the transaction commits

    stall(job, "gpu@lost-2")
    with django_capture_on_commit_callbacks() as requeued:
        assert finetune_reap() == 1

    job.refresh_from_db()
    assert job.status == FineTuneStatus.FAILED and not requeued
    assert job.error.startswith(
        "The fine-tune stopped at step 3: the worker gpu@lost-2 stopped sending heartbeats at "
    )
    assert "it had run 2 time(s) of at most 2 (LOGTUNE_FINETUNE_MAX_ATTEMPTS)" in job.error
    assert len(job.summary["interruptions"]) == 2 and job.finished_at is not None


def test_the_reaper_leaves_live_workers_alone_and_finishes_a_cancel_a_dead_one_could_not(
    job, dataset, base_model, settings
):
    settings.LOGTUNE_FINETUNE_HEARTBEAT_TIMEOUT_S = 60
    live = finetune_create(dataset=dataset, base_model=base_model)
    finetune_claim(job_id=live.pk, worker="gpu@alive")
    stall(job, "gpu@lost")
    finetune_cancel(job=job)

    assert finetune_reap() == 1

    assert FineTuneJob.objects.get(pk=live.pk).status == FineTuneStatus.RUNNING
    assert FineTuneJob.objects.get(pk=job.pk).status == FineTuneStatus.CANCELLED


# --- plumbing ---------------------------------------------------------------------------------------


def test_fine_tunes_go_to_the_gpu_queue_and_the_reaper_and_previews_to_the_default_one():
    from config.celery import app

    def queue(name: str) -> str:
        return app.amqp.router.route({}, name)["queue"].name

    assert queue("training.tasks.finetune_run_task") == "gpu"
    assert queue("training.tasks.finetune_merge_task") == queue("training.tasks.generation_run_task") == "gpu"
    assert queue("training.tasks.finetune_reap_task") == queue("training.tasks.loss_preview_task") == "default"
    assert app.conf.beat_schedule["finetunes-reap"]["task"] == "training.tasks.finetune_reap_task"
    from training.finetunes.tasks import finetune_run_task

    assert finetune_run_task.acks_late is False  # a run outlasting the visibility timeout is never delivered twice


def test_the_demo_model_is_built_once_and_offered(settings, tmp_path):
    from django.core.management import call_command

    from training.models import BaseModel

    settings.LOGTUNE_MODELS_DIR = tmp_path / "models"
    call_command("create_demo_model", stdout=io.StringIO())
    built = (tmp_path / "models" / "logtune-demo" / "config.json").stat().st_mtime
    BaseModel.objects.update(default_hyperparameters={})  # a row registered before it had defaults
    out = io.StringIO()
    call_command("create_demo_model", stdout=out)

    model = BaseModel.objects.get(name="logtune-demo")
    assert model.path == str(tmp_path / "models" / "logtune-demo")
    assert model.default_hyperparameters["learning_rate"] == 0.01  # what its description says
    assert "Demo model ready" in out.getvalue()
    assert (tmp_path / "models" / "logtune-demo" / "config.json").stat().st_mtime == built
    assert "logtune-demo" in base_model_names()


# --- deleting the dataset ---------------------------------------------------------------------------


def test_a_dataset_with_a_queued_or_running_fine_tune_cannot_be_deleted(client_for, owner, job):
    response = client_for(owner).delete(f"/api/v1/datasets/{job.dataset_id}?project=acme")

    assert response.status_code == 409  # the request is well formed; the dataset cannot go while it trains
    assert "cancel it first" in response.json()["detail"]
    assert Dataset.objects.filter(pk=job.dataset_id).exists()
