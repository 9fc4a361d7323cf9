"""Reading the scores of logs: one log's, and the scores of the logs a filter matches (the explorer's facet)."""

from dataclasses import dataclass

from django.db.models import Count, QuerySet, Sum

from curation.models import LogEntry, LogScore, Project


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


def score_facets(*, project: Project, log_ids: QuerySet) -> list[ScoreFacet]:
    """The scores of the logs `log_ids` (a query of ids of `project`'s logs) by name, the names with most scores
    first: one query, grouped in the database by name and category (numbers are one group per name)."""
    rows = (
        LogScore.objects.filter(project=project, log_id__in=log_ids)
        .order_by()
        .values("name", "value_text")
        .annotate(n=Count("id"), total=Sum("value_number"))
    )
    counts: dict[str, int] = {}
    sums: dict[str, tuple[float, int]] = {}
    texts: dict[str, list[tuple[str, int]]] = {}
    for row in rows:
        name = row["name"]
        counts[name] = counts.get(name, 0) + row["n"]
        if row["value_text"] is None:
            sums[name] = (row["total"] or 0.0, row["n"])
        else:
            texts.setdefault(name, []).append((row["value_text"], row["n"]))
    names = sorted(counts, key=lambda name: (-counts[name], name))[:FACET_NAMES]
    return [
        ScoreFacet(
            name=name,
            count=counts[name],
            average=sums[name][0] / sums[name][1] if name in sums else None,
            values=sorted(texts.get(name, []), key=lambda item: (-item[1], item[0]))[:FACET_VALUES],
        )
        for name in names
    ]
