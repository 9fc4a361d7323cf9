"""REST API of tags: list, rename, merge and delete a project's tags."""

from django.db.models import Count
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from curation.common.apis import IdField, ProjectScopedApi, StrictInput, request_actor
from curation.common.listing import PAGE_PARAMETERS, page_body, page_cursor, page_of, page_size
from curation.common.pagination import ascending_page
from curation.common.permissions import project_for_request
from curation.models import Project, Role, Tag
from curation.tags.services import tag_delete, tag_merge, tag_update


class TagOutput(serializers.ModelSerializer):
    logs = serializers.IntegerField(source="log_count", read_only=True)

    class Meta:
        model = Tag
        fields = ["id", "name", "color", "logs"]


def _tag_or_404(project: Project, tag_id: int) -> Tag:
    tag = Tag.objects.filter(project=project, pk=tag_id).first()
    if tag is None:
        raise exceptions.NotFound(f"Tag {tag_id} not found in project '{project.slug}'.")
    return tag


class TagsApi(ProjectScopedApi):
    @extend_schema(
        operation_id="tags_list",
        summary="Tags with their log counts, by name",
        parameters=PAGE_PARAMETERS,
        responses=page_of("TagPage", TagOutput(many=True)),
    )
    def get(self, request: Request) -> Response:
        project = project_for_request(request)
        tags = Tag.objects.filter(project=project).annotate(log_count=Count("logs"))
        page = ascending_page(tags, key="name", cursor=page_cursor(request), size=page_size(request))
        return Response(page_body(page, TagOutput))


class TagDetailApi(ProjectScopedApi):
    class Input(StrictInput):
        name = serializers.CharField(required=False)
        color = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", required=False, help_text="#rrggbb")

    @extend_schema(operation_id="tags_update", summary="Rename or recolour", request=Input, responses=TagOutput)
    def patch(self, request: Request, tag_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        tag = tag_update(tag=_tag_or_404(project, tag_id), **data.validated_data, **request_actor(request))
        return Response(TagOutput(Tag.objects.annotate(log_count=Count("logs")).get(pk=tag.pk)).data)

    @extend_schema(operation_id="tags_destroy", summary="Delete a tag (the logs stay)", responses={204: None})
    def delete(self, request: Request, tag_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        tag_delete(tag=_tag_or_404(project, tag_id), **request_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class TagMergeApi(ProjectScopedApi):
    class Input(StrictInput):
        into = IdField(help_text="Id of the tag that stays.")

    @extend_schema(
        operation_id="tags_merge",
        summary="Merge this tag into another",
        request=Input,
        responses=inline_serializer(
            "TagMergeResult", {"moved": serializers.IntegerField(), "into": serializers.IntegerField()}
        ),
    )
    def post(self, request: Request, tag_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        source = _tag_or_404(project, tag_id)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        target = _tag_or_404(project, data.validated_data["into"])
        moved = tag_merge(source=source, target=target, **request_actor(request))
        return Response({"moved": moved, "into": target.pk})
