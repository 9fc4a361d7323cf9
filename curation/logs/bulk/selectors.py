"""Reads of bulk actions: the logs an action is for, what it would touch, and the jobs that run large ones."""

from dataclasses import dataclass

from django.db.models import QuerySet
from django.http import QueryDict

from curation.logs.filters import logs_filter
from curation.logs.selectors import logs_in_datasets_count
from curation.models import BulkAction, BulkJob, JobStatus, LogEntry, Project


def bulk_jobs_active(*, project: Project) -> QuerySet[BulkJob]:
    return BulkJob.objects.filter(project=project, status__in=[JobStatus.QUEUED, JobStatus.RUNNING])


def bulk_job_get(*, project: Project, job_id: int) -> BulkJob | None:
    return BulkJob.objects.filter(project=project, pk=job_id).first()


def bulk_logs(*, project: Project, ids: list[int] | None = None, query: str = "") -> QuerySet[LogEntry]:
    """The logs a bulk action is for: a selection (`ids`; those outside the project are left out), or every log
    matching the filter `query` (a query string of the shared filter language)."""
    if ids is not None:
        return LogEntry.objects.filter(project=project, id__in=ids)
    return logs_filter(project=project, params=QueryDict(query))


@dataclass(frozen=True, slots=True)
class BulkReview:
    matched: int
    in_datasets: int  # a deletion: how many of the logs are in datasets (their entries keep their copies)


def bulk_review(*, project: Project, action: str, ids: list[int] | None = None, query: str = "") -> BulkReview:
    """What an action would touch, before the caller confirms it: the page's confirmation, the API's dry run."""
    logs = bulk_logs(project=project, ids=ids, query=query)
    matched = logs.count()
    deleting = action == BulkAction.DELETE and matched
    return BulkReview(matched=matched, in_datasets=logs_in_datasets_count(logs=logs) if deleting else 0)
