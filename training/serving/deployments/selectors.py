"""Reads of deployments for their pages and API: a project's, one of them, a fine-tune's live one."""

from django.db.models import QuerySet

from curation.models import Project
from training.models import Deployment, DeploymentStatus


def deployments_for_project(*, project: Project) -> QuerySet[Deployment]:
    return Deployment.objects.filter(project=project).select_related(
        "server", "job", "created_by", "created_by_key", "stopped_by", "stopped_by_key"
    )


def deployment_get(*, project: Project, deployment_id: int) -> Deployment | None:
    return deployments_for_project(project=project).filter(pk=deployment_id).first()


def deployment_current_of_job(*, project: Project, job_id: int) -> Deployment | None:
    """The fine-tune's newest deployment that is not stopped (a failed one too, until it is stopped), or None."""
    return (
        deployments_for_project(project=project)
        .filter(job_id=job_id)
        .exclude(status=DeploymentStatus.STOPPED)
        .order_by("-created_at", "-id")
        .first()
    )
