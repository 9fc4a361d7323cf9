"""POST /api/v1/otel/v1/traces: OTLP/HTTP trace export, so an exporter's endpoint is `<base>/api/v1/otel`."""

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from curation.common.apis import RETRY_AFTER, THROTTLED, ProjectScopedApi, check_body_size
from curation.common.permissions import project_for_request
from curation.logs.otel.otlp import PROTOBUF, response_body
from curation.logs.otel.parsers import OtlpBody, OtlpJsonParser, OtlpProtobufParser
from curation.logs.otel.services import otel_spans_ingest
from curation.logs.services import PiiBudget
from curation.logs.throttling import IngestRateThrottle
from curation.models import Role

_EXPORT_RESPONSE = inline_serializer(
    "ExportTraceServiceResponse",
    {
        "partialSuccess": inline_serializer(
            "ExportTracePartialSuccess",
            {
                "rejectedSpans": serializers.CharField(
                    required=False, help_text="How many GenAI spans were not stored (an int64, as a string)."
                ),
                "errorMessage": serializers.CharField(
                    required=False, help_text="Why, and how many spans were not GenAI model calls (not stored)."
                ),
            },
            required=False,
        ),
    },
)


class OtelTracesApi(ProjectScopedApi):
    throttle_classes = [IngestRateThrottle]
    parser_classes = [OtlpProtobufParser, OtlpJsonParser]

    @extend_schema(
        operation_id="otel_traces_export",
        summary="Send OpenTelemetry traces (OTLP/HTTP)",
        description=(
            "An OTLP/HTTP trace export (`ExportTraceServiceRequest`), as `application/x-protobuf` or OTLP JSON "
            "(`application/json`), gzip too. Each span that records a call to a model (GenAI semantic conventions, "
            "or OpenLLMetry's attributes) is stored as a log, its original the span as OTLP JSON; `external_id` is "
            "`trace_id:span_id`, so a span sent again is a duplicate. Other spans are counted and not stored. The "
            "answer is in the request's encoding, with `partial_success` when a GenAI span was rejected "
            "(`rejected_spans`, and why) or spans were left out (said in `error_message`)."
        ),
        request={"application/x-protobuf": OpenApiTypes.BINARY, "application/json": OpenApiTypes.OBJECT},
        parameters=[RETRY_AFTER],
        responses={
            (200, "application/json"): _EXPORT_RESPONSE,
            (200, PROTOBUF): OpenApiResponse(OpenApiTypes.BINARY, description="ExportTraceServiceResponse"),
            429: THROTTLED,
        },
    )
    def post(self, request: Request) -> HttpResponse:
        check_body_size(request)
        project = project_for_request(request, role=Role.EDITOR)
        body: object = request.data
        if not isinstance(body, OtlpBody):
            if request.content_type.split(";")[0].strip() != PROTOBUF:  # an empty protobuf body is an empty export
                raise exceptions.ParseError("Expected an OTLP ExportTraceServiceRequest.")
            body = OtlpBody(export={}, protobuf=True)
        budget = PiiBudget(
            seconds=settings.LOGTUNE_PII_INLINE_SECONDS, log_chars=settings.LOGTUNE_PII_INLINE_LOG_CHARS
        )
        stored = otel_spans_ingest(project=project, export=body.export, pii_budget=budget)
        answer = response_body(rejected=len(stored.result.rejected), message=stored.message, protobuf=body.protobuf)
        if isinstance(answer, bytes):
            return HttpResponse(answer, content_type=PROTOBUF)
        return Response(answer)
