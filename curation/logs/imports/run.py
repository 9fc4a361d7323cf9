"""Running an import: claim the job, read its file batch by batch, commit each batch with the job's progress and
heartbeat while the run still owns the job, then record the outcome and delete the upload (services.py says how
the pieces fit together)."""

import gzip
import logging
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import reset_queries, transaction
from django.utils import timezone

from curation.common.interpreter import threads_overlapped
from curation.common.queueing import database_gone, job_claim, job_save_owned
from curation.common.server_paths import error_text, paths_hidden
from curation.datasets.services import dataset_entries_ingest
from curation.logs.imports.files import ExpandedTooLarge, import_file_open, numbered_lines
from curation.logs.ingest import BodyError, RawItem, line_read
from curation.logs.ingest.raw import decode_text
from curation.logs.services import PreparedLogs, logs_prepare, logs_store
from curation.models import ImportJob, ImportLineError, JobStatus

logger = logging.getLogger(__name__)

# A file full of bad lines must not fill the database: the report keeps this many, the counters count all.
MAX_LINE_ERRORS_KEPT = 100_000
# Resuming re-reads the committed lines without storing them; a heartbeat this often keeps the reaper away.
SKIP_BEAT_LINES = 100_000
# An import that stored nothing fails with this many of its line errors, each cut to this length.
FIRST_REASONS = 3
REASON_CHARS = 120
ProgressCallback = Callable[[ImportJob], None]
UNFINISHED = (JobStatus.QUEUED, JobStatus.RUNNING)


class ImportLost(Exception):
    """This run no longer owns the job (the reaper re-queued it and another run took it over)."""


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
        with import_file_open(job, path) as (raw, stream), threads_overlapped():
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
            import_upload_delete(job=job)  # its error report is rows: the file is not needed for it
        logger.exception("curation.import_failed job=%s", job.pk)
        raise
    job.bytes_done = job.bytes_total
    job.status, job.error = _outcome(job)
    if _finish(job, "status", "error", "bytes_done"):
        import_upload_delete(job=job)
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


def import_upload_delete(*, job: ImportJob) -> None:
    """Delete the stored upload of a finished import, then clear `file`. In that order: a failure in between leaves
    a name that the reaper deletes again (services.py, `_finished_uploads_delete`), never a file that no row names."""
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


def _describe(exc: Exception) -> str:
    """The error of a failed import, the files it names relative to the data folder (members read it)."""
    if isinstance(exc, FileNotFoundError):
        return paths_hidden(f"The file to import is missing: {exc.filename}")
    if isinstance(exc, gzip.BadGzipFile | EOFError):
        return paths_hidden(f"The file is not a valid gzip file: {exc}")
    if isinstance(exc, ExpandedTooLarge):
        return str(exc)
    return error_text(exc)


@dataclass(slots=True)
class _Batch:
    """Lines as read from the file (`_batches`), then as items and errors (`_batch_read`), then stored."""

    lines: list[tuple[int, bytes]] = field(default_factory=list)  # (number, line) of each non-empty line
    errors: list[tuple[int, str]] = field(default_factory=list)
    last_line: int = 0
    bytes_done: int = 0  # the position in the file as stored once this batch is committed
    size: int = 0  # bytes of the line text held: what the batch costs in memory, several times over once parsed
    item_lines: list[int] = field(default_factory=list)
    values: list[object] = field(default_factory=list)  # a dataset's import: the lines' JSON values
    logs: PreparedLogs | None = None  # a log import: the lines read and scanned

    def __len__(self) -> int:
        return len(self.lines) + len(self.errors)


def _read_line(batch: _Batch, number: int, line: bytes, *, keep_unreadable: bool) -> RawItem | None:
    """A line as an item with its exact text (the original stored). Invalid UTF-8 is that line's affair (U+FFFD and
    a note); a line that is not JSON is an error, or with `keep_unreadable` an unreadable log holding the line."""
    text = decode_text(line).rstrip("\r\n")
    try:
        item = line_read(text)
    except BodyError as exc:
        if not keep_unreadable:
            batch.errors.append((number, f"invalid JSON: {exc}"))
            return None
        item = RawItem(value=None, text=text, error=f"invalid JSON: {exc}")
    batch.item_lines.append(number)
    return item


def _batch_read(job: ImportJob, batch: _Batch) -> _Batch:
    """Read a batch's lines into items, and a log import's items into logs scanned for personal data: all of an
    import's work that needs no database, run in the reading thread (`_import_lines`)."""
    keep_unreadable = job.dataset_id is None and job.project.keep_unreadable
    items = [_read_line(batch, number, line, keep_unreadable=keep_unreadable) for number, line in batch.lines]
    read = [item for item in items if item is not None]
    batch.lines = []  # the items hold the text now
    if job.dataset_id is None:
        batch.logs = logs_prepare(project=job.project, items=read, format=job.format or None)
    else:
        batch.values = [item.value for item in read]
    return batch


def _batches(job: ImportJob, raw: BinaryIO, stream: BinaryIO) -> Iterator[_Batch]:
    """The file's lines after the last committed one, in batches of LOGTUNE_IMPORT_BATCH lines or
    LOGTUNE_IMPORT_BATCH_BYTES of line text. When the file decompresses to too much, the batch of the whole lines
    read before the limit comes first, then ExpandedTooLarge."""
    limit = settings.LOGTUNE_MAX_BODY_BYTES
    max_bytes = settings.LOGTUNE_IMPORT_BATCH_BYTES
    batch = _Batch()
    try:
        for number, line in numbered_lines(stream, limit):
            if number <= job.lines_done:
                if number % SKIP_BEAT_LINES == 0:
                    _beat(job)
                continue  # committed by an earlier run of this job
            size = len(line) if line is not None and line.strip() else 0
            if batch.last_line and batch.size + size > max_bytes:
                # A batch holds at most LOGTUNE_IMPORT_BATCH_BYTES of line text (or one line that alone is more):
                # a file of large lines must not hold a thousand of them at once.
                yield batch
                batch = _Batch()
            batch.last_line, batch.size = number, batch.size + size
            if line is None:
                batch.errors.append((number, f"line is longer than {limit} bytes"))
            elif size:
                batch.lines.append((number, line))
            batch.bytes_done = raw.tell()
            if len(batch) >= settings.LOGTUNE_IMPORT_BATCH:
                yield batch
                batch = _Batch()
    except ExpandedTooLarge:
        # The whole lines read before the limit are stored, as they would be from a file cut there.
        if batch.last_line:
            batch.bytes_done = raw.tell()
            yield batch
        raise
    if batch.last_line:
        batch.bytes_done = raw.tell()
        yield batch


def _import_lines(job: ImportJob, raw: BinaryIO, stream: BinaryIO, on_progress: ProgressCallback | None) -> None:
    """Store the file batch by batch, in order. With LOGTUNE_IMPORT_READ_AHEAD a thread reads the next batch (JSON,
    readers, personal data) while this one waits for the database to store the one before: on two cores that
    overlaps Python's work with PostgreSQL's. The thread touches no database; commits stay in this thread and in
    file order, so the committed lines remain a prefix of the file that a resumed run goes on after. A batch is read
    in the thread only while it and the one before hold LOGTUNE_IMPORT_BATCH_BYTES of line text together: a file of
    large lines is read and stored here, one batch after the other, in the memory of one batch, as without it."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-read") as pool:
        read_ahead = pool if settings.LOGTUNE_IMPORT_READ_AHEAD else None
        pending: Future[_Batch] | None = None
        pending_size = 0
        try:
            for batch in _batches(job, raw, stream):
                together = pending_size + batch.size <= settings.LOGTUNE_IMPORT_BATCH_BYTES
                if pending is not None and not together:
                    _commit_and_report(job, pending.result(), on_progress)
                    pending = None
                future = _submit(read_ahead if together else None, job, batch)
                if pending is not None:
                    _commit_and_report(job, pending.result(), on_progress)
                pending, pending_size = future, batch.size
        except ExpandedTooLarge as exc:
            if pending is not None:
                _commit_batch(job, pending.result())
            raise ExpandedTooLarge(
                f"{exc}: the import stopped after line {job.lines_done}, the lines before it are kept."
            ) from None
        if pending is not None:
            _commit_batch(job, pending.result())


def _submit(pool: ThreadPoolExecutor | None, job: ImportJob, batch: _Batch) -> "Future[_Batch]":
    """The batch read in the pool's thread, or here and now without one."""
    if pool is not None:
        return pool.submit(_batch_read, job, batch)
    future: Future[_Batch] = Future()
    try:
        future.set_result(_batch_read(job, batch))
    except Exception as exc:
        future.set_exception(exc)
    return future


def _commit_and_report(job: ImportJob, batch: _Batch, on_progress: ProgressCallback | None) -> None:
    _commit_batch(job, batch)
    if on_progress:
        on_progress(job)


def _commit_batch(job: ImportJob, batch: _Batch) -> None:
    """Store a batch together with the job's progress and heartbeat, in one transaction and only while the
    job is still this run's, so a resumed run neither skips nor repeats a line, and a batch is all or nothing."""
    with transaction.atomic():
        if batch.logs is not None:
            result = logs_store(project=job.project, batch=batch.logs)
        else:
            result = dataset_entries_ingest(dataset=job.dataset, items=batch.values)  # type: ignore[arg-type]
        errors = batch.errors + [(batch.item_lines[r.index], r.error) for r in result.rejected]
        room = MAX_LINE_ERRORS_KEPT - job.rejected
        if errors and room > 0:
            ImportLineError.objects.bulk_create(
                [ImportLineError(job=job, line=line, error=error) for line, error in sorted(errors)[:room]]
            )
        job.lines_done = batch.last_line
        job.bytes_done = batch.bytes_done
        job.accepted += result.accepted
        job.duplicates += result.duplicates
        job.rejected += len(errors)
        job.heartbeat_at = timezone.now()
        if not job_save_owned(job, "lines_done", "bytes_done", "accepted", "duplicates", "rejected", "heartbeat_at"):
            raise ImportLost(job.pk)  # and the batch is rolled back: the run that owns the job stores these lines
    reset_queries()  # with DEBUG on, Django would otherwise keep every query of a million-line import
