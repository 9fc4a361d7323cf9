"""Fine-tunes from the web side: what may be trained, submitting, estimating, cancelling, and asking a GPU
worker for a merge or playground answers.

Nothing here imports torch or transformers: hyperparameters are checked by TrainConfig (a plain dataclass)
and the estimate counts with the entries' stored token estimates, so web requests stay fast and light."""

import importlib.util
import logging
import math
import types
import typing
from dataclasses import asdict, fields
from typing import Any, TypedDict

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q, Sum, Value
from django.db.models.functions import Least
from django.utils import timezone

from curation.audit.services import audit_record
from curation.datasets.export import snapshot_request
from curation.models import ApiKey, Dataset, DatasetEntry, DatasetKind, DatasetSnapshot, JobStatus, Split
from training import selectors
from training.finetunes.runner import finetune_enqueue
from training.models import BaseModel, FineTuneJob, FineTuneStatus, Method
from training.trainer.config import METHODS, ConfigError, TrainConfig

logger = logging.getLogger(__name__)


SERVER_FIELDS = ("model", "data_path", "output_dir", "method")


HYPERPARAMETERS = tuple(f.name for f in fields(TrainConfig) if f.name not in SERVER_FIELDS)


DPO_NOT_FROM_SNAPSHOTS = (
    "This dataset holds conversations, which a fine-tune learns with sft. DPO trains on preference pairs: make a "
    "dataset of pairs (from edited entries or from people's votes on an evaluation) and fine-tune that."
)

SFT_NOT_ON_PAIRS = (
    "This dataset holds preference pairs, which a fine-tune learns with dpo; sft trains on conversations. Leave "
    "objective out (dpo), or fine-tune a dataset of conversations."
)

QLORA_NEEDS_CUDA = (
    "QLoRA loads the base model in 4 bits, which needs GPU workers with CUDA, and these have none "
    "(LOGTUNE_GPU_CUDA is off). Choose lora."
)


QLORA_NEEDS_BITSANDBYTES = (
    "QLoRA needs the bitsandbytes package, which is not installed. Install it (a CUDA build) on the web and "
    "GPU workers, or choose lora."
)


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "text", list: "a list of text",
               dict: "an object", type(None): "null"}  # fmt: skip


# Under this many train entries a fine-tune starts with a warning: it learns a format, rarely a task.
FEW_TRAIN_ENTRIES = 200


class Estimate(TypedDict):
    examples: int  # training examples (the train split)
    validation_examples: int
    tokens: int  # estimated tokens of the training examples, each cut at max_seq_length
    steps: int  # optimizer steps of the whole run
    steps_per_epoch: int
    processes: int  # trainer processes assumed (LOGTUNE_GPU_PROCESSES, or 1)
    minimum_examples: int  # train entries a fine-tune needs (LOGTUNE_FINETUNE_MIN_TRAIN_ENTRIES)
    can_start: bool  # enough train entries for at least one step
    warning: str  # "" or why the run may disappoint (few train entries)
    tokens_per_second: float | None  # of the base model's last fine-tune that succeeded; None before one
    seconds: float | None  # training time at that rate: all epochs' tokens over it
    cost_usd: float | None  # the hours, times processes, at LOGTUNE_GPU_HOUR_USD; None without a price or a rate


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


def base_model_defaults(*, base_model: BaseModel | str | None) -> dict[str, Any]:
    """The hyperparameters a registered base model takes unless told otherwise; {} for any other."""
    if base_model is None or isinstance(base_model, BaseModel):
        return dict(base_model.default_hyperparameters) if base_model is not None else {}
    row = BaseModel.objects.filter(name=base_model).only("default_hyperparameters").first()
    return dict(row.default_hyperparameters) if row is not None else {}


def _with_defaults(defaults: dict[str, Any], hyperparameters: object) -> object:
    return {**defaults, **hyperparameters} if isinstance(hyperparameters, dict) else hyperparameters


def train_entries_check(*, count: int) -> None:
    """Refuse a fine-tune of fewer train entries than LOGTUNE_FINETUNE_MIN_TRAIN_ENTRIES."""
    minimum = settings.LOGTUNE_FINETUNE_MIN_TRAIN_ENTRIES
    if not count:
        raise ValidationError({"dataset": "The dataset has no train entries to learn from."})
    if count < minimum:
        raise ValidationError({"dataset": (
            f"The dataset has {count:,} train entr{'y' if count == 1 else 'ies'}; a fine-tune needs at least "
            f"{minimum:,} (a few hundred to learn a task). Add entries, or split fewer into validation."
        )})  # fmt: skip


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


def hyperparameters_clean(*, model: str, method: str, hyperparameters: object, pairs: bool = False) -> dict[str, Any]:
    """Every TrainConfig hyperparameter, checked by TrainConfig itself, with the defaults resolved (the
    method's learning rate, alpha = twice the rank) so the job trains the same way after defaults change.
    Errors name the setting: {"learning_rate": "must be in (0, 1)"}. With `pairs` (a dataset of preference pairs)
    the objective is dpo, and sft is refused; without, dpo is refused."""
    if not isinstance(hyperparameters, dict):
        raise ValidationError({"hyperparameters": "An object of trainer settings, by name."})
    if pairs and "objective" not in hyperparameters:
        hyperparameters = {**hyperparameters, "objective": "dpo"}
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
    if config.objective == "dpo" and not pairs:
        raise ValidationError({"objective": DPO_NOT_FROM_SNAPSHOTS})
    if config.objective != "dpo" and pairs:
        raise ValidationError({"objective": SFT_NOT_ON_PAIRS})
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


def finetune_estimate(
    *, dataset: Dataset, hyperparameters: object, method: str = Method.LORA, base_model: BaseModel | str | None = None
) -> Estimate:
    """Examples, tokens, optimizer steps, time and cost a fine-tune of `dataset` would take, from the entries as
    they are now and their stored token estimates (about four characters a token), over `base_model`'s default
    hyperparameters. Time is known once a fine-tune of the base model has succeeded (its rate). Raises
    ValidationError for hyperparameters a job would refuse."""
    hyperparameters = _with_defaults(base_model_defaults(base_model=base_model), hyperparameters)
    config = hyperparameters_clean(
        model="estimate", method=method, hyperparameters=hyperparameters, pairs=dataset.kind == DatasetKind.PREFERENCE
    )
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
    tokens = totals["tokens"] or 0
    rate = _throughput(base_model)
    seconds = tokens * steps / steps_per_epoch / rate if rate and steps_per_epoch else None
    price = settings.LOGTUNE_GPU_HOUR_USD
    minimum = settings.LOGTUNE_FINETUNE_MIN_TRAIN_ENTRIES
    few = 0 < totals["examples"] < FEW_TRAIN_ENTRIES
    return Estimate(
        examples=totals["examples"],
        validation_examples=totals["validation"],
        tokens=tokens,
        steps=steps,
        steps_per_epoch=steps_per_epoch,
        processes=processes,
        minimum_examples=minimum,
        can_start=steps > 0 and totals["examples"] >= minimum,
        warning=f"Fewer than {FEW_TRAIN_ENTRIES} train entries: a fine-tune learns a format from so few, rarely a "
        "task, and the evaluation says little."
        if few
        else "",
        tokens_per_second=rate,
        seconds=seconds,
        cost_usd=seconds / 3600 * processes * price if seconds is not None and price else None,
    )


def _throughput(base_model: BaseModel | str | None) -> float | None:
    if base_model is None:
        return None
    try:
        _, model = base_model_resolve(base_model=base_model)
    except ValidationError:
        return None
    return selectors.finetune_throughput(model=model)


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
    hyperparameters = _with_defaults(base_model_defaults(base_model=row), hyperparameters or {})
    pairs = dataset.kind == DatasetKind.PREFERENCE
    clean = hyperparameters_clean(model=model, method=method, hyperparameters=hyperparameters, pairs=pairs)
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
        train_entries_check(count=DatasetEntry.objects.filter(dataset=dataset, split=Split.TRAIN).count())
        return snapshot_request(dataset=dataset, created_by=created_by, api_key=api_key)
    if snapshot.dataset_id != dataset.pk:
        raise ValidationError({"snapshot": f"Snapshot {snapshot.pk} is not a snapshot of dataset {dataset.pk}."})
    if snapshot.status == JobStatus.FAILED:
        raise ValidationError({"snapshot": f"Snapshot {snapshot.pk} failed; it has no file to train on."})
    if snapshot.status == JobStatus.SUCCEEDED and not snapshot.rows_train:
        raise ValidationError({"snapshot": f"Snapshot {snapshot.pk} holds no train entries to learn from."})
    if snapshot.status == JobStatus.SUCCEEDED:
        try:
            train_entries_check(count=snapshot.rows_train)
        except ValidationError as exc:
            raise ValidationError({"snapshot": exc.message_dict["dataset"]}) from None
    return snapshot


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
