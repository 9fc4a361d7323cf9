"""Datasets of preference pairs: each entry a conversation whose last assistant turn is the chosen answer, with the
rejected answer beside it (`DatasetEntry.rejected`). Pairs come from a chat dataset's edited entries (here) or from
people's votes on an evaluation run (`training.evaluation.pairs`, which adds them through `pairs_add`).

Adding is idempotent: a pair is known by its provenance (the entry it was made from, or the run, example and
comparison it was voted on), so making pairs again adds only the new ones.
"""

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction

from curation.audit.services import audit_record
from curation.datasets.export.preference import Pair, preference_pair
from curation.datasets.export.services import edited_rows
from curation.datasets.services import dataset_create, dataset_touch, est_tokens
from curation.logs.ingest import IngestError, parse_log
from curation.models import ApiKey, Dataset, DatasetEntry, DatasetKind, Project, Split

SKIPPED_ALREADY_ADDED = "pair already in the dataset: skipped"
SKIPPED_UNREADABLE = "pair that cannot be read as a conversation: skipped"
NOT_PAIRS = "Dataset '{name}' holds conversations, not preference pairs: choose a dataset of pairs, or a new one."
NOT_CHAT = "Dataset '{name}' holds preference pairs; pairs are made from the edited entries of a chat dataset."
# The provenance keys that name where a pair came from (the vote count may change; the pair is the same one).
IDENTITY = {"edit": ("dataset_id", "entry_id"), "vote": ("run_id", "example", "comparison")}


@dataclass(frozen=True, slots=True)
class PairRow:
    """A pair to add: the prompt, the chosen and the rejected answer, the request's tools and options, and where the
    pair came from (`provenance`, with its "source")."""

    pair: Pair
    provenance: dict
    tools: list[dict] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    split: str = Split.TRAIN


@dataclass
class PairsResult:
    dataset: Dataset
    added: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict:
        reasons = dict(sorted(self.skipped.items(), key=lambda item: (-item[1], item[0])))
        return {"added": self.added, "skipped": self.skipped.total(), "skipped_reasons": reasons}


def pairs_target(
    *,
    project: Project,
    dataset: Dataset | None = None,
    name: str = "",
    created_by: User | None = None,
    api_key: ApiKey | None = None,
) -> Dataset:
    """The dataset of pairs to add to: `dataset` (which must hold pairs and belong to `project`), or a new one named
    `name`."""
    if dataset is None:
        if not name.strip():
            raise ValidationError({"name": "Name the new dataset of pairs, or choose an existing one (target)."})
        return dataset_create(
            project=project, name=name, kind=DatasetKind.PREFERENCE, created_by=created_by, api_key=api_key
        )
    if dataset.project_id != project.pk:
        raise ValidationError({"target": f"Dataset {dataset.pk} is not in this project."})
    if dataset.kind != DatasetKind.PREFERENCE:
        raise ValidationError({"target": NOT_PAIRS.format(name=dataset.name)})
    return dataset


def pair_identity(provenance: dict) -> tuple:
    keys = IDENTITY.get(provenance.get("source", ""), ())
    return (provenance.get("source"), *(provenance.get(key) for key in keys))


@transaction.atomic
def pairs_add(
    *,
    dataset: Dataset,
    rows: Sequence[PairRow],
    actor: User | None = None,
    api_key: ApiKey | None = None,
    skipped: Counter[str] | None = None,
) -> PairsResult:
    """Add `rows` to the dataset of pairs; a pair already there (same provenance) is skipped and counted, and so is one
    that is not a readable conversation. Audited as `entries.add_pairs`."""
    if dataset.kind != DatasetKind.PREFERENCE:
        raise ValidationError({"target": NOT_PAIRS.format(name=dataset.name)})
    Dataset.objects.select_for_update().filter(pk=dataset.pk).first()  # two requests adding at once add once
    result = PairsResult(dataset=dataset, skipped=skipped if skipped is not None else Counter())
    known = {
        pair_identity(p) for p in DatasetEntry.objects.filter(dataset=dataset).values_list("provenance", flat=True)
    }
    entries = []
    for row in rows:
        identity = pair_identity(row.provenance)
        if identity in known:
            result.skipped[SKIPPED_ALREADY_ADDED] += 1
            continue
        entry = _pair_entry(dataset, row)
        if entry is None:
            result.skipped[SKIPPED_UNREADABLE] += 1
            continue
        known.add(identity)
        entries.append(entry)
    DatasetEntry.objects.bulk_create(entries, batch_size=1000)
    result.added = len(entries)
    if entries:
        dataset_touch(dataset.pk)
    audit_record(project=dataset.project, action="entries.add_pairs", count=result.added, actor=actor,
                 api_key=api_key, detail={"dataset_id": dataset.pk, "dataset": dataset.name,
                                          "skipped": result.skipped.total()})  # fmt: skip
    return result


def _pair_entry(dataset: Dataset, row: PairRow) -> DatasetEntry | None:
    try:
        parsed = parse_log({"messages": [*row.pair.prompt, row.pair.chosen], "tools": row.tools})
    except IngestError:
        return None
    return DatasetEntry(
        dataset=dataset, messages=parsed.messages, tools=parsed.tools, options=row.options, model=parsed.model,
        turns=len(parsed.messages), est_tokens=est_tokens(parsed.search_text), search_text=parsed.search_text,
        rejected=row.pair.rejected, provenance=row.provenance, split=row.split,
    )  # fmt: skip


# --- pairs from edits ------------------------------------------------------------------------------------------------


def edit_pairs(*, source: Dataset, skipped: Counter[str]) -> Iterator[PairRow]:
    """A pair for each edited entry of `source` whose last answer differs from its log's (redacted as the export
    does); the others are counted in `skipped` by reason."""
    for entry_id, messages, tools, options, original in edited_rows(dataset_id=source.pk, split=None):
        lost: set[str] = set()
        pair = preference_pair(messages, original, lost)
        if pair is None:
            skipped.update(reason for reason in lost if reason.endswith(": skipped"))
            continue
        yield PairRow(pair=pair, tools=tools, options=options, provenance=_edit_provenance(source, entry_id))


def _edit_provenance(source: Dataset, entry_id: int) -> dict:
    return {"source": "edit", "dataset_id": source.pk, "entry_id": entry_id}


def edit_pairs_count(*, source: Dataset) -> int:
    """How many pairs the edited entries of `source` give now (the page shows it before anyone asks for them)."""
    return sum(1 for _ in edit_pairs(source=source, skipped=Counter()))


def dataset_pairs_from_edits(
    *,
    source: Dataset,
    target: Dataset | None = None,
    name: str = "",
    actor: User | None = None,
    api_key: ApiKey | None = None,
) -> PairsResult:
    """Pairs from the edited entries of the chat dataset `source`, added to `target` (a dataset of pairs) or to a new
    one named `name`: chosen is the entry's edited answer, rejected its source log's answer."""
    if source.kind != DatasetKind.CHAT:
        raise ValidationError({"dataset": NOT_CHAT.format(name=source.name)})
    with transaction.atomic():
        dataset = pairs_target(project=source.project, dataset=target, name=name, created_by=actor, api_key=api_key)
        skipped: Counter[str] = Counter()
        rows = list(edit_pairs(source=source, skipped=skipped))
        log_ids = dict(DatasetEntry.objects.filter(pk__in=[r.provenance["entry_id"] for r in rows])
                       .values_list("pk", "log_id"))  # fmt: skip
        for row in rows:
            row.provenance["log_id"] = log_ids.get(row.provenance["entry_id"])
        return pairs_add(dataset=dataset, rows=rows, actor=actor, api_key=api_key, skipped=skipped)
