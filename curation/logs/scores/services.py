"""Scores of logs, given one by one (the API, the log page): adding and deleting them, each audited. Scores sent
with logs are stored by `logs_ingest` (curation/logs/services.py)."""

from collections.abc import Sequence

from django.contrib.auth.models import User
from django.db import transaction

from curation.audit.services import audit_record
from curation.logs.ingest.scores import ScoreIn
from curation.models import ApiKey, LogEntry, LogScore, ScoreSource


@transaction.atomic
def log_scores_add(
    *, log: LogEntry, scores: Sequence[ScoreIn], actor: User | None = None, api_key: ApiKey | None = None
) -> list[LogScore]:
    """Add checked scores (curation.logs.ingest.scores.score_read) to a log, audited as `logs.score_add`. A score
    without its own source is an `api` score when a key adds it, a `user` score otherwise."""
    default = ScoreSource.API if api_key is not None else ScoreSource.USER
    rows = LogScore.objects.bulk_create(
        [
            LogScore(
                log=log, project_id=log.project_id, name=score.name, value_number=score.number,
                value_text=score.text, comment=score.comment, source=score.source or default,
                created_by=actor, api_key=api_key,
            )
            for score in scores
        ]
    )  # fmt: skip
    audit_record(project=log.project, action="logs.score_add", count=len(rows), actor=actor, api_key=api_key,
                 detail={"log": log.pk, "scores": [{"id": row.pk, "name": row.name, "value": row.value}
                                                   for row in rows]})  # fmt: skip
    return rows


@transaction.atomic
def log_score_delete(*, score: LogScore, actor: User | None = None, api_key: ApiKey | None = None) -> None:
    """Delete one score, audited as `logs.score_delete` with what it was."""
    score.delete()
    audit_record(project=score.project, action="logs.score_delete", count=1, actor=actor, api_key=api_key,
                 detail={"log": score.log_id, "name": score.name, "value": score.value,
                         "source": score.source})  # fmt: skip
