"""What every API view shares: errors, body limits, project scoping."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from curation.models import ApiKey
from curation.parsers import PayloadTooLarge
from curation.permissions import IsUserOrApiKey

__all__ = ["PayloadTooLarge", "ProjectScopedApi", "check_body_size", "exception_handler", "request_actor"]


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


class ProjectScopedApi(APIView):
    permission_classes = [IsUserOrApiKey]


def request_actor(request: Request) -> dict:
    """Who acts, for audit and `created_by`: a user, or the API key (as keyword arguments)."""
    if isinstance(request.auth, ApiKey):
        return {"actor": None, "api_key": request.auth}
    return {"actor": request.user, "api_key": None}
