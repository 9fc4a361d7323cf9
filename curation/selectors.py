"""Reads. Every query here is scoped to a project the caller has already been checked against."""

from collections.abc import Iterator

from django.contrib.auth.models import User
from django.db.models import Exists, OuterRef, QuerySet, Sum
from django.db.models.functions import Coalesce

from curation.models import (
    ApiKey,
    DatasetEntry,
    ImportJob,
    ImportLineError,
    JobStatus,
    LogEntry,
    LogStatus,
    Membership,
    Project,
)


def membership_get(*, user: User, project_slug: str) -> Membership | None:
    return Membership.objects.select_related("project").filter(user=user, project__slug=project_slug).first()


def projects_for_user(*, user: User) -> QuerySet[Membership]:
    return Membership.objects.select_related("project").filter(user=user).order_by("project__name")


def log_list(*, project: Project) -> QuerySet[LogEntry]:
    # The list never needs the heavy JSON columns of every row; the detail view loads them.
    return LogEntry.objects.filter(project=project).defer("original", "tools", "search_text").prefetch_related("tags")


def unreadable_count(*, project: Project) -> int:
    """Logs no reader could read, up to the explorer's cap (the (project, status) index answers it)."""
    return LogEntry.objects.filter(project=project, status=LogStatus.UNREADABLE)[:10_001].count()


def log_get(*, project: Project, log_id: int) -> LogEntry | None:
    return LogEntry.objects.filter(project=project, pk=log_id).prefetch_related("tags").first()


def logs_in_datasets_count(*, logs: QuerySet[LogEntry]) -> int:
    """How many of `logs` are in at least one dataset: what deleting them leaves as unlinked entries."""
    return logs.filter(Exists(DatasetEntry.objects.filter(log_id=OuterRef("pk")))).order_by().count()


def api_keys_for_project(*, project: Project) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(project=project).select_related("created_by")


def api_key_get(*, project: Project, key_id: int) -> ApiKey | None:
    return ApiKey.objects.filter(project=project, pk=key_id).first()


def import_jobs_for_project(*, project: Project) -> QuerySet[ImportJob]:
    return ImportJob.objects.filter(project=project, dataset__isnull=True)  # dataset imports show on their dataset


def import_job_get(*, project: Project, job_id: int) -> ImportJob | None:
    return ImportJob.objects.filter(project=project, pk=job_id).first()


def import_pending_bytes(*, project: Project) -> int:
    """Bytes of the project's uploads stored and not yet imported (an upload is deleted once its import finishes)."""
    pending = ImportJob.objects.filter(project=project, status__in=[JobStatus.QUEUED, JobStatus.RUNNING])
    pending = pending.exclude(file="").exclude(file__isnull=True)
    return pending.aggregate(total=Coalesce(Sum("bytes_total"), 0))["total"]


def import_line_errors(*, job: ImportJob) -> Iterator[tuple[int, str]]:
    return ImportLineError.objects.filter(job=job).order_by("line").values_list("line", "error").iterator(2000)
