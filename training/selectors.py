"""Reads for fine-tunes. Every query is scoped to a project, dataset or job the caller was checked against."""

import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import (
    Avg,
    Case,
    DurationField,
    ExpressionWrapper,
    F,
    FloatField,
    IntegerField,
    OrderBy,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.expressions import Combinable
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce, Lower
from django.utils import timezone

from curation.datasets.selectors import ENTRY_PAGE_SIZE, EntryFilter, EntryPage
from curation.models import Dataset, DatasetEntry, Project
from training.evaluation.promotion.selectors import finetunes_with_gate
from training.models import (
    BaseModel,
    EvaluationRun,
    ExampleLoss,
    FineTuneJob,
    FineTuneStatus,
    Generation,
    LossPreview,
    Method,
    MetricPoint,
)
from training.processes import log_tail

METRICS_PAGE_MAX = 5_000


def _jobs() -> QuerySet[FineTuneJob]:
    return FineTuneJob.objects.select_related(
        "dataset", "snapshot", "base_model", "created_by", "weights_deleted_by", "weights_deleted_by_key"
    )


def finetunes_for_project(*, project: Project, dataset_id: int | None = None) -> QuerySet[FineTuneJob]:
    # Lists never show the evaluation, which holds the side-by-side generations.
    jobs = finetunes_with_gate(_jobs().filter(project=project).defer("evaluation"))
    return jobs.filter(dataset_id=dataset_id) if dataset_id is not None else jobs


def finetunes_for_dataset(*, dataset: Dataset) -> QuerySet[FineTuneJob]:
    return finetunes_with_gate(_jobs().filter(dataset=dataset).defer("evaluation"))


def finetune_throughput(*, model: str) -> float | None:
    """Trained tokens per second of the newest fine-tune of `model` that succeeded (its last steps' rate), in any
    project: the same workers train them all. None before the first."""
    rates = (
        FineTuneJob.objects.filter(model=model, status=FineTuneStatus.SUCCEEDED)
        .order_by("-finished_at")
        .values_list("summary__last_step__tokens_per_second", flat=True)[:5]
    )
    return next((float(rate) for rate in rates if isinstance(rate, int | float) and rate > 0), None)


def finetune_get(*, project: Project, job_id: int) -> FineTuneJob | None:
    return _jobs().filter(project=project, pk=job_id).first()


# --- the list as a table ----------------------------------------------------------------------------


def _json_number(path: str) -> Cast:
    """A number inside a JSON column (`evaluation__tuned__eval_loss`) as SQL, null where it is absent or null."""
    return Cast(KT(path), FloatField())


def _latest_succeeded_runs() -> QuerySet[EvaluationRun]:
    return EvaluationRun.objects.filter(job=OuterRef("pk"), status=FineTuneStatus.SUCCEEDED).order_by(
        "-created_at", "-id"
    )


STATUS_ORDER = [FineTuneStatus.QUEUED, FineTuneStatus.RUNNING, FineTuneStatus.SUCCEEDED, FineTuneStatus.FAILED,
                FineTuneStatus.CANCELLED]  # fmt: skip


def _table_columns() -> dict[str, Combinable]:
    """What the table shows beside the job's own fields, as SQL, so that it sorts by any of them."""
    mean_speed = (
        MetricPoint.objects.filter(job=OuterRef("pk"), tokens_per_second__isnull=False)
        .values("job")
        .annotate(mean=Avg("tokens_per_second"))
        .values("mean")
    )
    adapter = Q(method__in=[Method.LORA, Method.QLORA])
    return {
        "dataset_label": Coalesce("dataset__name", "snapshot__dataset_name"),
        "base_label": Coalesce("base_model__name", "model"),
        "learning_rate": _json_number("hyperparameters__learning_rate"),
        "epochs": _json_number("hyperparameters__epochs"),
        "lora_rank": Case(When(adapter, then=_json_number("hyperparameters__lora_rank")), default=None),
        # A running job's time so far: up to its last heartbeat.
        "duration": ExpressionWrapper(
            Coalesce("finished_at", "heartbeat_at") - F("started_at"), output_field=DurationField()
        ),
        "tokens_per_second": Subquery(mean_speed[:1], output_field=FloatField()),
        "status_rank": Case(
            *(When(status=status, then=Value(rank)) for rank, status in enumerate(STATUS_ORDER)),
            default=Value(len(STATUS_ORDER)),
            output_field=IntegerField(),
        ),
        "base_eval_loss": _json_number("evaluation__base__eval_loss"),
        "tuned_eval_loss": Coalesce(
            _json_number("evaluation__tuned__eval_loss"), _json_number("summary__done__eval_loss")
        ),
        "teacher_win_rate": Subquery(
            _latest_succeeded_runs().values(rate=_json_number("results__judge__teacher__win_rate__value"))[:1],
            output_field=FloatField(),
        ),
    }


# `?sort=` of the table: a column's name, `-` in front for descending. Each sorts by what the column shows;
# jobs without a value (not run yet, never evaluated) come last either way.
FINETUNE_SORTS: dict[str, F | Lower] = {
    "id": F("id"),
    "dataset": Lower("dataset_label"),
    "base": Lower("base_label"),
    "method": F("method"),
    "learning_rate": F("learning_rate"),
    "epochs": F("epochs"),
    "lora_rank": F("lora_rank"),
    "duration": F("duration"),
    "tokens_per_second": F("tokens_per_second"),
    "status": F("status_rank"),
    "eval_loss": F("tuned_eval_loss"),
    "win_rate": F("teacher_win_rate"),
    "created": F("created_at"),
}
FINETUNE_SORT_DEFAULT = "-created"


def finetune_sort(raw: str) -> str:
    """`raw` when it names a column of the table (`eval_loss`, `-duration`), else the default order."""
    return raw if raw.removeprefix("-") in FINETUNE_SORTS else FINETUNE_SORT_DEFAULT


def finetunes_table(
    *, project: Project, sort: str = FINETUNE_SORT_DEFAULT, ids: list[int] | None = None
) -> QuerySet[FineTuneJob]:
    """The project's jobs (or those of `ids`) with what the table shows, in the order of `sort` (finetune_sort)."""
    jobs = finetunes_for_project(project=project).annotate(**_table_columns())
    if ids is not None:
        jobs = jobs.filter(pk__in=ids)
    sort = finetune_sort(sort)
    expression = FINETUNE_SORTS[sort.removeprefix("-")]
    order: OrderBy = expression.desc(nulls_last=True) if sort.startswith("-") else expression.asc(nulls_last=True)
    return jobs.order_by(order, "-created_at", "-id")


def evaluations_latest(*, jobs: list[FineTuneJob], examples: bool = False) -> dict[int, EvaluationRun]:
    """Each job's latest succeeded evaluation run, by job id (jobs with none are left out); with `examples`, the
    runs carry their examples (every prompt and answer), which are left unread otherwise."""
    runs = EvaluationRun.objects.filter(job__in=[job.pk for job in jobs], status=FineTuneStatus.SUCCEEDED)
    if not examples:
        runs = runs.defer("examples")
    latest: dict[int, EvaluationRun] = {}
    for run in runs.order_by("job_id", "-created_at", "-id"):
        latest.setdefault(run.job_id, run)
    return latest


def metric_curves(*, jobs: list[FineTuneJob]) -> dict[int, list[tuple[int, float | None, float | None]]]:
    """(step, train_loss, eval_loss) of each job's metric points, by step, by job id."""
    curves: dict[int, list[tuple[int, float | None, float | None]]] = {job.pk: [] for job in jobs}
    points = MetricPoint.objects.filter(job__in=list(curves)).order_by("job_id", "step", "id")
    for job_id, step, train_loss, eval_loss in points.values_list("job_id", "step", "train_loss", "eval_loss"):
        curves[job_id].append((step, train_loss, eval_loss))
    return curves


def finetunes_with_losses(*, dataset: Dataset) -> QuerySet[FineTuneJob]:
    """The dataset's jobs that recorded a loss per training example, newest first."""
    return finetunes_for_dataset(dataset=dataset).filter(example_losses__isnull=False).distinct()


def metrics_after(*, job: FineTuneJob, after: int = -1, limit: int = METRICS_PAGE_MAX) -> list[MetricPoint]:
    return list(MetricPoint.objects.filter(job=job, step__gt=after).order_by("step", "id")[:limit])


def example_losses_top(*, job: FineTuneJob, limit: int = 20) -> QuerySet[ExampleLoss]:
    """The training examples the fine-tuned model fits worst: the likeliest bad labels."""
    return (
        ExampleLoss.objects.filter(job=job)
        .select_related("entry")
        .defer("entry__search_text")
        .order_by("-loss", "line")[:limit]
    )


def entries_by_loss(*, dataset: Dataset, job: FineTuneJob, entry_filter: EntryFilter, offset: int = 0) -> EntryPage:
    """One page of the dataset's entries by the job's loss on them, highest first (`offset` rows skipped);
    each entry carries `example_loss`. Entries the job did not train on are not listed."""
    losses = ExampleLoss.objects.filter(job=job, entry__dataset=dataset)
    if entry_filter.is_active:
        losses = losses.filter(entry__in=entry_filter.apply(DatasetEntry.objects.filter(dataset=dataset)))
    page = list(
        losses.select_related("entry__source_deleted_by", "entry__source_deleted_by_key")
        .defer("entry__search_text")
        .order_by("-loss", "entry_id")[offset : offset + ENTRY_PAGE_SIZE + 1]
    )
    more = len(page) > ENTRY_PAGE_SIZE
    entries = []
    for row in page[:ENTRY_PAGE_SIZE]:
        assert row.entry is not None  # filtered on entry__dataset
        row.entry.example_loss = row.loss  # type: ignore[attr-defined]
        entries.append(row.entry)
    return EntryPage(entries=entries, total=losses.count(), next_after=offset + ENTRY_PAGE_SIZE if more else None)


def finetune_log_tail(*, job: FineTuneJob, lines: int = 40) -> list[str]:
    return log_tail(job.log_path, lines)


def generations_for_job(*, job: FineTuneJob, limit: int = 5) -> QuerySet[Generation]:
    return Generation.objects.filter(job=job).order_by("-created_at", "-id")[:limit]


def generation_get(*, job: FineTuneJob, generation_id: int) -> Generation | None:
    return Generation.objects.filter(job=job, pk=generation_id).first()


def loss_preview_get(*, entry: DatasetEntry, preview_id: int) -> LossPreview | None:
    return LossPreview.objects.filter(entry=entry, pk=preview_id).first()


# A preview still queued after this long lost its worker: it is asked for again rather than waited on forever.
PREVIEW_PATIENCE = timedelta(minutes=10)


def loss_preview_current(*, entry: DatasetEntry, base_model: str) -> LossPreview | None:
    """The preview of the entry as it is now under `base_model`: done, or asked for and still worth waiting on.
    One that never reached the broker (failed, unfinished) is not: it is asked for again."""
    alive = Q(status=FineTuneStatus.SUCCEEDED) | Q(created_at__gte=timezone.now() - PREVIEW_PATIENCE)
    alive &= ~Q(status=FineTuneStatus.FAILED, finished_at=None)
    previews = LossPreview.objects.filter(alive, entry=entry, base_model=base_model, created_at__gte=entry.updated_at)
    return previews.order_by("-created_at").first()


def base_model_choices() -> list[tuple[str, str]]:
    """(value, label) of every base model on offer: the registered rows, then LOGTUNE_BASE_MODELS."""
    rows = [(model.name, f"{model.name} — {model.description}" if model.description else model.name)
            for model in BaseModel.objects.order_by("name")]  # fmt: skip
    names = {name for name, _ in rows}
    return rows + [(name, name) for name in settings.LOGTUNE_BASE_MODELS if name not in names]


def base_model_defaults() -> dict[str, dict]:
    """The default hyperparameters of each registered base model that has some, by name."""
    rows = BaseModel.objects.exclude(default_hyperparameters={}).values_list("name", "default_hyperparameters")
    return {name: defaults for name, defaults in rows if isinstance(defaults, dict)}


# --- artifacts --------------------------------------------------------------------------------------

# Weights do not shrink when deflated: store them, deflate the rest (configs, tokenizer files).
STORED_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".gguf", ".zip"}


class _Sink:
    """A write-only file for ZipFile that hands back what was written, so the archive is streamed."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def artifact_zip(*, directory: Path, root: str) -> Iterator[bytes]:
    """The files under `directory` as a zip, in pieces of about a megabyte, whatever their size."""
    return members_zip(members=folder_members(directory=directory, prefix=root))


def folder_members(*, directory: Path, prefix: str) -> list[tuple[str, Path | bytes]]:
    """(name in the archive, file) of every file under `directory`, named under `prefix`, in name order."""
    return [(f"{prefix}/{path.relative_to(directory)}", path)
            for path in sorted(p for p in directory.rglob("*") if p.is_file())]  # fmt: skip


def members_zip(*, members: list[tuple[str, Path | bytes]]) -> Iterator[bytes]:
    """A zip of (name, file on disk or bytes) members, in pieces of about a megabyte, whatever their size."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w") as archive:  # type: ignore[call-overload]
        for name, content in members:
            if isinstance(content, bytes):
                archive.writestr(name, content, compress_type=zipfile.ZIP_DEFLATED)
                yield sink.take()
                continue
            info = zipfile.ZipInfo.from_file(content, name)
            info.compress_type = zipfile.ZIP_STORED if content.suffix in STORED_SUFFIXES else zipfile.ZIP_DEFLATED
            with content.open("rb") as source, archive.open(info, "w", force_zip64=True) as target:
                while block := source.read(1 << 20):
                    target.write(block)
                    yield sink.take()
            yield sink.take()
    yield sink.take()


def reward_curves(*, job: FineTuneJob) -> dict[str, list[tuple[int, float, float | None]]]:
    """A DPO run's (step, reward margin, reward accuracy) of training steps ("train") and evaluations ("eval") by step;
    empty lists for a run that reported none (sft)."""
    curves: dict[str, list[tuple[int, float, float | None]]] = {"train": [], "eval": []}
    for kind, step, margin, accuracy in job.summary.get("rewards", []):
        if kind in curves:
            curves[kind].append((step, margin, accuracy))
    return {kind: sorted(points) for kind, points in curves.items()}
