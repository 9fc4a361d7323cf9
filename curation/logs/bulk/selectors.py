from django.db.models import QuerySet

from curation.models import BulkJob, JobStatus, Project


def bulk_jobs_active(*, project: Project) -> QuerySet[BulkJob]:
    return BulkJob.objects.filter(project=project, status__in=[JobStatus.QUEUED, JobStatus.RUNNING])


def bulk_job_get(*, project: Project, job_id: int) -> BulkJob | None:
    return BulkJob.objects.filter(project=project, pk=job_id).first()
