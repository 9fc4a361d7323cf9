"""What every API view shares: errors, body limits, project scoping."""

import re
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.views import defaults
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import Direction, OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from curation.common.params import ID_MAX, is_whole_number
from curation.common.parsers import PayloadTooLarge
from curation.common.permissions import IsUserOrApiKey
from curation.common.query import refuse_unknown_parameters
from curation.common.server_paths import json_paths_hidden, paths_hidden
from curation.logs.filters import FILTER_PARAMS, SCORE_EXPRESSION, SCORE_NAMES, SINCE_PATTERN
from curation.logs.ingest.canonical import IngestError, check_storable
from curation.logs.similar.about import TEXT_MAX as ABOUT_TEXT_MAX
from curation.models import ApiKey, Dataset, LogStatus, Project
from curation.text.pii.findings import KINDS

__all__ = [
    "ID_MAX",
    "PROJECT_PARAMETER",
    "RETRY_AFTER",
    "THROTTLED",
    "ErrorResponse",
    "FilterField",
    "IdField",
    "JSONObjectField",
    "JSONObjectListField",
    "NotReadyResponse",
    "PathlessCharField",
    "PathlessJSONField",
    "PayloadTooLarge",
    "ProjectScopedApi",
    "StorableJSONField",
    "StrictInput",
    "ValidationErrorResponse",
    "api_not_found",
    "check_body_size",
    "exception_handler",
    "filter_parameters",
    "is_whole_number",
    "request_actor",
    "whole_number_parameter",
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


# Ingest is rate limited per API key (curation.logs.throttling): a 429 says when to come back.
THROTTLED = OpenApiResponse(ErrorResponse, description="Too many ingest requests: retry after `Retry-After` seconds.")
RETRY_AFTER = OpenApiParameter(
    "Retry-After", int, OpenApiParameter.HEADER, response=[429], required=True,
    description="Seconds until the next request is accepted.",
)  # fmt: skip


def whole_number_parameter(name: str, low: int, high: int, description: str) -> OpenApiParameter:
    """A query parameter read with is_whole_number (or -1 and up), declared with the range the view accepts."""
    return OpenApiParameter(name, {"type": "integer", "minimum": low, "maximum": high}, description=description)


# `?project=SLUG` for a logged-in session (an API key acts in its own project; empty is as good as absent). A slug,
# as Django's slug converter reads one: anything else (NUL, spaces) finds no project.
PROJECT_PARAMETER = OpenApiParameter(
    "project", {"type": "string", "pattern": "^[-a-zA-Z0-9_]*$"},
    description="Project slug (session users; keys use their own).",
)  # fmt: skip


def _any_case(word: str) -> str:
    return "".join(f"[{char.upper()}{char.lower()}]" if char.isalpha() else re.escape(char) for char in word)


def _list_of(values: list[str]) -> str:
    """A pattern for a comma-separated list of `values` (empty too: an empty parameter filters nothing)."""
    one = "(" + "|".join(values) + ")"
    return f"^({one}(,{one})*)?$"


METADATA_PAIR = r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*:"  # key:value, dots reaching nested keys


def _or_blank(schema: dict) -> dict:
    """`schema`, or an empty value: the filter reads an empty parameter (a page's empty field) as absent."""
    return {"anyOf": [schema, {"type": "string", "maxLength": 0}]}


def _filter_schemas() -> dict[str, dict]:
    """The log filter's parameters (curation.logs.filters), each with the values it reads, so that a client generated
    from the schema sends only what the filter takes."""
    text = {"type": "string"}
    number = _or_blank({"type": "number", "minimum": 0, "maximum": 1e50})  # django-filter's own ceiling
    an_id = _or_blank({"type": "integer", "minimum": 1, "maximum": ID_MAX})
    kinds = [_any_case(kind) for kind in KINDS]
    schemas: dict[str, dict] = {
        "q": text, "external_id": text,
        "model": text, "response_model": text, "provider": text, "tag": text, "tag_any": text, "tag_none": text,
        "status": {"type": "string", "pattern": _list_of(list(LogStatus.values))},
        "created_after": _or_blank({"type": "string", "format": "date-time"}),
        "created_before": _or_blank({"type": "string", "format": "date-time"}),
        "since": {"type": "string", "pattern": f"({SINCE_PATTERN})|^$"},
        "min_tokens": number, "max_tokens": number, "min_latency_ms": number, "max_latency_ms": number,
        "metadata": {"type": "array", "items": {"type": "string", "pattern": METADATA_PAIR}},
        "score": {"type": "array", "items": {"type": "string", "pattern": f"^{SCORE_EXPRESSION}$"}},
        "has_score": {"type": "string", "pattern": f"^({SCORE_NAMES})?$"},
        "no_score": {"type": "string", "pattern": f"^({SCORE_NAMES})?$"},
        "in_dataset": an_id,
        "not_in_dataset": an_id,
        "pii": {"type": "string", "pattern": f"^({_any_case('any')}|{_any_case('none')}|{_list_of(kinds)[1:-1]})$"},
        "similar_to": an_id,
        "min_similarity": _or_blank({"type": "number", "minimum": 0.5, "maximum": 1}),
        "about": {"type": "string", "maxLength": ABOUT_TEXT_MAX},
        "min_relevance": _or_blank({"type": "number", "minimum": 0, "maximum": 1}),
        "topic": an_id,
    }  # fmt: skip
    assert set(schemas) == FILTER_PARAMS, "a filter parameter without its schema"
    return schemas


def filter_parameters() -> list[OpenApiParameter]:
    """The log filter's query parameters, as `_filter_schemas` describes them."""
    schemas = _filter_schemas()
    repeated = ("metadata", "score")
    return [OpenApiParameter(name, schemas[name], explode=name in repeated) for name in sorted(FILTER_PARAMS)]


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

    def get_override_parameters(self) -> list:
        """Every operation acts in a project: `?project=` is declared once, here (and so taken by every one)."""
        return [PROJECT_PARAMETER, *super().get_override_parameters()]

    def get_serializer_name(self, serializer: serializers.Serializer, direction: Direction) -> str:
        """`DatasetSplitApi.Input` is named DatasetSplitInput: the views' nested serializers share their names."""
        qualname = type(serializer).__qualname__
        if "." in qualname and "<locals>" not in qualname:
            return "".join(part.removesuffix("Api") for part in qualname.split("."))
        return super().get_serializer_name(serializer, direction)


def json_type_problem(field: serializers.Field, value: Any) -> str:
    """Why `value`, read from a JSON body, is not of the JSON type `field` declares in the schema; "" when it is.
    null is left to the field (allow_null)."""
    if value is None or isinstance(field, serializers.JSONField | serializers.FileField):
        return ""
    if isinstance(field, serializers.ListField | serializers.MultipleChoiceField):
        if not isinstance(value, list):
            return "Must be a list."
        child = getattr(field, "child", None)
        for index, item in enumerate(value):
            if child is not None and (problem := json_type_problem(child, item)):
                return f"Item {index}: {problem}"
        return ""
    if isinstance(field, serializers.BooleanField):
        return "" if isinstance(value, bool) else "Must be true or false."
    if isinstance(field, serializers.IntegerField):
        return "" if isinstance(value, int) and not isinstance(value, bool) else "Must be an integer."
    if isinstance(field, serializers.FloatField | serializers.DecimalField):
        return "" if isinstance(value, int | float) and not isinstance(value, bool) else "Must be a number."
    if isinstance(field, serializers.ChoiceField):
        strings = all(isinstance(choice, str) for choice in field.choices)
        return "" if not strings or isinstance(value, str) else "Must be a string."
    if isinstance(field, serializers.CharField | serializers.DateTimeField):
        return "" if isinstance(value, str) else "Must be a string."
    return ""


class IdField(serializers.IntegerField):
    """The id of a row, in a body: 1 to ID_MAX, so a number no bigint column holds is refused naming the field."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(min_value=1, max_value=ID_MAX, **kwargs)


def _integral(field: serializers.Field, value: Any) -> Any:
    """JSON Schema's integer is a number with no fraction: 1e3 and 1000.0 are integers, and an integer field
    takes them as the int they are (DRF's own reading refuses "1e+03")."""
    if isinstance(field, serializers.IntegerField) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(field, serializers.ListField) and isinstance(field.child, serializers.IntegerField):
        return [_integral(field.child, item) for item in value] if isinstance(value, list) else value
    return value


# The input of an operation, read from a JSON body with the types its schema declares. DRF's fields coerce: an
# integer field takes "5", a boolean "true" or 0, a text field 5, a number field false. A client generated from the
# schema never sends those, and one that does has a bug worth a 400 naming the field. (Comments, not a docstring:
# drf-spectacular would describe every input with it.)
class StrictInput(serializers.Serializer):
    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and not isinstance(data, QueryDict):  # a query string is text, as it should be
            data = {name: _integral(self.fields[name], value) if name in self.fields else value
                    for name, value in data.items()}  # fmt: skip
            errors = {
                name: [problem]
                for name, field in self.fields.items()
                if not field.read_only and name in data and (problem := json_type_problem(field, data[name]))
            }
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


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
    """Text a worker wrote (an error), the server's data folders left out (curation.common.server_paths)."""

    def to_representation(self, value: Any) -> str:
        return paths_hidden(super().to_representation(value))


class PathlessJSONField(serializers.JSONField):
    """JSON a worker wrote (a trainer's events), the server's data folders left out of every string."""

    def to_representation(self, value: Any) -> Any:
        return json_paths_hidden(super().to_representation(value))


@extend_schema_field({"type": "object", "additionalProperties": True})
class JSONObjectField(StorableJSONField):
    """A JSON object (trainer settings by name): null and other types are refused, as the schema says."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError("Must be an object.")
        return super().to_internal_value(data)


@extend_schema_field({"type": "array", "items": {"type": "object", "additionalProperties": True}})
class JSONObjectListField(StorableJSONField):
    """A list of JSON objects (chat messages, tools); what is in them is the readers' to judge."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise serializers.ValidationError("Must be a list of objects.")
        return super().to_internal_value(data)


def _filter_query_pattern() -> str:
    """A query string of the filter's parameters (`tag=math&q=refund`), a leading '?' allowed."""
    key = "(" + "|".join(sorted(FILTER_PARAMS)) + ")"
    return rf"^\??({key}(=[^&]*)?(&{key}(=[^&]*)?)*)?$"


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "pattern": _filter_query_pattern()},
            {"type": "object", "properties": _filter_schemas(), "additionalProperties": False},
        ]
    }
)
class FilterField(StorableJSONField):
    """The log filter of a bulk action: a query string (`tag=math&q=refund`) or an object of the same parameters."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str | dict):
            raise serializers.ValidationError("A query string or an object of filter parameters.")
        if isinstance(data, dict):
            schemas = _filter_schemas()
            for name, value in data.items():
                if name in schemas and not _json_type_fits(schemas[name], value):
                    raise serializers.ValidationError(f"{name}: {_json_type_names(schemas[name])}.")
        return super().to_internal_value(data)


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "array": (list,),
}


def _json_types(schema: dict) -> set[str]:
    return (
        {schema["type"]}
        if "type" in schema
        else {kind for one in schema.get("anyOf", []) for kind in _json_types(one)}
    )


def _json_type_fits(schema: dict, value: object) -> bool:
    """Whether `value` has a JSON type the parameter's schema declares (a filter object's values)."""
    return not isinstance(value, bool) and any(isinstance(value, _JSON_TYPES[kind]) for kind in _json_types(schema))


def _json_type_names(schema: dict) -> str:
    names = {"string": "text", "number": "a number", "integer": "a whole number", "array": "a list of text"}
    return "must be " + " or ".join(sorted(names[kind] for kind in _json_types(schema)))


class ProjectScopedApi(APIView):
    permission_classes = [IsUserOrApiKey]
    schema = ProjectScopedApiSchema()

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if hasattr(self, (request.method or "").lower()):  # a method the view does not serve: 405, whatever it asks
            refuse_unknown_parameters(self, request.method or "GET", set(request.query_params))
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


def dataset_or_not_found(project: Project, dataset_id: int) -> Dataset:
    """The project's dataset, or the API's 404 naming it."""
    dataset = Dataset.objects.filter(project=project, pk=dataset_id).first()
    if dataset is None:
        raise exceptions.NotFound(f"Dataset {dataset_id} not found in project '{project.slug}'.")
    return dataset
