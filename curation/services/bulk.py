"""Bulk actions on logs: on a selection (ids) at once, or on every log matching a filter as a
BulkJob that a worker runs in chunks, with progress, resumable after a crash.

The filter is the shared one (`curation.filters.logs_filter`), stored on the job as a query string,
so the job acts on exactly what the page showed. Chunks are walked by descending id, so logs that
leave the filter as the job changes them (tag_none=x while adding x) are neither skipped nor
visited twice.
"""

import logging
from collections.abc import Callable

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, QuerySet
from django.http import QueryDict
from django.utils import timezone

from curation.filters import logs_filter
from curation.models import ApiKey, BulkAction, BulkJob, Dataset, DatasetEntry, JobStatus, LogEntry, LogTag, Project
from curation.server_paths import error_text
from curation.services.audit import audit_record
from curation.services.queueing import task_send_or_fail
from curation.services.tags import tag_names_clean, tags_add, tags_remove

logger = logging.getLogger(__name__)

CHUNK = 10_000
# Below this many matching logs the action runs in the request; above it, as a job with progress.
INLINE_LIMIT = 5_000


def logs_delete(*, logs: QuerySet[LogEntry], actor: User | None = None, api_key: ApiKey | None = None) -> int:
    """Delete logs without Django's per-row collector: tags go with them, dataset entries keep their
    copy and lose the link, recording which log it was, when and by whom it was deleted."""
    ids = list(logs.order_by().values_list("id", flat=True))
    deleted = 0
    now = timezone.now()
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        with transaction.atomic():
            links = LogTag.objects.filter(log_id__in=chunk)
            links._raw_delete(links.db)
            DatasetEntry.objects.filter(log_id__in=chunk).update(
                log=None, source_log_id=F("log_id"), source_deleted_at=now, source_deleted_by=actor,
                source_deleted_by_key=api_key,
            )  # fmt: skip
            rows = LogEntry.objects.filter(id__in=chunk)
            deleted += rows._raw_delete(rows.db)
    return deleted


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
        from curation.services.datasets import dataset_add_logs

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
    acts for `actor` or `api_key`: its audit event and the entries of the logs it deletes name them."""
    params = _clean_params(project=project, action=action, params=params)
    total = logs_filter(project=project, params=QueryDict(query)).count()
    job = BulkJob.objects.create(
        project=project, created_by=actor, api_key=api_key, action=action, params=params, query=query, total=total
    )
    from curation.tasks import bulk_job_run_task

    rows = BulkJob.objects.filter(pk=job.pk)
    transaction.on_commit(lambda: task_send_or_fail(bulk_job_run_task, job.pk, job=rows, event="curation.bulk_job"))
    return job


def bulk_job_run(*, job_id: int, on_progress: Callable[[BulkJob], None] | None = None) -> BulkJob:
    job = BulkJob.objects.select_related("project", "created_by", "api_key").get(pk=job_id)
    if job.is_finished:
        return job
    BulkJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING)
    matching = logs_filter(project=job.project, params=QueryDict(job.query))
    try:
        while True:
            chunk_query = matching.filter(id__lt=job.last_id) if job.last_id else matching
            ids = list(chunk_query.order_by("-id").values_list("id", flat=True)[:CHUNK])
            if not ids:
                break
            with transaction.atomic():
                logs = LogEntry.objects.filter(project=job.project, id__in=ids)
                job.changed += _apply(project=job.project, action=job.action, params=job.params, logs=logs,
                                      actor=job.created_by, api_key=job.api_key)  # fmt: skip
                job.done += len(ids)
                job.last_id = ids[-1]
                job.save(update_fields=["changed", "done", "last_id"])
            if on_progress:
                on_progress(job)
    except Exception as exc:
        job.status, job.error, job.finished_at = JobStatus.FAILED, error_text(exc), timezone.now()
        job.save(update_fields=["status", "error", "finished_at"])
        logger.exception("curation.bulk_failed job=%s", job.pk)
        raise
    job.status, job.finished_at = JobStatus.SUCCEEDED, timezone.now()
    job.total = max(job.total, job.done)
    job.save(update_fields=["status", "finished_at", "total"])
    audit_record(
        project=job.project,
        action=f"logs.{job.action}",
        count=job.changed,
        actor=job.created_by,
        api_key=job.api_key,
        query=job.query,
        detail={"matched": job.done, "job": job.pk, **job.params},
    )
    return job
