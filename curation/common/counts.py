"""Counts that stop at a cap ("10,000+"), several in one round trip: what the explorer and the tags page show."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from curation.logs.lookups import queryset_sql

COUNT_CAP = 10_000


@dataclass(frozen=True, slots=True)
class CappedCount:
    value: int
    capped: bool  # there are more than `value`

    def __str__(self) -> str:
        return f"{self.value:,}+" if self.capped else f"{self.value:,}"


def capped(n: int) -> CappedCount:
    return CappedCount(min(n, COUNT_CAP), n > COUNT_CAP)


def capped_counts(querysets: list[QuerySet]) -> list[CappedCount]:
    """Several capped counts in one round trip: SELECT (count of LIMIT cap+1), (…), …"""
    if not querysets:
        return []
    selects: list[str] = []
    params: list[Any] = []
    for i, queryset in enumerate(querysets):
        sql, sql_params = queryset_sql(queryset.order_by().values("pk")[: COUNT_CAP + 1])
        selects.append(f"(SELECT count(*) FROM ({sql}) AS c{i})")  # noqa: S608 (SQL the ORM wrote)
        params.extend(sql_params)
    return [capped(n) for n in fetch("SELECT " + ", ".join(selects), params)[0]]


def fetch(sql: str, params: Sequence[Any]) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()
