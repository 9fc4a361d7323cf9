"""Reading the scores of logs: one log's, and the facet of the scores of the logs a filter matches."""

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import QuerySet

from curation.models import LogEntry, LogScore


def log_scores(*, log: LogEntry) -> QuerySet[LogScore]:
    """A log's scores, oldest first, with who gave each."""
    return LogScore.objects.filter(log=log).select_related("created_by", "api_key").order_by("created_at", "id")


def log_score_get(*, log: LogEntry, score_id: int) -> LogScore | None:
    return LogScore.objects.filter(log=log, pk=score_id).select_related("project").first()


@dataclass(frozen=True, slots=True)
class ScoreFacet:
    """One score name among the logs of a filter: how many scores of it, the average of the numeric ones, and the
    count of each categorical value (most frequent first)."""

    name: str
    count: int
    average: float | None
    values: list[tuple[str, int]]


FACET_NAMES = 12
FACET_VALUES = 8


@dataclass(frozen=True, slots=True)
class ScoreCount:
    """Scores of one name among some logs: of one category (`text`), or the numbers (`text` None, `total` their
    sum)."""

    name: str
    text: str | None
    count: int
    total: float | None


def score_facets(counts: Iterable[ScoreCount]) -> list[ScoreFacet]:
    """The facet of each score name, the names with most scores first: counts, the average of the numbers, the
    categories by count (curation.logs.selectors counts them in the explorer's window)."""
    totals: dict[str, int] = {}
    sums: dict[str, tuple[float, int]] = {}
    texts: dict[str, list[tuple[str, int]]] = {}
    for row in counts:
        totals[row.name] = totals.get(row.name, 0) + row.count
        if row.text is None:
            sums[row.name] = (row.total or 0.0, row.count)
        else:
            texts.setdefault(row.name, []).append((row.text, row.count))
    names = sorted(totals, key=lambda name: (-totals[name], name))[:FACET_NAMES]
    return [
        ScoreFacet(
            name=name,
            count=totals[name],
            average=sums[name][0] / sums[name][1] if name in sums else None,
            values=sorted(texts.get(name, []), key=lambda item: (-item[1], item[0]))[:FACET_VALUES],
        )
        for name in names
    ]
