"""The API's lists, one style for all: `?cursor=&limit=` in, `{"results": [...], "next_cursor": ...}` out.

A cursor is opaque (the `next_cursor` of the page before; null on the last page), the page size has the same
default and bound everywhere, and a page costs the same at any depth (curation.common.pagination: keyset, never
OFFSET). A list operation declares PAGE_PARAMETERS and answers with a `page_of` serializer.
"""

from typing import Any

from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.request import Request

from curation.common.pagination import Page
from curation.common.params import is_whole_number

PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX = 100, 500

CURSOR_PARAMETER = OpenApiParameter(
    "cursor", str, description="The `next_cursor` of the previous page; left out (or empty) for the first page."
)
LIMIT_PARAMETER = OpenApiParameter(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": PAGE_SIZE_MAX},
    description=f"Page size, 1–{PAGE_SIZE_MAX} (default {PAGE_SIZE_DEFAULT}).",
)
PAGE_PARAMETERS = [CURSOR_PARAMETER, LIMIT_PARAMETER]

# The headers of an answer to a deprecated parameter (RFC 9745: deprecated since 2026-12-07). It keeps working;
# docs/api.md names what replaces it.
DEPRECATED = {"Deprecation": "@1796601600"}


def page_size(request: Request) -> int:
    """`?limit=`, or the default: a 400 naming `limit` when it is not a whole number in bounds."""
    raw = request.query_params.get("limit")
    if raw is None:
        return PAGE_SIZE_DEFAULT
    if not is_whole_number(raw) or not 1 <= int(raw) <= PAGE_SIZE_MAX:
        raise exceptions.ValidationError({"limit": [f"A whole number from 1 to {PAGE_SIZE_MAX}."]})
    return int(raw)


def page_cursor(request: Request) -> str | None:
    return request.query_params.get("cursor") or None


def page_of(name: str, item: serializers.Serializer, **extra: serializers.Field) -> serializers.Serializer:
    """The schema of a page of `item`s, named `name` (`DatasetPage`)."""
    next_cursor = serializers.CharField(
        allow_null=True, help_text="Pass as `cursor` for the next page; null on the last page."
    )
    return inline_serializer(name, {"results": item, "next_cursor": next_cursor, **extra})


def page_body(page: Page, serializer: type[serializers.Serializer], **context: Any) -> dict:
    """The answer of a list operation: the page's items through `serializer`, and the cursor of the next one."""
    return {"results": serializer(page.items, many=True, context=context).data, "next_cursor": page.next_cursor}
