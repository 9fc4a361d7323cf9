"""Fine-tunes from the web side: what may be trained, submitting, estimating, cancelling, and asking a GPU
worker for a merge or playground answers.

Nothing here imports torch or transformers: hyperparameters are checked by TrainConfig (a plain dataclass)
and the estimate counts with the entries' stored token estimates, so web requests stay fast and light.
"""

import importlib.util
import logging
import math
import types
import typing
from dataclasses import asdict, fields
from datetime import timedelta
from typing import Any, TypedDict

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q, Sum, Value
from django.db.models.functions import Least
from django.utils import timezone

from curation.audit.services import audit_record
from curation.common.queueing import task_send_or_fail, task_send_or_mark_unsent
from curation.datasets.export import snapshot_request
from curation.models import ApiKey, Dataset, DatasetEntry, DatasetSnapshot, JobStatus, Split
from training.models import BaseModel, FineTuneJob, FineTuneStatus, Generation, Method
from training.trainer.config import METHODS, ConfigError, TrainConfig

logger = logging.getLogger(__name__)

# Set by Logtune for every job, never by the caller: what to load, where the data and results live.
SERVER_FIELDS = ("model", "data_path", "output_dir", "method")
HYPERPARAMETERS = tuple(f.name for f in fields(TrainConfig) if f.name not in SERVER_FIELDS)
MAX_NEW_TOKENS = 1024
QLORA_NEEDS_CUDA = (
    "QLoRA loads the base model in 4 bits, which needs GPU workers with CUDA, and these have none "
    "(LOGTUNE_GPU_CUDA is off). Choose lora."
)
QLORA_NEEDS_BITSANDBYTES = (
    "QLoRA needs the bitsandbytes package, which is not installed. Install it (a CUDA build) on the web and "
    "GPU workers, or choose lora."
)

WEIGHTS_DELETED = "The weights of this fine-tune were deleted; its metrics and evaluation are all that is left."

_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "text", list: "a list of text",
               dict: "an object", type(None): "null"}  # fmt: skip


class Estimate(TypedDict):
    examples: int  # training examples (the train split)
    validation_examples: int
    tokens: int  # estimated tokens of the training examples, each cut at max_seq_length
    steps: int  # optimizer steps of the whole run
    steps_per_epoch: int
    processes: int  # trainer processes assumed (LOGTUNE_GPU_PROCESSES, or 1)


# --- what may be trained ----------------------------------------------------------------------------


def base_model_names() -> list[str]:
    """Every base model on offer: the registered rows, then LOGTUNE_BASE_MODELS."""
    names = list(BaseModel.objects.order_by("name").values_list("name", flat=True))
    return names + [name for name in settings.LOGTUNE_BASE_MODELS if name not in names]


def base_model_resolve(*, base_model: BaseModel | str) -> tuple[BaseModel | None, str]:
    """(the row, what the trainer loads) for a row, a row's name, or an id listed in LOGTUNE_BASE_MODELS.
    Anything else is refused: a job must never make a worker load an arbitrary path."""
    if isinstance(base_model, BaseModel):
        return base_model, base_model.path
    row = BaseModel.objects.filter(name=base_model).first()
    if row is not None:
        return row, row.path
    if base_model in settings.LOGTUNE_BASE_MODELS:
        return None, base_model
    offered = (
        ", ".join(base_model_names()) or "none yet (run `manage.py create_demo_model`, or set LOGTUNE_BASE_MODELS)"
    )
    raise ValidationError({"base_model": f"Unknown base model '{base_model}'. On offer: {offered}."})


def method_check(*, method: str) -> None:
    if method not in METHODS:
        raise ValidationError({"method": f"Unknown method '{method}': one of {', '.join(METHODS)}."})
    if method != Method.QLORA:
        return
    # The web process cannot see the workers' hardware: operators say whether they have CUDA.
    if not settings.LOGTUNE_GPU_CUDA:
        raise ValidationError({"method": QLORA_NEEDS_CUDA})
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValidationError({"method": QLORA_NEEDS_BITSANDBYTES})


def hyperparameters_clean(*, model: str, method: str, hyperparameters: object) -> dict[str, Any]:
    """Every TrainConfig hyperparameter, checked by TrainConfig itself, with the defaults resolved (the
    method's learning rate, alpha = twice the rank) so the job trains the same way after defaults change.
    Errors name the setting: {"learning_rate": "must be in (0, 1)"}."""
    if not isinstance(hyperparameters, dict):
        raise ValidationError({"hyperparameters": "An object of trainer settings, by name."})
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name, value in hyperparameters.items():
        if name in SERVER_FIELDS:
            errors[name] = "set by Logtune for every job" if name != "method" else "give it as the job's method"
        elif name not in HYPERPARAMETERS:
            errors[name] = "unknown setting"
        else:
            try:
                values[name] = _typed(name, value)
            except ValueError as exc:
                errors[name] = str(exc)
    if errors:
        raise ValidationError(errors)
    try:
        config = TrainConfig(model=model, data_path="snapshot.jsonl", output_dir="output", method=method, **values)
    except ConfigError as exc:
        name, _, reason = str(exc).partition(": ")
        raise ValidationError(
            {name: reason} if reason and " " not in name else {"hyperparameters": str(exc)}
        ) from None
    clean = {name: value for name, value in asdict(config).items() if name not in SERVER_FIELDS}
    clean["learning_rate"], clean["lora_alpha"] = config.lr, config.alpha
    return clean


_FIELD_TYPES = {f.name: f.type for f in fields(TrainConfig)}


def _typed(name: str, value: object) -> object:
    """`value` if JSON gave it the type the field declares (an integer is a fine float), else ValueError."""
    annotation = _FIELD_TYPES[name]
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    allowed = [typing.get_origin(a) or a for a in (typing.get_args(annotation) if union else (annotation,))]
    for kind in allowed:
        if _fits(value, kind):
            return float(value) if kind is float else value  # type: ignore[arg-type]
    kinds = " or ".join(_TYPE_NAMES.get(kind, kind.__name__) for kind in allowed)
    raise ValueError(f"must be {kinds}")


def _fits(value: object, kind: type) -> bool:
    if kind is bool or isinstance(value, bool):  # JSON's true is no number, nor 1 a boolean
        return kind is bool and isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float)
    if kind is list:
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    return isinstance(value, kind)


# --- estimate ---------------------------------------------------------------------------------------


def finetune_estimate(*, dataset: Dataset, hyperparameters: object, method: str = Method.LORA) -> Estimate:
    """Examples, tokens and optimizer steps a fine-tune of `dataset` would take, from the entries as they
    are now and their stored token estimates (about four characters a token). Raises ValidationError for
    hyperparameters a job would refuse."""
    config = hyperparameters_clean(model="estimate", method=method, hyperparameters=hyperparameters)
    cut = Least("est_tokens", Value(config["max_seq_length"]))
    totals = DatasetEntry.objects.filter(dataset=dataset).aggregate(
        examples=Count("id", filter=Q(split=Split.TRAIN)),
        validation=Count("id", filter=Q(split=Split.VALIDATION)),
        tokens=Sum(cut, filter=Q(split=Split.TRAIN)),
    )
    processes = settings.LOGTUNE_GPU_PROCESSES or 1
    per_step = config["batch_size"] * config["gradient_accumulation"] * processes
    steps_per_epoch = math.ceil(totals["examples"] / per_step)
    steps = math.ceil(steps_per_epoch * config["epochs"])
    if config["max_steps"] is not None:
        steps = min(steps, config["max_steps"])
    return Estimate(
        examples=totals["examples"],
        validation_examples=totals["validation"],
        tokens=totals["tokens"] or 0,
        steps=steps,
        steps_per_epoch=steps_per_epoch,
        processes=processes,
    )


# --- submit and cancel ------------------------------------------------------------------------------


def finetune_create(
    *,
    dataset: Dataset,
    base_model: BaseModel | str,
    method: str = Method.LORA,
    hyperparameters: object = None,
    snapshot: DatasetSnapshot | None = None,
    created_by: User | None = None,
    api_key: ApiKey | None = None,
) -> FineTuneJob:
    """Queue a fine-tune of `dataset` on `snapshot`, or on a snapshot frozen now. A small dataset is frozen
    in the request; the job of a large one waits on the GPU queue until its snapshot has been written."""
    method_check(method=method)
    row, model = base_model_resolve(base_model=base_model)
    clean = hyperparameters_clean(model=model, method=method, hyperparameters=hyperparameters or {})
    with transaction.atomic():
        snapshot = _snapshot_for(dataset=dataset, snapshot=snapshot, created_by=created_by, api_key=api_key)
        job = FineTuneJob.objects.create(
            project=dataset.project, dataset=dataset, snapshot=snapshot, base_model=row, model=model,
            method=method, hyperparameters=clean, created_by=created_by, api_key=api_key, enqueued_at=timezone.now(),
        )  # fmt: skip
        audit_record(
            project=dataset.project, action="finetune.start", count=snapshot.rows_train or snapshot.rows_total,
            actor=created_by, api_key=api_key,
            detail={"job_id": job.pk, "dataset_id": dataset.pk, "dataset": dataset.name, "snapshot_id": snapshot.pk,
                    "model": model, "method": method},
        )  # fmt: skip
        transaction.on_commit(lambda: finetune_enqueue(job.pk))
    logger.info("training.job_queued job=%s dataset=%s model=%s method=%s", job.pk, dataset.pk, model, method)
    return job


def _snapshot_for(
    *, dataset: Dataset, snapshot: DatasetSnapshot | None, created_by: User | None, api_key: ApiKey | None
) -> DatasetSnapshot:
    if snapshot is None:
        if not DatasetEntry.objects.filter(dataset=dataset, split=Split.TRAIN).exists():
            raise ValidationError({"dataset": "The dataset has no train entries to learn from."})
        return snapshot_request(dataset=dataset, created_by=created_by, api_key=api_key)
    if snapshot.dataset_id != dataset.pk:
        raise ValidationError({"snapshot": f"Snapshot {snapshot.pk} is not a snapshot of dataset {dataset.pk}."})
    if snapshot.status == JobStatus.FAILED:
        raise ValidationError({"snapshot": f"Snapshot {snapshot.pk} failed; it has no file to train on."})
    if snapshot.status == JobStatus.SUCCEEDED and not snapshot.rows_train:
        raise ValidationError({"snapshot": f"Snapshot {snapshot.pk} holds no train entries to learn from."})
    return snapshot


def finetune_enqueue(job_id: int) -> None:
    """Hand the job to the GPU queue. With the broker down the job stays queued and is marked unsent, and the
    request that submitted it still succeeds: the reaper sends it once the broker is back."""
    from training.tasks import finetune_run_task

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


def finetune_cancel(*, job: FineTuneJob, actor: User | None = None, api_key: ApiKey | None = None) -> FineTuneJob:
    """Cancel a job. A queued one is cancelled at once (a worker that picks it up later finds it cancelled);
    a running one is asked to stop: its worker writes the CANCEL file within a second or so and terminates
    the trainer if it has not stopped after LOGTUNE_FINETUNE_CANCEL_GRACE_S. Asking twice changes nothing."""
    now = timezone.now()
    rows = FineTuneJob.objects.filter(pk=job.pk)
    with transaction.atomic():
        queued = rows.filter(status=FineTuneStatus.QUEUED).update(
            status=FineTuneStatus.CANCELLED, cancel_requested_at=now, finished_at=now, eta_seconds=None
        )
        running = not queued and rows.filter(status=FineTuneStatus.RUNNING, cancel_requested_at__isnull=True).update(
            cancel_requested_at=now
        )
        job.refresh_from_db()
        if not (queued or running):
            if job.status in (FineTuneStatus.SUCCEEDED, FineTuneStatus.FAILED):
                raise ValidationError(
                    {"status": f"This fine-tune has already {job.status}; there is nothing to cancel."}
                )
            return job
        audit_record(project=job.project, action="finetune.cancel", actor=actor, api_key=api_key,
                     detail={"job_id": job.pk, "dataset_id": job.dataset_id, "was": "queued" if queued else "running",
                             "step": job.step})  # fmt: skip
    logger.info("training.job_cancel_requested job=%s was_queued=%s", job.pk, bool(queued))
    return job


# --- requests for the GPU workers -------------------------------------------------------------------


def finetune_merge_request(
    *, job: FineTuneJob, actor: User | None = None, api_key: ApiKey | None = None
) -> FineTuneJob:
    """Queue merging the adapter into full weights (`merged/` beside it). Asking again while a merge is
    queued, running or done changes nothing; a failed merge can be asked for again."""
    if job.status != FineTuneStatus.SUCCEEDED:
        raise ValidationError({"status": "Only a succeeded fine-tune has an adapter to merge."})
    if job.weights_deleted_at is not None:
        raise ValidationError({"status": WEIGHTS_DELETED})
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
    from training.tasks import finetune_merge_task

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
    if job.status != FineTuneStatus.SUCCEEDED:
        raise ValidationError({"status": "The playground needs a succeeded fine-tune."})
    if job.weights_deleted_at is not None:
        raise ValidationError({"status": WEIGHTS_DELETED})
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
    from training.tasks import generation_run_task

    rows = Generation.objects.filter(pk=generation_id)
    task_send_or_fail(generation_run_task, generation_id, job=rows, event="training.generation")
