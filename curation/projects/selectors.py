"""Reads of projects: a user's memberships and a project's API keys."""

from django.contrib.auth.models import User
from django.db.models import QuerySet

from curation.models import ApiKey, Membership, Project


def membership_get(*, user: User, project_slug: str) -> Membership | None:
    return Membership.objects.select_related("project").filter(user=user, project__slug=project_slug).first()


def projects_for_user(*, user: User) -> QuerySet[Membership]:
    return Membership.objects.select_related("project").filter(user=user).order_by("project__name")


def api_keys_for_project(*, project: Project) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(project=project).select_related("created_by")


def api_key_get(*, project: Project, key_id: int) -> ApiKey | None:
    return ApiKey.objects.filter(project=project, pk=key_id).first()
