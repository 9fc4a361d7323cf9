"""Datasets: named, editable collections of conversations gathered from logs or imported."""

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from curation.audit.services import audit_record
from curation.logs.ingest import IngestError, ParsedLog, parse_log
from curation.logs.lookups import queryset_sql
from curation.logs.services import IngestResult, Rejection
from curation.models import (
    ApiKey,
    Dataset,
    DatasetEntry,
    DatasetKind,
    DatasetSnapshot,
    JobStatus,
    LogEntry,
    LogStatus,
    Project,
    Split,
)
from curation.text.tokens import CHARS_PER_TOKEN, est_tokens

logger = logging.getLogger(__name__)

SPLIT_CHUNK = 10_000


@transaction.atomic
def dataset_create(
    *,
    project: Project,
    name: str,
    description: str = "",
    kind: str = DatasetKind.CHAT,
    created_by: User | None = None,
    api_key: ApiKey | None = None,
) -> Dataset:
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A dataset needs a name."})
    try:
        with transaction.atomic():
            dataset = Dataset.objects.create(
                project=project, name=name, description=description, kind=kind, created_by=created_by
            )
            audit_record(project=project, action="dataset.create", actor=created_by, api_key=api_key,
                         detail={"dataset_id": dataset.pk, "dataset": name})  # fmt: skip
            return dataset
    except IntegrityError:
        raise ValidationError({"name": f"A dataset named '{name}' already exists in this project."}) from None


@transaction.atomic
def dataset_update(
    *,
    dataset: Dataset,
    name: str | None = None,
    description: str | None = None,
    synthetic_in_validation: bool | None = None,
    actor: User | None = None,
    api_key: ApiKey | None = None,
) -> Dataset:
    """Rename or describe a dataset, or say whether a split may draw synthetic entries for validation (this moves no
    entry: the next split follows it); audited as `dataset.update` with the old and new name (the description is only
    said to have changed: it can be long)."""
    changed: dict[str, object] = {}
    if name is not None:
        name = name.strip()
        if not name:
            raise ValidationError({"name": "A dataset needs a name."})
        if Dataset.objects.filter(project_id=dataset.project_id, name=name).exclude(pk=dataset.pk).exists():
            raise ValidationError({"name": f"A dataset named '{name}' already exists in this project."})
        if name != dataset.name:
            changed["name"] = {"from": dataset.name, "to": name}
        dataset.name = name
    if description is not None:
        if description != dataset.description:
            changed["description"] = "changed"
        dataset.description = description
    if synthetic_in_validation is not None:
        if synthetic_in_validation != dataset.synthetic_in_validation:
            changed["synthetic_in_validation"] = {
                "from": dataset.synthetic_in_validation,
                "to": synthetic_in_validation,
            }
        dataset.synthetic_in_validation = synthetic_in_validation
    dataset.updated_at = timezone.now()
    dataset.save()
    if changed:
        audit_record(project=dataset.project, action="dataset.update", actor=actor, api_key=api_key,
                     detail={"dataset_id": dataset.pk, "dataset": dataset.name, **changed})  # fmt: skip
    return dataset


@dataclass(frozen=True, slots=True)
class DatasetDeletion:
    """What deleting a dataset removes and what it keeps: its confirmation, its answer and its audit event.

    Fine-tunes outlive their dataset with their weights, metrics and the snapshots they trained on; the
    other snapshots go with the entries. A queued or running fine-tune refuses the deletion (`busy`)."""

    entries: int
    snapshots_deleted: int  # no fine-tune trained on them: rows and files go
    finetunes_kept: int
    snapshots_kept: int  # a fine-tune trained on them
    busy: int  # fine-tunes queued or running

    @property
    def refusal(self) -> str:
        if not self.busy:
            return ""
        return (
            f"{_count(self.busy, 'fine-tune')} of this dataset {'is' if self.busy == 1 else 'are'} queued or running: "
            f"cancel {'it' if self.busy == 1 else 'them'} first, then delete the dataset."
        )

    def summary(self, *, done: bool = False) -> str:
        """ "Deletes 1,204 entries and 2 snapshots. Keeps 3 fine-tunes (their weights, metrics and the 1 snapshot
        they trained on) and the logs." (in the past tense once `done`)."""
        gone, kept = self.parts()
        return f"Deleted {gone}. Kept {kept}." if done else f"Deletes {gone}. Keeps {kept}."

    def parts(self) -> tuple[str, str]:
        """(what goes, what stays), as the summary words them."""
        gone = _count(self.entries, "entry", "entries")
        if self.snapshots_deleted:
            gone += f" and {_count(self.snapshots_deleted, 'snapshot')}"
        if not self.finetunes_kept:
            return gone, "the logs"
        one = self.finetunes_kept == 1
        snapshots = (
            "the snapshot" if one and self.snapshots_kept == 1 else f"the {_count(self.snapshots_kept, 'snapshot')}"
        )
        whose, they = ("its", "it") if one else ("their", "they")
        finetunes = _count(self.finetunes_kept, "fine-tune")
        return gone, f"{finetunes} ({whose} weights, metrics and {snapshots} {they} trained on) and the logs"

    def as_dict(self) -> dict:
        return {
            "deleted": {"entries": self.entries, "snapshots": self.snapshots_deleted},
            "kept": {"finetunes": self.finetunes_kept, "snapshots": self.snapshots_kept},
        }


def _count(n: int, word: str, plural: str = "") -> str:
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


def dataset_deletion_plan(*, dataset: Dataset) -> DatasetDeletion:
    """What `dataset_delete` would remove and keep now. Beside the service so the two never disagree."""
    snapshots = DatasetSnapshot.objects.filter(dataset=dataset)
    kept = snapshots.filter(finetunes__isnull=False).distinct().count()
    # A fine-tune's statuses start with JobStatus's, so this reads them without importing training.
    busy = dataset.finetunes.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).count()
    return DatasetDeletion(
        entries=dataset.entries.count(),
        snapshots_deleted=snapshots.count() - kept,
        finetunes_kept=dataset.finetunes.count() - busy,
        snapshots_kept=kept,
        busy=busy,
    )


def dataset_delete(*, dataset: Dataset, actor: User | None = None, api_key: ApiKey | None = None) -> DatasetDeletion:
    """Delete a dataset, its entries and the snapshots no fine-tune trained on (rows, then files once committed).
    Its fine-tunes stay, with their weights and the snapshots they trained on, which keep the project and the
    dataset's name; the logs stay. Refused while one of its fine-tunes is queued or running: its worker would
    train on. Returns what was deleted and kept."""
    dataset_id = dataset.pk
    with transaction.atomic():
        Dataset.objects.select_for_update().filter(pk=dataset_id).first()  # one deletion at a time
        plan = dataset_deletion_plan(dataset=dataset)
        if plan.busy:
            raise ValidationError({"dataset": plan.refusal})
        snapshots = DatasetSnapshot.objects.filter(dataset=dataset)
        unused = list(snapshots.filter(finetunes__isnull=True).values_list("pk", "file"))
        snapshots.filter(pk__in=[pk for pk, _ in unused]).delete()
        snapshots.update(dataset_name=dataset.name)  # those kept; the dataset's deletion sets their link null
        audit_record(
            project=dataset.project, action="dataset.delete", count=plan.entries, actor=actor, api_key=api_key,
            detail={"dataset_id": dataset.pk, "name": dataset.name, **plan.as_dict()},
        )  # fmt: skip
        dataset.delete()
        files = [name for _, name in unused if name]
        transaction.on_commit(lambda: _files_delete(files))
    logger.info("curation.dataset_deleted dataset=%s %s", dataset_id, plan.summary(done=True))
    return plan


def _files_delete(names: list[str]) -> None:
    storage = DatasetSnapshot._meta.get_field("file").storage
    for name in names:
        storage.delete(name)


def dataset_add_logs(*, dataset: Dataset, logs: QuerySet[LogEntry]) -> int:
    """Copy the conversations of `logs` into the dataset, in one statement; a log already in the
    dataset is skipped, and so is an unreadable log (it has no conversation to train on until
    `reparse_logs` reads it). Returns the number of entries added."""
    sql, params = queryset_sql(logs.order_by().values("id"))
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO curation_datasetentry (dataset_id, log_id, messages, tools, options, split, edited, model,"  # noqa: S608
            " turns, est_tokens, search_text, created_at, updated_at, synthetic, provenance)"
            " SELECT %s, src.id, src.messages, src.tools, src.options, %s, %s, src.model,"
            " json_array_length(src.messages),"
            f" (length(src.search_text) + {CHARS_PER_TOKEN - 1}) / {CHARS_PER_TOKEN}, src.search_text, %s, %s, %s, %s"
            f" FROM curation_logentry src WHERE src.id IN ({sql}) AND src.status <> %s"
            " ORDER BY src.id ON CONFLICT DO NOTHING",
            (dataset.pk, Split.TRAIN, False, now, now, False, "{}", *params, LogStatus.UNREADABLE),
        )
        added = cursor.rowcount
    if added:
        Dataset.objects.filter(pk=dataset.pk).update(updated_at=now)
    return added


def _entry_values(parsed: ParsedLog) -> dict:
    return {
        "messages": parsed.messages,
        "tools": parsed.tools,
        "options": parsed.options,
        "model": parsed.model,
        "turns": len(parsed.messages),
        "est_tokens": est_tokens(parsed.search_text),
        "search_text": parsed.search_text,
    }


def dataset_entries_ingest(*, dataset: Dataset, items: Sequence[object]) -> IngestResult:
    """Add conversations that come from no log (lines of an imported training file), read and
    checked like logs. Like `logs_ingest`, the good items are stored and each bad one reported."""
    result = IngestResult()
    now = timezone.now()
    entries = []
    for index, item in enumerate(items):
        try:
            parsed = parse_log(item)
        except IngestError as exc:
            result.rejected.append(Rejection(index=index, error=str(exc)))
        else:
            entries.append(DatasetEntry(dataset=dataset, created_at=now, updated_at=now, **_entry_values(parsed)))
    DatasetEntry.objects.bulk_create(entries, batch_size=1000)
    result.accepted = len(entries)
    if entries:
        dataset_touch(dataset.pk)
    return result


def dataset_entries_add_synthetic(
    *, dataset: Dataset, rows: Sequence[tuple[object, dict]], actor: User | None = None, api_key: ApiKey | None = None
) -> list[DatasetEntry]:
    """Add generated conversations, each `(messages, provenance)`, read and checked like logs, as synthetic entries
    of the train split (a generator's rows reach validation only by the dataset's `synthetic_in_validation`).
    Raises ValidationError naming the row that cannot be read: a reviewed row is added whole or not at all.
    Audited as `entries.add_synthetic`."""
    now = timezone.now()
    entries = []
    for index, (messages, provenance) in enumerate(rows):
        try:
            parsed = parse_log({"messages": messages})
        except IngestError as exc:
            raise ValidationError({"messages": f"row {index + 1}: {exc}"}) from None
        entries.append(DatasetEntry(
            dataset=dataset, created_at=now, updated_at=now, synthetic=True, provenance=provenance,
            **_entry_values(parsed),
        ))  # fmt: skip
    DatasetEntry.objects.bulk_create(entries, batch_size=1000)
    if entries:
        dataset_touch(dataset.pk)
        audit_record(project=dataset.project, action="entries.add_synthetic", count=len(entries), actor=actor,
                     api_key=api_key, detail={"dataset_id": dataset.pk, "dataset": dataset.name})  # fmt: skip
    return entries


@transaction.atomic
def entry_update(
    *,
    entry: DatasetEntry,
    messages: object,
    tools: object = None,
    actor: User | None = None,
    api_key: ApiKey | None = None,
) -> DatasetEntry:
    """Replace an entry's conversation after validating it like an ingested one. The source log is
    never touched; `edited` says whether the entry now differs from it. Audited as `entries.update`."""
    try:
        parsed = parse_log({"messages": messages, "tools": tools or []})
    except IngestError as exc:
        raise ValidationError({"messages": str(exc)}) from None
    if parsed.notes:  # an edit is typed by a person: what cannot be stored is theirs to fix, not ours to replace
        raise ValidationError({"messages": parsed.notes[0].replace("replaced by U+FFFD", "cannot be stored")})
    before = (entry.messages, entry.tools or [])
    values = _entry_values(parsed)
    values["model"] = entry.model
    values["options"] = entry.options  # the request's settings (parallel_tool_calls...) are not the editor's
    for field, value in values.items():
        setattr(entry, field, value)
    source = entry.log
    if source is not None:
        entry.edited = parsed.messages != source.messages or parsed.tools != (source.tools or [])
    else:  # imported from a file, or its log deleted since: edited once it differs from what it was
        entry.edited = entry.edited or (parsed.messages, parsed.tools) != before
    entry.updated_at = timezone.now()
    entry.save()
    dataset_touch(entry.dataset_id)
    dataset = entry.dataset
    audit_record(project=dataset.project, action="entries.update", count=1, actor=actor, api_key=api_key,
                 detail={"dataset_id": dataset.pk, "dataset": dataset.name, "entry_id": entry.pk})  # fmt: skip
    return entry


def entry_answer_pick(
    *, entry: DatasetEntry, alternative: int, actor: User | None = None, api_key: ApiKey | None = None
) -> DatasetEntry:
    """Make one of the source log's other answers (an `n` > 1 call's choice `alternative`) the entry's answer: it
    replaces the entry's last assistant turn (or is added when there is none), saved as an edit (`entry_update`)."""
    source = entry.log
    chosen = next((item for item in (source.alternatives if source else []) if item.get("index") == alternative), None)
    if chosen is None:
        raise ValidationError({"alternative": f"The source log has no other answer {alternative}."})
    messages = list(entry.messages)
    answer = max((i for i, message in enumerate(messages) if message.get("role") == "assistant"), default=None)
    if answer is None:
        messages.append(chosen["message"])
    else:
        messages[answer] = chosen["message"]
    return entry_update(entry=entry, messages=messages, tools=entry.tools, actor=actor, api_key=api_key)


def dataset_touch(dataset_id: int) -> None:
    Dataset.objects.filter(pk=dataset_id).update(updated_at=timezone.now())


@transaction.atomic
def entries_delete(
    *, dataset: Dataset, ids: list[int], actor: User | None = None, api_key: ApiKey | None = None
) -> int:
    # The entries alone: their embeddings, deleted with them, are not counted.
    _, per_model = DatasetEntry.objects.filter(dataset=dataset, id__in=ids).delete()
    deleted = per_model.get(DatasetEntry._meta.label, 0)
    if deleted:
        dataset_touch(dataset.pk)
        audit_record(
            project=dataset.project, action="entries.delete", count=deleted, actor=actor, api_key=api_key,
            detail={"dataset_id": dataset.pk, "dataset": dataset.name},
        )  # fmt: skip
    return deleted


@transaction.atomic
def entries_set_split(
    *, dataset: Dataset, ids: list[int], split: str, actor: User | None = None, api_key: ApiKey | None = None
) -> int:
    """Move entries to a split by hand, in one statement (audited as `entries.split`). Returns how many were moved."""
    if split not in Split.values:
        raise ValidationError({"split": f"One of {', '.join(Split.values)}."})
    moved = DatasetEntry.objects.filter(dataset=dataset, id__in=ids).exclude(split=split).update(split=split)
    if moved:
        dataset_touch(dataset.pk)
        audit_record(project=dataset.project, action="entries.split", count=moved, actor=actor, api_key=api_key,
                     detail={"dataset_id": dataset.pk, "dataset": dataset.name, "split": split})  # fmt: skip
    return moved


def entry_set_split(
    *, entry: DatasetEntry, split: str, actor: User | None = None, api_key: ApiKey | None = None
) -> DatasetEntry:
    entries_set_split(dataset=entry.dataset, ids=[entry.pk], split=split, actor=actor, api_key=api_key)
    entry.split = split
    return entry


@transaction.atomic
def dataset_split(
    *,
    dataset: Dataset,
    validation_ratio: float,
    seed: int,
    actor: User | None = None,
    api_key: ApiKey | None = None,
) -> tuple[int, int]:
    """Assign entries to train / validation: exactly round(n * ratio) validation entries, chosen by
    shuffling the ids of the n candidates with `seed`, so the same entries and seed give the same split.
    The candidates are the entries that are not synthetic (n counts only them, and every synthetic entry
    goes to train), or all entries where `dataset.synthetic_in_validation` is set.
    Returns (train, validation) counts. Audited as `dataset.split`."""
    if not 0 <= validation_ratio < 1:
        raise ValidationError({"validation_ratio": "Between 0 (no validation) and 1 (exclusive)."})
    all_entries = DatasetEntry.objects.filter(dataset=dataset)
    total = all_entries.count()
    candidates = all_entries if dataset.synthetic_in_validation else all_entries.filter(synthetic=False)
    ids = list(candidates.order_by("id").values_list("id", flat=True))
    random.Random(seed).shuffle(ids)  # noqa: S311 (reproducible, not secret)
    validation = sorted(ids[: round(len(ids) * validation_ratio)])
    DatasetEntry.objects.filter(dataset=dataset).update(split=Split.TRAIN)
    for start in range(0, len(validation), SPLIT_CHUNK):
        chunk = validation[start : start + SPLIT_CHUNK]
        DatasetEntry.objects.filter(id__in=chunk).update(split=Split.VALIDATION)
    dataset.split_seed, dataset.validation_ratio = seed, validation_ratio
    dataset.updated_at = timezone.now()
    dataset.save(update_fields=["split_seed", "validation_ratio", "updated_at"])
    train = total - len(validation)
    audit_record(
        project=dataset.project, action="dataset.split", count=total, actor=actor, api_key=api_key,
        detail={"dataset_id": dataset.pk, "dataset": dataset.name, "validation_ratio": validation_ratio, "seed": seed,
                "train": train, "validation": len(validation)},
    )  # fmt: skip
    return train, len(validation)
