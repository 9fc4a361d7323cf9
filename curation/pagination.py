"""Keyset ("cursor") pagination over (created_at, id), newest first: every page costs the same
at any depth, unlike OFFSET. Shared by the API and the pages."""

import base64
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db.models import Model, Q, QuerySet


@dataclass(slots=True)
class Page:
    items: list
    next_cursor: str | None


def encode_cursor(created_at: datetime, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{pk}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, pk = raw.split("|")
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None:
            raise ValueError("naive datetime")
        return created_at, int(pk)
    except (ValueError, UnicodeDecodeError):
        raise ValidationError({"cursor": "Invalid cursor: use the next_cursor value of a previous page."}) from None


def keyset_page(queryset: QuerySet, *, cursor: str | None, size: int) -> Page:
    queryset = queryset.order_by("-created_at", "-id")
    if cursor:
        created_at, pk = decode_cursor(cursor)
        # The first condition alone is an index range; the second settles ties on created_at.
        queryset = queryset.filter(Q(created_at__lte=created_at) & (Q(created_at__lt=created_at) | Q(id__lt=pk)))
    items: list[Model] = list(queryset[: size + 1])
    if len(items) <= size:
        return Page(items=items, next_cursor=None)
    last = items[size - 1]
    return Page(items=items[:size], next_cursor=encode_cursor(last.created_at, last.pk))  # type: ignore[attr-defined]
