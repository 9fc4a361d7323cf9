"""Reads for fine-tunes. Every query is scoped to a project, dataset or job the caller was checked against."""

import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from curation.datasets.selectors import ENTRY_PAGE_SIZE, EntryFilter, EntryPage
from curation.models import Dataset, DatasetEntry, Project
from training.evaluation.promotion.selectors import finetunes_with_gate
from training.models import BaseModel, ExampleLoss, FineTuneJob, FineTuneStatus, Generation, LossPreview, MetricPoint
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


def finetune_get(*, project: Project, job_id: int) -> FineTuneJob | None:
    return _jobs().filter(project=project, pk=job_id).first()


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
    sink = _Sink()
    with zipfile.ZipFile(sink, "w") as archive:  # type: ignore[call-overload]
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo.from_file(path, f"{root}/{path.relative_to(directory)}")
            info.compress_type = zipfile.ZIP_STORED if path.suffix in STORED_SUFFIXES else zipfile.ZIP_DEFLATED
            with path.open("rb") as source, archive.open(info, "w", force_zip64=True) as target:
                while block := source.read(1 << 20):
                    target.write(block)
                    yield sink.take()
            yield sink.take()
    yield sink.take()
