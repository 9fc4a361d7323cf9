"""Writing the audit log: one event per change, written by the service that makes the change, in its transaction."""

from django.contrib.auth.models import User

from curation.models import ApiKey, AuditEvent, Project


def audit_record(
    *,
    project: Project,
    action: str,
    count: int = 0,
    actor: User | None = None,
    api_key: ApiKey | None = None,
    query: str = "",
    detail: dict | None = None,
) -> AuditEvent:
    """Record who did what to how many rows (`action` is dotted: "logs.delete", "tags.add", …)."""
    return AuditEvent.objects.create(
        project=project, action=action, count=count, actor=actor, api_key=api_key, query=query, detail=detail or {}
    )
