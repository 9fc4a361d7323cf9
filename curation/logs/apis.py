"""REST API v1 for logs. Each view: check access, validate input, call a service or selector, serialize."""

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from curation.common.apis import (
    RETRY_AFTER,
    THROTTLED,
    ErrorResponse,
    JSONObjectField,
    ProjectScopedApi,
    StrictInput,
    ValidationErrorResponse,
    check_body_size,
    filter_parameters,
    request_actor,
)
from curation.common.listing import PAGE_PARAMETERS, page_body, page_cursor, page_of, page_size
from curation.common.parsers import LogBatchParser
from curation.common.permissions import project_for_request
from curation.logs.filters import logs_filter
from curation.logs.ingest import RawItem
from curation.logs.ingest.raw import Body
from curation.logs.schemas import IngestBody
from curation.logs.scores.apis import ScoreOutput
from curation.logs.selectors import RELEVANCE, SORT_COLUMNS, log_dashboard, log_get, log_list, log_page, sort_default
from curation.logs.services import PiiBudget, log_delete, log_update, logs_ingest
from curation.logs.similar.about import ranking_of
from curation.logs.throttling import IngestRateThrottle
from curation.models import LogEntry, LogStatus, Project, Role

SORT_PARAMETER = OpenApiParameter(
    "sort",
    # A pattern rather than an enum: an empty value is the default order, as an empty filter parameter is no filter.
    {"type": "string", "pattern": f"^((-?({'|'.join(SORT_COLUMNS)}))|{RELEVANCE})?$"},
    description=(
        "The order: time, tokens, latency or cost, with a leading `-` for descending (default `-time`, newest "
        "first). Logs without a value for the column come after the others, newest first. With `about` (a search "
        "by meaning) the default is `relevance`, the most relevant first, and each log carries its `relevance`."
    ),
)


class LogListOutput(serializers.ModelSerializer):
    tags = serializers.SerializerMethodField()
    relevance = serializers.SerializerMethodField(
        help_text="With `about` (a search by meaning): the cosine similarity of the log to the words; null otherwise."
    )

    class Meta:
        model = LogEntry
        fields = [
            "id", "external_id", "created_at", "provider", "format", "model", "response_model", "status",
            "status_code", "finish_reason", "prompt_tokens", "completion_tokens", "total_tokens", "latency_ms",
            "cost_usd", "metadata", "tags", "pii", "relevance",
        ]  # fmt: skip

    def get_tags(self, log: LogEntry) -> list[str]:
        return [tag.name for tag in log.tags.all()]

    @extend_schema_field({"type": "number", "nullable": True})
    def get_relevance(self, log: LogEntry) -> float | None:
        return getattr(log, "relevance", None)


LIST_FIELDS = [name for name in LogListOutput.Meta.fields if name != "relevance"]  # a list's rank is not the log's


class LogDetailOutput(LogListOutput):
    original = serializers.SerializerMethodField(
        help_text="The log as received, decoded, keys in the order sent. Exact text: GET /api/v1/logs/{id}/original."
    )
    scores = ScoreOutput(many=True, read_only=True, help_text="Its scores, oldest first.")

    class Meta(LogListOutput.Meta):
        fields = [
            *LIST_FIELDS, "error_message", "notes", "messages", "tools", "options", "alternatives",
            "original", "ingested_at", "scores",
        ]  # fmt: skip

    @extend_schema_field(OpenApiTypes.ANY)
    def get_original(self, log: LogEntry) -> object:
        return log.original_value


_INGEST_RESULT = inline_serializer(
    "IngestResult",
    {
        "accepted": serializers.IntegerField(),
        "duplicates": serializers.IntegerField(),
        "rejected": serializers.ListField(
            child=inline_serializer(
                "Rejection", {"index": serializers.IntegerField(), "error": serializers.CharField()}
            )
        ),
        "unreadable": serializers.ListField(
            child=inline_serializer(
                "Unreadable", {"index": serializers.IntegerField(), "error": serializers.CharField()}
            ),
            help_text="Logs stored with status `unreadable` (keep_unreadable), with the reader's reason.",
        ),
        "notes": serializers.ListField(
            child=inline_serializer(
                "IngestNote", {"index": serializers.IntegerField(), "note": serializers.CharField()}
            ),
            help_text="What had to change to store a log, e.g. a NUL character replaced by U+FFFD.",
        ),
        "ids": serializers.ListField(
            child=inline_serializer(
                "IngestedId",
                {
                    "index": serializers.IntegerField(),
                    "id": serializers.IntegerField(),
                    "duplicate": serializers.BooleanField(
                        help_text="The log was a duplicate by `external_id`: `id` is the log stored before it."
                    ),
                },
            ),
            help_text="The id of each log stored (unreadable ones included) or found a duplicate, by index; "
            "rejected logs have none.",
        ),
    },
)


def _batch_items(body: Body) -> tuple[list[RawItem], bool | None]:
    """The logs of a request body, `{"logs": [...], "keep_unreadable": bool}`, a bare array of logs (LiteLLM's generic
    logger posts its payloads so) or one log object, each with its exact text; and whether to keep unreadable logs
    (None: the project's setting)."""
    value = body.value
    if isinstance(value, list) and body.items is not None:
        if len(body.items) > settings.LOGTUNE_MAX_BATCH:
            raise exceptions.ValidationError(
                {"detail": f"At most {settings.LOGTUNE_MAX_BATCH} logs per request (got {len(body.items)})."}
            )
        return body.items, None
    if isinstance(value, dict) and "logs" in value:
        extra = sorted(set(value) - {"logs", "keep_unreadable"})
        if extra:
            raise exceptions.ValidationError({extra[0]: ["Unknown field next to 'logs' (expected keep_unreadable)."]})
        keep = value.get("keep_unreadable")
        if keep is not None and not isinstance(keep, bool):
            raise exceptions.ValidationError({"keep_unreadable": ["Expected true or false."]})
        if body.items is None:
            raise exceptions.ValidationError({"logs": ["Expected a list of log objects."]})
        if len(body.items) > settings.LOGTUNE_MAX_BATCH:
            raise exceptions.ValidationError(
                {"logs": [f"At most {settings.LOGTUNE_MAX_BATCH} logs per request (got {len(body.items)})."]}
            )
        return body.items, keep
    if isinstance(value, dict):
        return [RawItem(value=value, text=body.text)], None
    raise exceptions.ValidationError({"detail": 'Expected a log object, {"logs": [...]} or an array of logs.'})


class LogsApi(ProjectScopedApi):
    throttle_classes = [IngestRateThrottle]
    parser_classes = [LogBatchParser]  # each log keeps its exact text; reading logs takes no body

    @extend_schema(
        operation_id="logs_ingest",
        summary="Send logs",
        description=(
            'One log object, or `{"logs": [...]}` or a bare JSON array of logs (what LiteLLM\'s generic logger '
            "posts), with up to 1,000. A log is an envelope `{request, response, provider, status_code, latency_ms, "
            "created_at, metadata, tags, external_id, scores}` holding the provider's own API bodies (OpenAI Chat "
            "Completions, Anthropic Messages, Responses API; a streamed `response` may be the list of its chunks or "
            "events, or their server-sent events' text, assembled as the SDK would), or a line of an "
            "OpenAI fine-tuning file (`{messages, tools}`), or `{prompt, completion}`. Each log is stored with its "
            "exact JSON text as its original. Valid logs are stored even when others are rejected; the answer is "
            "400 only when every log was rejected. With `keep_unreadable: true` beside `logs` (or the project's "
            "setting), a log no reader can read is stored with status `unreadable` and its reason instead of being "
            "rejected. A lone surrogate or NUL character is stored as U+FFFD, with a note. The body may be sent "
            "with `Content-Encoding: gzip`; it must stay within the body limit once decompressed (413 otherwise). "
            "Requests per API key are limited (429 with `Retry-After`)."
        ),
        request=IngestBody,
        parameters=[RETRY_AFTER],
        responses={
            200: _INGEST_RESULT,
            # Every log rejected (the same report), or a body that is not logs at all.
            400: PolymorphicProxySerializer(
                component_name="IngestRejected",
                serializers=[_INGEST_RESULT, ValidationErrorResponse],
                resource_type_field_name=None,
            ),
            429: THROTTLED,
        },
        examples=[
            OpenApiExample(
                "OpenAI chat completion",
                request_only=True,
                value={
                    "provider": "openai",
                    "request": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "2+2?"}]},
                    "response": {
                        "object": "chat.completion",
                        "model": "gpt-4o-mini",
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}
                        ],
                        "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
                    },
                    "latency_ms": 412,
                    "tags": ["math"],
                    "external_id": "req_123",
                },
            )
        ],
    )
    def post(self, request: Request) -> Response:
        check_body_size(request)
        project = project_for_request(request, role=Role.EDITOR)
        if not isinstance(request.data, Body):  # no body at all: DRF hands over an empty form
            raise exceptions.ValidationError({"detail": 'Expected a log object or {"logs": [...]} as JSON.'})
        items, keep_unreadable = _batch_items(request.data)
        budget = PiiBudget(
            seconds=settings.LOGTUNE_PII_INLINE_SECONDS, log_chars=settings.LOGTUNE_PII_INLINE_LOG_CHARS
        )  # finding personal data must not hold this web thread for long: a worker does the rest
        result = logs_ingest(project=project, items=items, keep_unreadable=keep_unreadable, pii_budget=budget)
        body = {
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "rejected": [{"index": r.index, "error": r.error} for r in result.rejected],
            "unreadable": [{"index": r.index, "error": r.error} for r in result.unreadable],
            "notes": [{"index": n.index, "note": n.note} for n in result.notes],
            "ids": [{"index": i.index, "id": i.id, "duplicate": i.duplicate} for i in result.ids],
        }
        all_rejected = result.rejected and not (result.accepted or result.duplicates)
        return Response(body, status=status.HTTP_400_BAD_REQUEST if all_rejected else status.HTTP_200_OK)

    @extend_schema(
        operation_id="logs_list",
        summary="List logs",
        description=(
            "The logs matching the filter, newest first, or in the order `sort` names. A `next_cursor` continues "
            "the same filter and the same sort."
        ),
        parameters=[*PAGE_PARAMETERS, SORT_PARAMETER, *filter_parameters()],
        responses=page_of("LogPage", LogListOutput(many=True)),
    )
    def get(self, request: Request) -> Response:
        project = project_for_request(request)
        ranking = ranking_of(project=project, params=request.query_params)
        logs = logs_filter(
            project=project, params=request.query_params, queryset=log_list(project=project), ranking=ranking
        )
        searching = bool(request.query_params.get("q")) and ranking is None
        sort = request.query_params.get("sort") or sort_default(ranking)
        page = log_page(
            logs=logs,
            sort=sort,
            cursor=page_cursor(request),
            size=page_size(request),
            searching=searching,
            ranking=ranking,
        )
        return Response(page_body(page, LogListOutput))


class LogStatsBucket(serializers.Serializer):
    start = serializers.DateTimeField(allow_null=True, help_text="The bucket's start (UTC); null for the total.")
    logs = serializers.IntegerField()
    tokens = serializers.IntegerField(help_text="Total tokens of the logs that report them.")
    cost_usd = serializers.DecimalField(
        max_digits=20, decimal_places=8, allow_null=True, help_text="Null when no log of the bucket has a cost."
    )
    latency_p50 = serializers.FloatField(allow_null=True, help_text="Milliseconds, interpolated (percentile_cont).")
    latency_p95 = serializers.FloatField(allow_null=True)
    # Not `errors`: a serializer's own attribute.
    error_count = serializers.IntegerField(source="errors", help_text="Logs with status error.")
    error_rate = serializers.FloatField(allow_null=True, help_text="error_count / logs; null for an empty bucket.")


class LogStatsOutput(serializers.Serializer):
    bucket = serializers.ChoiceField(choices=["minute", "hour", "day", "week"])
    total = LogStatsBucket()
    series = LogStatsBucket(many=True, help_text="Every bucket from the first log's to the last's, empty ones too.")


class LogStatsApi(ProjectScopedApi):
    @extend_schema(
        operation_id="logs_stats",
        summary="Logs, tokens, cost, latency and errors over time",
        description=(
            "What the explorer's dashboard shows for the same filter: in all and per bucket of time (minute, hour, "
            "day or week, chosen from the range the matching logs span). 503 when counting took too long."
        ),
        parameters=filter_parameters(),
        responses={200: LogStatsOutput, 503: ErrorResponse},
    )
    def get(self, request: Request) -> Response:
        project = project_for_request(request)
        dashboard = log_dashboard(logs=logs_filter(project=project, params=request.query_params))
        if dashboard is None:
            body = {"detail": "Counting took too long: narrow the filter."}
            return Response(body, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response(LogStatsOutput(dashboard).data)


def _log_or_404(project: Project, log_id: int) -> LogEntry:
    log = log_get(project=project, log_id=log_id)
    if log is None:
        raise exceptions.NotFound(f"Log {log_id} not found in project '{project.slug}'.")
    return log


def _tag_list(help_text: str) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, max_length=1000, help_text=help_text
    )


class LogDetailApi(ProjectScopedApi):
    class Input(StrictInput):
        tags = _tag_list("The log's tags, all of them: replaces the tags it has (`[]` removes them all).")
        tags_add = _tag_list("Tags to add; the others stay.")
        tags_remove = _tag_list("Tags to remove; the others stay. Applied last: a name also in `tags_add` is removed.")
        metadata = JSONObjectField(
            required=False,
            help_text="The log's metadata, the whole object: replaces it (a key left out is gone; null is a value).",
        )

    class Deleted(serializers.Serializer):
        id = serializers.IntegerField()
        deleted = serializers.BooleanField()
        datasets = serializers.IntegerField(
            help_text="Datasets that hold entries made from the log: the entries keep their copies and record who "
            "deleted the log and when."
        )
        entries = serializers.IntegerField(help_text="Those entries.")

    @extend_schema(operation_id="logs_retrieve", summary="One log", responses=LogDetailOutput)
    def get(self, request: Request, log_id: int) -> Response:
        project = project_for_request(request)
        return Response(LogDetailOutput(_log_or_404(project, log_id)).data)

    @extend_schema(
        operation_id="logs_update",
        summary="Change a log's tags or metadata",
        description=(
            "`tags` replaces the log's tags; `tags_add` and `tags_remove` change only those named (applied after "
            "`tags`, removals last). `metadata` replaces the whole object (not a merge). The conversation and the "
            "original never change. Audited as `logs.update`."
        ),
        request=Input,
        responses=LogListOutput,
    )
    def patch(self, request: Request, log_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        log = _log_or_404(project, log_id)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        log_update(log=log, **data.validated_data, **request_actor(request))
        return Response(LogListOutput(log_get(project=project, log_id=log.pk)).data)

    @extend_schema(
        operation_id="logs_destroy",
        summary="Delete a log",
        description=(
            "Deletes the log and its tags, as a bulk deletion does. Dataset entries made from it keep their copies, "
            "and record which log it was, who deleted it and when. Audited as `logs.delete`."
        ),
        responses={200: Deleted},
    )
    def delete(self, request: Request, log_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        log = _log_or_404(project, log_id)
        try:
            deletion = log_delete(log=log, **request_actor(request))
        except LogEntry.DoesNotExist:  # deleted by another request meanwhile
            raise exceptions.NotFound(f"Log {log_id} not found in project '{project.slug}'.") from None
        body = {"id": deletion.id, "deleted": True, "datasets": deletion.datasets, "entries": deletion.entries}
        return Response(self.Deleted(body).data)


class LogOriginalApi(ProjectScopedApi):
    @extend_schema(
        operation_id="logs_original",
        summary="A log's original, byte for byte",
        description=(
            "The log's JSON text exactly as it was received: key order, number formatting, escapes and unknown "
            "fields as sent (`application/json`). An unreadable log whose body was not JSON answers it as "
            "`text/plain`. Logs redacted at ingestion hold their redacted original."
        ),
        responses={(200, "application/json"): OpenApiTypes.OBJECT, (200, "text/plain"): OpenApiTypes.STR},
    )
    def get(self, request: Request, log_id: int) -> HttpResponse:
        log = _log_or_404(project_for_request(request), log_id)
        # Only an unreadable log can hold text that is not JSON (an import's line): only its original is decoded.
        is_json = log.status != LogStatus.UNREADABLE or log.original_value is not None
        kind = "application/json" if is_json else "text/plain"
        return HttpResponse(log.original.encode(), content_type=f"{kind}; charset=utf-8")
