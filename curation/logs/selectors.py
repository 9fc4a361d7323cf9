"""Reads. Every query here is scoped to a project the caller has already been checked against."""

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import OperationalError, connection, transaction
from django.db.models import Exists, Max, Min, OuterRef, Prefetch, Q, QuerySet

from curation.common import counts
from curation.common.counts import CappedCount, capped, fetch
from curation.common.pagination import (
    Page,
    column_page,
    keyset_page,
    rank_cursor_decode,
    rank_cursor_encode,
    rare_match_safe,
)
from curation.logs.lookups import queryset_sql
from curation.logs.scores.selectors import ScoreCount, ScoreFacet, score_facets
from curation.logs.similar.about import Ranking
from curation.models import DatasetEntry, LogEntry, LogScore, LogStatus, Project, Tag
from curation.text.pii.findings import KINDS


def log_list(*, project: Project) -> QuerySet[LogEntry]:
    # The list never needs the heavy JSON columns of every row; the detail view loads them.
    return (
        LogEntry.objects.filter(project=project)
        .defer("original", "tools", "alternatives", "search_text")
        .prefetch_related("tags")
    )


# The orders of a list of logs: `sort` names one, a leading "-" for descending. Each is a keyset walk of an index
# (docs/ingest.md lists which): the default, newest first, and oldest first walk (project, created_at, id); the
# others a partial index on (project, column, id) of the logs that have a value, then the others newest first.
SORT_COLUMNS = {"time": "created_at", "tokens": "total_tokens", "latency": "latency_ms", "cost": "cost_usd"}
SORT_DEFAULT = "-time"
SORTS = tuple(f"{sign}{name}" for name in SORT_COLUMNS for sign in ("-", ""))
# A search by meaning (`about`) is ranked: the most relevant first, and that is its default order.
RELEVANCE = "relevance"


def sort_default(ranking: Ranking | None) -> str:
    return RELEVANCE if ranking is not None else SORT_DEFAULT


def log_page(
    *,
    logs: QuerySet[LogEntry],
    sort: str,
    cursor: str | None,
    size: int,
    searching: bool = False,
    ranking: Ranking | None = None,
) -> Page:
    """A page of `logs` in the order `sort` names (one of SORTS, or `relevance` with a `ranking`; ValidationError
    otherwise). With a ranking, each log of the page carries its `relevance`."""
    if sort == RELEVANCE:
        if ranking is None:
            raise ValidationError({"sort": "'relevance' orders a search by meaning: give `about` too."})
        page = ranked_page(logs, ranking=ranking, cursor=cursor, size=size)
    elif sort not in SORTS:
        raise ValidationError({"sort": f"'{sort}' is not one of {', '.join((*SORTS, RELEVANCE))}."})
    else:
        page = _sorted_page(logs, sort=sort, cursor=cursor, size=size, searching=searching)
    if ranking is not None:
        for log in page.items:
            log.relevance = ranking.scores.get(log.pk)
    return page


def _sorted_page(logs: QuerySet[LogEntry], *, sort: str, cursor: str | None, size: int, searching: bool) -> Page:
    descending, column = sort.startswith("-"), SORT_COLUMNS[sort.lstrip("-")]
    if column == "created_at":
        return keyset_page(logs, cursor=cursor, size=size, searching=searching, descending=descending)
    return column_page(logs, column=column, descending=descending, cursor=cursor, size=size, searching=searching)


def ranked_page(logs: QuerySet[LogEntry], *, ranking: Ranking, cursor: str | None, size: int) -> Page:
    """A page of `logs` (already within the ranking's ids) in the ranking's order. The cursor is the rank of the
    last log shown: the ranking is kept for the same index state, so the next page continues it."""
    start = 0
    if cursor:
        (start,) = rank_cursor_decode(cursor)
    matching = set(logs.order_by().values_list("pk", flat=True))
    ordered = [pk for pk in ranking.ids[start:] if pk in matching]
    chosen = ordered[:size]
    found = {log.pk: log for log in logs.filter(pk__in=chosen)}
    items = [found[pk] for pk in chosen if pk in found]
    if len(ordered) <= size:
        return Page(items=items, next_cursor=None)
    return Page(items=items, next_cursor=rank_cursor_encode(ranking.position()[chosen[-1]] + 1))


def unreadable_count(*, project: Project) -> int:
    """Logs no reader could read, up to the explorer's cap (the (project, status) index answers it)."""
    return LogEntry.objects.filter(project=project, status=LogStatus.UNREADABLE)[:10_001].count()


def log_get(*, project: Project, log_id: int) -> LogEntry | None:
    scores = Prefetch("scores", queryset=LogScore.objects.select_related("created_by", "api_key"))
    return LogEntry.objects.filter(project=project, pk=log_id).prefetch_related("tags", scores).first()


def logs_in_datasets_count(*, logs: QuerySet[LogEntry]) -> int:
    """How many of `logs` are in at least one dataset: what deleting them leaves as unlinked entries."""
    return logs.filter(Exists(DatasetEntry.objects.filter(log_id=OuterRef("pk")))).order_by().count()


FACET_VALUES = 12


FACETS_TIMEOUT_MS = 3_000


MODEL_NAMES = 200


@dataclass(slots=True)
class Facets:
    total: CappedCount
    models: list[tuple[str, CappedCount]]
    statuses: list[tuple[str, CappedCount]]
    tags: list[tuple[Tag, CappedCount]]
    # Personal data: (kind, count) for each kind found in the window, in KINDS order, then ("none", count).
    pii: list[tuple[str, CappedCount]] = field(default_factory=list)
    scores: list[ScoreFacet] = field(default_factory=list)  # score names: counts, averages, categories
    sampled: bool = False  # the counts are those of the COUNT_CAP newest matches, not of all


def _top(counter: Counter) -> list[tuple[Any, int]]:
    return sorted(counter.items(), key=lambda item: (-item[1], str(item[0])))[:FACET_VALUES]


def _window_counts(logs: QuerySet[LogEntry]) -> tuple[int, list, list, list, Counter[str], list[ScoreCount]]:
    """Count, and top models, statuses and tag ids, the logs per personal data kind ("none": without any), and
    their scores by name and category, of the COUNT_CAP + 1 matching logs ingested last.

    The window is the filter's own SQL, run once (a materialised CTE) for every grouping. `pii` is
    grouped on as a whole: a sorted list of six kinds has few distinct values, and grouping works alike
    on jsonb and on SQLite's JSON text, where unnesting it would not.
    """
    window = logs.order_by("-id").values("id", "model", "status", "pii")[: counts.COUNT_CAP + 1]
    sql, params = queryset_sql(window)
    rows = fetch(
        f"WITH w AS MATERIALIZED ({sql}),"  # noqa: S608 (SQL the ORM wrote)
        " t AS (SELECT lt.tag_id, count(*) AS n FROM curation_logtag lt JOIN w ON w.id = lt.log_id"
        f" GROUP BY lt.tag_id ORDER BY n DESC, lt.tag_id LIMIT {FACET_VALUES}),"
        f" s AS (SELECT s.name, s.value_text, count(*) AS n, sum(s.value_number) AS total FROM w {_window_scores()}"
        " GROUP BY s.name, s.value_text)"
        " SELECT 0, w.model, w.status, w.pii, count(*), CAST(NULL AS DOUBLE PRECISION) FROM w"
        " GROUP BY w.model, w.status, w.pii"
        " UNION ALL SELECT 1, CAST(t.tag_id AS TEXT), NULL, NULL, t.n, NULL FROM t"
        " UNION ALL SELECT 2, s.name, s.value_text, NULL, s.n, s.total FROM s",
        params,
    )
    models, statuses, kinds = Counter[str](), Counter[str](), Counter[str]()
    tags, scores = [], []
    for kind, value, status, found, n, total in rows:
        if kind == 1:
            tags.append((int(value), n))
        elif kind == 2:
            scores.append(ScoreCount(name=value, text=status, count=n, total=total))
        else:
            models[value] += n
            statuses[status] += n
            found = json.loads(found) if isinstance(found, str | bytes) else found
            for pii_kind in found or ["none"]:
                kinds[pii_kind] += n
    tags.sort(key=lambda pair: (-pair[1], pair[0]))
    return sum(statuses.values()), _top(models), _top(statuses), tags, kinds, scores


def _window_scores() -> str:
    """The scores of the window's logs, joined to it. On PostgreSQL a nested loop, one probe of the (log, name)
    index per log: joined plainly, it hashes the window and reads every score of the project (280 ms on a million
    logs' scores, against tens). OFFSET 0 keeps the subquery from being flattened into that join."""
    if connection.vendor == "postgresql":
        return (
            "CROSS JOIN LATERAL (SELECT x.name, x.value_text, x.value_number FROM curation_logscore x"
            " WHERE x.log_id = w.id OFFSET 0) s"
        )
    return "JOIN curation_logscore s ON s.log_id = w.id"


def _statement_timeout() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = %s", [FACETS_TIMEOUT_MS])


def log_facets(*, project: Project, logs: QuerySet[LogEntry], searching: bool = False) -> Facets | None:
    """The total and the counts per model, status, tag, personal data kind and score of `logs` (a filtered
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
    count, models, statuses, tag_ids, kinds, scores = _window_counts(logs)
    total = capped(count)
    tags = Tag.objects.filter(project=project).in_bulk([tag_id for tag_id, _ in tag_ids])
    return Facets(
        total=total,
        models=[(m, CappedCount(n, False)) for m, n in models],
        statuses=[(s, CappedCount(n, False)) for s, n in statuses],
        tags=[(tags[t], CappedCount(n, False)) for t, n in tag_ids if t in tags],
        pii=[(kind, CappedCount(kinds[kind], False)) for kind in (*KINDS, "none") if kinds[kind]],
        scores=score_facets(scores),
        sampled=total.capped,
    )


def model_names(*, project: Project) -> list[str]:
    """The project's distinct models, for suggestions: a loose index scan on (project, model, …), one
    index probe per model instead of reading every log."""
    return [
        row[0]
        for row in fetch(
            "WITH RECURSIVE m(model) AS ("
            " SELECT min(model) FROM curation_logentry WHERE project_id = %s"
            " UNION ALL SELECT (SELECT min(model) FROM curation_logentry WHERE project_id = %s AND model > m.model)"
            " FROM m WHERE m.model IS NOT NULL) SELECT model FROM m WHERE model IS NOT NULL LIMIT %s",
            [project.pk, project.pk, MODEL_NAMES],
        )
        if row[0]
    ]


def log_neighbours(
    *, logs: QuerySet[LogEntry], log: LogEntry, sort: str = SORT_DEFAULT, ranking: Ranking | None = None
) -> tuple[int | None, int | None]:
    """Ids of the logs just before and just after `log` in `logs` listed in the order `sort` names (the
    explorer's list, as the log page's Previous and Next walk it); None at either end."""
    ids = logs.order_by().values_list("pk", flat=True)
    if sort == RELEVANCE and ranking is not None:
        position = ranking.position().get(log.pk)
        if position is None:
            return None, None
        matching = set(ids.filter(pk__in=ranking.ids))
        before = next((pk for pk in reversed(ranking.ids[:position]) if pk in matching), None)
        after = next((pk for pk in ranking.ids[position + 1 :] if pk in matching), None)
        return before, after
    if sort not in SORTS or sort == RELEVANCE:
        sort = SORT_DEFAULT
    descending, column = sort.startswith("-"), SORT_COLUMNS[sort.lstrip("-")]
    if column == "created_at":
        return _time_neighbours(ids, log, descending=descending)
    return _column_neighbours(ids, log, column=column, descending=descending)


def _time_neighbours(ids: QuerySet, log: LogEntry, *, descending: bool) -> tuple[int | None, int | None]:
    at, pk = log.created_at, log.pk
    newer = ids.filter(created_at__gte=at).exclude(created_at=at, pk__lte=pk).order_by("created_at", "id").first()
    older = ids.filter(created_at__lte=at).exclude(created_at=at, pk__gte=pk).order_by("-created_at", "-id").first()
    return (newer, older) if descending else (older, newer)


def _column_neighbours(
    ids: QuerySet, log: LogEntry, *, column: str, descending: bool
) -> tuple[int | None, int | None]:
    """As `column_page` lists them: the logs with a value by (column, id), then those without, newest first."""
    value, pk = getattr(log, column), log.pk
    valued, empty = ids.filter(**{f"{column}__isnull": False}), ids.filter(**{f"{column}__isnull": True})
    up, down = ("gt", "lt") if descending else ("lt", "gt")
    if value is None:  # in the second part: by time, and before its first log comes the last valued one
        before, after = _time_neighbours(empty, log, descending=True)
        if before is None:
            last = "" if descending else "-"
            before = valued.order_by(f"{last}{column}", f"{last}id").first()
        return before, after
    order = "" if descending else "-"  # the nearest before is the smallest of the larger (descending)
    before = (
        valued.filter(Q(**{f"{column}__{up}": value}) | Q(**{column: value, f"id__{up}": pk}))
        .order_by(f"{order}{column}", f"{order}id")
        .first()
    )
    rest = "-" if descending else ""
    after = (
        valued.filter(Q(**{f"{column}__{down}": value}) | Q(**{column: value, f"id__{down}": pk}))
        .order_by(f"{rest}{column}", f"{rest}id")
        .first()
    )
    if after is None:
        after = empty.order_by("-created_at", "-id").first()
    return before, after


# --- the dashboard over a filter -------------------------------------------------------------------------------

# The bucket of the dashboard's series, the first whose span covers the range of the filtered logs: at most a few
# hundred points (180 minutes, 96 hours, 120 days, then weeks).
BUCKETS = (("minute", timedelta(hours=3)), ("hour", timedelta(days=4)), ("day", timedelta(days=120)))
_STEPS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


@dataclass(slots=True)
class Bucket:
    start: datetime | None  # None: the whole range
    logs: int
    tokens: int
    cost_usd: Decimal | None  # None: no log of the bucket has a cost
    latency_p50: float | None
    latency_p95: float | None
    errors: int

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.logs if self.logs else None


@dataclass(slots=True)
class Dashboard:
    bucket: str  # minute, hour, day or week
    total: Bucket
    series: list[Bucket]  # every bucket from the first log's to the last's, empty ones included


def log_dashboard(*, logs: QuerySet[LogEntry]) -> Dashboard | None:
    """Logs, tokens, cost, p50 and p95 latency and errors of `logs` (a filtered queryset of one project), in all and
    per bucket of time, the bucket chosen from the range the logs span (BUCKETS). None when it took longer than the
    facets may (FACETS_TIMEOUT_MS). On PostgreSQL one grouped statement (date_trunc, percentile_cont); elsewhere the
    same numbers in Python."""
    logs = logs.order_by().prefetch_related(None)
    try:
        with transaction.atomic():
            _statement_timeout()
            bounds = logs.aggregate(first=Min("created_at"), last=Max("created_at"))
            if bounds["first"] is None:
                return Dashboard(bucket="hour", total=Bucket(None, 0, 0, None, None, None, 0), series=[])
            bucket = next((name for name, span in BUCKETS if bounds["last"] - bounds["first"] <= span), "week")
            rows = (
                _dashboard_sql(logs, bucket) if connection.vendor == "postgresql" else _dashboard_python(logs, bucket)
            )
    except OperationalError:  # the statement timeout
        return None
    total = next(row for row in rows if row.start is None)
    found = {row.start: row for row in rows if row.start is not None}
    series, start = [], bucket_start(bounds["first"], bucket)
    while start <= bounds["last"]:
        series.append(found.get(start) or Bucket(start, 0, 0, None, None, None, 0))
        start = _next_bucket(start, bucket)
    return Dashboard(bucket=bucket, total=total, series=series)


def bucket_start(moment: datetime, bucket: str) -> datetime:
    """The start of the bucket (in UTC) that holds `moment`, as PostgreSQL's date_trunc gives it (weeks on Monday)."""
    moment = moment.astimezone(UTC)
    if bucket == "minute":
        return moment.replace(second=0, microsecond=0)
    if bucket == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if bucket == "day" else day - timedelta(days=day.weekday())


def _next_bucket(start: datetime, bucket: str) -> datetime:
    return start + _STEPS.get(bucket, timedelta(weeks=1))


def _dashboard_sql(logs: QuerySet[LogEntry], bucket: str) -> list[Bucket]:
    sql, params = queryset_sql(logs.values("created_at", "total_tokens", "cost_usd", "latency_ms", "status"))
    rows = fetch(
        "SELECT date_trunc(%s, w.created_at AT TIME ZONE 'UTC') AS b, count(*), coalesce(sum(w.total_tokens), 0),"  # noqa: S608 (SQL the ORM wrote)
        " sum(w.cost_usd), percentile_cont(0.5) WITHIN GROUP (ORDER BY w.latency_ms),"
        " percentile_cont(0.95) WITHIN GROUP (ORDER BY w.latency_ms), count(*) FILTER (WHERE w.status = %s)"
        f" FROM ({sql}) w GROUP BY GROUPING SETS ((b), ())",
        [bucket, LogStatus.ERROR, *params],
    )
    return [
        Bucket(b and b.replace(tzinfo=UTC), n, int(tokens), cost, p50, p95, errors)
        for b, n, tokens, cost, p50, p95, errors in rows
    ]


def _dashboard_python(logs: QuerySet[LogEntry], bucket: str) -> list[Bucket]:
    groups: dict[datetime | None, list[tuple]] = {}
    for row in logs.values_list("created_at", "total_tokens", "cost_usd", "latency_ms", "status").iterator():
        groups.setdefault(bucket_start(row[0], bucket), []).append(row)
        groups.setdefault(None, []).append(row)
    return [_bucket_of(start, rows) for start, rows in groups.items()]


def _bucket_of(start: datetime | None, rows: list[tuple]) -> Bucket:
    costs = [row[2] for row in rows if row[2] is not None]
    latencies = sorted(row[3] for row in rows if row[3] is not None)
    return Bucket(
        start=start,
        logs=len(rows),
        tokens=sum(row[1] or 0 for row in rows),
        cost_usd=sum(costs, Decimal(0)) if costs else None,
        latency_p50=percentile_cont(latencies, 0.5),
        latency_p95=percentile_cont(latencies, 0.95),
        errors=sum(row[4] == LogStatus.ERROR for row in rows),
    )


def percentile_cont(values: list[int], fraction: float) -> float | None:
    """PostgreSQL's percentile_cont of sorted `values`: interpolated between the two nearest ranks."""
    if not values:
        return None
    position = fraction * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)
