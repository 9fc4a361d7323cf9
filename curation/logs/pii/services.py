"""Personal data of stored logs (docs/pii.md): the kinds a log holds, filled for logs stored before ingestion
recorded them (`pii_scan`), and for the logs a request stored unscanned because it had spent its time for it."""

import logging
from dataclasses import dataclass

from django.db import transaction

from curation.models import LogEntry, Project
from curation.text.pii.conversations import conversation_find

logger = logging.getLogger(__name__)


def logs_pii_kinds(*, messages: list[dict]) -> list[str]:
    """The sorted kinds of personal data in canonical messages: what `LogEntry.pii` holds."""
    return sorted({found.finding.kind for found in conversation_find(messages)})


def pii_pending_send(project_id: int) -> None:
    from curation.logs.pii.tasks import logs_pii_pending_task

    try:
        logs_pii_pending_task.delay(project_id)
    except Exception as exc:  # the broker is down: the reaper (every minute, from beat) sends it later
        logger.warning("curation.pii_pending_not_sent project=%s: %r", project_id, exc)


@dataclass(slots=True)
class PiiScanBatch:
    last_id: int | None  # the highest id read; None: no log after `after_id`
    scanned: int
    changed: int


@transaction.atomic
def logs_pii_scan_batch(*, project: Project, after_id: int = 0, size: int = 1000) -> PiiScanBatch:
    """Fill `pii` for the next `size` logs of `project` by id after `after_id` (logs stored before
    ingestion recorded it). Idempotent: a log whose kinds are already right is not written again.
    Stored messages are only read: redacting what is already stored is not this scan's job."""
    logs = list(
        LogEntry.objects.filter(project=project, pk__gt=after_id)
        .order_by("pk")
        .only("pk", "messages", "pii", "pii_pending")[:size]
    )
    changed = _pii_fill(logs)
    return PiiScanBatch(last_id=logs[-1].pk if logs else None, scanned=len(logs), changed=changed)


def _pii_fill(logs: list[LogEntry]) -> int:
    """Scan `logs` (their messages, pii and pii_pending loaded) and write the kinds that changed."""
    changed = []
    for log in logs:
        kinds = logs_pii_kinds(messages=log.messages if isinstance(log.messages, list) else [])
        if kinds != log.pii or log.pii_pending:
            log.pii, log.pii_pending = kinds, False
            changed.append(log)
    LogEntry.objects.bulk_update(changed, ["pii", "pii_pending"])
    return len(changed)


def logs_pii_pending_fill(*, project_id: int, size: int = 200) -> int:
    """Scan the logs of a project that a request stored unscanned (`pii_pending`), in committed batches; returns
    how many. Two workers at it share the work (rows locked by one are skipped by the other)."""
    done = 0
    while True:
        with transaction.atomic():
            pending = LogEntry.objects.filter(project_id=project_id, pii_pending=True)
            batch = list(
                pending.select_for_update(skip_locked=True).only("pk", "messages", "pii", "pii_pending")[:size]
            )
            if not batch:
                return done
            _pii_fill(batch)
        done += len(batch)


def logs_pii_pending_reap() -> int:
    """Every minute (beat): send the scan of the projects that have unscanned logs, whatever became of the task
    their request sent (the broker down, a worker killed). A scan sent twice shares the work."""
    projects = list(LogEntry.objects.filter(pii_pending=True).values_list("project_id", flat=True).distinct())
    for project_id in projects:
        pii_pending_send(project_id)
    return len(projects)
