"""Importing JSONL / JSONL.gz files of logs, at flat memory, with progress and a per-line error report."""

import gzip
import io
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

import orjson
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files import File
from django.db import reset_queries, transaction
from django.utils import timezone

from curation.models import Dataset, ImportJob, ImportLineError, JobStatus, Project
from curation.services.datasets import dataset_entries_ingest
from curation.services.logs import logs_ingest

logger = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
# A file full of bad lines must not fill the database: the report keeps this many, the counters count all.
MAX_LINE_ERRORS_KEPT = 100_000
ProgressCallback = Callable[[ImportJob], None]


def import_job_create(
    *,
    project: Project,
    file: File,
    source_name: str,
    created_by: User | None = None,
    dataset: Dataset | None = None,
) -> ImportJob:
    """Store the uploaded file and queue its import once the transaction commits: as logs, or as
    entries of `dataset` when one is given."""
    from curation.tasks import import_logs_run

    job = ImportJob(
        project=project,
        dataset=dataset,
        source_name=source_name[:255],
        created_by=created_by,
        bytes_total=file.size or 0,
    )
    job.file.save(Path(source_name).name or "upload.jsonl", file, save=False)
    job.save()
    transaction.on_commit(lambda: import_logs_run.delay(job.pk))
    return job


def import_job_create_local(*, project: Project, path: Path, created_by: User | None = None) -> ImportJob:
    """A job that reads a file on this machine in place (CLI, `--inline`): nothing is copied."""
    return ImportJob.objects.create(
        project=project, source_name=str(path)[:255], created_by=created_by, bytes_total=path.stat().st_size
    )


def import_job_run(*, job_id: int, path: Path | None = None, on_progress: ProgressCallback | None = None) -> ImportJob:
    """Run (or resume) an import. Idempotent: a finished job is left alone, a redelivered one goes on
    after the last committed line. On failure the error is recorded on the job and re-raised."""
    job = ImportJob.objects.select_related("project", "dataset").get(pk=job_id)
    if job.is_finished:
        return job
    job.status = JobStatus.RUNNING
    job.started_at = job.started_at or timezone.now()
    job.save(update_fields=["status", "started_at"])
    logger.info("curation.import_started job=%s resume_after_line=%s", job.pk, job.lines_done)
    try:
        with _open(job, path) as (raw, stream):
            _import_lines(job, raw, stream, on_progress)
    except Exception as exc:
        job.status = JobStatus.FAILED
        job.error = _describe(exc)
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "error", "finished_at"])
        logger.exception("curation.import_failed job=%s", job.pk)
        raise
    job.status = JobStatus.SUCCEEDED
    job.bytes_done = job.bytes_total
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "bytes_done", "finished_at"])
    if on_progress:
        on_progress(job)
    logger.info("curation.import_finished job=%s accepted=%s rejected=%s", job.pk, job.accepted, job.rejected)
    return job


def _describe(exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"The file to import is missing: {exc.filename}"
    if isinstance(exc, gzip.BadGzipFile | EOFError):
        return f"The file is not a valid gzip file: {exc}"
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def _open(job: ImportJob, path: Path | None) -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """(raw file, line stream): the stream is decompressed when the file starts with the gzip magic;
    the raw file's position measures progress in bytes of the file as stored."""
    raw = cast(BinaryIO, open(path, "rb") if path is not None else job.file.open("rb"))  # noqa: SIM115
    try:
        compressed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        if compressed:
            yield raw, io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), buffer_size=1 << 20)
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
    items: list[object] = field(default_factory=list)
    item_lines: list[int] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
    last_line: int = 0

    def __len__(self) -> int:
        return len(self.items) + len(self.errors)


def _import_lines(job: ImportJob, raw: BinaryIO, stream: BinaryIO, on_progress: ProgressCallback | None) -> None:
    limit = settings.LOGTUNE_MAX_BODY_BYTES
    batch = _Batch()
    for number, line in _numbered_lines(stream, limit):
        if number <= job.lines_done:
            continue  # committed by an earlier run of this job
        batch.last_line = number
        if line is None:
            batch.errors.append((number, f"line is longer than {limit} bytes"))
        elif line.strip():
            try:
                batch.items.append(orjson.loads(line))
                batch.item_lines.append(number)
            except orjson.JSONDecodeError as exc:
                batch.errors.append((number, f"invalid JSON: {exc}"))
        if len(batch) >= settings.LOGTUNE_IMPORT_BATCH:
            _commit_batch(job, batch, raw.tell())
            batch = _Batch()
            if on_progress:
                on_progress(job)
    if batch.last_line:
        _commit_batch(job, batch, raw.tell())


def _commit_batch(job: ImportJob, batch: _Batch, bytes_done: int) -> None:
    """Store a batch together with the job's progress, in one transaction, so a resumed run
    neither skips nor repeats a line."""
    with transaction.atomic():
        if job.dataset_id is None:
            result = logs_ingest(project=job.project, items=batch.items)
        else:
            result = dataset_entries_ingest(dataset=job.dataset, items=batch.items)  # type: ignore[arg-type]
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
        job.save(update_fields=["lines_done", "bytes_done", "accepted", "duplicates", "rejected"])
    reset_queries()  # with DEBUG on, Django would otherwise keep every query of a million-line import
