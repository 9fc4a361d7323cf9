"""What every API view shares: errors, body limits, project scoping."""

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import Direction, OpenApiParameter, OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from curation.ingest.canonical import IngestError, check_storable
from curation.models import ApiKey
from curation.params import is_whole_number
from curation.parsers import PayloadTooLarge
from curation.permissions import IsUserOrApiKey
from curation.server_paths import json_paths_hidden, paths_hidden

__all__ = [
    "RETRY_AFTER",
    "THROTTLED",
    "ErrorResponse",
    "NotReadyResponse",
    "PathlessCharField",
    "PathlessJSONField",
    "PayloadTooLarge",
    "ProjectScopedApi",
    "StorableJSONField",
    "ValidationErrorResponse",
    "api_not_found",
    "check_body_size",
    "exception_handler",
    "is_whole_number",
    "request_actor",
]


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # Django's own check, on form fields (files do not count)
        exc = PayloadTooLarge(f"Request body is larger than {limit} bytes; the limit is {limit}.")
    return drf_exception_handler(exc, context)


def check_body_size(request: Request) -> None:
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    limit = settings.LOGTUNE_MAX_BODY_BYTES
    if length > limit:
        raise PayloadTooLarge(
            f"Request body is {length} bytes; the limit is {limit}. "
            f"Send at most {settings.LOGTUNE_MAX_BATCH} logs per request, or upload a file to /api/v1/imports."
        )


# --- Errors in the schema -------------------------------------------------------------------------


class ErrorResponse(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, in words for a person.")


class NotReadyResponse(ErrorResponse):
    status = serializers.CharField(help_text="The state of the work whose file is asked for.")


# Ingest is rate limited per API key (curation.throttling): a 429 says when to come back.
THROTTLED = OpenApiResponse(ErrorResponse, description="Too many ingest requests: retry after `Retry-After` seconds.")
RETRY_AFTER = OpenApiParameter(
    "Retry-After", int, OpenApiParameter.HEADER, response=[429], required=True,
    description="Seconds until the next request is accepted.",
)  # fmt: skip


class ValidationErrorResponse(serializers.Serializer):
    """The body of a 400: what DRF's ValidationError and ParseError carry (see ValidationErrorSchema)."""


class ValidationErrorSchema(OpenApiSerializerExtension):
    target_class = ValidationErrorResponse

    def map_serializer(self, auto_schema: AutoSchema, direction: Direction) -> dict:
        messages = {"type": "array", "items": {"type": "string"}}
        return {
            "type": "object",
            "description": (
                "Each field in error and its messages; `detail` or `non_field_errors` for the request as a whole; "
                "an object of the same shape for a nested field (`hyperparameters`) or a list item (by index)."
            ),
            "additionalProperties": {"oneOf": [messages, {"type": "string"}, {"type": "object"}]},
        }


# What any project-scoped operation can answer besides its own responses: the same authentication,
# project and role checks run before each, and every body goes through the same parsers.
_ERRORS = {
    "400": (ValidationErrorResponse, "Invalid parameters or body; or, for a session, no `project` named."),
    "401": (ErrorResponse, "No API key or session, or an invalid or revoked key."),
    "403": (ErrorResponse, "The caller's role in the project is too low for this operation."),
    "404": (ErrorResponse, "The project, or a row named in the path, is not found (or not the caller's)."),
}
_BODY_ERRORS = {
    "413": (ErrorResponse, "The body is over the size limit."),
    "415": (ErrorResponse, "A content type or content encoding the operation does not read."),
}


class ProjectScopedApiSchema(AutoSchema):
    """The schema of a project-scoped operation: the responses it declares, and the errors in _ERRORS,
    so that a client generated from the schema knows every answer it can get."""

    def _get_response_bodies(self, direction: Direction = "response") -> dict:
        responses = super()._get_response_bodies(direction)
        reads_body = self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None
        errors = {**_ERRORS, **(_BODY_ERRORS if reads_body else {})}
        for code, (serializer, description) in errors.items():
            if code not in responses:
                responses[code] = {**self._get_response_for_code(serializer, code), "description": description}
        return responses

    def get_serializer_name(self, serializer: serializers.Serializer, direction: Direction) -> str:
        """`DatasetSplitApi.Input` is named DatasetSplitInput: the views' nested serializers share their names."""
        qualname = type(serializer).__qualname__
        if "." in qualname and "<locals>" not in qualname:
            return "".join(part.removesuffix("Api") for part in qualname.split("."))
        return super().get_serializer_name(serializer, direction)


class StorableJSONField(serializers.JSONField):
    """JSON that a jsonb column takes. The parser refuses lone surrogates already; this refuses NUL (\\u0000)
    in any string, which PostgreSQL would refuse on save, as a 500."""

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        try:
            check_storable(value)
        except IngestError as exc:
            raise serializers.ValidationError(str(exc).removeprefix(": ")) from None
        return value


class PathlessCharField(serializers.CharField):
    """Text a worker wrote (an error), the server's data folders left out (curation.server_paths)."""

    def to_representation(self, value: Any) -> str:
        return paths_hidden(super().to_representation(value))


class PathlessJSONField(serializers.JSONField):
    """JSON a worker wrote (a trainer's events), the server's data folders left out of every string."""

    def to_representation(self, value: Any) -> Any:
        return json_paths_hidden(super().to_representation(value))


class ProjectScopedApi(APIView):
    permission_classes = [IsUserOrApiKey]
    schema = ProjectScopedApiSchema()

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        # Query parameters end up in SQL as text, which cannot hold NUL: refused here, once for every view.
        for name, values in request.query_params.lists():
            if any("\x00" in value for value in values):
                raise exceptions.ValidationError({name: ["Contains a NUL character (\\u0000)."]})


def api_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 404 for a URL no view matches (`/api/v1/datasets/x`): JSON under /api/, as the views' own."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": f"No API endpoint at {request.path}."}, status=404)
    return defaults.page_not_found(request, exception)


def request_actor(request: Request) -> dict:
    """Who acts, for audit and `created_by`: a user, or the API key (as keyword arguments)."""
    if isinstance(request.auth, ApiKey):
        return {"actor": None, "api_key": request.auth}
    return {"actor": request.user, "api_key": None}
