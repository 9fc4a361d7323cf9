"""Importing JSONL / JSONL.gz files of logs, at flat memory, with progress and a per-line error report.

A job runs at most once at a time: a run claims it with one conditional UPDATE (`attempts` + 1) and commits
each batch only while the row still carries its attempt, in the same transaction as the batch, so two
deliveries of the task never both store a line. Each committed batch is a heartbeat; the reaper re-queues a
running job whose heartbeats stopped (its worker died) to resume after its last committed line, and sends
queued jobs whose task never reached the broker.

An upload is stored until its import has finished, then deleted: a finished job is never resumed, and with
redaction at ingestion the file still holds the personal data its logs had redacted. While they wait, a project's
uploads may hold at most LOGTUNE_MAX_PENDING_IMPORT_BYTES.
"""

import gzip
import io
import logging
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, cast

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files import File
from django.db import reset_queries, transaction
from django.db.models import Q
from django.utils import timezone

from curation.common.queueing import database_gone, job_claim, job_save_owned, task_send_or_mark_unsent
from curation.common.server_paths import error_text, paths_hidden
from curation.datasets.services import dataset_entries_ingest
from curation.logs.imports.selectors import import_pending_bytes
from curation.logs.ingest import BodyError, RawItem, line_read
from curation.logs.ingest.raw import decode_text
from curation.logs.services import logs_ingest
from curation.models import Dataset, ImportJob, ImportLineError, JobStatus, Project

logger = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
# A file full of bad lines must not fill the database: the report keeps this many, the counters count all.
MAX_LINE_ERRORS_KEPT = 100_000
# Resuming re-reads the committed lines without storing them; a heartbeat this often keeps the reaper away.
SKIP_BEAT_LINES = 100_000
# An import that stored nothing fails with this many of its line errors, each cut to this length.
FIRST_REASONS = 3
REASON_CHARS = 120
ProgressCallback = Callable[[ImportJob], None]
UNFINISHED = (JobStatus.QUEUED, JobStatus.RUNNING)
# Uploads of finished imports the reaper deletes per run (those its run could not delete, or older ones).
UPLOADS_DELETED_PER_REAP = 500


class ImportLost(Exception):
    """This run no longer owns the job (the reaper re-queued it and another run took it over)."""


class PendingImportsTooLarge(Exception):
    """Refused: with the project's uploads not yet imported, an upload would pass LOGTUNE_MAX_PENDING_IMPORT_BYTES."""


def import_pending_problem(*, project: Project, size: int) -> str:
    """Why an upload of `size` bytes would be refused now, or "" when it fits beside the uploads still waiting."""
    pending, limit = import_pending_bytes(project=project), settings.LOGTUNE_MAX_PENDING_IMPORT_BYTES
    if pending + size <= limit:
        return ""
    return (
        f"This project's uploads waiting to be imported hold {pending:,} bytes; with this file ({size:,} bytes) "
        f"they would pass the limit of {limit:,} bytes (LOGTUNE_MAX_PENDING_IMPORT_BYTES). "
        "Upload it once they are imported."
    )


def import_job_create(
    *,
    project: Project,
    file: File,
    source_name: str,
    created_by: User | None = None,
    dataset: Dataset | None = None,
) -> ImportJob:
    """Store the uploaded file and queue its import once the transaction commits: as logs, or as
    entries of `dataset` when one is given. The job is kept even when the broker is down: the reaper
    sends it once the broker is back. Raises PendingImportsTooLarge, storing nothing, when the project's
    uploads not yet imported would pass LOGTUNE_MAX_PENDING_IMPORT_BYTES with this one."""
    size = file.size or 0
    with transaction.atomic():
        # One upload of a project at a time from the check to the stored row, so two at once cannot both pass the
        # limit. FOR NO KEY UPDATE: logs and rows referring to the project are still inserted meanwhile.
        Project.objects.select_for_update(no_key=True).only("pk").get(pk=project.pk)
        problem = import_pending_problem(project=project, size=size)
        if problem:
            raise PendingImportsTooLarge(problem)
        job = ImportJob(
            project=project,
            dataset=dataset,
            source_name=source_name[:255],
            created_by=created_by,
            bytes_total=size,
            enqueued_at=timezone.now(),
        )
        job.file.save(Path(source_name).name or "upload.jsonl", file, save=False)
        job.save()
        transaction.on_commit(lambda: _enqueue(job.pk))
    return job


def _enqueue(job_id: int) -> None:
    from curation.logs.imports.tasks import import_logs_run

    task_send_or_mark_unsent(
        import_logs_run, job_id, queued=ImportJob.objects.filter(pk=job_id, status=JobStatus.QUEUED),
        event="curation.import_enqueue_failed",
    )  # fmt: skip


def import_job_create_local(*, project: Project, path: Path, created_by: User | None = None) -> ImportJob:
    """A job that reads a file on this machine in place (CLI, `--inline`): nothing is copied. Members see the file's
    name, not where it lies on the server."""
    return ImportJob.objects.create(
        project=project, source_name=path.name[:255], created_by=created_by, bytes_total=path.stat().st_size
    )


def import_job_run(
    *,
    job_id: int,
    path: Path | None = None,
    on_progress: ProgressCallback | None = None,
    worker: str = "",
) -> ImportJob:
    """Run (or resume) an import. Idempotent: a job that is finished, or running under a live run, is left
    alone; a redelivered or re-queued one goes on after the last committed line. On failure the error is
    recorded on the job and re-raised; when the database goes away the job stays running, and the reaper
    re-queues it once its heartbeat is stale."""
    claimed = import_job_claim(job_id=job_id, worker=worker or socket.gethostname())
    job = ImportJob.objects.select_related("project", "dataset").get(pk=job_id)
    if not claimed:
        logger.info("curation.import_skipped job=%s status=%s worker=%s", job.pk, job.status, job.worker)
        return job
    logger.info("curation.import_started job=%s attempt=%s resume_after_line=%s", job.pk, job.attempts, job.lines_done)
    try:
        with _open(job, path) as (raw, stream):
            _import_lines(job, raw, stream, on_progress)
    except ImportLost:
        logger.warning("curation.import_lost job=%s attempt=%s: another run took the job over", job.pk, job.attempts)
        return job
    except Exception as exc:
        if database_gone(exc):
            # Nothing of the batch in flight is stored. The job stays running under this attempt; once its
            # heartbeat is stale the reaper re-queues it, to resume after the last committed batch.
            logger.exception("curation.import_interrupted job=%s: the database went away", job.pk)
            raise
        job.status, job.error = JobStatus.FAILED, _describe(exc)
        if _finish(job, "status", "error"):
            _upload_delete(job)  # its error report is rows: the file is not needed for it
        logger.exception("curation.import_failed job=%s", job.pk)
        raise
    job.bytes_done = job.bytes_total
    job.status, job.error = _outcome(job)
    if _finish(job, "status", "error", "bytes_done"):
        _upload_delete(job)
    if on_progress:
        on_progress(job)
    logger.info(
        "curation.import_finished job=%s status=%s accepted=%s duplicates=%s rejected=%s",
        job.pk, job.status, job.accepted, job.duplicates, job.rejected,
    )  # fmt: skip
    return job


def _outcome(job: ImportJob) -> tuple[JobStatus, str]:
    """A finished import that stored nothing failed, with the reason; one whose lines were all already there
    (a file imported again) succeeded."""
    if job.accepted or job.duplicates:
        return JobStatus.SUCCEEDED, ""
    if not job.rejected:
        return JobStatus.FAILED, "The file holds no lines."
    if job.rejected == 1:
        rejected, label = "its only line was rejected", "Reason"
    else:
        rejected = f"all {job.rejected} lines were rejected"
        label = "First reasons" if job.rejected > FIRST_REASONS else "Reasons"
    first = ImportLineError.objects.filter(job=job).order_by("line")[:FIRST_REASONS]
    reasons = "; ".join(f"line {row.line}: {_shorten(row.error)}" for row in first)
    stored = "No entry was stored" if job.dataset_id else "No log was stored"
    return JobStatus.FAILED, f"{stored}: {rejected}. {label}: {reasons}"


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"


def import_job_claim(*, job_id: int, worker: str) -> bool:
    """Take the job for one run (queueing.job_claim)."""
    return job_claim(
        ImportJob, job_id=job_id, worker=worker, heartbeat_timeout_s=settings.LOGTUNE_IMPORT_HEARTBEAT_TIMEOUT_S,
        max_attempts=settings.LOGTUNE_IMPORT_MAX_ATTEMPTS,
    )  # fmt: skip


def _beat(job: ImportJob) -> None:
    job.heartbeat_at = timezone.now()
    if not job_save_owned(job, "heartbeat_at"):
        raise ImportLost(job.pk)


def _finish(job: ImportJob, *names: str) -> bool:
    """Record the outcome while the job is still this run's; False when another run's outcome it is."""
    job.finished_at, job.heartbeat_at = timezone.now(), None
    if not job_save_owned(job, *names, "finished_at", "heartbeat_at"):
        logger.warning("curation.import_lost job=%s attempt=%s: its outcome is another run's", job.pk, job.attempts)
        return False
    return True


def _upload_delete(job: ImportJob) -> None:
    """Delete the stored upload of a finished import, then clear `file`. In that order: a failure in between leaves
    a name that the reaper deletes again (`_finished_uploads_delete`), never a file that no row names."""
    name = job.file.name if job.file else ""
    if not name:
        return
    try:
        job.file.storage.delete(name)
    except OSError as exc:
        logger.warning(
            "curation.import_upload_not_deleted job=%s file=%s: %s (the reaper tries again)", job.pk, name, exc
        )
        return
    ImportJob.objects.filter(pk=job.pk, file=name).exclude(status__in=UNFINISHED).update(file="")
    job.file = None
    logger.info("curation.import_upload_deleted job=%s file=%s", job.pk, name)


def _upload_gone(job: ImportJob) -> bool:
    """Whether the job names an upload that storage no longer holds (a volume that lost it): no run can read it."""
    return bool(job.file) and not job.file.storage.exists(job.file.name or "")


def _upload_gone_error(job: ImportJob) -> str:
    stored = f" Lines 1 to {job.lines_done} are stored." if job.lines_done else ""
    return f"The uploaded file is gone from storage ({job.source_name}): upload it again.{stored}"


def _finished_uploads_delete() -> int:
    """The uploads of finished imports still on disk: one whose run could not delete it, or finished before uploads
    were deleted on finishing."""
    finished = ImportJob.objects.exclude(status__in=UNFINISHED).exclude(file="").exclude(file__isnull=True)
    jobs = list(finished.only("pk", "file")[:UPLOADS_DELETED_PER_REAP])
    for job in jobs:
        _upload_delete(job)
    return len(jobs)


def import_jobs_reap() -> int:
    """Imports nobody is working on. A running one whose run stopped sending heartbeats is re-queued to resume
    after its last committed line, or failed with the reason once it has run LOGTUNE_IMPORT_MAX_ATTEMPTS times
    (or when `import_logs --inline` ran it: no worker can read that machine's file). A queued one whose task
    never reached the broker, or was sent LOGTUNE_IMPORT_RESEND_AFTER_S ago (a broker restarted without
    persistence forgets its queue), is sent again; one whose upload is gone from storage is failed instead, since no
    run could read it. The uploads of finished imports still on disk are deleted. Returns the jobs handled."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.LOGTUNE_IMPORT_HEARTBEAT_TIMEOUT_S)
    dead = ImportJob.objects.filter(
        Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, started_at__lt=stale), status=JobStatus.RUNNING
    )
    handled = sum(_reap(job, now) for job in dead)
    resend = now - timedelta(seconds=settings.LOGTUNE_IMPORT_RESEND_AFTER_S)
    unsent = (
        ImportJob.objects.filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=resend), status=JobStatus.QUEUED)
        .exclude(Q(file="") | Q(file__isnull=True))
        .only("pk", "file", "source_name", "lines_done")
    )
    for job in unsent:
        queued = ImportJob.objects.filter(pk=job.pk, status=JobStatus.QUEUED)
        if _upload_gone(job):
            failed = {"error": _upload_gone_error(job), "finished_at": now, "file": ""}
            if queued.update(status=JobStatus.FAILED, **failed):
                logger.warning("curation.import_upload_gone job=%s file=%s", job.pk, job.file.name)
                handled += 1
        elif queued.update(enqueued_at=now):
            logger.info("curation.import_resent job=%s", job.pk)
            _enqueue(job.pk)
            handled += 1
    deleted = _finished_uploads_delete()
    if deleted:
        logger.info("curation.import_uploads_deleted count=%s", deleted)
    return handled


def _reap(job: ImportJob, now: datetime) -> int:
    seen = job.heartbeat_at or job.started_at
    what = (
        f"its worker {job.worker or '(unknown)'} stopped sending heartbeats at "
        f"{seen.strftime('%Y-%m-%d %H:%M:%S UTC') if seen else 'an unknown time'}, after line {job.lines_done}"
    )
    limit = settings.LOGTUNE_IMPORT_MAX_ATTEMPTS
    changes: dict[str, object] = {"status": JobStatus.FAILED, "finished_at": now, "heartbeat_at": None}
    if not job.file:
        changes["error"] = (
            f"The import stopped: {what}. It read a file of the machine that ran `import_logs --inline`, which "
            f"no worker can resume: lines 1 to {job.lines_done} are stored; run the command again for the rest."
        )
    elif _upload_gone(job):
        changes["error"] = f"The import stopped: {what}. {_upload_gone_error(job)}"
    elif job.attempts >= limit:
        changes["error"] = (
            f"The import stopped: {what}, and it had run {job.attempts} time(s) of at most {limit} "
            f"(LOGTUNE_IMPORT_MAX_ATTEMPTS). Lines 1 to {job.lines_done} are stored."
        )
    else:
        changes = {"status": JobStatus.QUEUED, "worker": "", "heartbeat_at": None, "enqueued_at": now}
    # Only if nothing moved since it was read: a run that just committed a batch keeps its job.
    rows = ImportJob.objects.filter(
        pk=job.pk, status=JobStatus.RUNNING, attempts=job.attempts, heartbeat_at=job.heartbeat_at
    )
    with transaction.atomic():
        if not rows.update(**changes):
            return 0
        if changes["status"] == JobStatus.QUEUED:
            transaction.on_commit(lambda: _enqueue(job.pk))
    logger.warning("curation.import_reaped job=%s now=%s: %s", job.pk, changes["status"], what)
    if changes["status"] == JobStatus.FAILED:
        _upload_delete(job)
    return 1


def _describe(exc: Exception) -> str:
    """The error of a failed import, the files it names relative to the data folder (members read it)."""
    if isinstance(exc, FileNotFoundError):
        return paths_hidden(f"The file to import is missing: {exc.filename}")
    if isinstance(exc, gzip.BadGzipFile | EOFError):
        return paths_hidden(f"The file is not a valid gzip file: {exc}")
    if isinstance(exc, ExpandedTooLarge):
        return str(exc)
    return error_text(exc)


class ExpandedTooLarge(Exception):
    """A compressed file decompresses to more than LOGTUNE_MAX_IMPORT_EXPANDED_BYTES."""


class _Bounded(io.RawIOBase):
    """A decompressed stream that gives at most `limit` bytes and then raises: a gzip bomb stops
    after `limit` bytes of reading, not once the disk, the database or the worker's time runs out."""

    def __init__(self, inner: io.BufferedIOBase, limit: int) -> None:
        self.inner, self.limit, self.left = inner, limit, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self.inner.readinto(memoryview(buffer)[: self.left + 1])
        self.left -= count
        if self.left < 0:
            raise ExpandedTooLarge(
                f"The file decompresses to more than {self.limit} bytes (LOGTUNE_MAX_IMPORT_EXPANDED_BYTES)"
            )
        return count


@contextmanager
def _open(job: ImportJob, path: Path | None) -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """(raw file, line stream): the stream is decompressed when the file starts with the gzip magic,
    up to LOGTUNE_MAX_IMPORT_EXPANDED_BYTES; the raw file's position measures progress in bytes of
    the file as stored."""
    raw = cast(BinaryIO, open(path, "rb") if path is not None else job.file.open("rb"))  # noqa: SIM115
    try:
        compressed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        if compressed:
            decompressed = _Bounded(gzip.GzipFile(fileobj=raw, mode="rb"), settings.LOGTUNE_MAX_IMPORT_EXPANDED_BYTES)
            yield raw, cast(BinaryIO, io.BufferedReader(decompressed, buffer_size=1 << 20))
        else:
            yield raw, raw
    finally:
        raw.close()


def _numbered_lines(stream: BinaryIO, limit: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) for each line; None for a line longer than `limit`, which is skipped whole."""
    number = 0
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        number += 1
        if len(line) > limit:
            while line and not line.endswith(b"\n"):
                line = stream.readline(1 << 20)
            yield number, None
        else:
            yield number, line


@dataclass(slots=True)
class _Batch:
    items: list[RawItem] = field(default_factory=list)
    item_lines: list[int] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
    last_line: int = 0
    size: int = 0  # bytes of the line text held: what the batch costs in memory, several times over once parsed

    def __len__(self) -> int:
        return len(self.items) + len(self.errors)


def _read_line(batch: _Batch, number: int, line: bytes, *, keep_unreadable: bool) -> None:
    """A line as an item with its exact text (the original stored). Invalid UTF-8 is that line's affair (U+FFFD and
    a note); a line that is not JSON is an error, or with `keep_unreadable` an unreadable log holding the line."""
    text = decode_text(line).rstrip("\r\n")
    try:
        batch.items.append(line_read(text))
    except BodyError as exc:
        if not keep_unreadable:
            batch.errors.append((number, f"invalid JSON: {exc}"))
            return
        batch.items.append(RawItem(value=None, text=text, error=f"invalid JSON: {exc}"))
    batch.item_lines.append(number)


def _import_lines(job: ImportJob, raw: BinaryIO, stream: BinaryIO, on_progress: ProgressCallback | None) -> None:
    limit = settings.LOGTUNE_MAX_BODY_BYTES
    keep_unreadable = job.dataset_id is None and job.project.keep_unreadable
    max_bytes = settings.LOGTUNE_IMPORT_BATCH_BYTES
    batch, batch_end = _Batch(), 0
    try:
        for number, line in _numbered_lines(stream, limit):
            if number <= job.lines_done:
                if number % SKIP_BEAT_LINES == 0:
                    _beat(job)
                continue  # committed by an earlier run of this job
            size = len(line) if line is not None and line.strip() else 0
            if batch.last_line and batch.size + size > max_bytes:
                # A batch holds at most LOGTUNE_IMPORT_BATCH_BYTES of line text (or one line that alone is more):
                # a file of large lines must not hold a thousand of them at once.
                _commit_and_report(job, batch, batch_end, on_progress)
                batch = _Batch()
            batch.last_line, batch.size = number, batch.size + size
            if line is None:
                batch.errors.append((number, f"line is longer than {limit} bytes"))
            elif size:
                _read_line(batch, number, line, keep_unreadable=keep_unreadable)
            batch_end = raw.tell()
            if len(batch) >= settings.LOGTUNE_IMPORT_BATCH:
                _commit_and_report(job, batch, batch_end, on_progress)
                batch = _Batch()
    except ExpandedTooLarge as exc:
        # The whole lines read before the limit are stored, as they would be from a file cut there.
        if batch.last_line:
            _commit_batch(job, batch, raw.tell())
        raise ExpandedTooLarge(
            f"{exc}: the import stopped after line {job.lines_done}, the lines before it are kept."
        ) from None
    if batch.last_line:
        _commit_batch(job, batch, raw.tell())


def _commit_and_report(job: ImportJob, batch: _Batch, bytes_done: int, on_progress: ProgressCallback | None) -> None:
    _commit_batch(job, batch, bytes_done)
    if on_progress:
        on_progress(job)


def _commit_batch(job: ImportJob, batch: _Batch, bytes_done: int) -> None:
    """Store a batch together with the job's progress and heartbeat, in one transaction and only while the
    job is still this run's, so a resumed run neither skips nor repeats a line, and a batch is all or nothing."""
    with transaction.atomic():
        if job.dataset_id is None:
            result = logs_ingest(project=job.project, items=batch.items)
        else:
            values = [item.value for item in batch.items]
            result = dataset_entries_ingest(dataset=job.dataset, items=values)  # type: ignore[arg-type]
        errors = batch.errors + [(batch.item_lines[r.index], r.error) for r in result.rejected]
        room = MAX_LINE_ERRORS_KEPT - job.rejected
        if errors and room > 0:
            ImportLineError.objects.bulk_create(
                [ImportLineError(job=job, line=line, error=error) for line, error in sorted(errors)[:room]]
            )
        job.lines_done = batch.last_line
        job.bytes_done = bytes_done
        job.accepted += result.accepted
        job.duplicates += result.duplicates
        job.rejected += len(errors)
        job.heartbeat_at = timezone.now()
        if not job_save_owned(job, "lines_done", "bytes_done", "accepted", "duplicates", "rejected", "heartbeat_at"):
            raise ImportLost(job.pk)  # and the batch is rolled back: the run that owns the job stores these lines
    reset_queries()  # with DEBUG on, Django would otherwise keep every query of a million-line import
