"""Scores of logs: feedback such as thumbs up or down, a 1-5 rating or a judge's score, by which teams pick the logs
worth training on. A log may hold several scores of one name (several people rate it)."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from curation.logs.ingest.scores import NAME_PATTERN, TEXT_VALUE_MAX
from curation.models.logs import LogEntry
from curation.models.projects import ApiKey, Project


class ScoreSource(models.TextChoices):
    USER = "user", "User"
    API = "api", "API"
    JUDGE = "judge", "Judge"


class LogScore(models.Model):
    """One score of a log: a number (`value_number`) or a category (`value_text`), exactly one of them."""

    # Covered by the (log, name) index.
    log = models.ForeignKey(LogEntry, on_delete=models.CASCADE, related_name="scores", db_index=False)
    # The log's project, again: the filters and facets read one project's scores of a name from one index, without
    # joining its logs. Covered by the indexes below.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="log_scores", db_index=False)
    name = models.CharField(max_length=50)
    value_number = models.FloatField(null=True, blank=True)
    value_text = models.CharField(max_length=TEXT_VALUE_MAX, null=True, blank=True)  # noqa: DJ001 (NULL: a number)
    source = models.CharField(max_length=8, choices=ScoreSource.choices)
    comment = models.TextField(blank=True)
    # Indexed below where set only: scores sent with logs have neither, and every index slows ingestion.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, db_index=False
    )
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(value_number__isnull=False, value_text__isnull=True)
                | Q(value_number__isnull=True, value_text__isnull=False),
                name="logscore_one_value",
            ),
            models.CheckConstraint(condition=Q(name__regex=f"^{NAME_PATTERN}$"), name="logscore_name_slug"),
            models.CheckConstraint(condition=Q(source__in=ScoreSource.values), name="logscore_source_known"),
        ]
        indexes = [
            # A log's scores (its page, the API), and "does this log have a score named N" from the log's side.
            models.Index(fields=["log", "name"], name="logscore_log_name"),
            # The filters: the logs with a score of a name in a range, or equal to a category, found from the
            # index alone (the log id is its last column). Each holds the scores of its kind only, so a score
            # stored updates one of them.
            models.Index(
                fields=["project", "name", "value_number", "log"],
                condition=Q(value_number__isnull=False),
                name="logscore_project_number",
            ),
            models.Index(
                fields=["project", "name", "value_text", "log"],
                condition=Q(value_text__isnull=False),
                name="logscore_project_text",
            ),
            # Deleting a user or a key sets their scores' column to NULL.
            models.Index(fields=["created_by"], condition=Q(created_by__isnull=False), name="logscore_created_by"),
            models.Index(fields=["api_key"], condition=Q(api_key__isnull=False), name="logscore_api_key"),
        ]

    def __str__(self) -> str:
        return f"{self.name}={self.value} on log {self.log_id}"

    @property
    def value(self) -> float | str:
        return self.value_number if self.value_number is not None else self.value_text  # type: ignore[return-value]
