"""The audit log over the API: who deleted, exported, changed keys or fine-tuned what. Owners only."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from curation.audit.selectors import audit_events
from curation.common.apis import PROJECT_PARAMETER, ProjectScopedApi, is_whole_number, whole_number_parameter
from curation.common.pagination import keyset_page
from curation.common.permissions import project_for_request
from curation.models import AuditEvent, Role

PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX = 100, 1000


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
            PROJECT_PARAMETER,
            OpenApiParameter("action", str, description="Only this action, e.g. `dataset.delete`."),
            OpenApiParameter("cursor", str, description="`next_cursor` of the previous page."),
            whole_number_parameter(
                "limit", 1, PAGE_SIZE_MAX, f"Page size, 1–{PAGE_SIZE_MAX} (default {PAGE_SIZE_DEFAULT})."
            ),
        ],
        responses=inline_serializer(
            "AuditPage",
            {"results": AuditEventOutput(many=True), "next_cursor": serializers.CharField(allow_null=True)},
        ),
    )
    def get(self, request: Request) -> Response:
        project = project_for_request(request, role=Role.OWNER)
        raw = request.query_params.get("limit", str(PAGE_SIZE_DEFAULT))
        if not is_whole_number(raw) or not 1 <= int(raw) <= PAGE_SIZE_MAX:
            raise exceptions.ValidationError({"limit": [f"A whole number from 1 to {PAGE_SIZE_MAX}."]})
        events = audit_events(project=project, action=request.query_params.get("action", ""))
        page = keyset_page(events, cursor=request.query_params.get("cursor") or None, size=int(raw))
        return Response({"results": AuditEventOutput(page.items, many=True).data, "next_cursor": page.next_cursor})
