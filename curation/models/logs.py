"""Logs and what hangs on them: tags, imports, bulk jobs, saved views, the audit log, and the embeddings of logs
that "more like this" searches."""

import json

import orjson
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from curation.fields import OrderedJSONField
from curation.logs.ingest.raw import RawItem, item_make_storable
from curation.models.jobs import BackgroundWork, EmbeddingWork, JobStatus
from curation.models.projects import ApiKey, Project


class Tag(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=100)
    color = models.CharField(max_length=7, default="#64748b")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="tag_unique_name")]

    def __str__(self) -> str:
        return self.name


class LogStatus(models.TextChoices):
    SUCCESS = "success", "Success"
    ERROR = "error", "Error"
    # No reader could turn it into a conversation (yet): the original and the reason (error_message) are kept,
    # and `manage.py reparse_logs` reads it again after an upgrade.
    UNREADABLE = "unreadable", "Unreadable"


class LogEntry(models.Model):
    """One LLM call. `original` is the log's JSON text exactly as received and is never changed;
    `messages`/`tools` are the canonical conversation (OpenAI chat shape) every reader produces, in columns
    that keep key order; `options` the request settings exports carry (`parallel_tool_calls`, `response_format`)."""

    # Not indexed alone: every index below starts with project, and each extra index slows ingestion.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="logs", db_index=False)
    external_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 (NULL = none, unique otherwise)
    provider = models.CharField(max_length=32, blank=True)
    format = models.CharField(max_length=32)
    model = models.CharField(max_length=200, blank=True)  # as asked for ("gpt-4o"), else as answered
    # The model that answered, as the response names it (the dated snapshot, "gpt-4o-2024-08-06"); "" unknown.
    response_model = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=LogStatus.choices)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    messages = OrderedJSONField()
    tools = OrderedJSONField(default=list, blank=True)
    options = OrderedJSONField(default=dict, blank=True)
    # The other answers of an `n` > 1 call: [{"index", "message", "finish_reason"}], the first choice being the
    # conversation's own answer.
    alternatives = OrderedJSONField(default=list, blank=True)
    original = models.TextField()
    # What had to change so the log could be stored ("request.messages.0.content: NUL character replaced by U+FFFD").
    notes = models.JSONField(default=list, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    total_tokens = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    search_text = models.TextField(blank=True)
    # The kinds of personal data in the conversation (curation.text.pii.findings.KINDS), sorted; [] when none
    # (docs/pii.md).
    pii = models.JSONField(default=list, blank=True)
    # Not scanned for personal data yet: a request that had spent its time for it stored the log, a worker scans it.
    pii_pending = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    ingested_at = models.DateTimeField(default=timezone.now)
    tags = models.ManyToManyField(Tag, through="LogTag", related_name="logs")

    class Meta:
        verbose_name_plural = "log entries"
        constraints = [
            models.UniqueConstraint(
                fields=["project", "external_id"],
                condition=Q(external_id__isnull=False),
                name="logentry_unique_external_id",
            ),
        ]
        indexes = [
            # Keyset pagination and date ranges: newest first within a project. The columns the dashboard sums
            # ride along, so it reads this index alone (an index-only scan) instead of the wide rows.
            models.Index(
                fields=["project", "-created_at", "-id"],
                include=["total_tokens", "cost_usd", "latency_ms", "status"],
                name="logentry_project_created",
            ),
            models.Index(fields=["project", "model", "-created_at"], name="logentry_project_model"),
            models.Index(fields=["project", "status", "-created_at"], name="logentry_project_status"),
            # The explorer's sorts by a column (curation.logs.selectors.log_page), read forwards or backwards; the
            # logs without a value are listed after, newest first, through logentry_project_created.
            *(
                models.Index(
                    fields=["project", column, "id"],
                    condition=Q(**{f"{column}__isnull": False}),
                    name=f"logentry_{name}",
                )
                for column, name in (("total_tokens", "tokens"), ("latency_ms", "latency"), ("cost_usd", "cost"))
            ),
            # Small: only the logs a worker has still to scan for personal data.
            models.Index(fields=["project"], condition=Q(pii_pending=True), name="logentry_pii_pending"),
        ]

    def __str__(self) -> str:
        return f"log {self.pk} ({self.model or self.format})"

    @property
    def original_value(self) -> object:
        """The original decoded, keys in the order sent; None when it is not JSON (an unreadable proxy body)."""
        return original_decode(self.original)


def original_decode(text: str) -> object:
    """An original's value, keys in the order sent; lone surrogate escapes (which orjson refuses) come back as
    U+FFFD, as the log's canonical columns hold them, so the value can be written out as UTF-8."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return item_make_storable(RawItem(value=value, text=None)).value


class LogTag(models.Model):
    # Covered by the unique (log, tag) and the (tag, log) index.
    log = models.ForeignKey(LogEntry, on_delete=models.CASCADE, db_index=False)
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, db_index=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["log", "tag"], name="logtag_unique")]
        indexes = [models.Index(fields=["tag", "log"], name="logtag_tag_log")]

    def __str__(self) -> str:
        return f"{self.tag_id} on {self.log_id}"


class ImportJob(BackgroundWork, models.Model):
    """A JSONL / JSONL.gz file of logs being imported. Progress is committed with every batch,
    so a redelivered task resumes after the last committed line instead of starting over.

    One run at a time: a worker claims the job (`attempts` + 1) and writes each batch only while the row
    still carries its attempt; its heartbeat tells the reaper whether it is alive."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="imports")
    # Set when the file is a training set imported straight into a dataset (entries, no logs).
    dataset = models.ForeignKey("Dataset", null=True, blank=True, on_delete=models.CASCADE, related_name="imports")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    source_name = models.CharField(max_length=255)
    # The shape every line is read as (curation.logs.ingest.envelope.FORMATS); "" detects each line's own.
    format = models.CharField(max_length=32, blank=True)
    file = models.FileField(upload_to="imports/%Y/%m/", null=True, blank=True)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    bytes_total = models.BigIntegerField(default=0)
    bytes_done = models.BigIntegerField(default=0)
    lines_done = models.BigIntegerField(default=0)
    accepted = models.BigIntegerField(default=0)
    duplicates = models.BigIntegerField(default=0)
    rejected = models.BigIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)  # runs claimed, the current one included
    worker = models.CharField(max_length=255, blank=True)  # the worker of the current run
    heartbeat_at = models.DateTimeField(null=True, blank=True)  # last sign of life of the current run
    # When the task was last handed to the broker; None when that failed (the broker was down): the reaper sends it.
    enqueued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"import {self.pk} of {self.source_name} ({self.status})"

    def work_counts(self) -> tuple[int, int]:
        return self.bytes_done, self.bytes_total  # bytes of the file as stored


class ImportLineError(models.Model):
    """One rejected line of an import, for the downloadable error report."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="line_errors")
    line = models.BigIntegerField()
    error = models.TextField()

    class Meta:
        ordering = ["line"]
        indexes = [models.Index(fields=["job", "line"], name="importlineerror_job_line")]

    def __str__(self) -> str:
        return f"line {self.line}: {self.error}"


class SavedView(models.Model):
    """A named filter of the log explorer: the query string of its URL."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="saved_views")
    name = models.CharField(max_length=100)
    query = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="savedview_unique_name")]

    def __str__(self) -> str:
        return self.name


class AuditEvent(models.Model):
    """Who did what to how many rows: deletions, bulk tag changes, exports, key changes."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="audit_events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=64)
    query = models.TextField(blank=True)  # the filter, as a query string, when the action used one
    count = models.BigIntegerField(default=0)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["project", "-created_at"], name="auditevent_project_created")]

    def __str__(self) -> str:
        return f"{self.action} ×{self.count}"


class BulkAction(models.TextChoices):
    TAG_ADD = "tag_add", "Add tags"
    TAG_REMOVE = "tag_remove", "Remove tags"
    DELETE = "delete", "Delete"
    DATASET_ADD = "dataset_add", "Add to dataset"


class BulkJob(BackgroundWork, models.Model):
    """A bulk action on every log matching a filter, run by a worker in chunks with progress, resumable after a crash.

    One run at a time: a worker claims the job (`attempts` + 1) and commits each chunk only while the row still
    carries its attempt; its heartbeat tells the reaper whether it is alive."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="bulk_jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    # The key that asked for it, when a key did: the audit event and the entries of deleted logs name it.
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=16, choices=BulkAction.choices)
    query = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)  # tag names, dataset id
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    total = models.BigIntegerField(default=0)
    done = models.BigIntegerField(default=0)
    changed = models.BigIntegerField(default=0)
    last_id = models.BigIntegerField(null=True, blank=True)  # resume point: logs are walked by descending id
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)  # runs claimed, the current one included
    worker = models.CharField(max_length=255, blank=True)  # the worker of the current run
    heartbeat_at = models.DateTimeField(null=True, blank=True)  # last sign of life of the current run
    # When the task was last handed to the broker; None when that failed (the broker was down): the reaper sends it.
    enqueued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} on {self.total} logs ({self.status})"

    def work_counts(self) -> tuple[int, int]:
        return self.done, self.total


class LogEmbedding(models.Model):
    """The sentence embedding of a log (curation.text.embeddings), for "more like this" in the explorer: 384
    float32 as bytes, little-endian, of `text_of_conversation(log.messages)`, whose SHA-256 is `text_hash`."""

    log = models.OneToOneField(LogEntry, on_delete=models.CASCADE, related_name="embedding")
    # The log's project, again: a search scans and counts one project's vectors without joining its logs.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="log_embeddings", db_index=False)
    vector = models.BinaryField()
    text_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["project", "log"], name="logembedding_project_log")]

    def __str__(self) -> str:
        return f"embedding of log {self.log_id}"


class LogEmbeddingJob(EmbeddingWork):
    """Embedding a project's newest logs (at most `limit`) that have no embedding or a stale one, newest first,
    in committed batches with progress: the index "more like this" searches. `total` is min(limit, logs)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="log_embedding_jobs")
    limit = models.BigIntegerField()  # the newest logs of the project looked at

    def __str__(self) -> str:
        return f"log embeddings of {self.project_id}: {self.done}/{self.total} ({self.status})"
