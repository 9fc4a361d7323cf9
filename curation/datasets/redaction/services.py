"""Redacting a dataset: personal data in its entries replaced by typed placeholders (`<EMAIL>`).

Only dataset entries change: the logs they were copied from keep their original and canonical
conversations (an entry's diff against its log then shows what was redacted). Both the preview and
the redaction walk the entries by id in batches, so memory stays flat on a large dataset.

A dataset of up to INLINE_LIMIT entries is redacted in the request, one transaction per batch; a larger one
by a worker (RedactionJob, `redaction_job_run`) that commits each batch with the job's progress and resume
point, so the page and the API can follow it and a run that stops goes on where it was. Either way a redacted
entry has nothing left to find, so the redaction is idempotent: a run stopped halfway is finished by running
it again.
"""

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import cast

from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Field, Q
from django.utils import timezone

from curation.audit.services import audit_record
from curation.common.queueing import task_send_or_mark_unsent
from curation.common.server_paths import error_text
from curation.datasets.services import dataset_touch
from curation.logs.ingest.canonical import search_text
from curation.models import ApiKey, Dataset, DatasetEntry, JobStatus, RedactionJob
from curation.text.diffs import Diff, diff_conversations, render_conversation
from curation.text.pii import scan
from curation.text.pii.conversations import conversation_redact
from curation.text.pii.findings import KINDS, Finding
from curation.text.tokens import est_tokens

logger = logging.getLogger(__name__)

BATCH = 500
# Up to this many entries a redaction runs in the request (about a second on one core, docs/pii.md); above it,
# as a RedactionJob with progress.
INLINE_LIMIT = 2_000
# A job still queued this long after its task was sent (a broker restarted without persistence forgets its
# queue), or running with no batch committed for this long (its worker died), is sent again by the reaper.
RESEND_AFTER = timedelta(minutes=10)
PREVIEW_LIMIT = 20
# What redacting an entry reads: its conversation, and its log's, to tell whether it still matches the log.
_READ = ("messages", "tools", "log", "log__messages", "log__tools")
_PLACEHOLDER_RE = re.compile("(" + "|".join(f"<{kind}>" for kind in KINDS) + ")")


@dataclass(frozen=True, slots=True)
class EntryFinding:
    field: str  # "message 2 content", "tool 1 function.description"
    kind: str
    reason: str
    text: str


@dataclass(frozen=True, slots=True)
class EntryRedaction:
    """One entry that a redaction would change: what was found and the diff it makes."""

    entry_id: int
    findings: list[EntryFinding]
    diff: Diff

    @property
    def diff_lines(self) -> list[tuple[str, list[tuple[str, bool]]]]:
        """(line kind, [(text, is a placeholder)]) for each diff line, so a page can mark `<EMAIL>`."""
        return [(line.kind, placeholder_parts(line.text)) for line in self.diff.lines]


@dataclass(slots=True)
class RedactionPreview:
    kinds: list[str]
    entries: int = 0  # entries scanned: the whole dataset
    changed: int = 0  # entries that the redaction would change
    counts: dict[str, int] = field(default_factory=dict)  # findings per kind, over the whole dataset
    samples: list[EntryRedaction] = field(default_factory=list)  # the first `limit` entries that would change

    @property
    def truncated(self) -> bool:
        return len(self.samples) < self.changed

    @property
    def found_counts(self) -> list[tuple[str, int]]:
        """(kind, findings) of the kinds found at least once."""
        return [(kind, count) for kind, count in self.counts.items() if count]


def placeholder_parts(text: str) -> list[tuple[str, bool]]:
    return [(part, bool(index % 2)) for index, part in enumerate(_PLACEHOLDER_RE.split(text)) if part]


def redaction_kinds(kinds: Iterable[str] | None) -> list[str]:
    """The kinds asked for, in the library's order; none given means all. Unknown kinds are a ValueError."""
    wanted = set(KINDS if kinds is None else kinds)
    if unknown := wanted - set(KINDS):
        raise ValueError(f"Unknown kind {sorted(unknown)[0]!r}: one of {', '.join(KINDS)}.")
    return [kind for kind in KINDS if kind in wanted]


def _tools_redact(value: object, kinds: list[str], path: str = "") -> tuple[object, list[tuple[str, Finding]]]:
    """Tool definitions with every string redacted (descriptions, enum values): (copy, findings)."""
    if isinstance(value, str):
        text, plain = scan.redact(value, kinds=kinds)
        return text, [(path, f) for f in plain]
    if isinstance(value, list):
        pairs = [_tools_redact(item, kinds, f"{path}.{i}" if path else str(i)) for i, item in enumerate(value)]
        return [item for item, _ in pairs], [f for _, found in pairs for f in found]
    if isinstance(value, dict):
        out: dict = {}
        findings: list[tuple[str, Finding]] = []
        for key, item in value.items():
            out[key], nested = _tools_redact(item, kinds, f"{path}.{key}" if path else str(key))
            findings += nested
        return out, findings
    return value, []


def entry_redact_values(messages: object, tools: object, *, kinds: list[str]) -> tuple[list, list, list[EntryFinding]]:
    """The redacted messages and tools of one conversation, and what was found (nothing: unchanged)."""
    if not isinstance(messages, list):
        return messages, tools, []  # type: ignore[return-value]
    new_messages, message_findings = conversation_redact(messages, kinds=kinds)
    new_tools, tool_findings = _tools_redact(tools or [], kinds)
    findings = [
        EntryFinding(f"message {m.message + 1} {m.field}", m.finding.kind, m.finding.reason, m.finding.text)
        for m in message_findings
    ]
    for path, finding in tool_findings:
        index, _, rest = path.partition(".")
        findings.append(EntryFinding(f"tool {int(index) + 1} {rest}", finding.kind, finding.reason, finding.text))
    return new_messages, new_tools, findings  # type: ignore[return-value]


def _batches(dataset: Dataset, fields: tuple[str, ...], *, lock: bool = False) -> Iterator[list[DatasetEntry]]:
    """The dataset's entries by id, BATCH at a time (keyset pagination: no offset, no server cursor)."""
    after = 0
    while batch := _batch_after(dataset.pk, after, fields, lock=lock):
        yield batch
        after = batch[-1].pk


def _batch_after(dataset_id: int, after: int, fields: tuple[str, ...], *, lock: bool) -> list[DatasetEntry]:
    """The dataset's next BATCH entries after id `after`, with `fields` (and their log for `log__` fields),
    locked for this transaction with `lock`."""
    rows = DatasetEntry.objects.filter(dataset_id=dataset_id, id__gt=after).order_by("id").only("id", *fields)
    if any(name.startswith("log__") for name in fields):
        rows = rows.select_related("log")
    if lock:
        rows = rows.select_for_update(of=("self",))
    return list(rows[:BATCH])


def redaction_preview(
    *, dataset: Dataset, kinds: Iterable[str] | None = None, limit: int = PREVIEW_LIMIT
) -> RedactionPreview:
    """What `dataset_redact` would do with these kinds: the counts per kind and the number of entries
    it would change over the whole dataset, with the findings and diffs of the first `limit` of them."""
    preview = RedactionPreview(kinds=redaction_kinds(kinds))
    preview.counts = dict.fromkeys(preview.kinds, 0)
    for batch in _batches(dataset, ("messages", "tools")):
        for entry in batch:
            preview.entries += 1
            new_messages, new_tools, findings = entry_redact_values(entry.messages, entry.tools, kinds=preview.kinds)
            if not findings:
                continue
            preview.changed += 1
            for finding in findings:
                preview.counts[finding.kind] += 1
            if len(preview.samples) < limit:
                diff = diff_conversations(
                    render_conversation(entry.messages, entry.tools), render_conversation(new_messages, new_tools)
                )
                preview.samples.append(EntryRedaction(entry_id=entry.pk, findings=findings, diff=diff))
    return preview


def dataset_redact(
    *, dataset: Dataset, kinds: Iterable[str] | None = None, actor: User | None = None, api_key: ApiKey | None = None
) -> int:
    """Replace the personal data of these kinds in every entry with placeholders; returns how many
    entries changed. Each batch is its own transaction with its rows locked, so an edit saved at the
    same time is neither lost nor overwritten. Updates what an edit updates (search text, token
    estimate, `edited` against the source log); the logs themselves are never written."""
    wanted = redaction_kinds(kinds)
    changed = 0
    batches = _batches(dataset, _READ, lock=True)
    while True:
        with transaction.atomic():
            batch = next(batches, None)
            if batch is None:
                break
            changed += _batch_redact(batch, wanted)
    _redaction_audit(dataset=dataset, kinds=wanted, changed=changed, actor=actor, api_key=api_key)
    return changed


def _redaction_audit(
    *, dataset: Dataset, kinds: list[str], changed: int, actor: User | None, api_key: ApiKey | None
) -> None:
    if changed:
        dataset_touch(dataset.pk)
    audit_record(project=dataset.project, action="entries.redact", count=changed, actor=actor, api_key=api_key,
                 detail={"dataset_id": dataset.pk, "dataset": dataset.name, "kinds": kinds})  # fmt: skip


def _batch_redact(batch: list[DatasetEntry], kinds: list[str]) -> int:
    now = timezone.now()
    updated = []
    for entry in batch:
        messages, tools, findings = entry_redact_values(entry.messages, entry.tools, kinds=kinds)
        if not findings:
            continue
        entry.messages, entry.tools = messages, tools
        entry.search_text = search_text(messages)
        entry.est_tokens = est_tokens(entry.search_text)
        source = entry.log
        if source is not None:
            entry.edited = messages != source.messages or tools != (source.tools or [])
        else:  # imported from a file: redacting changed it
            entry.edited = True
        entry.updated_at = now
        updated.append(entry)
    _rows_update(updated)
    return len(updated)


_UPDATED = ("messages", "tools", "search_text", "est_tokens", "edited", "updated_at")


def _rows_update(entries: list[DatasetEntry]) -> None:
    """One UPDATE per row sent with executemany: `bulk_update`'s CASE over a batch of large JSON values
    was several times slower on PostgreSQL, where psycopg pipelines the statements."""
    fields = [cast(Field, DatasetEntry._meta.get_field(name)) for name in _UPDATED]
    table = connection.ops.quote_name(DatasetEntry._meta.db_table)
    columns = ", ".join(f"{connection.ops.quote_name(name)} = %s" for name in _UPDATED)
    rows = [[f.get_db_prep_save(getattr(entry, f.attname), connection) for f in fields] + [entry.pk]
            for entry in entries]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.executemany(f"UPDATE {table} SET {columns} WHERE id = %s", rows)  # noqa: S608 (names from the model)


# --- the job ----------------------------------------------------------------------------------------


def dataset_redact_or_queue(
    *, dataset: Dataset, kinds: Iterable[str] | None = None, actor: User | None = None, api_key: ApiKey | None = None
) -> int | RedactionJob:
    """Redact the dataset in the request when it holds at most INLINE_LIMIT entries (returns the entries
    changed), else queue a RedactionJob (returned). While a job of the dataset is queued or running, that job
    is returned and nothing else is done, whatever the kinds: two redactions of one dataset do not overlap."""
    wanted = redaction_kinds(kinds)
    current = redaction_job_current(dataset=dataset)
    if current is not None:
        return current
    if redaction_runs_inline(entries=dataset.entries.count()):
        return dataset_redact(dataset=dataset, kinds=wanted, actor=actor, api_key=api_key)
    return redaction_job_create(dataset=dataset, kinds=wanted, actor=actor, api_key=api_key)


def redaction_runs_inline(*, entries: int) -> bool:
    """Whether a dataset of this many entries is redacted in the request rather than by a job."""
    return entries <= INLINE_LIMIT


def redaction_job_create(
    *, dataset: Dataset, kinds: Iterable[str] | None = None, actor: User | None = None, api_key: ApiKey | None = None
) -> RedactionJob:
    """Queue the redaction of `dataset` as a job, its task sent once the transaction commits; a job of the
    dataset already queued or running is returned instead. With the broker down the job stays queued, marked
    unsent, and the reaper sends it once the broker is back."""
    wanted = redaction_kinds(kinds)
    with transaction.atomic():
        Dataset.objects.select_for_update().filter(pk=dataset.pk).first()
        current = redaction_job_current(dataset=dataset)
        if current is not None:
            return current
        job = RedactionJob.objects.create(
            dataset=dataset, kinds=wanted, created_by=actor, api_key=api_key, total=dataset.entries.count(),
            enqueued_at=timezone.now(),
        )  # fmt: skip
        transaction.on_commit(lambda: _enqueue(job.pk))
    return job


def _enqueue(job_id: int) -> None:
    from curation.datasets.redaction.tasks import dataset_redact_task

    task_send_or_mark_unsent(
        dataset_redact_task, job_id,
        queued=RedactionJob.objects.filter(pk=job_id, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]),
        event="curation.redaction_enqueue_failed",
    )  # fmt: skip


def redaction_job_current(*, dataset: Dataset) -> RedactionJob | None:
    """The dataset's job that is queued or running, if any."""
    return dataset.redaction_jobs.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).first()


def redaction_job_latest(*, dataset: Dataset) -> RedactionJob | None:
    return dataset.redaction_jobs.first()


def redaction_job_run(
    *, job_id: int, on_progress: Callable[[RedactionJob], None] | None = None
) -> RedactionJob | None:
    """Run (or resume) a redaction job, batch by batch after its resume point.

    Each batch is read with the job's row and the entries' rows locked, redacted, and committed with the job's
    progress and resume point in one transaction. A run stopped halfway (a worker killed, a redelivered task)
    loses one batch at most, and the next run goes on after the last committed one, counting nothing twice;
    two runs at once (a task delivered twice) take the batches in turn. The job is audited once, by the run
    that finishes it. A finished job is left as it is; one whose dataset was deleted meanwhile is gone (None).
    On failure the error is recorded on the job and re-raised."""
    job = RedactionJob.objects.filter(pk=job_id).first()
    if job is None or job.is_finished:
        return job
    RedactionJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now()
    )
    try:
        while (job := _job_batch(job_id)) is not None and not job.is_finished:
            if on_progress:
                on_progress(job)
        finished = _job_finish(job_id)
    except Exception as exc:
        error = error_text(exc)
        RedactionJob.objects.filter(pk=job_id, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).update(
            status=JobStatus.FAILED, error=error, finished_at=timezone.now()
        )
        logger.exception("curation.redaction_failed job=%s", job_id)
        raise
    return finished


def _job_batch(job_id: int) -> RedactionJob | None:
    """Redact the next batch after the job's resume point and commit it with the progress; None when there is
    no batch left (or no job: its dataset was deleted)."""
    with transaction.atomic():
        job = RedactionJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.is_finished:
            return job
        batch = _batch_after(job.dataset_id, job.last_id, _READ, lock=True)
        if not batch:
            return None
        job.changed += _batch_redact(batch, job.kinds)
        job.done += len(batch)
        job.last_id = batch[-1].pk
        job.heartbeat_at = timezone.now()
        job.save(update_fields=["changed", "done", "last_id", "heartbeat_at"])
    return job


def _job_finish(job_id: int) -> RedactionJob | None:
    with transaction.atomic():
        job = RedactionJob.objects.select_for_update().select_related("dataset__project").filter(pk=job_id).first()
        if job is None or job.is_finished:
            return job
        job.status, job.finished_at = JobStatus.SUCCEEDED, timezone.now()
        job.total = max(job.total, job.done)
        job.save(update_fields=["status", "finished_at", "total"])
        _redaction_audit(dataset=job.dataset, kinds=job.kinds, changed=job.changed, actor=job.created_by,
                         api_key=job.api_key)  # fmt: skip
    logger.info("curation.redaction_done job=%s changed=%s", job.pk, job.changed)
    return job


def redaction_jobs_reap() -> int:
    """Send again the jobs nobody is working on: queued ones whose task never reached the broker or was sent
    RESEND_AFTER ago, and running ones with no batch committed for RESEND_AFTER (their worker died). A job
    that was only slow is then run twice at once, which is safe (`redaction_job_run`). Returns how many."""
    now = timezone.now()
    stale = now - RESEND_AFTER
    unsent = Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=stale)
    idle = unsent & (Q(status=JobStatus.QUEUED) | Q(status=JobStatus.RUNNING, heartbeat_at__lt=stale))
    sent = 0
    for job_id in RedactionJob.objects.filter(idle).values_list("pk", flat=True):
        if RedactionJob.objects.filter(idle, pk=job_id).update(enqueued_at=now):
            logger.info("curation.redaction_resent job=%s", job_id)
            _enqueue(job_id)
            sent += 1
    return sent
