"""Reads for the dataset pages: lists, one page of entries, one entry, and the numbers of a dataset.

Every query is scoped to a dataset of a project the caller has already been checked against, and
none depends on the number of rows shown (no N+1): lists annotate, pages fetch one slice.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Avg, Count, Exists, F, Max, OuterRef, Q, QuerySet, Sum

from curation.common.params import whole_number
from curation.models import Dataset, DatasetEntry, DatasetSnapshot, ImportJob, JobStatus, LogEntry, Project, Split

ENTRY_PAGE_SIZE = 50


HISTOGRAM_MAX_BINS = 24


TOP_MODELS = 8


def datasets_for_project(*, project: Project) -> QuerySet[Dataset]:
    return Dataset.objects.filter(project=project).annotate(
        entry_count=Count("entries"), token_total=Sum("entries__est_tokens")
    )


def dataset_get(*, project: Project, dataset_id: int) -> Dataset | None:
    return Dataset.objects.filter(project=project, pk=dataset_id).first()


# Where an entry comes from: a log (still there or deleted since), a training file, or a generator.
ORIGINS: dict[str, Q] = {
    "logged": Q(synthetic=False) & (Q(log__isnull=False) | Q(source_deleted_at__isnull=False)),
    "imported": Q(synthetic=False, log__isnull=True, source_deleted_at__isnull=True),
    "synthetic": Q(synthetic=True),
}


@dataclass(slots=True)
class EntryFilter:
    """What the entries list shows: a substring of the text, a split, an origin (see `ORIGINS`), edited ones, or
    given ids (the links from the validation panel)."""

    q: str = ""
    split: str = ""
    origin: str = ""
    edited: bool = False
    ids: list[int] = field(default_factory=list)

    @classmethod
    def from_params(cls, params: dict) -> "EntryFilter":
        split = params.get("split", "")
        raw_ids = (part.strip() for part in params.get("ids", "").split(","))
        return cls(
            q=params.get("q", "").strip(),
            split=split if split in Split.values else "",
            origin=origin if (origin := params.get("origin", "")) in ORIGINS else "",
            edited=params.get("edited") == "1",
            ids=[number for part in raw_ids if (number := whole_number(part)) is not None][:1000],
        )

    @property
    def is_active(self) -> bool:
        return bool(self.q or self.split or self.origin or self.edited or self.ids)

    def apply(self, entries: QuerySet[DatasetEntry]) -> QuerySet[DatasetEntry]:
        if self.q:
            entries = entries.filter(search_text__trgm_icontains=self.q)
        if self.split:
            entries = entries.filter(split=self.split)
        if self.origin:
            entries = entries.filter(ORIGINS[self.origin])
        if self.edited:
            entries = entries.filter(edited=True)
        if self.ids:
            entries = entries.filter(id__in=self.ids)
        return entries


@dataclass(slots=True)
class EntryPage:
    entries: list[DatasetEntry]
    total: int
    next_after: int | None


def entries_page(*, dataset: Dataset, entry_filter: EntryFilter, after: int = 0) -> EntryPage:
    """One page of entries by ascending id (keyset: `after` is the last id of the previous page)."""
    matching = entry_filter.apply(DatasetEntry.objects.filter(dataset=dataset))
    # The list shows snippets of the conversation, never the (possibly long) search text.
    rows = list(
        matching.filter(id__gt=after)
        .select_related("source_deleted_by", "source_deleted_by_key")
        .defer("search_text")
        .order_by("id")[: ENTRY_PAGE_SIZE + 1]
    )
    more = len(rows) > ENTRY_PAGE_SIZE
    rows = rows[:ENTRY_PAGE_SIZE]
    return EntryPage(entries=rows, total=matching.count(), next_after=rows[-1].pk if more else None)


# Provenance keys the entry page shows in their own rows; any other key is listed as it is.
PROVENANCE_SHOWN = {"job_id", "kind", "endpoint", "model", "style", "seed", "seed_log_id", "document", "chunks"}


@dataclass(slots=True)
class Provenance:
    """What the entry page says of a synthetic entry's origin: its provenance, the seed log if it is still in the
    project, and the keys beyond the known ones."""

    data: dict
    seed_log_id: int | None = None  # set only when that log exists in the dataset's project
    chunks: list[dict] = field(default_factory=list)
    document: dict = field(default_factory=dict)
    other: list[tuple[str, object]] = field(default_factory=list)


def entry_provenance(*, entry: DatasetEntry) -> Provenance | None:
    """None for an entry that is not synthetic; else its provenance made safe to show, whatever keys it has."""
    if not entry.synthetic:
        return None
    data = entry.provenance if isinstance(entry.provenance, dict) else {}
    seed = data.get("seed_log_id")
    seed_log_id = (
        seed
        if isinstance(seed, int) and LogEntry.objects.filter(project_id=entry.dataset.project_id, pk=seed).exists()
        else None
    )
    chunks = [chunk for chunk in data.get("chunks") or [] if isinstance(chunk, dict)]
    document = data.get("document") if isinstance(data.get("document"), dict) else {}
    other = sorted((key, value) for key, value in data.items() if key not in PROVENANCE_SHOWN)
    return Provenance(data=data, seed_log_id=seed_log_id, chunks=chunks, document=document or {}, other=other)


def entry_get(*, dataset: Dataset, entry_id: int) -> DatasetEntry | None:
    # The source log's `original` body can be large and the page never shows it.
    return (
        DatasetEntry.objects.select_related("log", "source_deleted_by", "source_deleted_by_key")
        .defer("log__original", "log__search_text", "log__metadata")
        .filter(dataset=dataset, pk=entry_id)
        .first()
    )


def entry_neighbours(*, dataset: Dataset, entry_id: int) -> tuple[int | None, int | None]:
    """Ids of the entries before and after this one, to review a dataset entry by entry."""
    entries = DatasetEntry.objects.filter(dataset=dataset)
    previous = entries.filter(id__lt=entry_id).order_by("-id").values_list("id", flat=True).first()
    following = entries.filter(id__gt=entry_id).order_by("id").values_list("id", flat=True).first()
    return previous, following


def snapshots_for_dataset(*, dataset: Dataset) -> QuerySet[DatasetSnapshot]:
    return DatasetSnapshot.objects.filter(dataset=dataset).select_related("created_by").order_by("-created_at", "-pk")


@dataclass(frozen=True, slots=True)
class SnapshotLine:
    """A snapshot as the dataset page lists it: written copies of the same file (one sha256) share one line."""

    snapshot: DatasetSnapshot
    copies: int = 1
    first_at: datetime | None = None  # when the oldest copy was frozen, for more than one


def snapshots_collapsed(snapshots: list[DatasetSnapshot]) -> list[SnapshotLine]:
    """`snapshots` (newest first) with each written one whose file a newer one has too folded into that line."""
    lines: list[SnapshotLine] = []
    by_hash: dict[str, int] = {}
    for snapshot in snapshots:
        index = by_hash.get(snapshot.sha256) if snapshot.status == JobStatus.SUCCEEDED and snapshot.sha256 else None
        if index is None:
            if snapshot.status == JobStatus.SUCCEEDED and snapshot.sha256:
                by_hash[snapshot.sha256] = len(lines)
            lines.append(SnapshotLine(snapshot=snapshot))
        else:
            twin = lines[index]
            lines[index] = SnapshotLine(snapshot=twin.snapshot, copies=twin.copies + 1, first_at=snapshot.created_at)
    return lines


def imports_for_dataset(*, dataset: Dataset) -> QuerySet[ImportJob]:
    return ImportJob.objects.filter(dataset=dataset)


@dataclass(frozen=True, slots=True)
class Bin:
    low: int  # inclusive
    high: int  # exclusive
    count: int

    @property
    def label(self) -> str:
        return str(self.low) if self.high - self.low == 1 else f"{self.low}–{self.high - 1}"


@dataclass(slots=True)
class DatasetStats:
    entries: int = 0
    train: int = 0
    validation: int = 0
    edited: int = 0
    from_logs: int = 0  # copied from a log that is still there
    source_deleted: int = 0  # copied from a log deleted since
    synthetic: int = 0  # generated, not logged (see `DatasetEntry.provenance`)
    synthetic_train: int = 0
    synthetic_validation: int = 0
    tokens_total: int = 0
    tokens_mean: float = 0.0
    tokens_max: int = 0
    turns_mean: float = 0.0
    turns_max: int = 0
    token_bins: list[Bin] = field(default_factory=list)
    turn_bins: list[Bin] = field(default_factory=list)
    models: list[tuple[str, int]] = field(default_factory=list)  # most used first; "" = unknown
    other_models: int = 0  # entries of models beyond the first TOP_MODELS

    @property
    def imported(self) -> int:
        """Entries that come from no log and were not generated: a training file."""
        return self.entries - self.from_logs - self.source_deleted - self.synthetic

    @property
    def logged(self) -> int:
        """Entries that are not synthetic: copied from logs or imported."""
        return self.entries - self.synthetic

    @property
    def edited_percent(self) -> float:
        return 100 * self.edited / self.entries if self.entries else 0.0

    @property
    def validation_percent(self) -> float:
        return 100 * self.validation / self.entries if self.entries else 0.0


def dataset_stats(*, dataset: Dataset) -> DatasetStats:
    """Count, splits, tokens and turns (with histograms), models and the share edited: five
    aggregate queries, whatever the size of the dataset."""
    entries = DatasetEntry.objects.filter(dataset=dataset)
    totals = entries.aggregate(
        entries=Count("id"),
        train=Count("id", filter=Q(split=Split.TRAIN)),
        validation=Count("id", filter=Q(split=Split.VALIDATION)),
        edited=Count("id", filter=Q(edited=True)),
        from_logs=Count("log_id"),
        source_deleted=Count("id", filter=Q(log__isnull=True, source_deleted_at__isnull=False)),
        synthetic_all=Count("id", filter=Q(synthetic=True)),
        synthetic_train=Count("id", filter=Q(synthetic=True, split=Split.TRAIN)),
        synthetic_validation=Count("id", filter=Q(synthetic=True, split=Split.VALIDATION)),
        tokens_total=Sum("est_tokens"),
        tokens_mean=Avg("est_tokens"),
        tokens_max=Max("est_tokens"),
        turns_mean=Avg("turns"),
        turns_max=Max("turns"),
    )
    stats = DatasetStats(
        entries=totals["entries"],
        train=totals["train"],
        validation=totals["validation"],
        edited=totals["edited"],
        from_logs=totals["from_logs"],
        source_deleted=totals["source_deleted"],
        synthetic=totals["synthetic_all"],
        synthetic_train=totals["synthetic_train"],
        synthetic_validation=totals["synthetic_validation"],
        tokens_total=totals["tokens_total"] or 0,
        tokens_mean=float(totals["tokens_mean"] or 0),
        tokens_max=totals["tokens_max"] or 0,
        turns_mean=float(totals["turns_mean"] or 0),
        turns_max=totals["turns_max"] or 0,
    )
    if not stats.entries:
        return stats
    stats.token_bins = histogram(entries, "est_tokens", stats.tokens_max)
    stats.turn_bins = histogram(entries, "turns", stats.turns_max)
    models = list(entries.values_list("model").annotate(n=Count("id")).order_by("-n", "model"))
    stats.models = [(name, n) for name, n in models[:TOP_MODELS]]
    stats.other_models = sum(n for _, n in models[TOP_MODELS:])
    return stats


def bin_width(maximum: int, max_bins: int = HISTOGRAM_MAX_BINS) -> int:
    """The smallest round width (1, 2 or 5 times a power of ten) covering 0..maximum in at most `max_bins` bins."""
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            width = step * magnitude
            if maximum // width + 1 <= max_bins:
                return width
        magnitude *= 10


def histogram(entries: QuerySet[DatasetEntry], column: str, maximum: int) -> list[Bin]:
    """Equal-width bins from 0 to `maximum`, counted by the database (integer division groups rows
    into bins), empty bins included so the chart's x axis is linear."""
    width = bin_width(maximum)
    counts = dict(
        entries.annotate(bucket=F(column) / width).values_list("bucket").annotate(n=Count("id")).order_by("bucket")
    )
    return [Bin(low=b * width, high=(b + 1) * width, count=counts.get(b, 0)) for b in range(maximum // width + 1)]


def dataset_names(*, project: Project) -> QuerySet[Dataset]:
    """Id and name of every dataset of the project, for pickers."""
    return Dataset.objects.filter(project=project).only("id", "name").order_by("name")


def datasets_of_log(*, log: LogEntry) -> QuerySet[Dataset]:
    return Dataset.objects.filter(Exists(DatasetEntry.objects.filter(dataset=OuterRef("pk"), log=log))).only(
        "id", "name"
    )
