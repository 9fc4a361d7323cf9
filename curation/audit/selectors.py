"""Reads of the audit log: a project's events, newest first, and the actions it has recorded."""

from django.db.models import QuerySet

from curation.models import AuditEvent, Project


def audit_events(*, project: Project, action: str = "") -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.filter(project=project).select_related("actor", "api_key")
    return events.filter(action=action) if action else events


def audit_actions(*, project: Project) -> list[str]:
    return list(
        AuditEvent.objects.filter(project=project).values_list("action", flat=True).distinct().order_by("action")
    )
