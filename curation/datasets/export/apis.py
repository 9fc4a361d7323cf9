"""REST API v1 for exports of datasets and their snapshots."""

from collections.abc import Iterable

from django.http import FileResponse, StreamingHttpResponse
from django.urls import reverse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from curation.audit.services import audit_record
from curation.common.apis import (
    PROJECT_PARAMETER,
    NotReadyResponse,
    ProjectScopedApi,
    dataset_or_not_found,
    request_actor,
)
from curation.common.listing import PAGE_PARAMETERS, page_body, page_cursor, page_of, page_size
from curation.common.pagination import keyset_page
from curation.common.permissions import project_for_request
from curation.datasets.export import FORMATS, export_check, export_preview, export_stream, snapshot_request
from curation.datasets.export.services import PREVIEW_LIMIT, entries_count
from curation.models import DatasetSnapshot, JobStatus, Project, Role, Split

_PARAMS = [
    PROJECT_PARAMETER,
    # Empty is as good as absent (the dataset page's form sends `split=` for all).
    OpenApiParameter("format", str, enum=["", *FORMATS], description="File format (empty or left out: openai)."),
    OpenApiParameter("split", str, enum=["", *Split.values], description="One split (empty or left out: all)."),
]


class FormatIsNotARenderer(DefaultContentNegotiation):
    """Here `?format=` names the file format, which DRF would otherwise read as a renderer and answer
    404. Errors and previews are JSON whatever a download client says it accepts."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))  # JSON, the first of the default renderers
        return renderer, renderer.media_type


def _export_params(request: Request) -> tuple[str, str | None]:
    format = request.query_params.get("format") or "openai"
    split = request.query_params.get("split") or None
    export_check(format=format, split=split)
    return format, split


class DatasetExportApi(ProjectScopedApi):
    content_negotiation_class = FormatIsNotARenderer

    @extend_schema(
        operation_id="datasets_export",
        summary="Download a dataset as a training file",
        description=(
            "Streams the entries, in id order, as `openai` (chat JSONL, lossless), `sharegpt` (LLaMA-Factory), "
            "`alpaca`, `prompt_completion` (JSONL), `parquet` (messages as nested columns), or, from the edited "
            "entries, preference pairs (the edited answer chosen, the log's original answer rejected) as "
            "`preference` (TRL) or `openai_preference` (JSONL). What a format cannot carry is listed by "
            "`/export/preview`. Every export is recorded in the audit log."
        ),
        parameters=_PARAMS,
        responses={
            (200, "application/x-ndjson"): OpenApiTypes.STR,
            (200, "application/vnd.apache.parquet"): OpenApiTypes.BINARY,
        },
    )
    def get(self, request: Request, dataset_id: int) -> StreamingHttpResponse:
        # Reading: the file holds the entries a viewer reads page by page (docs/security.md, "Exports").
        project = project_for_request(request, role=Role.VIEWER)
        dataset = dataset_or_not_found(project, dataset_id)
        format, split = _export_params(request)
        export = export_stream(dataset=dataset, format=format, split=split)
        detail = {"dataset_id": dataset.pk, "dataset": dataset.name, "format": format, "split": split or "all"}
        count = entries_count(dataset=dataset, split=split, format=format)
        audit_record(project=project, action="dataset.export", count=count, detail=detail, **request_actor(request))
        response = StreamingHttpResponse(export.chunks, content_type=export.content_type)
        response["Content-Disposition"] = content_disposition_header(True, export.filename)
        return response


_REPORT = inline_serializer(
    "ExportReport",
    {
        "format": serializers.CharField(),
        "rows_read": serializers.IntegerField(),
        "rows_written": serializers.IntegerField(),
        "rows_skipped": serializers.IntegerField(),
        "lossless": serializers.BooleanField(),
        "losses": serializers.DictField(child=serializers.IntegerField(), help_text="Rows affected, per reason."),
        "rows_total": serializers.IntegerField(help_text="Entries in the dataset (or split)."),
    },
)


class DatasetExportPreviewApi(ProjectScopedApi):
    content_negotiation_class = FormatIsNotARenderer

    @extend_schema(
        operation_id="datasets_export_preview",
        summary="What an export would lose",
        description=(
            "Converts the entries without writing them and counts, per reason, the rows a format cannot carry "
            "whole (tool calls written as text, images dropped, extra turns merged, rows skipped, …). Large "
            f"datasets are previewed on their first {PREVIEW_LIMIT:,} entries (`rows_read` of `rows_total`)."
        ),
        parameters=_PARAMS,
        responses={200: _REPORT},
    )
    def get(self, request: Request, dataset_id: int) -> Response:
        project = project_for_request(request)
        dataset = dataset_or_not_found(project, dataset_id)
        format, split = _export_params(request)
        return Response(export_preview(dataset=dataset, format=format, split=split).as_dict())


class SnapshotOutput(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()
    progress = serializers.FloatField(read_only=True)
    dataset_name = serializers.CharField(
        source="dataset_label", read_only=True, help_text="Its dataset's name, or its name when it was deleted."
    )
    dataset_deleted = serializers.SerializerMethodField(
        help_text="The dataset was deleted; the snapshot stays because a fine-tune trained on it."
    )

    class Meta:
        model = DatasetSnapshot
        fields = [
            "id", "dataset", "dataset_name", "dataset_deleted", "status", "progress", "rows_done", "error", "sha256",
            "rows_total", "rows_train", "rows_validation", "split_seed", "validation_ratio", "created_at",
            "finished_at", "download_url",
        ]  # fmt: skip

    def get_dataset_deleted(self, snapshot: DatasetSnapshot) -> bool:
        return snapshot.dataset_id is None

    def get_download_url(self, snapshot: DatasetSnapshot) -> str | None:
        if snapshot.status != JobStatus.SUCCEEDED:
            return None
        url = reverse("api-snapshot-download", kwargs={"snapshot_id": snapshot.pk})
        return f"{url}?project={self.context['project'].slug}"


def _snapshot_or_404(project: Project, snapshot_id: int) -> DatasetSnapshot:
    # By its own project: a snapshot a fine-tune trained on outlives its dataset.
    snapshot = DatasetSnapshot.objects.select_related("dataset").filter(project=project, pk=snapshot_id).first()
    if snapshot is None:
        raise exceptions.NotFound(f"Snapshot {snapshot_id} not found in project '{project.slug}'.")
    return snapshot


class DatasetSnapshotsApi(ProjectScopedApi):
    @extend_schema(operation_id="datasets_snapshots_list", summary="Snapshots, newest first",
                   parameters=PAGE_PARAMETERS,
                   responses=page_of("SnapshotPage", SnapshotOutput(many=True)))  # fmt: skip
    def get(self, request: Request, dataset_id: int) -> Response:
        project = project_for_request(request)
        dataset = dataset_or_not_found(project, dataset_id)
        snapshots = DatasetSnapshot.objects.filter(dataset=dataset).select_related("dataset")
        page = keyset_page(snapshots, cursor=page_cursor(request), size=page_size(request))
        return Response(page_body(page, SnapshotOutput, project=project))

    @extend_schema(
        operation_id="datasets_snapshots_create",
        summary="Freeze the dataset",
        description=(
            "Writes every entry, in id order, as an OpenAI chat line with its `split` to an immutable JSONL file "
            "and records its SHA-256 and counts. The same content always gives the same hash. A small dataset "
            "is frozen right away (201, `status` succeeded); a large one by a worker (202, `status` queued): "
            "poll `GET /api/v1/snapshots/{id}` until it succeeds or fails."
        ),
        parameters=_PARAMS[:1],
        request=None,
        responses={201: SnapshotOutput, 202: SnapshotOutput},
    )
    def post(self, request: Request, dataset_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        dataset = dataset_or_not_found(project, dataset_id)
        actor = request_actor(request)
        snapshot = snapshot_request(dataset=dataset, created_by=actor["actor"], api_key=actor["api_key"])
        body = SnapshotOutput(snapshot, context={"project": project}).data
        done = snapshot.status == JobStatus.SUCCEEDED
        return Response(body, status=status.HTTP_201_CREATED if done else status.HTTP_202_ACCEPTED)


class SnapshotDetailApi(ProjectScopedApi):
    @extend_schema(operation_id="snapshots_retrieve", summary="One snapshot, with its progress while it is written",
                   parameters=_PARAMS[:1], responses=SnapshotOutput)  # fmt: skip
    def get(self, request: Request, snapshot_id: int) -> Response:
        project = project_for_request(request)
        snapshot = _snapshot_or_404(project, snapshot_id)
        return Response(SnapshotOutput(snapshot, context={"project": project}).data)


class SnapshotDownloadApi(ProjectScopedApi):
    @extend_schema(operation_id="snapshots_download", summary="Download a snapshot (JSONL)",
                   parameters=_PARAMS[:1], responses={(200, "application/x-ndjson"): OpenApiTypes.STR,
                                                      409: NotReadyResponse})  # fmt: skip
    def get(self, request: Request, snapshot_id: int) -> FileResponse | Response:
        project = project_for_request(request, role=Role.VIEWER)  # an export, as the dataset's
        snapshot = _snapshot_or_404(project, snapshot_id)
        if snapshot.status != JobStatus.SUCCEEDED:
            detail = f"Snapshot {snapshot.pk} has no file: it is {snapshot.get_status_display().lower()}."
            if not snapshot.is_finished:
                detail += f" {snapshot.progress:.0%} written; try again when it has succeeded."
            return Response({"detail": detail, "status": snapshot.status}, status=status.HTTP_409_CONFLICT)
        filename = f"snapshot-{snapshot.pk}-{snapshot.sha256[:12]}.jsonl"
        audit_record(project=project, action="snapshot.download", count=snapshot.rows_total,
                     detail={"snapshot_id": snapshot.pk, "dataset_id": snapshot.dataset_id, "sha256": snapshot.sha256},
                     **request_actor(request))  # fmt: skip
        return FileResponse(
            snapshot.file.open("rb"), as_attachment=True, filename=filename, content_type="application/x-ndjson"
        )
