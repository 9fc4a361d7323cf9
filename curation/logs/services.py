"""Storing logs: the one write path shared by the API, file imports and the CLI; edits and deletions of logs."""

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import psycopg
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, QuerySet
from django.utils import timezone

from curation.audit.services import audit_record
from curation.common.copy_text import copy_row
from curation.logs.ingest import IngestError, ParsedLog, RawItem, item_make_storable, log_read, unreadable_log
from curation.logs.ingest.canonical import search_text
from curation.logs.ingest.raw import value_text
from curation.logs.pii.services import logs_pii_kinds, pii_pending_send
from curation.logs.pricing import cost_usd
from curation.models import (
    ApiKey,
    DatasetEntry,
    LogEmbedding,
    LogEntry,
    LogScore,
    LogTag,
    Project,
    ScoreSource,
    Tag,
    TopicMembership,
)
from curation.text.pii import scan
from curation.text.pii.conversations import conversation_redact

logger = logging.getLogger(__name__)

_MAX_INT = 2_147_483_647  # PostgreSQL integer columns
_STORE_ATTEMPTS = 3


@dataclass(slots=True)
class Rejection:
    index: int
    error: str


@dataclass(slots=True)
class Note:
    index: int
    note: str


@dataclass(slots=True)
class StoredId:
    index: int
    id: int
    duplicate: bool  # the item was a duplicate: `id` is the log stored before it (same external_id)


@dataclass(slots=True)
class IngestResult:
    accepted: int = 0  # stored now, unreadable logs included
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    unreadable: list[Rejection] = field(default_factory=list)  # kept as "unreadable", with the reader's reason
    notes: list[Note] = field(default_factory=list)  # what had to change to store an item (U+FFFD in place of NUL)
    ids: list[StoredId] = field(default_factory=list)  # every item stored or found a duplicate, in item order


@dataclass(slots=True)
class PiiBudget:
    """How much finding personal data a request may do before it leaves the rest to a worker: `seconds` in all,
    and no single log of more than `log_chars` characters (its scan alone could take minutes)."""

    seconds: float
    log_chars: int
    spent: float = 0.0

    def allows(self, log: ParsedLog) -> bool:
        return self.spent < self.seconds and len(log.original_text) <= self.log_chars


PII_BUDGET_REASON = (
    "not stored: this request spent its time for finding personal data (LOGTUNE_PII_INLINE_SECONDS), and this "
    "project redacts it before anything is stored; send this log again, in a smaller batch, or import it as a file"
)


def logs_ingest(
    *,
    project: Project,
    items: Sequence[object],
    keep_unreadable: bool | None = None,
    pii_budget: PiiBudget | None = None,
    format: str | None = None,
) -> IngestResult:
    """Validate and store a batch of log objects.

    Items are values, or `RawItem`s carrying the exact text they were received as (stored as the original).
    Every valid item is stored even when others are rejected; a rejected item writes nothing. With
    `keep_unreadable` (default: the project's setting) an item no reader can read is stored all the same, with
    status "unreadable" and the reason, instead of being rejected. An item whose `external_id` is already
    stored in the project (or earlier in the batch) is a duplicate and changes nothing; `ids` names the log each
    stored or duplicate item is, by index.

    With a `pii_budget` (a web request), the logs past it are stored unscanned (`pii_pending`) for a worker to
    scan, or refused by index when the project redacts personal data at ingestion. `format` (one of
    curation.logs.ingest.envelope.FORMATS) reads every item as that shape only.
    """
    batch = logs_prepare(
        project=project, items=items, keep_unreadable=keep_unreadable, pii_budget=pii_budget, format=format
    )
    return logs_store(project=project, batch=batch)


@dataclass(slots=True)
class PreparedLogs:
    """A batch read and scanned for personal data, not stored yet: what `logs_store` writes."""

    result: IngestResult  # its rejections, unreadable items and notes so far
    logs: list[tuple[ParsedLog, list[str] | None]] = field(default_factory=list)  # with their kinds of personal data
    indexes: list[int] = field(default_factory=list)  # the item index of each of `logs`
    rows: list[dict[str, object]] = field(default_factory=list)  # the LogEntry columns of each of `logs`, ids aside
    # On PostgreSQL, each of `rows` as a line of COPY text (curation.common.copy_text): formatted here, where the
    # batch is read, so that storing it is one write.
    copy_rows: list[bytes] = field(default_factory=list)


def logs_prepare(
    *,
    project: Project,
    items: Sequence[object],
    keep_unreadable: bool | None = None,
    pii_budget: PiiBudget | None = None,
    format: str | None = None,
) -> PreparedLogs:
    """The first half of `logs_ingest`: the items read, checked and scanned (redacted when the project says so).
    It touches no database, so a file import runs it in a thread for the next batch while the database stores
    the one before."""
    keep = project.keep_unreadable if keep_unreadable is None else keep_unreadable
    batch = PreparedLogs(result=IngestResult())
    now = timezone.now()
    copy = connection.vendor == "postgresql"
    for index, item in enumerate(items):
        raw = item if isinstance(item, RawItem) else RawItem(value=item, text=None)
        log = _read_item(raw, index, keep, batch.result, format)
        if log is None:
            continue
        if pii_budget is not None and not pii_budget.allows(log):
            if project.redact_pii_on_ingest:
                batch.result.rejected.append(Rejection(index=index, error=PII_BUDGET_REASON))
                continue
            kinds = None  # stored now, scanned by a worker
        else:
            started = time.perf_counter()
            kinds = _pii_apply(log, redact=project.redact_pii_on_ingest)
            if pii_budget is not None:
                pii_budget.spent += time.perf_counter() - started
        batch.result.notes.extend(Note(index=index, note=note) for note in log.notes)
        batch.logs.append((log, kinds))
        batch.indexes.append(index)
        row = _values(project.pk, log, kinds, now)
        batch.rows.append(row)
        if copy:
            batch.copy_rows.append(copy_row(row.items(), _JSON_COLUMNS))
    return batch


def logs_store(*, project: Project, batch: PreparedLogs) -> IngestResult:
    """The second half of `logs_ingest`: store the prepared logs that are not duplicates; the batch's result."""
    result = batch.result
    if batch.logs:
        stored = _store(project=project, logs=batch.logs, rows=batch.rows, copy_rows=batch.copy_rows)
        result.ids = [
            StoredId(index=i, id=log_id, duplicate=dup) for i, (log_id, dup) in zip(batch.indexes, stored, strict=True)
        ]
        result.duplicates = sum(dup for _, dup in stored)
        result.accepted = len(stored) - result.duplicates
        if any(kinds is None for _, kinds in batch.logs):
            transaction.on_commit(lambda: pii_pending_send(project.pk))
    return result


def _read_item(item: RawItem, index: int, keep: bool, result: IngestResult, format: str | None) -> ParsedLog | None:
    """The item read, or kept as unreadable; None (and a rejection) when it cannot be stored at all."""
    try:
        item = item_make_storable(item)
        if item.error:
            raise IngestError(item.error)
        log = log_read(item, format=format)
        log_ranges_check(log)
        return log
    except IngestError as exc:
        error = str(exc)
    if keep:
        try:
            log = unreadable_log(item, error)
        except (IngestError, orjson.JSONEncodeError):  # not even JSON we can write out: nothing to keep
            pass
        else:
            for name in ("latency_ms", "status_code"):  # what the columns cannot hold is left to the original
                if (getattr(log, name) or 0) > _MAX_INT:
                    setattr(log, name, None)
            result.unreadable.append(Rejection(index=index, error=error))
            return log
    result.rejected.append(Rejection(index=index, error=error))
    return None


def project_pii_redaction_update(
    *, project: Project, redact_pii_on_ingest: bool, actor: User | None = None
) -> Project:
    """Turn redaction at ingestion on or off (audited). It applies to logs that arrive from now on:
    stored logs stay as they are, since the personal data they hold was stored already."""
    return _project_setting_update(
        project=project, name="redact_pii_on_ingest", value=redact_pii_on_ingest, actor=actor
    )


def project_keep_unreadable_update(*, project: Project, keep_unreadable: bool, actor: User | None = None) -> Project:
    """Whether the API and file imports keep the logs no reader can read, as "unreadable" (audited)."""
    return _project_setting_update(project=project, name="keep_unreadable", value=keep_unreadable, actor=actor)


def _project_setting_update(*, project: Project, name: str, value: bool, actor: User | None) -> Project:
    if getattr(project, name) != value:
        change = {"from": getattr(project, name), "to": value}
        setattr(project, name, value)
        project.save(update_fields=[name])
        audit_record(project=project, action="project.update", actor=actor, detail={name: change})
    return project


def _pii_apply(log: ParsedLog, *, redact: bool) -> list[str]:
    """The kinds of personal data in the log's conversation; with `redact`, the log is changed in place
    so that none of it is stored: the canonical messages and their search text, and also the original
    body, the metadata, the tool definitions and the error message, which may repeat what the
    conversation says (an original that still held the address would defeat the point)."""
    if not redact:
        return logs_pii_kinds(messages=log.messages)
    log.messages, findings = conversation_redact(log.messages)
    log.search_text = search_text(log.messages)
    log.original = _redact_json(log.original)
    log.original_text = value_text(log.original)  # no longer the text as sent: that held the personal data
    log.metadata = _redact_json(log.metadata)
    log.tools = _redact_json(log.tools)
    log.error_message = _redact_json(log.error_message)
    return sorted({found.finding.kind for found in findings})


def _redact_json(value: Any) -> Any:
    """Every string of a JSON value redacted; a string that is itself JSON (tool call arguments in a
    provider's body) is decoded, redacted value by value and encoded again, so it stays valid JSON."""
    if isinstance(value, dict):
        return {key: _redact_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact_json(item) for item in value]
    if not isinstance(value, str):
        return value
    if value[:1] in ("{", "["):
        try:
            decoded = json.loads(value)
        except ValueError:
            pass
        else:
            redacted = _redact_json(decoded)
            return value if redacted == decoded else json.dumps(redacted, ensure_ascii=False)
    return scan.redact(value)[0]


def log_ranges_check(log: ParsedLog) -> None:
    """Refuse numbers the integer columns cannot hold."""
    for name in ("prompt_tokens", "completion_tokens", "total_tokens", "latency_ms"):
        value = getattr(log, name)
        if value is not None and value > _MAX_INT:
            raise IngestError(f"{name}: {value} is too large (at most {_MAX_INT})")


def _store(
    *,
    project: Project,
    logs: list[tuple[ParsedLog, list[str] | None]],
    rows: list[dict[str, object]],
    copy_rows: list[bytes],
) -> list[tuple[int, bool]]:
    """Insert the logs (whose columns are `rows`, and on PostgreSQL `copy_rows` as COPY text) that are not
    duplicates; returns, for each log in order, its id and whether it was a duplicate (then the id is the log stored
    before with its external_id)."""
    for attempt in range(_STORE_ATTEMPTS):
        try:
            with transaction.atomic():
                known, fresh_at = _duplicates(project=project, logs=logs)
                fresh = [logs[at] for at in fresh_at]
                fresh_rows = [rows[at] for at in fresh_at]
                if connection.vendor == "postgresql":
                    texts = [copy_rows[at] for at in fresh_at] if copy_rows else None
                    ids = _copy_insert(project=project, logs=fresh, rows=fresh_rows, texts=texts)
                else:
                    entries = LogEntry.objects.bulk_create([LogEntry(**row) for row in fresh_rows])
                    ids = [e.pk for e in entries]
                    _attach_tags(project=project, log_ids=ids, names=[log.tags for log, _ in fresh])
                _attach_scores(project=project, log_ids=ids, logs=[log for log, _ in fresh])
                return _ids_in_order(logs, known, dict(zip(fresh_at, ids, strict=True)))
        except (IntegrityError, psycopg.errors.UniqueViolation):
            # A concurrent request stored one of these external ids between our check and our insert.
            # The savepoint is rolled back; looking again turns that item into a duplicate.
            if attempt == _STORE_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _duplicates(
    *, project: Project, logs: list[tuple[ParsedLog, list[str] | None]]
) -> tuple[dict[str, int], list[int]]:
    """The ids of the external ids already stored, and the positions in `logs` of the logs to insert."""
    wanted = {log.external_id for log, _ in logs if log.external_id is not None}
    known = _stored_external_ids(project, wanted) if wanted else {}
    seen = set(known)
    fresh_at = []
    for at, (log, _) in enumerate(logs):
        if log.external_id is not None:
            if log.external_id in seen:
                continue
            seen.add(log.external_id)
        fresh_at.append(at)
    return known, fresh_at


def _stored_external_ids(project: Project, wanted: set[str]) -> dict[str, int]:
    """The id of each of `wanted` stored in the project.

    On PostgreSQL the ids go as one array, each looked up on its own in the unique index. `external_id IN (…)` cost
    more in Python (the ORM's lookup, psycopg binding a thousand placeholders) than in the database, and the planner
    takes a project whose logs arrive faster than the statistics follow (an import into a new project, before
    autovacuum's next analysis) for a small one and reads all its logs for every batch: 50 ms a batch at 100,000
    logs, against 3 ms for the lookups."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_STORED_EXTERNAL_IDS, [list(wanted), project.pk])
            return dict(cursor.fetchall())
    stored = LogEntry.objects.filter(project=project, external_id__in=wanted)
    return {external_id or "": log_id for external_id, log_id in stored.values_list("external_id", "id")}


_STORED_EXTERNAL_IDS = """
    SELECT wanted.external_id, stored.id FROM unnest(%s::text[]) AS wanted (external_id)
    CROSS JOIN LATERAL (
        SELECT id FROM curation_logentry WHERE project_id = %s AND external_id = wanted.external_id LIMIT 1
    ) AS stored
"""


def _ids_in_order(
    logs: list[tuple[ParsedLog, list[str] | None]], known: dict[str, int], inserted: dict[int, int]
) -> list[tuple[int, bool]]:
    """(id, duplicate) of each log: a duplicate of a log earlier in the batch gets the id that log was given."""
    known = dict(known)
    out = []
    for at, (log, _) in enumerate(logs):
        if at in inserted:
            if log.external_id is not None:
                known[log.external_id] = inserted[at]
            out.append((inserted[at], False))
        else:
            out.append((known[log.external_id or ""], True))
    return out


# The columns a reader fills from a log's original: what `reparse_logs` writes again after an upgrade.
READ_COLUMNS = (
    "provider", "format", "model", "response_model", "status", "status_code", "error_message", "finish_reason",
    "messages", "tools", "options", "alternatives", "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd",
    "search_text", "pii", "pii_pending", "notes",
)  # fmt: skip


def log_read_columns(log: ParsedLog, kinds: list[str] | None) -> dict[str, object]:
    """The READ_COLUMNS of a parsed log; `kinds`: its personal data (LogEntry.pii), None when not scanned yet."""
    return {
        "provider": log.provider[:32],
        "format": log.format,
        "model": log.model[:200],
        "response_model": log.response_model[:200],
        "status": log.status,
        "status_code": log.status_code,
        "error_message": log.error_message,
        "finish_reason": log.finish_reason[:32],
        "messages": log.messages,
        "tools": log.tools,
        "options": log.options,
        "alternatives": log.alternatives,
        "prompt_tokens": log.prompt_tokens,
        "completion_tokens": log.completion_tokens,
        "total_tokens": log.total_tokens,
        "cost_usd": cost_usd(
            model=log.model, prompt_tokens=log.prompt_tokens, completion_tokens=log.completion_tokens
        ),
        "search_text": log.search_text,
        "pii": kinds or [],
        "pii_pending": kinds is None,
        "notes": log.notes,
    }


def _values(project_id: int, log: ParsedLog, kinds: list[str] | None, now: datetime) -> dict[str, object]:
    """The LogEntry columns of a parsed log (ids aside); `kinds`: its personal data (LogEntry.pii)."""
    return {
        "project_id": project_id,
        "external_id": log.external_id,
        **log_read_columns(log, kinds),
        "original": log.original_text,
        "latency_ms": log.latency_ms,
        "metadata": log.metadata,
        "created_at": log.created_at or now,
        "ingested_at": now,
    }


def tags_get_or_create(*, project: Project, names: Iterable[str]) -> dict[str, Tag]:
    """Tags of the project by name, creating the missing ones (safe against concurrent creation)."""
    wanted = set(names)
    if not wanted:
        return {}
    tags = {tag.name: tag for tag in Tag.objects.filter(project=project, name__in=wanted)}
    missing = wanted - tags.keys()
    if missing:
        Tag.objects.bulk_create([Tag(project=project, name=name) for name in missing], ignore_conflicts=True)
        tags.update({tag.name: tag for tag in Tag.objects.filter(project=project, name__in=missing)})
    return tags


def _attach_tags(*, project: Project, log_ids: list[int], names: list[list[str]]) -> None:
    tags = tags_get_or_create(project=project, names={name for group in names for name in group})
    if tags:
        LogTag.objects.bulk_create(
            [
                LogTag(log_id=log_id, tag=tags[name])
                for log_id, group in zip(log_ids, names, strict=True)
                for name in group
            ]
        )


_SCORE_COLUMNS = ("log_id", "project_id", "name", "value_number", "value_text", "comment", "source", "created_at")


def _attach_scores(*, project: Project, log_ids: list[int], logs: list[ParsedLog]) -> None:
    """The scores sent with the logs just stored, source `api`: one COPY (PostgreSQL) or one INSERT, none when no
    log carries any."""
    now = timezone.now()
    rows = [
        (log_id, project.pk, score.name, score.number, score.text, score.comment, ScoreSource.API.value, now)
        for log_id, log in zip(log_ids, logs, strict=True)
        for score in log.scores
    ]
    if not rows:
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor, cursor.cursor.copy(_COPY_SCORES) as copy:
            for row in rows:
                copy.write_row(row)
    else:
        LogScore.objects.bulk_create([LogScore(**dict(zip(_SCORE_COLUMNS, row, strict=True))) for row in rows])


# --- Edits and deletions ------------------------------------------------------------------------------


@transaction.atomic
def log_update(
    *,
    log: LogEntry,
    tags: list[str] | None = None,
    tags_add: Iterable[str] = (),
    tags_remove: Iterable[str] = (),
    metadata: dict | None = None,
    actor: User | None = None,
    api_key: ApiKey | None = None,
) -> LogEntry:
    """Change a log's tags and metadata, audited as `logs.update` with what changed (tag names, metadata keys).

    `tags` replaces the log's tags (`[]` removes them all); `tags_add` and `tags_remove` change only those named,
    after `tags`, removals last (a name in both is removed).
    `metadata` replaces the whole object, not a merge: a key left out is gone, and a key set to null stays, as null.
    The original is never changed: it keeps what was sent."""
    LogEntry.objects.select_for_update().filter(pk=log.pk).values_list("pk").get()  # one edit of a log at a time
    before = set(log.tags.values_list("name", flat=True))
    start = set(_tag_names(tags)) if tags is not None else before
    wanted = (start | set(_tag_names(tags_add))) - set(_tag_names(tags_remove))
    added, removed = sorted(wanted - before), sorted(before - wanted)
    if added:
        found = tags_get_or_create(project=log.project, names=added)
        LogTag.objects.bulk_create([LogTag(log=log, tag=found[name]) for name in added], ignore_conflicts=True)
    if removed:
        links = LogTag.objects.filter(log=log, tag__project_id=log.project_id, tag__name__in=removed)
        links.delete()
    changes: dict[str, object] = {"tags_added": added, "tags_removed": removed} if added or removed else {}
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise ValidationError({"metadata": "Must be an object."})
        keys = sorted(
            k for k in set(metadata) | set(log.metadata) if metadata.get(k, _GONE) != log.metadata.get(k, _GONE)
        )
        if keys:
            changes["metadata_keys"] = keys
            log.metadata = metadata
            log.save(update_fields=["metadata"])
    audit_record(project=log.project, action="logs.update", count=1 if changes else 0, actor=actor, api_key=api_key,
                 detail={"log": log.pk, **changes})  # fmt: skip
    return log


_GONE = object()  # a metadata key that is not there (null is a value)


def _tag_names(names: Iterable[str]) -> list[str]:
    cleaned = list(dict.fromkeys(name.strip() for name in names))
    limit = Tag._meta.get_field("name").max_length or 0
    if any(not name or len(name) > limit for name in cleaned):
        raise ValidationError({"tags": f"A tag name is 1 to {limit} characters."})
    return cleaned


@dataclass(frozen=True, slots=True)
class LogDeletion:
    id: int
    datasets: int  # datasets holding entries made from the log: the entries keep their copies
    entries: int  # those entries


@transaction.atomic
def log_delete(*, log: LogEntry, actor: User | None = None, api_key: ApiKey | None = None) -> LogDeletion:
    """Delete one log as a bulk deletion does (`logs_delete`), audited as `logs.delete` with the log and how many
    dataset entries keep their copy of it. Raises LogEntry.DoesNotExist when it is gone already."""
    LogEntry.objects.select_for_update().filter(pk=log.pk).values_list("pk").get()
    held = DatasetEntry.objects.filter(log_id=log.pk).aggregate(
        entries=Count("id"), datasets=Count("dataset_id", distinct=True)
    )
    logs_delete(logs=LogEntry.objects.filter(pk=log.pk), actor=actor, api_key=api_key)
    deletion = LogDeletion(id=log.pk, datasets=held["datasets"], entries=held["entries"])
    audit_record(project=log.project, action="logs.delete", count=1, actor=actor, api_key=api_key,
                 detail={"log": log.pk, "external_id": log.external_id, "datasets": deletion.datasets,
                         "entries": deletion.entries})  # fmt: skip
    return deletion


def logs_delete(*, logs: QuerySet[LogEntry], actor: User | None = None, api_key: ApiKey | None = None) -> int:
    """Delete logs without Django's per-row collector: tags, scores, embeddings and topic memberships go with them
    (none of them has ON DELETE CASCADE in the database), dataset entries keep their
    copy and lose the link, recording which log it was, when and by whom it was deleted."""
    ids = list(logs.order_by().values_list("id", flat=True))
    deleted = 0
    now = timezone.now()
    size = settings.LOGTUNE_BULK_CHUNK
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        with transaction.atomic():
            links = LogTag.objects.filter(log_id__in=chunk)
            links._raw_delete(links.db)
            scores = LogScore.objects.filter(log_id__in=chunk)
            scores._raw_delete(scores.db)
            topics = TopicMembership.objects.filter(log_id__in=chunk)
            topics._raw_delete(topics.db)
            embeddings = LogEmbedding.objects.filter(log_id__in=chunk)
            embeddings._raw_delete(embeddings.db)
            DatasetEntry.objects.filter(log_id__in=chunk).update(
                log=None, source_log_id=F("log_id"), source_deleted_at=now, source_deleted_by=actor,
                source_deleted_by_key=api_key,
            )  # fmt: skip
            rows = LogEntry.objects.filter(id__in=chunk)
            deleted += rows._raw_delete(rows.db)
    return deleted


# --- PostgreSQL: COPY ---------------------------------------------------------------------------------
# COPY is PostgreSQL's fastest way in, several times cheaper than a multi-row INSERT on both sides.
# It cannot return ids, so the ids are drawn from the table's sequence first, in one round trip.

_JSON_COLUMNS = frozenset({"messages", "tools", "options", "alternatives", "metadata", "pii", "notes"})
_COPY_TAGS = "COPY curation_logtag (log_id, tag_id) FROM STDIN"
_COPY_SCORES = f"COPY curation_logscore ({', '.join(_SCORE_COLUMNS)}) FROM STDIN"
_NEXT_IDS = "SELECT nextval(pg_get_serial_sequence('curation_logentry', 'id')) FROM generate_series(1, %s)"


def _copy_insert(
    *,
    project: Project,
    logs: list[tuple[ParsedLog, list[str] | None]],
    rows: list[dict[str, object]],
    texts: list[bytes] | None = None,
) -> list[int]:
    """Insert the logs, whose columns are `rows` (and `texts`, the same as COPY text when the caller has them);
    returns their ids, in order."""
    if not logs:
        return []
    columns = list(rows[0])
    if texts is None:
        texts = [copy_row(values.items(), _JSON_COLUMNS) for values in rows]
    with connection.cursor() as cursor:
        cursor.execute(_NEXT_IDS, [len(logs)])
        ids = [row[0] for row in cursor.fetchall()]
        data = b"".join(b"%d\t%b\n" % (log_id, text) for log_id, text in zip(ids, texts, strict=True))
        with cursor.cursor.copy(f"COPY curation_logentry (id, {', '.join(columns)}) FROM STDIN") as copy:
            copy.write(data)
        tags = tags_get_or_create(project=project, names={name for log, _ in logs for name in log.tags})
        if tags:
            with cursor.cursor.copy(_COPY_TAGS) as copy:
                for log_id, (log, _) in zip(ids, logs, strict=True):
                    for name in log.tags:
                        copy.write_row((log_id, tags[name].pk))
    return ids
