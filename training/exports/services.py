"""Exporting a fine-tune for other runtimes: the download (checked and audited), and converting it to GGUF with
llama.cpp's converter on a GPU worker, asked for and followed like a merge (`gguf_status` on the job)."""

import logging
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from curation.audit.services import audit_record
from curation.common.queueing import task_send_or_fail
from curation.common.server_paths import paths_hidden
from curation.models import ApiKey
from training.exports import runtimes
from training.exports.selectors import Export, export_get, gguf_converter_missing
from training.models import FineTuneJob, FineTuneStatus
from training.processes import LOG_TAIL_LINES, log_tail, signal_group, spawn_group

logger = logging.getLogger(__name__)


def finetune_export(*, job: FineTuneJob, fmt: str, actor: User | None = None, api_key: ApiKey | None = None) -> Export:
    """The archive of `job` for a runtime (training.exports.selectors.ExportFormat), recorded in the audit log as a
    `finetune.download` naming the format. Raises ExportNotReady, recording nothing, when it cannot be made now."""
    export = export_get(job=job, fmt=fmt, now=timezone.now())
    audit_record(project=job.project, action="finetune.download", actor=actor, api_key=api_key,
                 detail={"job_id": job.pk, "what": export.root, "format": fmt})  # fmt: skip
    return export


def finetune_gguf_request(
    *, job: FineTuneJob, actor: User | None = None, api_key: ApiKey | None = None
) -> FineTuneJob:
    """Queue converting the fine-tune to GGUF (a LoRA adapter's GGUF, or the full weights'). Asking again while a
    conversion is queued, running or done changes nothing; a failed one can be asked for again."""
    job.weights_or_refuse("Only a succeeded fine-tune has weights to convert.")
    if missing := gguf_converter_missing():
        raise ValidationError({"status": missing})
    with transaction.atomic():
        asked = FineTuneJob.objects.filter(
            pk=job.pk, gguf_status__in=["", FineTuneStatus.FAILED], weights_deleted_at__isnull=True
        ).update(gguf_status=FineTuneStatus.QUEUED, gguf_error="")
        if asked:
            audit_record(project=job.project, action="finetune.gguf", actor=actor, api_key=api_key,
                         detail={"job_id": job.pk})  # fmt: skip
            transaction.on_commit(lambda: _enqueue_gguf(job.pk))
    job.refresh_from_db()
    return job


def _enqueue_gguf(job_id: int) -> None:
    from training.exports.tasks import finetune_gguf_task

    rows = FineTuneJob.objects.filter(pk=job_id)
    task_send_or_fail(finetune_gguf_task, job_id, job=rows, event="training.gguf", status="gguf_status",
                      error="gguf_error", finished=None)  # fmt: skip


class ConversionError(Exception):
    """The converter failed or ran out of time; the message says how, with the end of its log."""


def finetune_gguf_convert(*, job_id: int) -> None:
    """Convert a succeeded job to GGUF with llama.cpp's converter, in a child process (the converter loads the
    weights with torch). A second delivery finds the conversion taken and does nothing."""
    claimed = FineTuneJob.objects.filter(pk=job_id, gguf_status=FineTuneStatus.QUEUED).update(
        gguf_status=FineTuneStatus.RUNNING, gguf_started_at=timezone.now()
    )
    if not claimed:
        return
    job = FineTuneJob.objects.get(pk=job_id)
    rows = FineTuneJob.objects.filter(pk=job.pk, gguf_status=FineTuneStatus.RUNNING)
    try:
        _convert(job)
    except Exception as exc:
        error = str(exc) if isinstance(exc, ConversionError) else f"{type(exc).__name__}: {exc}"
        rows.update(gguf_status=FineTuneStatus.FAILED, gguf_error=paths_hidden(error))
        logger.warning("training.gguf_failed job=%s", job.pk)
        if not isinstance(exc, ConversionError):
            raise
        return
    rows.update(gguf_status=FineTuneStatus.SUCCEEDED, gguf_error="")
    logger.info("training.gguf_finished job=%s", job.pk)


def _base_config_dir(model: str) -> str:
    """A folder holding the base model's config.json: the model's own folder, or its copy in the local hub cache
    (nothing is downloaded)."""
    if Path(model).is_dir():
        return model
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(model, local_files_only=True, allow_patterns=["config.json"])
    except Exception as exc:
        raise ConversionError(f"The config of the base model {model} is not on this worker: {exc}") from None


def _convert(job: FineTuneJob) -> None:
    if missing := gguf_converter_missing():
        raise ConversionError(missing)
    folder = job.gguf_path.parent
    shutil.rmtree(folder, ignore_errors=True)  # what a dead or failed run left
    folder.mkdir(parents=True)
    partial, log = folder / "converting.gguf", folder / "convert.log"
    base_dir = _base_config_dir(job.model) if job.uses_adapter else None
    script, *arguments = runtimes.gguf_converter_arguments(
        adapter=job.uses_adapter, source=str(job.adapter_dir), base_dir=base_dir, outfile=str(partial)
    )
    command = [sys.executable, str(Path(settings.LOGTUNE_LLAMA_CPP_DIR) / script), *arguments]
    process = spawn_group(command, log, signal.SIGKILL)
    try:
        returncode = process.wait(timeout=settings.LOGTUNE_GPU_TASK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ConversionError(
            f"{script} took longer than {settings.LOGTUNE_GPU_TASK_TIMEOUT_S} s (LOGTUNE_GPU_TASK_TIMEOUT_S)."
        ) from None
    finally:
        signal_group(process, signal.SIGKILL)
        process.wait()
    if returncode != 0 or not partial.is_file():
        tail = "\n".join(log_tail(log, LOG_TAIL_LINES))
        raise ConversionError(f"{script} failed (exit code {returncode}). The end of its log:\n{tail}".rstrip())
    partial.rename(job.gguf_path)
