"""REST API of generation: documents (members read; editors upload and remove), generation jobs (editors estimate,
start and cancel them), and the review of their rows (editors accept, reject and edit)."""

from dataclasses import fields

from django.core.exceptions import ValidationError
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from curation.common.apis import ProjectScopedApi, StrictInput, request_actor
from curation.common.listing import PAGE_PARAMETERS, page_body, page_cursor, page_of, page_size
from curation.common.pagination import ascending_page, keyset_page
from curation.common.permissions import project_for_request
from curation.models import Project, Role
from training.generation import selectors
from training.generation.documents import document_delete, document_upload
from training.generation.filters import DROP_REASONS
from training.generation.services import (
    MAX_CHUNKS_PER_CALL,
    MAX_COMBINATIONS,
    MAX_ROWS_PER_CALL,
    MAX_SEEDS,
    MAX_TOKENS,
    GenerationRequest,
    RowFilter,
    estimate_dict,
    generation_cancel,
    generation_create,
    generation_estimate,
    row_accept,
    row_reject,
    row_update,
    rows_accept_bulk,
)
from training.models import GeneratedRow, GenerationJob, GenerationKind, RowStatus, SourceDocument

# --- documents ------------------------------------------------------------------------------------------------------


class DocumentOutput(serializers.ModelSerializer):
    class Meta:
        model = SourceDocument
        fields = ["id", "name", "sha256", "size", "kind", "title", "pages", "characters", "chunks", "error",
                  "created_at"]  # fmt: skip


class ChunkOutput(serializers.Serializer):
    index = serializers.IntegerField()
    id = serializers.CharField()
    heading_path = serializers.ListField(child=serializers.CharField())
    start = serializers.IntegerField()
    end = serializers.IntegerField()
    first_page = serializers.IntegerField(allow_null=True)
    last_page = serializers.IntegerField(allow_null=True)
    text = serializers.CharField()


class DocumentDetailOutput(DocumentOutput):
    chunk_list = serializers.SerializerMethodField(help_text="The chunks at the default size (4,000 characters).")

    class Meta(DocumentOutput.Meta):
        fields = [*DocumentOutput.Meta.fields, "chunk_list"]

    def get_chunk_list(self, document: SourceDocument) -> list[dict]:
        return ChunkOutput(selectors.document_chunk_list(document), many=True).data  # type: ignore[return-value]


def _document_or_404(project: Project, document_id: int) -> SourceDocument:
    document = selectors.document_get(project=project, document_id=document_id)
    if document is None:
        raise exceptions.NotFound(f"Document {document_id} not found in project '{project.slug}'.")
    return document


def _refused(exc: ValidationError) -> exceptions.ValidationError:
    return exceptions.ValidationError(exc.message_dict)


class DocumentsApi(ProjectScopedApi):
    parser_classes = [MultiPartParser]  # a file upload

    class Input(serializers.Serializer):
        file = serializers.FileField(help_text="PDF, Word (.docx), HTML, Markdown or text.")

    @extend_schema(
        operation_id="documents_list", summary="Documents to generate from, newest first",
        parameters=PAGE_PARAMETERS, responses=page_of("DocumentPage", DocumentOutput(many=True)),
    )  # fmt: skip
    def get(self, request: Request) -> Response:
        project = project_for_request(request)
        page = keyset_page(selectors.documents_of(project=project), cursor=page_cursor(request),
                           size=page_size(request))  # fmt: skip
        return Response(page_body(page, DocumentOutput))

    @extend_schema(
        operation_id="documents_create", summary="Upload a document (editors)",
        description="The file is kept byte for byte. One the readers cannot read (encrypted, broken, not a document) "
        "is kept too, with the reason in `error`, and offers no chunks. The same bytes uploaded again answer 200 with "
        "the stored document.",
        request={"multipart/form-data": Input}, responses={201: DocumentOutput, 200: DocumentOutput},
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        try:
            document, created = document_upload(project=project, name=upload.name, data=upload.read(),
                                                **request_actor(request))  # fmt: skip
        except ValidationError as exc:
            raise _refused(exc) from None
        return Response(
            DocumentOutput(document).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class DocumentDetailApi(ProjectScopedApi):
    @extend_schema(operation_id="documents_retrieve", summary="A document and its chunks",
                   responses=DocumentDetailOutput)  # fmt: skip
    def get(self, request: Request, document_id: int) -> Response:
        return Response(DocumentDetailOutput(_document_or_404(project_for_request(request), document_id)).data)

    @extend_schema(operation_id="documents_destroy", summary="Remove a document (editors); generated rows keep "
                   "their provenance", responses={204: None})  # fmt: skip
    def delete(self, request: Request, document_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        document_delete(document=_document_or_404(project, document_id), **request_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- jobs -----------------------------------------------------------------------------------------------------------


class GenerationInput(StrictInput):
    kind = serializers.ChoiceField(choices=GenerationKind.choices)
    endpoint_id = serializers.IntegerField(help_text="The model endpoint that writes (or, for a teacher, re-answers).")
    dataset_id = serializers.IntegerField(help_text="The dataset rows join (teacher: whose entries it revises).")
    document_ids = serializers.ListField(child=serializers.IntegerField(), required=False, max_length=1000)
    rows_per_call = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ROWS_PER_CALL, help_text="Pairs per call; variations per style."
    )
    chunks_per_call = serializers.IntegerField(required=False, min_value=1, max_value=MAX_CHUNKS_PER_CALL)
    max_combinations = serializers.IntegerField(required=False, min_value=1, max_value=MAX_COMBINATIONS)
    chunk_chars = serializers.IntegerField(required=False, min_value=500, max_value=20000)
    overlap_chars = serializers.IntegerField(
        required=False, min_value=0, max_value=10000, help_text="At most half of chunk_chars."
    )
    prompt_template = serializers.CharField(required=False, allow_blank=True, max_length=20000, trim_whitespace=False)
    system_prompt = serializers.CharField(required=False, allow_blank=True, max_length=20000, trim_whitespace=False)
    seed_dataset_id = serializers.IntegerField(required=False, allow_null=True)
    seed_filter = serializers.DictField(
        child=serializers.CharField(allow_blank=True), required=False,
        help_text='An explorer filter, as its query parameters (`{"q": "refund"}`).',
    )  # fmt: skip
    max_seeds = serializers.IntegerField(required=False, min_value=1, max_value=MAX_SEEDS)
    styles = serializers.ListField(child=serializers.CharField(max_length=100), required=False, max_length=20)
    max_tokens = serializers.IntegerField(required=False, min_value=1, max_value=MAX_TOKENS)
    temperature = serializers.FloatField(required=False, min_value=0, max_value=2)
    seed = serializers.IntegerField(required=False, min_value=-(2**31), max_value=2**31 - 1)
    dedup_threshold = serializers.FloatField(required=False, min_value=0.5, max_value=1)
    min_answer_chars = serializers.IntegerField(required=False, min_value=0, max_value=10000)
    max_row_tokens = serializers.IntegerField(required=False, min_value=16, max_value=131072)
    drop_personal_data = serializers.BooleanField(required=False)
    judge_endpoint_id = serializers.IntegerField(required=False, allow_null=True)
    judge_threshold = serializers.FloatField(required=False, min_value=1, max_value=10)
    judge_rubric = serializers.CharField(required=False, allow_blank=True, max_length=20000)


_REQUEST_FIELDS = {f.name for f in fields(GenerationRequest)}


def generation_request(data: dict) -> GenerationRequest:
    return GenerationRequest(**{name: value for name, value in data.items() if name in _REQUEST_FIELDS})


class GenerationEstimateOutput(serializers.Serializer):
    calls = serializers.IntegerField()
    answer_calls = serializers.IntegerField()
    judge_calls = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField(help_text="At most: max_tokens per call.")
    completion_tokens_likely = serializers.IntegerField()
    cost_usd = serializers.CharField(allow_null=True, help_text="At most; null when the endpoint has no price.")
    cost_usd_likely = serializers.CharField(allow_null=True)
    seeds = serializers.IntegerField()
    chunks = serializers.IntegerField()
    groups = serializers.IntegerField()
    groups_uncapped = serializers.IntegerField()
    capped = serializers.BooleanField()
    warnings = serializers.ListField(child=serializers.CharField())


class GenerationJobOutput(serializers.ModelSerializer):
    progress = serializers.FloatField()
    drop_reasons = serializers.SerializerMethodField(help_text="Rows dropped, by reason code.")
    rows_by_status = serializers.SerializerMethodField()

    class Meta:
        model = GenerationJob
        fields = [
            "id", "kind", "status", "dataset", "dataset_name", "endpoint", "endpoint_name", "judge", "judge_name",
            "params", "estimate", "manifest", "total", "done", "progress", "failed_calls", "generated", "dropped",
            "prompt_tokens", "completion_tokens", "cancel_requested", "error", "drop_reasons", "rows_by_status",
            "created_at", "started_at", "finished_at",
        ]  # fmt: skip

    def get_drop_reasons(self, job: GenerationJob) -> dict[str, int]:
        return selectors.drop_counts(job=job)

    def get_rows_by_status(self, job: GenerationJob) -> dict[str, int]:
        return selectors.status_counts(job=job)


def _job_or_404(project: Project, job_id: int) -> GenerationJob:
    job = selectors.generation_job_get(project=project, job_id=job_id)
    if job is None:
        raise exceptions.NotFound(f"Generation job {job_id} not found in project '{project.slug}'.")
    return job


class GenerationEstimateApi(ProjectScopedApi):
    @extend_schema(
        operation_id="generation_jobs_estimate", request=GenerationInput, responses=GenerationEstimateOutput,
        summary="What a generation job would call and cost, before it starts (editors)",
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        data = GenerationInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            estimate = generation_estimate(project=project, request=generation_request(data.validated_data))
        except ValidationError as exc:
            raise _refused(exc) from None
        return Response(estimate_dict(estimate))


class GenerationJobsApi(ProjectScopedApi):
    @extend_schema(
        operation_id="generation_jobs_list", summary="Generation jobs, newest first",
        parameters=PAGE_PARAMETERS, responses=page_of("GenerationJobPage", GenerationJobOutput(many=True)),
    )  # fmt: skip
    def get(self, request: Request) -> Response:
        project = project_for_request(request)
        page = keyset_page(selectors.generation_jobs(project=project), cursor=page_cursor(request),
                           size=page_size(request))  # fmt: skip
        return Response(page_body(page, GenerationJobOutput))

    @extend_schema(
        operation_id="generation_jobs_create", request=GenerationInput, responses={202: GenerationJobOutput},
        summary="Start a generation job (editors)",
        description="From documents (`document_ids`), or from logs as seeds (`seed_dataset_id`, or `seed_filter`: an "
        "explorer filter) for a teacher's re-answers or variations. The estimate is stored with the job; the rows "
        "wait for review (`/rows`). docs/generation.md.",
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        data = GenerationInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            job = generation_create(project=project, request=generation_request(data.validated_data),
                                    **request_actor(request))  # fmt: skip
        except ValidationError as exc:
            raise _refused(exc) from None
        return Response(GenerationJobOutput(job).data, status=status.HTTP_202_ACCEPTED)


class GenerationJobApi(ProjectScopedApi):
    @extend_schema(operation_id="generation_jobs_retrieve", summary="A generation job: progress, counts, manifest",
                   responses=GenerationJobOutput)  # fmt: skip
    def get(self, request: Request, generation_job_id: int) -> Response:
        return Response(GenerationJobOutput(_job_or_404(project_for_request(request), generation_job_id)).data)


class GenerationCancelApi(ProjectScopedApi):
    @extend_schema(operation_id="generation_jobs_cancel", request=None, responses=GenerationJobOutput,
                   summary="Stop a generation job (editors): no new call starts; the rows written stay")  # fmt: skip
    def post(self, request: Request, generation_job_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        job = _job_or_404(project, generation_job_id)
        if not generation_cancel(job=job, **request_actor(request)):
            raise exceptions.ValidationError({"status": f"The job has {job.status} already."})
        return Response(GenerationJobOutput(job).data)


# --- rows -----------------------------------------------------------------------------------------------------------


class RowOutput(serializers.ModelSerializer):
    class Meta:
        model = GeneratedRow
        fields = [
            "id", "job", "status", "drop_reason", "drop_detail", "messages", "original", "provenance", "judge_score",
            "seed_log_id", "seed_entry", "entry", "edited", "reviewed_at", "created_at",
        ]  # fmt: skip


_ROW_PARAMETERS = [
    OpenApiParameter("status", str, enum=list(RowStatus.values), description="Rows of this status."),
    OpenApiParameter("reason", str, enum=list(DROP_REASONS), description="Dropped rows of this reason."),
]


class GenerationRowsApi(ProjectScopedApi):
    @extend_schema(operation_id="generation_rows_list", summary="A job's rows, in the order written",
                   parameters=[*_ROW_PARAMETERS, *PAGE_PARAMETERS],
                   responses=page_of("GeneratedRowPage", RowOutput(many=True)))  # fmt: skip
    def get(self, request: Request, generation_job_id: int) -> Response:
        job = _job_or_404(project_for_request(request), generation_job_id)
        wanted_status, reason = request.query_params.get("status") or "", request.query_params.get("reason") or ""
        if wanted_status and wanted_status not in RowStatus.values:
            raise exceptions.ValidationError({"status": [f"One of {', '.join(RowStatus.values)}."]})
        if reason and reason not in DROP_REASONS:
            raise exceptions.ValidationError({"reason": [f"One of {', '.join(DROP_REASONS)}."]})
        rows = selectors.rows_of(job=job, status=wanted_status, reason=reason)
        page = ascending_page(rows, key="id", cursor=page_cursor(request), size=page_size(request))
        return Response(page_body(page, RowOutput))


class BulkAcceptInput(StrictInput):
    expected = serializers.IntegerField(min_value=0, help_text="How many rows the filter takes, as counted before.")
    min_judge_score = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=10)
    document_id = serializers.IntegerField(required=False, allow_null=True)
    style = serializers.CharField(required=False, allow_blank=True, max_length=100)  # type: ignore[assignment]


class GenerationAcceptApi(ProjectScopedApi):
    @extend_schema(
        operation_id="generation_jobs_accept", request=BulkAcceptInput,
        responses={200: inline_serializer("BulkAccepted", {"accepted": serializers.IntegerField()})},
        summary="Accept every pending row a filter takes (editors)",
        description="`expected` is the count the caller saw; a different count now is a 400 naming `expected`.",
    )  # fmt: skip
    def post(self, request: Request, generation_job_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        job = _job_or_404(project, generation_job_id)
        data = BulkAcceptInput(data=request.data)
        data.is_valid(raise_exception=True)
        given = data.validated_data
        row_filter = RowFilter(min_judge_score=given.get("min_judge_score"), document_id=given.get("document_id"),
                               style=given.get("style", ""))  # fmt: skip
        try:
            accepted = rows_accept_bulk(job=job, row_filter=row_filter, expected=given["expected"],
                                        **request_actor(request))  # fmt: skip
        except ValidationError as exc:
            raise _refused(exc) from None
        return Response({"accepted": accepted})


def _row_or_404(project: Project, row_id: int) -> GeneratedRow:
    row = selectors.row_get(project=project, row_id=row_id)
    if row is None:
        raise exceptions.NotFound(f"Generated row {row_id} not found in project '{project.slug}'.")
    return row


class RowInput(StrictInput):
    messages = serializers.ListField(child=serializers.DictField(), min_length=1, max_length=1000)


class GenerationRowApi(ProjectScopedApi):
    parser_classes = [JSONParser]

    @extend_schema(operation_id="generation_rows_update", request=RowInput, responses=RowOutput,
                   summary="Edit a row before accepting it (editors)")  # fmt: skip
    def patch(self, request: Request, row_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        row = _row_or_404(project, row_id)
        data = RowInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            row = row_update(row=row, messages=data.validated_data["messages"], **request_actor(request))
        except ValidationError as exc:
            raise _refused(exc) from None
        return Response(RowOutput(row).data)


class RowAcceptInput(StrictInput):
    messages = serializers.ListField(child=serializers.DictField(), min_length=1, max_length=1000, required=False,
                                     help_text="The row edited, accepted as such.")  # fmt: skip


class GenerationRowAcceptApi(ProjectScopedApi):
    @extend_schema(operation_id="generation_rows_accept", request=RowAcceptInput, responses=RowOutput,
                   summary="Accept a row into the job's dataset (editors)")  # fmt: skip
    def post(self, request: Request, row_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        row = _row_or_404(project, row_id)
        data = RowAcceptInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            row = row_accept(row=row, messages=data.validated_data.get("messages"), **request_actor(request))
        except ValidationError as exc:
            raise _refused(exc) from None
        return Response(RowOutput(row).data)


class GenerationRowRejectApi(ProjectScopedApi):
    @extend_schema(operation_id="generation_rows_reject", request=None, responses=RowOutput,
                   summary="Reject a row (editors); it stays, marked rejected")  # fmt: skip
    def post(self, request: Request, row_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        try:
            row = row_reject(row=_row_or_404(project, row_id), **request_actor(request))
        except ValidationError as exc:
            raise _refused(exc) from None
        return Response(RowOutput(row).data)
