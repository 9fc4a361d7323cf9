"""Importing JSONL / JSONL.gz files of logs, at flat memory, with progress and a per-line error report.

A job runs at most once at a time: a run claims it with one conditional UPDATE (`attempts` + 1) and commits
each batch only while the row still carries its attempt, in the same transaction as the batch, so two
deliveries of the task never both store a line. Each committed batch is a heartbeat; the reaper re-queues a
running job whose heartbeats stopped (its worker died) to resume after its last committed line, and sends
queued jobs whose task never reached the broker.

An upload is stored until its import has finished, then deleted: a finished job is never resumed, and with
redaction at ingestion the file still holds the personal data its logs had redacted. While they wait, a project's
uploads may hold at most LOGTUNE_MAX_PENDING_IMPORT_BYTES.

Here: creating and queueing a job, the upload limit, and the reaper (both send the task). run.py runs a job batch
by batch; files.py reads its file.
"""

import logging
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files import File
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from curation.common.queueing import task_send_or_mark_unsent
from curation.logs.imports.run import UNFINISHED, import_upload_delete
from curation.logs.imports.selectors import import_pending_bytes
from curation.models import Dataset, ImportJob, JobStatus, Project

logger = logging.getLogger(__name__)

# Uploads of finished imports the reaper deletes per run (those its run could not delete, or older ones).
UPLOADS_DELETED_PER_REAP = 500


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
    format: str = "",
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
            format=format,
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


def import_job_create_local(
    *, project: Project, path: Path, created_by: User | None = None, format: str = ""
) -> ImportJob:
    """A job that reads a file on this machine in place (CLI, `--inline`): nothing is copied. Members see the file's
    name, not where it lies on the server."""
    return ImportJob.objects.create(
        project=project,
        source_name=path.name[:255],
        created_by=created_by,
        bytes_total=path.stat().st_size,
        format=format,
    )


# --- The reaper ---------------------------------------------------------------------------------------


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
        import_upload_delete(job=job)
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
        import_upload_delete(job=job)
    return 1
