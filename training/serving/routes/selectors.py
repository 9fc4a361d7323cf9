"""Reads of routes' pages and API: a project's routes, and a route's figures (docs/routes.md):
its calls, the share the fine-tune answered with a Wilson interval, fallbacks by reason, each side's latency
percentiles and tokens, the cost saved, and the judge's win rate on shadow pairs; an hourly series for its chart."""

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import Aggregate, Avg, Count, FloatField, Q, QuerySet, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from curation.logs.pricing import cost_usd
from curation.models import LogEntry, Project
from training.evaluation.metrics import Estimate, WinRate, wilson_interval, win_rate
from training.models import ProxyRoute, RouteCall, RouteMode, Side

# The shares a canary is promoted through, one step at a time.
SHARE_STEPS = (0.01, 0.05, 0.10, 0.25, 0.50, 1.0)
SIDES = (Side.PROVIDER, Side.FINETUNE)


def next_share(share: float) -> float | None:
    """The step above `share`; None at 100%."""
    index = bisect.bisect_right(SHARE_STEPS, share + 1e-9)
    return SHARE_STEPS[index] if index < len(SHARE_STEPS) else None


def percentile(values: Sequence[float | None], fraction: float) -> float | None:
    """PostgreSQL's percentile_cont: linear interpolation between the two nearest of the sorted values."""
    ordered = sorted(v for v in values if v is not None)
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class Percentile(Aggregate):
    """percentile_cont(fraction) WITHIN GROUP (ORDER BY expression): PostgreSQL only."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: str, *, fraction: float) -> None:
        super().__init__(expression, fraction=float(fraction))


def _in_database() -> bool:
    return connection.vendor == "postgresql"


# --- Lists ----------------------------------------------------------------------------------------------------


def routes_for_project(*, project: Project) -> QuerySet[ProxyRoute]:
    """The project's routes in the order the proxy tries them, each with its calls, fallbacks, and the judge's win
    rate on its shadow pairs (`win_rate`, the mean verdict; `judged`, their number)."""
    return (
        ProxyRoute.objects.filter(project=project)
        .select_related("deployment", "judge")
        .annotate(
            calls_count=Count("calls"),
            fallbacks_count=Count("calls", filter=~Q(calls__fallback="")),
            judged=Count("calls__verdict"),
            win_rate=Avg("calls__verdict"),
        )
    )


def route_get(*, project: Project, route_id: int) -> ProxyRoute | None:
    return ProxyRoute.objects.filter(project=project, pk=route_id).select_related("deployment", "judge").first()


# --- A route's figures ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SideStats:
    p50_ms: float | None
    p95_ms: float | None
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class RouteStats:
    since: datetime | None
    calls: int
    finetune_served: int
    finetune_share: Estimate | None  # the share of calls the fine-tune answered, with its 95% Wilson interval
    fallbacks: dict[str, int]  # by reason, most frequent first
    provider: SideStats
    finetune: SideStats
    cost_saved_usd: Decimal  # the calls the fine-tune answered, at the provider model's prices
    unpriced_calls: int  # calls the fine-tune answered whose provider model (or usage) has no price
    win_rate: WinRate  # of the judged shadow pairs, with its Wilson interval; rate None before any verdict
    judged: int

    @property
    def fallback_count(self) -> int:
        return sum(self.fallbacks.values())


def _calls(route: ProxyRoute, since: datetime | None) -> QuerySet[RouteCall]:
    calls = RouteCall.objects.filter(route=route)
    return calls.filter(created_at__gte=since) if since is not None else calls


def _latencies(calls: QuerySet[RouteCall]) -> dict[str, tuple[float | None, float | None]]:
    """p50 and p95 of each side's latency, in milliseconds."""
    if _in_database():
        found = calls.aggregate(**{
            f"{side}_{name}": Percentile(f"{side}_ms", fraction=fraction)
            for side in SIDES for name, fraction in (("p50", 0.5), ("p95", 0.95))
        })  # fmt: skip
        return {side: (found[f"{side}_p50"], found[f"{side}_p95"]) for side in SIDES}
    rows = list(calls.values_list("provider_ms", "finetune_ms"))
    latencies: dict[str, tuple[float | None, float | None]] = {}
    for index, side in enumerate(SIDES):
        values = [row[index] for row in rows if row[index] is not None]
        latencies[side] = (percentile(values, 0.5), percentile(values, 0.95))
    return latencies


def _cost_saved(calls: QuerySet[RouteCall]) -> tuple[Decimal, int]:
    """What the calls the fine-tune answered would have cost at their provider model's prices, and how many of them
    had no price (a model the price table does not know, or no usage). One query, grouped by model."""
    saved, unpriced = Decimal(0), 0
    groups = (
        calls.filter(served_by=Side.FINETUNE)
        .values("provider_model")
        .annotate(n=Count("id"), unknown=Count("id", filter=Q(finetune_prompt_tokens__isnull=True,
                                                              finetune_completion_tokens__isnull=True)),
                  prompt=Sum("finetune_prompt_tokens"), completion=Sum("finetune_completion_tokens"))
        .order_by()
    )  # fmt: skip
    for group in groups:
        cost = cost_usd(model=group["provider_model"], prompt_tokens=group["prompt"],
                        completion_tokens=group["completion"])  # fmt: skip
        if cost is None:
            unpriced += group["n"]
        else:
            saved += cost
            unpriced += group["unknown"]
    return saved, unpriced


def route_stats(*, route: ProxyRoute, since: datetime | None = None) -> RouteStats:
    """The route's figures over its calls since `since` (all of them when None)."""
    calls = _calls(route, since)
    totals = calls.aggregate(
        calls=Count("id"),
        finetune_served=Count("id", filter=Q(served_by=Side.FINETUNE)),
        **{f"{side}_{kind}": Sum(f"{side}_{kind}_tokens") for side in SIDES for kind in ("prompt", "completion")},
    )
    fallbacks = dict(
        calls.exclude(fallback="").values_list("fallback").annotate(n=Count("id")).order_by("-n", "fallback")
    )
    latencies = _latencies(calls)
    saved, unpriced = _cost_saved(calls)
    verdicts: list[float] = [
        v
        for v in calls.filter(mode=RouteMode.SHADOW, verdict__isnull=False).values_list("verdict", flat=True)
        if v is not None
    ]
    sides = {
        side: SideStats(latencies[side][0], latencies[side][1], totals[f"{side}_prompt"] or 0,
                        totals[f"{side}_completion"] or 0)
        for side in SIDES
    }  # fmt: skip
    return RouteStats(
        since=since, calls=totals["calls"], finetune_served=totals["finetune_served"],
        finetune_share=wilson_interval(totals["finetune_served"], totals["calls"]), fallbacks=fallbacks,
        provider=sides[Side.PROVIDER], finetune=sides[Side.FINETUNE], cost_saved_usd=saved, unpriced_calls=unpriced,
        win_rate=win_rate(verdicts), judged=len(verdicts),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class HourPoint:
    hour: datetime
    calls: int
    fallbacks: int
    provider_p50_ms: float | None
    finetune_p50_ms: float | None


def route_series(*, route: ProxyRoute, hours: int = 24, now: datetime | None = None) -> list[HourPoint]:
    """Each hour of the last `hours` (24, or 168 for 7 days) that had calls: calls, fallbacks and each side's median
    latency, oldest first."""
    now = now or timezone.now()
    start = (now - timedelta(hours=hours - 1)).replace(minute=0, second=0, microsecond=0)
    calls = _calls(route, start).annotate(hour=TruncHour("created_at")).order_by()
    if _in_database():
        rows = calls.values("hour").annotate(
            calls=Count("id"), fallbacks=Count("id", filter=~Q(fallback="")),
            provider_p50=Percentile("provider_ms", fraction=0.5), finetune_p50=Percentile("finetune_ms", fraction=0.5),
        ).order_by("hour")  # fmt: skip
        return [HourPoint(r["hour"], r["calls"], r["fallbacks"], r["provider_p50"], r["finetune_p50"]) for r in rows]
    by_hour: dict[datetime, list[tuple]] = {}
    for row in calls.values_list("hour", "fallback", "provider_ms", "finetune_ms"):
        by_hour.setdefault(row[0], []).append(row)
    return [
        HourPoint(hour, len(rows), sum(1 for r in rows if r[1]), percentile([r[2] for r in rows], 0.5),
                  percentile([r[3] for r in rows], 0.5))
        for hour, rows in sorted(by_hour.items())
    ]  # fmt: skip


def route_chart(points: list[HourPoint], *, now: datetime | None = None) -> dict[str, list[dict]]:
    """The series as static/js/charts.js draws them: x is the hour's distance from now (0: this hour, -23: a day
    ago); one chart of counts, one of latencies."""
    now = (now or timezone.now()).replace(minute=0, second=0, microsecond=0)

    def x(point: HourPoint) -> int:
        return -round((now - point.hour).total_seconds() / 3600)

    return {
        "counts": [
            {"name": "calls", "colour": 0, "points": [[x(p), p.calls] for p in points]},
            {"name": "fallbacks", "colour": 3, "points": [[x(p), p.fallbacks] for p in points]},
        ],
        "latency": [
            {"name": "provider p50 ms", "colour": 1, "points": [[x(p), p.provider_p50_ms] for p in points]},
            {"name": "fine-tune p50 ms", "colour": 2, "points": [[x(p), p.finetune_p50_ms] for p in points]},
        ],
    }


@dataclass(frozen=True, slots=True)
class CallRow:
    call: RouteCall
    provider_log_id: int | None  # the LogEntry of each side, found by its external_id
    finetune_log_id: int | None


def route_calls_recent(*, route: ProxyRoute, limit: int = 50) -> list[CallRow]:
    """The route's last calls, newest first, with the ids of their logs (one query for all of them)."""
    calls = list(RouteCall.objects.filter(route=route).order_by("-created_at", "-id")[:limit])
    external = {c.provider_log for c in calls if c.provider_log} | {c.finetune_log for c in calls if c.finetune_log}
    ids = dict(
        LogEntry.objects.filter(project_id=route.project_id, external_id__in=external).values_list("external_id", "pk")
    ) if external else {}  # fmt: skip
    return [CallRow(c, ids.get(c.provider_log), ids.get(c.finetune_log)) for c in calls]
