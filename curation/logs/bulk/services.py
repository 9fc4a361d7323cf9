"""Bulk actions on logs: on a selection (ids) at once, or on every log matching a filter as a
BulkJob that a worker runs in chunks, with progress, resumable after a crash.

The filter is the shared one (`curation.logs.filters.logs_filter`), stored on the job as a query string,
so the job acts on exactly what the page showed. Chunks are walked by descending id, so logs that
leave the filter as the job changes them (tag_none=x while adding x) are neither skipped nor
visited twice.

A job runs as imports do: a run claims it with one conditional UPDATE (`attempts` + 1) and commits each chunk, with
the job's progress and heartbeat, only while the row still carries its attempt, so two deliveries of the task never
both change a chunk. The reaper re-queues a running job whose heartbeats stopped (its worker died) to resume below its
last committed id, fails it once it has run LOGTUNE_BULK_MAX_ATTEMPTS times, and sends queued jobs whose task never
reached the broker. The audit event is written once, with the outcome, naming the user or key that asked.
"""

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce
from django.http import QueryDict
from django.utils import timezone

from curation.audit.services import audit_record
from curation.common.queueing import database_gone, job_claim, job_save_owned, task_send_or_mark_unsent
from curation.common.server_paths import error_text
from curation.datasets.services import dataset_add_logs, dataset_create
from curation.logs.bulk.selectors import bulk_logs
from curation.logs.filters import logs_filter
from curation.logs.selectors import logs_in_datasets_count
from curation.logs.services import logs_delete
from curation.models import ApiKey, BulkAction, BulkJob, Dataset, JobStatus, LogEntry, Project
from curation.tags.services import tag_names_clean, tags_add, tags_remove

logger = logging.getLogger(__name__)

# Below this many matching logs the action runs in the request; above it, as a job with progress.
INLINE_LIMIT = 5_000


class BulkJobLost(Exception):
    """This run no longer owns the job (the reaper re-queued it and another run took it over)."""


def bulk_params_check(*, project: Project, action: str, params: dict) -> None:
    """Raise the ValidationError an action with these parameters would raise (a dry run's check)."""
    _clean_params(project=project, action=action, params=params)


def _clean_params(*, project: Project, action: str, params: dict) -> dict:
    if action in (BulkAction.TAG_ADD, BulkAction.TAG_REMOVE):
        return {"tags": tag_names_clean(params.get("tags") or [])}
    if action == BulkAction.DATASET_ADD:
        dataset_id = params.get("dataset")
        if not isinstance(dataset_id, int | str) or not str(dataset_id).isdigit():
            raise ValidationError({"dataset": "Choose a dataset of this project."})
        if not Dataset.objects.filter(project=project, pk=int(dataset_id)).exists():
            raise ValidationError({"dataset": "Choose a dataset of this project."})
        return {"dataset": int(dataset_id)}
    if action == BulkAction.DELETE:
        return {}
    raise ValidationError({"action": f"Unknown action '{action}'."})


def _apply(
    *,
    project: Project,
    action: str,
    params: dict,
    logs: QuerySet[LogEntry],
    actor: User | None = None,
    api_key: ApiKey | None = None,
) -> int:
    """Apply one action to `logs` for `actor` or `api_key`; returns how many rows changed."""
    if action == BulkAction.TAG_ADD:
        return tags_add(project=project, logs=logs, names=params["tags"])
    if action == BulkAction.TAG_REMOVE:
        return tags_remove(project=project, logs=logs, names=params["tags"])
    if action == BulkAction.DATASET_ADD:
        return dataset_add_logs(dataset=Dataset.objects.get(pk=params["dataset"]), logs=logs)
    return logs_delete(logs=logs, actor=actor, api_key=api_key)


def bulk_apply_to_ids(
    *,
    project: Project,
    action: str,
    params: dict,
    ids: list[int],
    actor: User | None = None,
    api_key: ApiKey | None = None,
    query: str = "",
) -> int:
    """Act on a selection of logs right away. Ids outside the project are ignored. `query` is the
    filter that chose the ids, when one did, for the audit log."""
    params = _clean_params(project=project, action=action, params=params)
    if not ids:
        # Nothing to change; and `id__in=[]` compiles to no SQL, which the raw statements of the actions embed.
        return 0
    logs = LogEntry.objects.filter(project=project, id__in=ids)
    with transaction.atomic():
        changed = _apply(project=project, action=action, params=params, logs=logs, actor=actor, api_key=api_key)
        audit_record(
            project=project,
            action=f"logs.{action}",
            count=changed,
            actor=actor,
            api_key=api_key,
            query=query,
            detail={"ids": len(ids)},
        )
    return changed


@dataclass(frozen=True, slots=True)
class BulkOutcome:
    matched: int  # the logs acted on, counted in the request
    changed: int | None  # rows changed in the request; None when a job works on them
    job: BulkJob | None
    in_datasets: int  # a deletion: how many of the logs were in datasets (their entries keep their copies)
    dataset: Dataset | None  # the dataset made for the action (`new_dataset`)


class BulkCountChanged(Exception):
    """The logs an action is for are no longer as many as the caller confirmed: nothing was changed."""

    def __init__(self, matched: int) -> None:
        super().__init__(f"{matched:,} logs match now.")
        self.matched = matched


def bulk_action_run(
    *,
    project: Project,
    action: str,
    params: dict,
    ids: list[int] | None = None,
    query: str = "",
    expected: int | None = None,
    new_dataset: str = "",
    actor: User | None = None,
    api_key: ApiKey | None = None,
) -> BulkOutcome:
    """Run a bulk action on a selection (`ids`) or on every log matching the filter `query`, for `actor` or
    `api_key`: the one workflow behind the explorer's bulk bar and `POST /api/v1/logs/bulk`.

    A selection, and up to INLINE_LIMIT matching logs, change in the request, on exactly the ids counted; more
    run as a BulkJob with progress. With `expected` (the count the caller confirmed), a different count now
    changes nothing and raises BulkCountChanged. `new_dataset` names a dataset to create, in the same
    transaction, for the logs to be added to."""
    logs = bulk_logs(project=project, ids=ids, query=query)
    counted = None if ids is not None else logs.count()  # a filter's matches are counted once
    inline = counted is None or counted <= INLINE_LIMIT
    now_ids = list(logs.values_list("id", flat=True)) if inline else []
    matched = len(now_ids) if inline else counted or 0
    if expected is not None and matched != expected:
        raise BulkCountChanged(matched)
    in_datasets = logs_in_datasets_count(logs=logs) if action == BulkAction.DELETE and matched else 0
    job, changed, dataset = None, None, None
    with transaction.atomic():
        if new_dataset:
            dataset = dataset_create(project=project, name=new_dataset, created_by=actor)
            params = {**params, "dataset": dataset.pk}
        if inline:
            changed = bulk_apply_to_ids(
                project=project, action=action, params=params, ids=now_ids, actor=actor, api_key=api_key,
                query="" if ids is not None else query,
            )  # fmt: skip
        else:
            job = bulk_job_create(
                project=project, action=action, params=params, query=query, actor=actor, api_key=api_key
            )
    return BulkOutcome(matched=matched, changed=changed, job=job, in_datasets=in_datasets, dataset=dataset)


def bulk_job_create(
    *,
    project: Project,
    action: str,
    params: dict,
    query: str,
    actor: User | None = None,
    api_key: ApiKey | None = None,
) -> BulkJob:
    """Queue an action on every log matching `query` (a filter query string). The count the job
    reports as total is taken now, the same count the page showed before the user confirmed. The job
    acts for `actor` or `api_key`: its audit event and the entries of the logs it deletes name them.
    The job is kept even when the broker is down: the reaper sends it once the broker is back."""
    params = _clean_params(project=project, action=action, params=params)
    total = logs_filter(project=project, params=QueryDict(query)).count()
    job = BulkJob.objects.create(
        project=project, created_by=actor, api_key=api_key, action=action, params=params, query=query, total=total,
        enqueued_at=timezone.now(),
    )  # fmt: skip
    transaction.on_commit(lambda: _enqueue(job.pk))
    return job


def _enqueue(job_id: int) -> None:
    from curation.logs.bulk.tasks import bulk_job_run_task

    task_send_or_mark_unsent(
        bulk_job_run_task, job_id, queued=BulkJob.objects.filter(pk=job_id, status=JobStatus.QUEUED),
        event="curation.bulk_enqueue_failed",
    )  # fmt: skip


def bulk_job_run(*, job_id: int, on_progress: Callable[[BulkJob], None] | None = None, worker: str = "") -> BulkJob:
    """Run (or resume) a bulk job. Idempotent: a job that is finished, or running under a live run, is left alone;
    a redelivered or re-queued one goes on below the last committed id. On failure the error is recorded on the job
    and re-raised; when the database goes away the job stays running, and the reaper re-queues it once its
    heartbeat is stale."""
    claimed = bulk_job_claim(job_id=job_id, worker=worker or socket.gethostname())
    job = BulkJob.objects.select_related("project", "created_by", "api_key").get(pk=job_id)
    if not claimed:
        logger.info("curation.bulk_skipped job=%s status=%s worker=%s", job.pk, job.status, job.worker)
        return job
    logger.info("curation.bulk_started job=%s attempt=%s resume_below_id=%s", job.pk, job.attempts, job.last_id)
    try:
        _run_chunks(job, on_progress)
    except BulkJobLost:
        logger.warning("curation.bulk_lost job=%s attempt=%s: another run took the job over", job.pk, job.attempts)
        return job
    except Exception as exc:
        if database_gone(exc):
            # Nothing of the chunk in flight is changed. The job stays running under this attempt; once its heartbeat
            # is stale the reaper re-queues it, to resume below the last committed chunk.
            logger.exception("curation.bulk_interrupted job=%s: the database went away", job.pk)
            raise
        job.status, job.error = JobStatus.FAILED, error_text(exc)
        job.changed, job.done = BulkJob.objects.values_list("changed", "done").get(pk=job.pk)  # what was committed
        _finish(job, "status", "error")
        logger.exception("curation.bulk_failed job=%s", job.pk)
        raise
    job.status, job.total = JobStatus.SUCCEEDED, max(job.total, job.done)
    _finish(job, "status", "total")
    return job


def _run_chunks(job: BulkJob, on_progress: Callable[[BulkJob], None] | None) -> None:
    """Change the matching logs a chunk at a time, each chunk committed with the job's progress and heartbeat, in one
    transaction and only while the job is still this run's: a resumed run neither skips nor repeats a log."""
    matching = logs_filter(project=job.project, params=QueryDict(job.query))
    while True:
        chunk_query = matching.filter(id__lt=job.last_id) if job.last_id else matching
        ids = list(chunk_query.order_by("-id").values_list("id", flat=True)[: settings.LOGTUNE_BULK_CHUNK])
        if not ids:
            return
        with transaction.atomic():
            logs = LogEntry.objects.filter(project=job.project, id__in=ids)
            job.changed += _apply(project=job.project, action=job.action, params=job.params, logs=logs,
                                  actor=job.created_by, api_key=job.api_key)  # fmt: skip
            job.done += len(ids)
            job.last_id = ids[-1]
            job.heartbeat_at = timezone.now()
            if not job_save_owned(job, "changed", "done", "last_id", "heartbeat_at"):
                raise BulkJobLost(job.pk)  # and the chunk is rolled back: the run that owns the job changes these logs
        if on_progress:
            on_progress(job)


def bulk_job_claim(*, job_id: int, worker: str) -> bool:
    """Take the job for one run (queueing.job_claim)."""
    return job_claim(
        BulkJob, job_id=job_id, worker=worker, heartbeat_timeout_s=settings.LOGTUNE_BULK_HEARTBEAT_TIMEOUT_S,
        max_attempts=settings.LOGTUNE_BULK_MAX_ATTEMPTS,
    )  # fmt: skip


def _finish(job: BulkJob, *names: str) -> None:
    """Record the outcome while the job is still this run's, and its audit event with it."""
    job.finished_at, job.heartbeat_at = timezone.now(), None
    with transaction.atomic():
        if not job_save_owned(job, *names, "finished_at", "heartbeat_at"):
            logger.warning("curation.bulk_lost job=%s attempt=%s: its outcome is another run's", job.pk, job.attempts)
            return
        _audit(job)


def _audit(job: BulkJob) -> None:
    """The job's one audit event, once it has finished, for the user or key that asked: a job that failed after
    changing logs is recorded too, with how many it changed."""
    if job.status == JobStatus.FAILED and not job.changed:
        return
    outcome = {} if job.status == JobStatus.SUCCEEDED else {"status": job.status}
    audit_record(
        project=job.project,
        action=f"logs.{job.action}",
        count=job.changed,
        actor=job.created_by,
        api_key=job.api_key,
        query=job.query,
        detail={"matched": job.done, "job": job.pk, **job.params, **outcome},
    )


def bulk_jobs_reap() -> int:
    """Bulk jobs nobody is working on. A running one whose run stopped sending heartbeats is re-queued to resume
    below its last committed id, or failed with the reason once it has run LOGTUNE_BULK_MAX_ATTEMPTS times. A queued
    one whose task never reached the broker, or was sent LOGTUNE_BULK_RESEND_AFTER_S ago (a broker restarted without
    persistence forgets its queue), is sent again. Returns the jobs handled."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.LOGTUNE_BULK_HEARTBEAT_TIMEOUT_S)
    # A job running since before jobs had heartbeats has none, nor a start: its creation stands in.
    seen = Coalesce("heartbeat_at", "started_at", "created_at")
    dead = BulkJob.objects.select_related("project", "created_by", "api_key").alias(seen=seen)
    handled = sum(_reap(job, now) for job in dead.filter(status=JobStatus.RUNNING, seen__lt=stale))
    resend = now - timedelta(seconds=settings.LOGTUNE_BULK_RESEND_AFTER_S)
    unsent = BulkJob.objects.filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=resend), status=JobStatus.QUEUED)
    for job_id in unsent.values_list("pk", flat=True):
        if BulkJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(enqueued_at=now):
            logger.info("curation.bulk_resent job=%s", job_id)
            _enqueue(job_id)
            handled += 1
    return handled


def _reap(job: BulkJob, now: datetime) -> int:
    seen = job.heartbeat_at or job.started_at or job.created_at
    what = (
        f"its worker {job.worker or '(unknown)'} stopped sending heartbeats at "
        f"{seen.strftime('%Y-%m-%d %H:%M:%S UTC')}, after {job.done:,} of {job.total:,} logs"
    )
    limit = settings.LOGTUNE_BULK_MAX_ATTEMPTS
    if job.attempts >= limit:
        job.status, job.finished_at = JobStatus.FAILED, now
        job.error = (
            f"The bulk job stopped: {what}, and it had run {job.attempts} time(s) of at most {limit} "
            f"(LOGTUNE_BULK_MAX_ATTEMPTS). {job.changed:,} logs were changed; ask again for the rest."
        )
        changes: dict[str, object] = {
            "status": job.status,
            "finished_at": now,
            "heartbeat_at": None,
            "error": job.error,
        }
    else:
        changes = {"status": JobStatus.QUEUED, "worker": "", "heartbeat_at": None, "enqueued_at": now}
    # Only if nothing moved since it was read: a run that just committed a chunk keeps its job.
    rows = BulkJob.objects.filter(
        pk=job.pk, status=JobStatus.RUNNING, attempts=job.attempts, heartbeat_at=job.heartbeat_at
    )
    with transaction.atomic():
        if not rows.update(**changes):
            return 0
        if changes["status"] == JobStatus.QUEUED:
            transaction.on_commit(lambda: _enqueue(job.pk))
        else:
            _audit(job)
    logger.warning("curation.bulk_reaped job=%s now=%s: %s", job.pk, changes["status"], what)
    return 1
