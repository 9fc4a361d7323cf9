"""REST API v1 for file imports."""

import csv
import io
from collections.abc import Iterator

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.http import StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from curation.common.apis import RETRY_AFTER, THROTTLED, ErrorResponse, PayloadTooLarge, ProjectScopedApi
from curation.common.listing import PAGE_PARAMETERS, page_body, page_cursor, page_of, page_size
from curation.common.pagination import keyset_page
from curation.common.permissions import project_for_request
from curation.logs.imports.batch_join import BatchJoinError, batch_files_join
from curation.logs.imports.files import ExpandedTooLarge
from curation.logs.imports.forms import BATCH_INPUT_HELP
from curation.logs.imports.selectors import import_job_get, import_jobs_for_project, import_line_errors
from curation.logs.imports.services import PendingImportsTooLarge, import_job_create, import_pending_problem
from curation.logs.imports.sniff import import_file_problem
from curation.logs.ingest.envelope import FORMATS
from curation.logs.throttling import IngestRateThrottle
from curation.models import ImportJob, Role

# The boundaries and part headers of a multipart form around one file: far less than this.
MULTIPART_ENVELOPE_BYTES = 64 * 1024


class ImportOutput(serializers.ModelSerializer):
    progress = serializers.FloatField()
    errors_url = serializers.SerializerMethodField()

    class Meta:
        model = ImportJob
        fields = [
            "id", "source_name", "format", "status", "progress", "bytes_total", "bytes_done", "lines_done", "accepted",
            "duplicates", "rejected", "error", "errors_url", "created_at", "started_at", "finished_at",
        ]  # fmt: skip

    def get_errors_url(self, job: ImportJob) -> str:
        return reverse("api-import-errors", args=[job.pk])


class ImportCreatedOutput(ImportOutput):
    batch_join = inline_serializer(
        "BatchJoin",
        {
            "joined": serializers.IntegerField(help_text="Answers joined to their request."),
            "unanswered": serializers.IntegerField(help_text="Requests no answer answers: not imported."),
            "without_request": serializers.IntegerField(
                help_text="Answers with no request in the input file: imported as they are (refused, or kept "
                "unreadable, naming why)."
            ),
        },
        required=False,
        help_text="Only when `batch_input` was given.",
    )

    class Meta(ImportOutput.Meta):
        fields = [*ImportOutput.Meta.fields, "batch_join"]


class ImportsApi(ProjectScopedApi):
    throttle_classes = [IngestRateThrottle]
    parser_classes = [MultiPartParser]  # a file upload: the one operation whose body is not JSON

    class Input(serializers.Serializer):
        file = serializers.FileField(help_text="JSONL or JSONL.gz, one log object per line.")
        batch_input = serializers.FileField(required=False, help_text=BATCH_INPUT_HELP)
        format = serializers.ChoiceField(
            choices=list(FORMATS), required=False, allow_blank=True,
            help_text="Read every line as this shape (a line in another is rejected, saying which it is); by "
            "default each line's shape is recognised.",
        )  # fmt: skip

        def validate_file(self, file: UploadedFile) -> UploadedFile:
            problem = import_file_problem(file)
            if problem:
                raise serializers.ValidationError(problem)
            return file

        def validate_batch_input(self, file: UploadedFile) -> UploadedFile:
            return self.validate_file(file)

    @extend_schema(
        operation_id="imports_create",
        summary="Upload a JSONL(.gz) file",
        description=(
            "The file is judged by its first bytes: one that is not JSON Lines (an image, a PDF, a CSV, a JSON "
            "array...) or is empty is refused with 400 naming `file`, and no import is created. An import that "
            "stores nothing (every line rejected) ends `failed`, its first line errors in `error`. The file is "
            "deleted once its import has finished; until then it counts against the project's "
            "`LOGTUNE_MAX_PENDING_IMPORT_BYTES`. With `batch_input` (an OpenAI Batch API input file beside its output "
            "file in `file`), each answer is imported with its request, joined by `custom_id`; the answer then also "
            "holds `batch_join`: answers joined, requests without an answer (not imported), answers without a "
            "request (imported as they are, and refused or kept unreadable naming why)."
        ),
        request={"multipart/form-data": Input},
        parameters=[RETRY_AFTER],
        responses={
            202: ImportCreatedOutput,
            413: OpenApiResponse(
                ErrorResponse,
                description=(
                    "The file is over `LOGTUNE_MAX_IMPORT_BYTES`, or with the project's uploads not yet imported it "
                    "would pass `LOGTUNE_MAX_PENDING_IMPORT_BYTES`: upload it once they are imported."
                ),
            ),
            429: THROTTLED,
        },
    )
    def post(self, request: Request) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > settings.LOGTUNE_MAX_IMPORT_BYTES:
            raise PayloadTooLarge(f"Upload is {length} bytes; the limit is {settings.LOGTUNE_MAX_IMPORT_BYTES}.")
        # Judged on the body's length before the body is read, less what a form wraps around a file; the file's own
        # size is judged again when it is stored.
        problem = import_pending_problem(project=project, size=max(0, length - MULTIPART_ENVELOPE_BYTES))
        if problem:
            raise PayloadTooLarge(problem)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        upload, batch_input = data.validated_data["file"], data.validated_data.get("batch_input")
        user = request.user if request.user and request.user.is_authenticated else None
        try:
            join = batch_files_join(upload, batch_input) if batch_input else None
        except BatchJoinError as exc:
            raise exceptions.ValidationError({"batch_input": [str(exc)]}) from None
        except ExpandedTooLarge as exc:
            raise PayloadTooLarge(str(exc)) from None
        try:
            job = import_job_create(
                project=project,
                file=join.file if join else upload,
                source_name=upload.name,
                created_by=user,
                format=data.validated_data.get("format", ""),
            )
        except PendingImportsTooLarge as exc:
            raise PayloadTooLarge(str(exc)) from None
        if join is not None:
            job.batch_join = {  # type: ignore[attr-defined]
                "joined": join.joined, "unanswered": join.unanswered, "without_request": join.without_request
            }  # fmt: skip
        return Response(ImportCreatedOutput(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(operation_id="imports_list", summary="Imports, newest first", parameters=PAGE_PARAMETERS,
                   responses=page_of("ImportPage", ImportOutput(many=True)))  # fmt: skip
    def get(self, request: Request) -> Response:
        project = project_for_request(request)
        jobs = import_jobs_for_project(project=project)
        return Response(
            page_body(keyset_page(jobs, cursor=page_cursor(request), size=page_size(request)), ImportOutput)
        )


def _import_or_404(request: Request, job_id: int) -> ImportJob:
    project = project_for_request(request)
    job = import_job_get(project=project, job_id=job_id)
    if job is None:
        raise exceptions.NotFound(f"Import {job_id} not found in project '{project.slug}'.")
    return job


class ImportDetailApi(ProjectScopedApi):
    @extend_schema(operation_id="imports_retrieve", summary="An import and its progress", responses=ImportOutput)
    def get(self, request: Request, job_id: int) -> Response:
        return Response(ImportOutput(_import_or_404(request, job_id)).data)


def _csv_rows(rows: Iterator[tuple[int, str]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["line", "error"])
    for row in rows:
        writer.writerow(row)
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


class ImportErrorsApi(ProjectScopedApi):
    @extend_schema(
        operation_id="imports_errors",
        summary="Error report (CSV: line, error)",
        responses={(200, "text/csv"): OpenApiTypes.STR},
    )
    def get(self, request: Request, job_id: int) -> StreamingHttpResponse:
        job = _import_or_404(request, job_id)
        response = StreamingHttpResponse(_csv_rows(import_line_errors(job=job)), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-errors.csv"'
        return response
