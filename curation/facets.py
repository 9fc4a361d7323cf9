"""Reads for the log explorer: counts that stop at a cap, facets of the current filter, and the short
lists its forms offer. Every query is scoped to a project through the queryset it is given.

Counting every match of a broad filter over a million logs is what makes log tools stall, so counts
stop at COUNT_CAP and show as "10,000+". Facets count a window of the COUNT_CAP + 1 matching logs
ingested last (by id, which walks the primary key; by created_at, PostgreSQL would sort every match
of a text search): all the matches when there are no more, otherwise the newest COUNT_CAP, and the page
says so. The explorer loads facets after the table, so they never hold it up, and PostgreSQL stops any
facet query that runs longer than FACETS_TIMEOUT_MS.
"""

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import OperationalError, connection, transaction
from django.db.models import Exists, OuterRef, QuerySet

from curation import pii
from curation.lookups import queryset_sql
from curation.models import AuditEvent, BulkJob, Dataset, DatasetEntry, JobStatus, LogEntry, LogTag, Project, Tag
from curation.pagination import rare_match_safe

COUNT_CAP = 10_000
FACET_VALUES = 12
FACETS_TIMEOUT_MS = 3_000
MODEL_NAMES = 200


@dataclass(frozen=True, slots=True)
class CappedCount:
    value: int
    capped: bool  # there are more than `value`

    def __str__(self) -> str:
        return f"{self.value:,}+" if self.capped else f"{self.value:,}"


def _capped(n: int) -> CappedCount:
    return CappedCount(min(n, COUNT_CAP), n > COUNT_CAP)


def _capped_counts(querysets: list[QuerySet]) -> list[CappedCount]:
    """Several capped counts in one round trip: SELECT (count of LIMIT cap+1), (…), …"""
    if not querysets:
        return []
    selects: list[str] = []
    params: list[Any] = []
    for i, queryset in enumerate(querysets):
        sql, sql_params = queryset_sql(queryset.order_by().values("pk")[: COUNT_CAP + 1])
        selects.append(f"(SELECT count(*) FROM ({sql}) AS c{i})")  # noqa: S608 (SQL the ORM wrote)
        params.extend(sql_params)
    return [_capped(n) for n in _fetch("SELECT " + ", ".join(selects), params)[0]]


@dataclass(slots=True)
class Facets:
    total: CappedCount
    models: list[tuple[str, CappedCount]]
    statuses: list[tuple[str, CappedCount]]
    tags: list[tuple[Tag, CappedCount]]
    # Personal data: (kind, count) for each kind found in the window, in pii.KINDS order, then ("none", count).
    pii: list[tuple[str, CappedCount]] = field(default_factory=list)
    sampled: bool = False  # the counts are those of the COUNT_CAP newest matches, not of all


def _fetch(sql: str, params: Sequence[Any]) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _top(counter: Counter) -> list[tuple[Any, int]]:
    return sorted(counter.items(), key=lambda item: (-item[1], str(item[0])))[:FACET_VALUES]


def _window_counts(logs: QuerySet[LogEntry]) -> tuple[int, list, list, list, Counter[str]]:
    """Count, and top models, statuses and tag ids, and the logs per personal data kind ("none": without
    any), of the COUNT_CAP + 1 matching logs ingested last.

    The window is the filter's own SQL, run once (a materialised CTE) for both groupings. `pii` is
    grouped on as a whole: a sorted list of six kinds has few distinct values, and grouping works alike
    on jsonb and on SQLite's JSON text, where unnesting it would not.
    """
    window = logs.order_by("-id").values("id", "model", "status", "pii")[: COUNT_CAP + 1]
    sql, params = queryset_sql(window)
    rows = _fetch(
        f"WITH w AS MATERIALIZED ({sql}),"  # noqa: S608 (SQL the ORM wrote)
        " t AS (SELECT lt.tag_id, count(*) AS n FROM curation_logtag lt JOIN w ON w.id = lt.log_id"
        f" GROUP BY lt.tag_id ORDER BY n DESC, lt.tag_id LIMIT {FACET_VALUES})"
        " SELECT 0, w.model, w.status, w.pii, count(*) FROM w GROUP BY w.model, w.status, w.pii"
        " UNION ALL SELECT 1, CAST(t.tag_id AS TEXT), NULL, NULL, t.n FROM t",
        params,
    )
    models, statuses, kinds = Counter[str](), Counter[str](), Counter[str]()
    tags = []
    for is_tag, value, status, found, n in rows:
        if is_tag:
            tags.append((int(value), n))
        else:
            models[value] += n
            statuses[status] += n
            found = json.loads(found) if isinstance(found, str | bytes) else found
            for kind in found or ["none"]:
                kinds[kind] += n
    tags.sort(key=lambda pair: (-pair[1], pair[0]))
    return sum(statuses.values()), _top(models), _top(statuses), tags, kinds


def _statement_timeout() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = %s", [FACETS_TIMEOUT_MS])


def log_facets(*, project: Project, logs: QuerySet[LogEntry], searching: bool = False) -> Facets | None:
    """The total and the counts per model, status, tag and personal data kind of `logs` (a filtered
    queryset of `project`), or None when counting them took too long. `searching`: the filter has a text search."""
    logs = logs.filter(project=project).order_by().prefetch_related(None)
    try:
        with transaction.atomic():
            _statement_timeout()
            return rare_match_safe(lambda: _log_facets(project, logs)) if searching else _log_facets(project, logs)
    except OperationalError:  # the statement timeout: PostgreSQL cancelled the query
        return None


def _log_facets(project: Project, logs: QuerySet[LogEntry]) -> Facets:
    """Counts of the window of the newest COUNT_CAP + 1 matches: every match when the filter matches no
    more, otherwise a sample (the newest), which the page says. Counting each value over every match
    instead took seconds on a million logs."""
    count, models, statuses, tag_ids, kinds = _window_counts(logs)
    total = _capped(count)
    tags = Tag.objects.filter(project=project).in_bulk([tag_id for tag_id, _ in tag_ids])
    return Facets(
        total=total,
        models=[(m, CappedCount(n, False)) for m, n in models],
        statuses=[(s, CappedCount(n, False)) for s, n in statuses],
        tags=[(tags[t], CappedCount(n, False)) for t, n in tag_ids if t in tags],
        pii=[(kind, CappedCount(kinds[kind], False)) for kind in (*pii.KINDS, "none") if kinds[kind]],
        sampled=total.capped,
    )


def tags_with_counts(*, project: Project) -> list[tuple[Tag, CappedCount]]:
    tags = list(Tag.objects.filter(project=project).order_by("name"))
    counts = _capped_counts([LogTag.objects.filter(tag=tag) for tag in tags])
    return list(zip(tags, counts, strict=True))


def model_names(*, project: Project) -> list[str]:
    """The project's distinct models, for suggestions: a loose index scan on (project, model, …), one
    index probe per model instead of reading every log."""
    return [
        row[0]
        for row in _fetch(
            "WITH RECURSIVE m(model) AS ("
            " SELECT min(model) FROM curation_logentry WHERE project_id = %s"
            " UNION ALL SELECT (SELECT min(model) FROM curation_logentry WHERE project_id = %s AND model > m.model)"
            " FROM m WHERE m.model IS NOT NULL) SELECT model FROM m WHERE model IS NOT NULL LIMIT %s",
            [project.pk, project.pk, MODEL_NAMES],
        )
        if row[0]
    ]


def tag_names(*, project: Project) -> list[str]:
    return list(Tag.objects.filter(project=project).order_by("name").values_list("name", flat=True))


def datasets_for_project(*, project: Project) -> QuerySet[Dataset]:
    return Dataset.objects.filter(project=project).only("id", "name").order_by("name")


def datasets_of_log(*, log: LogEntry) -> QuerySet[Dataset]:
    return Dataset.objects.filter(Exists(DatasetEntry.objects.filter(dataset=OuterRef("pk"), log=log))).only(
        "id", "name"
    )


def bulk_jobs_active(*, project: Project) -> QuerySet[BulkJob]:
    return BulkJob.objects.filter(project=project, status__in=[JobStatus.QUEUED, JobStatus.RUNNING])


def bulk_job_get(*, project: Project, job_id: int) -> BulkJob | None:
    return BulkJob.objects.filter(project=project, pk=job_id).first()


def log_neighbours(*, logs: QuerySet[LogEntry], log: LogEntry) -> tuple[int | None, int | None]:
    """Ids of the logs just newer and just older than `log` in `logs` (newest first, like the list)."""
    ids = logs.order_by().values_list("pk", flat=True)
    at, pk = log.created_at, log.pk
    newer = ids.filter(created_at__gte=at).exclude(created_at=at, pk__lte=pk).order_by("created_at", "id").first()
    older = ids.filter(created_at__lte=at).exclude(created_at=at, pk__gte=pk).order_by("-created_at", "-id").first()
    return newer, older


def audit_events(*, project: Project, action: str = "") -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.filter(project=project).select_related("actor", "api_key")
    return events.filter(action=action) if action else events


def audit_actions(*, project: Project) -> list[str]:
    return list(
        AuditEvent.objects.filter(project=project).values_list("action", flat=True).distinct().order_by("action")
    )
