"""The playground: answers, merges and loss previews, asked for by the web side and computed by a worker in a
child program (`training.trainer.call`), so no web process loads a model."""

import json
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
from curation.common.server_paths import error_text, paths_hidden
from curation.models import ApiKey, DatasetEntry
from training.finetunes.services import base_model_resolve
from training.models import FineTuneJob, FineTuneStatus, Generation, LossPreview
from training.processes import LOG_TAIL_LINES, log_tail, signal_group, spawn_group
from training.selectors import loss_preview_current

MAX_NEW_TOKENS = 1024


def finetune_merge_request(
    *, job: FineTuneJob, actor: User | None = None, api_key: ApiKey | None = None
) -> FineTuneJob:
    """Queue merging the adapter into full weights (`merged/` beside it). Asking again while a merge is
    queued, running or done changes nothing; a failed merge can be asked for again."""
    job.weights_or_refuse("Only a succeeded fine-tune has an adapter to merge.")
    if not job.uses_adapter:
        raise ValidationError(
            {"method": "A full fine-tune already holds the full weights: there is nothing to merge."}
        )
    with transaction.atomic():
        asked = FineTuneJob.objects.filter(
            pk=job.pk, merge_status__in=["", FineTuneStatus.FAILED], weights_deleted_at__isnull=True
        ).update(merge_status=FineTuneStatus.QUEUED, merge_error="")
        if asked:
            audit_record(project=job.project, action="finetune.merge", actor=actor, api_key=api_key,
                         detail={"job_id": job.pk})  # fmt: skip
            transaction.on_commit(lambda: _enqueue_merge(job.pk))
    job.refresh_from_db()
    return job


def _enqueue_merge(job_id: int) -> None:
    from training.playground.tasks import finetune_merge_task

    rows = FineTuneJob.objects.filter(pk=job_id)
    task_send_or_fail(
        finetune_merge_task, job_id, job=rows, event="training.merge", status="merge_status", error="merge_error",
        finished=None,
    )  # fmt: skip


def generation_create(
    *,
    job: FineTuneJob,
    messages: object,
    max_new_tokens: int = 64,
    created_by: User | None = None,
    api_key: ApiKey | None = None,
) -> Generation:
    """Queue a playground prompt: a GPU worker answers it with the base and the fine-tuned model. Audited as
    `finetune.generate` (the prompt itself is not copied into the audit log: it is on the answer's row)."""
    job.weights_or_refuse("The playground needs a succeeded fine-tune.")
    if not isinstance(messages, list) or not messages or not all(_is_message(m) for m in messages):
        raise ValidationError({"messages": 'A list of chat messages: [{"role": "user", "content": "…"}, …].'})
    if messages[-1]["role"] == "assistant":
        raise ValidationError({"messages": "The last message is the model's to write: end with a user turn."})
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ValidationError({"max_new_tokens": f"From 1 to {MAX_NEW_TOKENS}."})
    with transaction.atomic():
        generation = Generation.objects.create(
            job=job, messages=messages, max_new_tokens=max_new_tokens, created_by=created_by
        )
        audit_record(project=job.project, action="finetune.generate", actor=created_by, api_key=api_key,
                     detail={"job_id": job.pk, "generation_id": generation.pk})  # fmt: skip
        transaction.on_commit(lambda: _enqueue_generation(generation.pk))
    return generation


def _is_message(message: object) -> bool:
    return (
        isinstance(message, dict)
        and message.get("role") in ("system", "user", "assistant")
        and isinstance(message.get("content"), str)
        and bool(message["content"].strip())
    )


def _enqueue_generation(generation_id: int) -> None:
    from training.playground.tasks import generation_run_task

    rows = Generation.objects.filter(pk=generation_id)
    task_send_or_fail(generation_run_task, generation_id, job=rows, event="training.generation")


logger = logging.getLogger(__name__)


CALLER_MODULE = "training.trainer.call"


class GpuCallError(Exception):
    """The child failed or ran out of time; the message says how, with the end of its log."""


def call_in_child(*, function: str, calls: list[dict], work_dir: Path, timeout: float) -> list:
    """Run `function` ("module:name") once per kwargs in `calls`, in one child process, and return its results."""
    work_dir.mkdir(parents=True, exist_ok=True)
    arguments, results, log = work_dir / "calls.json", work_dir / "results.json", work_dir / "call.log"
    arguments.write_text(json.dumps(calls))
    results.unlink(missing_ok=True)
    command = [sys.executable, "-m", CALLER_MODULE, function, str(arguments), str(results)]
    process = spawn_group(command, log, signal.SIGKILL)
    try:
        returncode = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise GpuCallError(f"{function} took longer than {timeout:.0f} s (LOGTUNE_GPU_TASK_TIMEOUT_S).") from None
    finally:
        signal_group(process, signal.SIGKILL)
        process.wait()
    if returncode != 0:
        tail = "\n".join(log_tail(log, LOG_TAIL_LINES))
        raise GpuCallError(f"{function} failed (exit code {returncode}). The end of its log:\n{tail}".rstrip())
    return json.loads(results.read_text())


def generation_run(*, generation_id: int) -> None:
    """Answer a queued playground prompt with the base model and the fine-tuned one. A second delivery
    finds it taken and does nothing."""
    now = timezone.now()
    claimed = Generation.objects.filter(pk=generation_id, status=FineTuneStatus.QUEUED).update(
        status=FineTuneStatus.RUNNING, started_at=now
    )
    if not claimed:
        return
    generation = Generation.objects.select_related("job").get(pk=generation_id)
    job = generation.job
    model, adapter_dir = job.tuned_model
    asked = {"messages": generation.messages, "max_new_tokens": generation.max_new_tokens}
    calls = [{"model": job.model, "adapter_dir": None, **asked}, {"model": model, "adapter_dir": adapter_dir, **asked}]
    work_dir = job.output_dir / "playground" / str(generation.pk)
    rows = Generation.objects.filter(pk=generation.pk)
    try:
        base, tuned = call_in_child(
            function="training.trainer.generate:generate", calls=calls, work_dir=work_dir,
            timeout=settings.LOGTUNE_GPU_TASK_TIMEOUT_S,
        )  # fmt: skip
    except Exception as exc:
        rows.update(status=FineTuneStatus.FAILED, error=paths_hidden(str(exc)), finished_at=timezone.now())
        logger.warning("training.generation_failed generation=%s job=%s", generation.pk, job.pk)
        if not isinstance(exc, GpuCallError):
            raise
        return
    rows.update(status=FineTuneStatus.SUCCEEDED, base_output=str(base), tuned_output=str(tuned),
                finished_at=timezone.now())  # fmt: skip
    shutil.rmtree(work_dir, ignore_errors=True)


def finetune_merge(*, job_id: int) -> None:
    """Merge a succeeded job's adapter into its base model's full weights, in `merged/`."""
    claimed = FineTuneJob.objects.filter(pk=job_id, merge_status=FineTuneStatus.QUEUED).update(
        merge_status=FineTuneStatus.RUNNING, merge_started_at=timezone.now()
    )
    if not claimed:
        return
    job = FineTuneJob.objects.get(pk=job_id)
    rows = FineTuneJob.objects.filter(pk=job.pk)
    call = {"model": job.model, "adapter_dir": str(job.adapter_dir), "output_dir": str(job.merged_dir)}
    try:
        call_in_child(function="training.trainer.merge:merge_adapter", calls=[call], work_dir=job.output_dir / "merge",
                      timeout=settings.LOGTUNE_GPU_TASK_TIMEOUT_S)  # fmt: skip
    except Exception as exc:
        rows.update(merge_status=FineTuneStatus.FAILED, merge_error=paths_hidden(str(exc)))
        logger.warning("training.merge_failed job=%s", job.pk)
        if not isinstance(exc, GpuCallError):
            raise
        return
    rows.update(merge_status=FineTuneStatus.SUCCEEDED, merge_error="")
    logger.info("training.merge_finished job=%s", job.pk)


def loss_preview_request(*, entry: DatasetEntry, base_model: str) -> LossPreview:
    """The loss preview of `entry` under `base_model`: the last one while the entry has not changed since,
    else a new one queued for a worker (the default queue: it needs a tokenizer, no GPU)."""
    base_model_resolve(base_model=base_model)
    current = loss_preview_current(entry=entry, base_model=base_model)
    if current is not None:
        return current
    with transaction.atomic():
        preview = LossPreview.objects.create(entry=entry, base_model=base_model)
        transaction.on_commit(lambda: _enqueue_loss_preview(preview.pk))
    return preview


def _enqueue_loss_preview(preview_id: int) -> None:
    from training.playground.tasks import loss_preview_task

    rows = LossPreview.objects.filter(pk=preview_id)
    # Left unfinished: loss_preview_request asks again for a preview the broker never got.
    task_send_or_fail(loss_preview_task, preview_id, job=rows, event="training.loss_preview", finished=None)


def loss_preview_run(*, preview_id: int) -> None:
    """Work out a queued loss preview: the entry's conversation as the model's chat template writes it, in
    runs of tokens that do and do not count toward the loss. An entry that cannot be trained on fails
    with the trainer's reason."""
    if not LossPreview.objects.filter(pk=preview_id, status=FineTuneStatus.QUEUED).update(
        status=FineTuneStatus.RUNNING
    ):
        return
    preview = LossPreview.objects.select_related("entry").get(pk=preview_id)
    rows = LossPreview.objects.filter(pk=preview.pk)
    try:
        from training.trainer.loss_preview import loss_preview

        _, model = base_model_resolve(base_model=preview.base_model)
        tokens = loss_preview(model=model, messages=preview.entry.messages, tools=preview.entry.tools)
    except Exception as exc:  # a tokenizer that cannot be loaded, an entry that cannot be trained on
        message = " ".join(exc.messages) if isinstance(exc, ValidationError) else error_text(exc)
        rows.update(status=FineTuneStatus.FAILED, error=message, finished_at=timezone.now())
        return
    pieces: list[dict] = []
    for token in tokens:
        if pieces and pieces[-1]["trained"] == bool(token["trained"]):
            pieces[-1]["text"] += token["text"]
        else:
            pieces.append({"text": token["text"], "trained": bool(token["trained"])})
    rows.update(status=FineTuneStatus.SUCCEEDED, pieces=pieces, tokens=len(tokens), finished_at=timezone.now(),
                trained_tokens=sum(1 for token in tokens if token["trained"]))  # fmt: skip
