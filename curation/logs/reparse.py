"""Reading stored logs again with today's readers: after an upgrade, an unreadable log may now be readable, and a
readable one may keep more (a part type that was opaque has a reader now). Only the canonical columns change;
the original, tags, metadata, external id and time stay as they are, and dataset entries keep their copies."""

from dataclasses import dataclass

from django.db import transaction
from django.db.models import QuerySet

from curation.logs.ingest import BodyError, IngestError, item_make_storable, line_read, log_read
from curation.logs.pii.services import logs_pii_kinds
from curation.logs.services import READ_COLUMNS, log_ranges_check, log_read_columns
from curation.models import LogEntry, LogStatus, Project


@dataclass(slots=True)
class ReparseBatch:
    last_id: int | None  # the highest id read; None: no log after `after_id`
    read: int
    changed: int  # logs whose canonical columns changed
    now_readable: int  # unreadable logs that a reader read this time
    unreadable: int  # logs left unreadable after this batch


def logs_to_reparse(*, project: Project, status: str | None = None, after_id: int = 0) -> QuerySet[LogEntry]:
    logs = LogEntry.objects.filter(project=project, pk__gt=after_id)
    return logs.filter(status=status) if status else logs


@transaction.atomic
def logs_reparse_batch(
    *, project: Project, after_id: int = 0, size: int = 500, status: str | None = None
) -> ReparseBatch:
    """Read the next `size` logs of `project` by id after `after_id` (only those of `status`, if given) from their
    originals again, and write the columns that changed. Idempotent: running it twice changes nothing more."""
    columns = ("pk", "original", *READ_COLUMNS)  # the original, and what a reader fills from it
    logs = list(
        logs_to_reparse(project=project, status=status, after_id=after_id).order_by("pk").only(*columns)[:size]
    )
    changed: list[LogEntry] = []
    now_readable = unreadable = 0
    for log in logs:
        was_unreadable = log.status == LogStatus.UNREADABLE
        values = _read_again(log)
        if values["status"] == LogStatus.UNREADABLE:
            unreadable += 1
        elif was_unreadable:
            now_readable += 1
        if any(getattr(log, name) != value for name, value in values.items()):
            for name, value in values.items():
                setattr(log, name, value)
            changed.append(log)
    LogEntry.objects.bulk_update(changed, list(READ_COLUMNS))
    return ReparseBatch(
        last_id=logs[-1].pk if logs else None, read=len(logs), changed=len(changed), now_readable=now_readable,
        unreadable=unreadable,
    )  # fmt: skip


def _read_again(log: LogEntry) -> dict[str, object]:
    try:
        item = item_make_storable(line_read(log.original))
        parsed = log_read(item)
        log_ranges_check(parsed)
    except BodyError as exc:
        return _unreadable(log, f"invalid JSON: {exc}")
    except IngestError as exc:
        return _unreadable(log, str(exc))
    return log_read_columns(parsed, logs_pii_kinds(messages=parsed.messages))


def _unreadable(log: LogEntry, reason: str) -> dict[str, object]:
    """Still unreadable: only the reason may change (a newer reader gets further). A log that was read before and
    is not now (a reader became stricter) keeps what it has rather than losing its conversation."""
    values: dict[str, object] = {name: getattr(log, name) for name in READ_COLUMNS}
    if log.status == LogStatus.UNREADABLE:
        values["error_message"] = reason
    return values
