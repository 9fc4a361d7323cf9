"""The audit log over the API: who deleted, exported, changed keys or fine-tuned what. Owners only."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from curation.audit.selectors import audit_events
from curation.common.apis import ProjectScopedApi
from curation.common.listing import PAGE_PARAMETERS, page_body, page_cursor, page_of, page_size
from curation.common.pagination import keyset_page
from curation.common.permissions import project_for_request
from curation.models import AuditEvent, Role


class AuditEventOutput(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField(help_text="The user who acted, or null when an API key did.")
    api_key = serializers.SerializerMethodField(help_text="The prefix of the API key that acted, if one did.")

    class Meta:
        model = AuditEvent
        fields = ["id", "created_at", "action", "actor", "api_key", "count", "query", "detail"]

    def get_actor(self, event: AuditEvent) -> str | None:
        return event.actor.get_username() if event.actor else None

    def get_api_key(self, event: AuditEvent) -> str | None:
        return event.api_key.prefix if event.api_key else None


class AuditApi(ProjectScopedApi):
    @extend_schema(
        operation_id="audit_list",
        summary="The project's audit log, newest first",
        description="Deletions, exports and downloads, API key changes, tag merges and fine-tunes. Needs the owner "
        "role (a session of an owner, or an API key with the owner role).",
        parameters=[
            *PAGE_PARAMETERS,
            OpenApiParameter("action", str, description="Only this action, e.g. `dataset.delete`."),
        ],
        responses=page_of("AuditPage", AuditEventOutput(many=True)),
    )
    def get(self, request: Request) -> Response:
        project = project_for_request(request, role=Role.OWNER)
        events = audit_events(project=project, action=request.query_params.get("action", ""))
        page = keyset_page(events, cursor=page_cursor(request), size=page_size(request))
        return Response(page_body(page, AuditEventOutput))
