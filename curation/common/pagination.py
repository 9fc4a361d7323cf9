"""Keyset ("cursor") pagination over (created_at, id), newest first: every page costs the same
at any depth, unlike OFFSET. Shared by the API and the pages."""

import base64
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TypeVar

import psycopg
from django.core.exceptions import ValidationError
from django.db import OperationalError, connection, transaction
from django.db.models import Model, Q, QuerySet

from curation.common.params import ID_MAX


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


def keyset_page(
    queryset: QuerySet, *, cursor: str | None, size: int, searching: bool = False, descending: bool = True
) -> Page:
    """A page of `queryset`, newest first (oldest first when not `descending`). `searching`: the filter has a text
    search, which may match rarely (see `rare_match_safe`)."""
    queryset = queryset.order_by("-created_at", "-id") if descending else queryset.order_by("created_at", "id")
    if cursor:
        created_at, pk = decode_cursor(cursor)
        # The first condition alone is an index range; the second settles ties on created_at.
        if descending:
            after = Q(created_at__lte=created_at) & (Q(created_at__lt=created_at) | Q(id__lt=pk))
        else:
            after = Q(created_at__gte=created_at) & (Q(created_at__gt=created_at) | Q(id__gt=pk))
        queryset = queryset.filter(after)
    window = queryset[: size + 1]
    items: list[Model] = rare_match_safe(lambda: list(window)) if searching else list(window)
    if len(items) <= size:
        return Page(items=items, next_cursor=None)
    last = items[size - 1]
    return Page(items=items[:size], next_cursor=encode_cursor(last.created_at, last.pk))  # type: ignore[attr-defined]


# --- rare matches ---------------------------------------------------------------------------------------

T = TypeVar("T")

# How long PostgreSQL may walk the (created_at, id) index looking for matches before it is asked to
# collect them through the search indexes instead.
WALK_MS = 150


def rare_match_safe(read: Callable[[], T]) -> T:
    """Run `read` (a newest-first page of a filtered queryset) so that a rare text match stays fast.

    For `ORDER BY created_at DESC LIMIT n` PostgreSQL likes to walk the (project, created_at, id) index
    and test each row, which is right when matches are common and a read of the whole table when they
    are rare: its estimates for text search are often ten times too high. The walk gets WALK_MS; if it
    is cancelled, the read runs again with plain index scans off, so the matches are collected through
    the search indexes (bitmap scans) and sorted, which is fast exactly when they are few.
    """
    if connection.vendor != "postgresql":
        return read()
    try:
        with transaction.atomic(), _local_setting("statement_timeout", f"{WALK_MS}ms"):
            return read()
    except OperationalError as exc:
        if not isinstance(exc.__cause__, psycopg.errors.QueryCanceled):
            raise
    with transaction.atomic(), _local_setting("enable_indexscan", "off"):
        return read()


@contextmanager
def _local_setting(name: str, value: str) -> Iterator[None]:
    """A setting for the statements inside, restored after them (SET LOCAL would outlive a savepoint)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting(%s), set_config(%s, %s, true)", [name, name, value])
        previous = cursor.fetchone()[0]
    yield
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, %s, true)", [name, previous])


# --- pages in another order ------------------------------------------------------------------------------


def ascending_page(queryset: QuerySet, *, key: str, cursor: str | None, size: int) -> Page:
    """A page of `queryset` by `key` then id, ascending: a list by name (unique in a project) or by id (a dataset's
    entries, in the order they were added). The cursor is opaque to clients, as keyset_page's."""
    fields = [key, "id"] if key != "id" else ["id"]
    queryset = queryset.order_by(*fields)
    if cursor:
        values = _decode_values(cursor, fields)
        after = Q(id__gt=values[-1])
        if key != "id":
            after = Q(**{f"{key}__gt": values[0]}) | (Q(**{key: values[0]}) & after)
        queryset = queryset.filter(after)
    items = list(queryset[: size + 1])
    if len(items) <= size:
        return Page(items=items, next_cursor=None)
    last = items[size - 1]
    return Page(items=items[:size], next_cursor=_encode_values([getattr(last, field) for field in fields]))


def rank_cursor_encode(rank: int) -> str:
    """The cursor of a ranked list (a search by meaning) that starts at `rank`."""
    return _encode_values([rank])


def rank_cursor_decode(cursor: str) -> list[int]:
    return _decode_values(cursor, ["id"])  # a whole number in bounds, checked as an id is


def id_cursor(pk: int) -> str:
    """The cursor of an ascending_page by id that starts after `pk` (a page of entries asked for by `after`)."""
    return _encode_values([pk])


def _encode_values(values: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_values(cursor: str, fields: list[str]) -> list:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, UnicodeDecodeError):
        values = None
    kinds = [int if field == "id" else str for field in fields]
    if not (
        isinstance(values, list)
        and len(values) == len(fields)
        and all(type(value) is kind for value, kind in zip(values, kinds, strict=True))
        and 0 <= values[-1] <= ID_MAX
        and not any(isinstance(value, str) and "\x00" in value for value in values)
    ):
        raise ValidationError({"cursor": "Invalid cursor: use the next_cursor value of a previous page."})
    return values


# --- pages sorted by a column that may be empty ------------------------------------------------------------


def column_page(
    queryset: QuerySet, *, column: str, descending: bool, cursor: str | None, size: int, searching: bool = False
) -> Page:
    """A page of `queryset` by `column` (ascending or descending), then id the same way, the rows without a value
    last, newest first. Two keyset walks, each an index range: the rows with a value through a partial index on
    (project, column, id) WHERE column IS NOT NULL, read forwards or backwards; then the rows without one through
    (project, created_at, id), as keyset_page reads them. The cursor says which walk it is in and where.
    """
    sign = "-" if descending else ""
    valued = queryset.filter(**{f"{column}__isnull": False}).order_by(f"{sign}{column}", f"{sign}id")
    empty = queryset.filter(**{f"{column}__isnull": True})
    if cursor is not None:
        value, created_at, pk = _decode_column_cursor(cursor)
        if created_at is not None:  # in the second walk: the rows without a value
            return _empty_page(empty, created_at, pk, size, searching)
        before, reached = ("lt", "lte") if descending else ("gt", "gte")
        # As in keyset_page: the first condition alone is an index range, the second settles ties.
        after = Q(**{f"{column}__{before}": value}) | Q(**{f"id__{before}": pk})
        valued = valued.filter(Q(**{f"{column}__{reached}": value}) & after)
    window = valued[: size + 1]
    items: list[Model] = rare_match_safe(lambda: list(window)) if searching else list(window)
    if len(items) > size:
        last = items[size - 1]
        return Page(items=items[:size], next_cursor=_encode_column_cursor(getattr(last, column), None, last.pk))
    rest = keyset_page(empty, cursor=None, size=size - len(items), searching=searching) if len(items) < size else None
    if rest is None:  # exactly a page of valued rows: the next page starts the second walk
        more = empty.exists()
        return Page(items=items, next_cursor=_encode_column_cursor(None, _FIRST, 0) if more else None)
    return _joined(items, rest)


# The cursor of the second walk from its start: newer than any log can be.
_FIRST = datetime(9999, 12, 31, tzinfo=UTC)


def _empty_page(empty: QuerySet, created_at: datetime, pk: int, size: int, searching: bool) -> Page:
    cursor = None if created_at == _FIRST else encode_cursor(created_at, pk)
    page = keyset_page(empty, cursor=cursor, size=size, searching=searching)
    return _joined([], page)


def _joined(items: list, rest: Page) -> Page:
    next_cursor = None
    if rest.next_cursor:
        created_at, pk = decode_cursor(rest.next_cursor)
        next_cursor = _encode_column_cursor(None, created_at, pk)
    return Page(items=[*items, *rest.items], next_cursor=next_cursor)


def _encode_column_cursor(value: object, created_at: datetime | None, pk: int) -> str:
    raw = [None if value is None else str(value), created_at and created_at.isoformat(), pk]
    return _encode_values(raw)


def _decode_column_cursor(cursor: str) -> tuple[Decimal | None, datetime | None, int]:
    invalid = ValidationError({"cursor": "Invalid cursor: use the next_cursor value of a previous page."})
    try:
        value, stamp, pk = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
        if not (type(pk) is int and 0 <= pk <= ID_MAX) or (value is None) == (stamp is None):
            raise invalid
        if stamp is None:
            number = Decimal(value)
            if not number.is_finite() or abs(number) > Decimal(10) ** 20:
                raise invalid
            return number, None, pk
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None:
            raise invalid
        return None, created_at, pk
    except (ValueError, TypeError, UnicodeDecodeError, ArithmeticError):
        raise invalid from None
