"""Reads of imports: a project's jobs, one job, the bytes of uploads still waiting, a job's line errors."""

from collections.abc import Iterator

from django.db.models import QuerySet, Sum
from django.db.models.functions import Coalesce

from curation.models import ImportJob, ImportLineError, JobStatus, Project


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
