"""Running a fine-tune on a GPU worker: claim the job, launch the trainer as a child process group, relay its
events to the database every second, honour cancels, record the outcome and the artifacts. And the reaper,
which re-queues or fails the jobs of workers that died.

A job runs at most once at a time: the claim is one `UPDATE … WHERE status = 'queued'`, so a second delivery
of the task finds the job running (or finished) and does nothing. The task is acknowledged on receipt (a run
can outlast the broker's visibility timeout); a worker that dies mid-run stops writing heartbeats, and the
reaper re-queues the job once, to resume from its last checkpoint, or fails it with the reason."""

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from curation.common.queueing import task_send_or_mark_unsent
from curation.models import JobStatus
from training.finetunes.events import example_losses_load, finetune_relay_events, json_clean, json_file_read
from training.models import FineTuneJob, FineTuneStatus, Generation
from training.processes import LOG_TAIL_LINES, log_tail, signal_group, spawn_group
from training.trainer.config import TrainConfig

logger = logging.getLogger(__name__)

POLL_S = 1.0  # relay, heartbeat and cancel check


SNAPSHOT_WAIT_S = 2.0  # a job whose snapshot is still being written looks again this much later


SNAPSHOT_WAIT_MAX = timedelta(hours=12)


KILL_AFTER_TERM_S = 5.0  # after SIGTERM, the trainer's process group gets this long before SIGKILL


TRAINER_MODULE = "training.trainer"


LAUNCHER_MODULE = "training.trainer.launcher"


@dataclass(slots=True)
class Outcome:
    status: str
    error: str = ""


def finetune_enqueue(job_id: int) -> None:
    """Hand the job to the GPU queue. With the broker down the job stays queued and is marked unsent, and the
    request that submitted it still succeeds: the reaper sends it once the broker is back."""
    from training.finetunes.tasks import finetune_run_task

    task_send_or_mark_unsent(
        finetune_run_task, job_id, queued=FineTuneJob.objects.filter(pk=job_id, status=FineTuneStatus.QUEUED),
        event="training.job_enqueue_failed",
    )  # fmt: skip


def finetunes_unsent_send() -> int:
    """Send the queued jobs whose task never reached the broker, and those sent more than
    LOGTUNE_FINETUNE_RESEND_AFTER_S ago (a broker restarted without persistence forgets its queue; a job
    waiting behind others is merely sent twice, and the second delivery finds it taken). Returns how many."""
    now = timezone.now()
    resend = now - timedelta(seconds=settings.LOGTUNE_FINETUNE_RESEND_AFTER_S)
    unsent = FineTuneJob.objects.filter(
        Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=resend), status=FineTuneStatus.QUEUED
    ).values_list("pk", flat=True)
    sent = 0
    for job_id in unsent:
        if FineTuneJob.objects.filter(pk=job_id, status=FineTuneStatus.QUEUED).update(enqueued_at=now):
            logger.info("training.job_resent job=%s", job_id)
            finetune_enqueue(job_id)
            sent += 1
    return sent


def finetune_run(*, job_id: int, worker: str = "") -> None:
    """Run a queued job to its end on this worker. Does nothing for a job that is not queued (a second
    delivery, a cancelled job); a job whose snapshot is still being written is looked at again shortly."""
    job = FineTuneJob.objects.select_related("snapshot").filter(pk=job_id).first()
    if job is None or job.status != FineTuneStatus.QUEUED:
        logger.info("training.job_skipped job=%s status=%s", job_id, job.status if job else "deleted")
        return
    if job.snapshot.status == JobStatus.FAILED:
        FineTuneJob.objects.filter(pk=job.pk, status=FineTuneStatus.QUEUED).update(
            status=FineTuneStatus.FAILED, finished_at=timezone.now(),
            error=f"The snapshot it was to train on could not be written: {job.snapshot.error}",
        )  # fmt: skip
        return
    if not job.snapshot.is_finished:
        if timezone.now() - job.snapshot.created_at > SNAPSHOT_WAIT_MAX:
            FineTuneJob.objects.filter(pk=job.pk, status=FineTuneStatus.QUEUED).update(
                status=FineTuneStatus.FAILED, finished_at=timezone.now(),
                error=f"Its snapshot {job.snapshot.pk} was still {job.snapshot.status} after {SNAPSHOT_WAIT_MAX}.",
            )  # fmt: skip
            return
        from training.finetunes.tasks import finetune_run_task

        finetune_run_task.apply_async((job.pk,), countdown=SNAPSHOT_WAIT_S)
        return
    if not finetune_claim(job_id=job.pk, worker=worker or socket.gethostname()):
        return
    job.refresh_from_db()
    logger.info("training.job_started job=%s attempt=%s worker=%s", job.pk, job.attempts, job.worker)
    try:
        outcome = _supervise(job, _launch(job, _write_config(job)))
    except Exception as exc:
        _finish(job, Outcome(FineTuneStatus.FAILED, f"{type(exc).__name__}: {exc}"))
        raise
    _finish(job, outcome)


def finetune_claim(*, job_id: int, worker: str) -> bool:
    """Take a queued job for this worker, atomically. False when another delivery (or a cancel) got there first."""
    now = timezone.now()
    claimed = FineTuneJob.objects.filter(pk=job_id, status=FineTuneStatus.QUEUED).update(
        status=FineTuneStatus.RUNNING, attempts=F("attempts") + 1, worker=worker[:255], heartbeat_at=now,
        started_at=Coalesce(F("started_at"), now), error="",
    )  # fmt: skip
    return bool(claimed)


def _write_config(job: FineTuneJob) -> Path:
    job.output_dir.mkdir(parents=True, exist_ok=True)
    (job.output_dir / "CANCEL").unlink(missing_ok=True)
    config = TrainConfig(
        **job.hyperparameters, model=job.model, data_path=job.snapshot.file.path, output_dir=str(job.output_dir),
        method=job.method,
    )  # fmt: skip
    path = job.output_dir / "config.json"
    config.save(path)
    return path


def gpu_count() -> int:
    """GPUs this worker may use, without importing torch: CUDA_VISIBLE_DEVICES, else the driver's list."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([device for device in visible.split(",") if device.strip() not in ("", "-1")])
    return len(list(Path("/proc/driver/nvidia/gpus").glob("*")))


def _launch(job: FineTuneJob, config_path: Path) -> subprocess.Popen:
    processes = settings.LOGTUNE_GPU_PROCESSES or max(1, gpu_count())
    # The operator's file (DDP, FSDP) sets how the processes share the work; the flags below win over its keys.
    config_file = ["--config_file", settings.LOGTUNE_ACCELERATE_CONFIG] if settings.LOGTUNE_ACCELERATE_CONFIG else []
    command = [
        sys.executable, "-m", LAUNCHER_MODULE, str(os.getpid()),
        "--quiet", *config_file, "--num_processes", str(processes), "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "-m", TRAINER_MODULE, str(config_path),
    ]  # fmt: skip
    return spawn_group(command, job.log_path, signal.SIGUSR1)


def _supervise(job: FineTuneJob, process: subprocess.Popen) -> Outcome:
    """Every POLL_S: relay events, write the heartbeat, see whether a cancel was asked for. After a cancel
    the trainer has the grace period to stop at the end of its step, then SIGTERM, then SIGKILL."""
    cancelled_at: float | None = None
    try:
        while True:
            returncode = process.poll()
            finetune_relay_events(job=job)
            alive, cancel_requested = _beat(job)
            if not alive:
                logger.warning("training.job_lost job=%s: the row left 'running' under this worker", job.pk)
                return Outcome("lost")
            if cancel_requested and cancelled_at is None:
                (job.output_dir / "CANCEL").touch()
                cancelled_at = time.monotonic()
            if returncode is not None:
                return _outcome(job, returncode, cancelled=cancelled_at is not None)
            if cancelled_at is not None:
                waited = time.monotonic() - cancelled_at
                grace = settings.LOGTUNE_FINETUNE_CANCEL_GRACE_S
                if waited >= grace + KILL_AFTER_TERM_S:
                    signal_group(process, signal.SIGKILL)
                elif waited >= grace:
                    signal_group(process, signal.SIGTERM)
            time.sleep(POLL_S)
    finally:
        signal_group(process, signal.SIGKILL)  # nothing of a run outlives it
        process.wait()


def _beat(job: FineTuneJob) -> tuple[bool, bool]:
    """(still ours, cancel asked for): write the heartbeat on a row that is still running under this run."""
    rows = FineTuneJob.objects.filter(pk=job.pk, status=FineTuneStatus.RUNNING, attempts=job.attempts)
    if not rows.update(heartbeat_at=timezone.now()):
        return False, False
    return True, rows.filter(cancel_requested_at__isnull=False).exists()


def _outcome(job: FineTuneJob, returncode: int, *, cancelled: bool) -> Outcome:
    if returncode == 0 and "done" in job.summary:
        return Outcome(FineTuneStatus.SUCCEEDED)
    if cancelled:
        return Outcome(FineTuneStatus.CANCELLED)
    if job.error:  # the trainer's error event says what went wrong
        return Outcome(FineTuneStatus.FAILED, job.error)
    reason = "exited without finishing" if returncode == 0 else f"exited with code {returncode}"
    tail = "\n".join(log_tail(job.log_path, LOG_TAIL_LINES))
    return Outcome(FineTuneStatus.FAILED, f"The trainer {reason}. The end of train.log:\n{tail}".rstrip())


def _finish(job: FineTuneJob, outcome: Outcome) -> None:
    if outcome.status == "lost":
        return
    changes: dict[str, Any] = {"status": outcome.status, "finished_at": timezone.now(), "eta_seconds": None}
    if outcome.status == FineTuneStatus.FAILED:
        changes["error"] = outcome.error
    with transaction.atomic():
        if outcome.status == FineTuneStatus.SUCCEEDED:
            changes["evaluation"] = json_clean(json_file_read(job.output_dir / "evaluation.json"))
            example_losses_load(job=job)
        finished = FineTuneJob.objects.filter(pk=job.pk, status=FineTuneStatus.RUNNING, attempts=job.attempts)
        finished.update(**changes)
    logger.info("training.job_finished job=%s status=%s", job.pk, outcome.status)


def finetune_reap() -> int:
    """Jobs whose worker stopped sending heartbeats (it died, or lost its machine): re-queued to resume from
    their last checkpoint while they have attempts left, cancelled when a cancel was asked for, else failed
    with the reason. Also fails merges, GGUF conversions and generations left running by a dead worker, and sends
    queued jobs the broker never got (it was down) or may have forgotten. Returns jobs handled."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.LOGTUNE_FINETUNE_HEARTBEAT_TIMEOUT_S)
    handled = sum(_reap(job, now) for job in FineTuneJob.objects.filter(status=FineTuneStatus.RUNNING,
                                                                         heartbeat_at__lt=stale))  # fmt: skip
    _reap_gpu_requests(now)
    return handled + finetunes_unsent_send()


def _reap(job: FineTuneJob, now: datetime) -> int:
    heartbeat = job.heartbeat_at.strftime("%Y-%m-%d %H:%M:%S UTC") if job.heartbeat_at else "an unknown time"
    what = f"the worker {job.worker or '(unknown)'} stopped sending heartbeats at {heartbeat}"
    interruption = {"attempt": job.attempts, "worker": job.worker, "heartbeat_at": heartbeat, "step": job.step}
    summary = {**job.summary, "interruptions": [*job.summary.get("interruptions", []), interruption]}
    limit = settings.LOGTUNE_FINETUNE_MAX_ATTEMPTS
    changes: dict[str, Any] = {"summary": summary, "eta_seconds": None}
    if job.cancel_requested_at is not None:
        changes |= {"status": FineTuneStatus.CANCELLED, "finished_at": now}
    elif job.attempts < limit:
        changes |= {"status": FineTuneStatus.QUEUED, "worker": "", "heartbeat_at": None, "enqueued_at": now}
    else:
        changes |= {"status": FineTuneStatus.FAILED, "finished_at": now, "error": (
            f"The fine-tune stopped at step {job.step}: {what}, and it had run {job.attempts} time(s) of at most "
            f"{limit} (LOGTUNE_FINETUNE_MAX_ATTEMPTS). Its last checkpoint stays in {job.output_dir}.")}  # fmt: skip
    # Only if nothing moved since it was read: a worker that just wrote a heartbeat keeps its job.
    rows = FineTuneJob.objects.filter(pk=job.pk, status=FineTuneStatus.RUNNING, heartbeat_at=job.heartbeat_at)
    with transaction.atomic():
        if not rows.update(**changes):
            return 0
        if changes["status"] == FineTuneStatus.QUEUED:
            transaction.on_commit(lambda: finetune_enqueue(job.pk))
    logger.warning("training.job_reaped job=%s now=%s: %s", job.pk, changes["status"], what)
    return 1


def _reap_gpu_requests(now: datetime) -> None:
    # Merges and generations have no heartbeat: one running past the time limit lost its worker.
    late = now - timedelta(seconds=settings.LOGTUNE_GPU_TASK_TIMEOUT_S + 600)
    Generation.objects.filter(status=FineTuneStatus.RUNNING, started_at__lt=late).update(
        status=FineTuneStatus.FAILED, finished_at=now, error="The GPU worker answering it stopped."
    )
    FineTuneJob.objects.filter(merge_status=FineTuneStatus.RUNNING, merge_started_at__lt=late).update(
        merge_status=FineTuneStatus.FAILED, merge_error="The GPU worker merging it stopped."
    )
    FineTuneJob.objects.filter(gguf_status=FineTuneStatus.RUNNING, gguf_started_at__lt=late).update(
        gguf_status=FineTuneStatus.FAILED, gguf_error="The GPU worker converting it to GGUF stopped."
    )
