import json

import orjson
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from curation.fields import OrderedJSONField
from curation.logs.ingest.raw import RawItem, item_make_storable


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    EDITOR = "editor", "Editor"
    VIEWER = "viewer", "Viewer"

    @classmethod
    def rank(cls, role: str) -> int:
        return {"viewer": 1, "editor": 2, "owner": 3}[role]


class Project(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="projects")
    # Where /proxy/openai/v1/… and /proxy/anthropic/… forward this project's calls (docs/proxy.md): the
    # provider's own API, or a compatible one (Azure, OpenRouter, a vLLM server) among LOGTUNE_PROXY_UPSTREAM_HOSTS.
    openai_base_url = models.URLField(default="https://api.openai.com/v1")
    anthropic_base_url = models.URLField(default="https://api.anthropic.com")
    # Personal data found in arriving logs is replaced by placeholders before anything is stored (docs/pii.md).
    redact_pii_on_ingest = models.BooleanField(default=False)
    # Logs sent to the API or imported that no reader can turn into a conversation are stored as "unreadable"
    # with their reason instead of being refused (the proxy always keeps them; docs/ingest.md).
    keep_unreadable = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="membership_unique_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"


class ApiKey(models.Model):
    """A project key. Only a SHA-256 of the full key is stored; `prefix` is what people see in lists.

    A key acts with its `role` inside its own project, as a member with that role would: a viewer key
    reads, an editor key also sends logs and edits datasets, an owner key also reads the audit log."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.EDITOR)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.project.slug})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


def actor_label(user: object, api_key: "ApiKey | None") -> str:
    """Who did something, for a page: the user's name, or the API key's prefix."""
    if user is not None:
        return str(user)
    if api_key is not None:
        return f"API key lt_{api_key.prefix}_…"
    return "a user or key since removed"


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
    that keep key order; `options` the request settings exports carry (`parallel_tool_calls`)."""

    # Not indexed alone: every index below starts with project, and each extra index slows ingestion.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="logs", db_index=False)
    external_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 (NULL = none, unique otherwise)
    provider = models.CharField(max_length=32, blank=True)
    format = models.CharField(max_length=32)
    model = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=LogStatus.choices)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    messages = OrderedJSONField()
    tools = OrderedJSONField(default=list, blank=True)
    options = OrderedJSONField(default=dict, blank=True)
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
            # Keyset pagination and date ranges: newest first within a project.
            models.Index(fields=["project", "-created_at", "-id"], name="logentry_project_created"),
            models.Index(fields=["project", "model", "-created_at"], name="logentry_project_model"),
            models.Index(fields=["project", "status", "-created_at"], name="logentry_project_status"),
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


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class BackgroundWork:
    """Status and progress of what a worker does in the background (imports, bulk jobs, snapshots)."""

    status: str

    def work_counts(self) -> tuple[int, int]:
        """(done, total) in the unit the work is measured in."""
        raise NotImplementedError

    @property
    def progress(self) -> float:
        """Share done, 0..1."""
        if self.status == JobStatus.SUCCEEDED:
            return 1.0
        done, total = self.work_counts()
        return min(1.0, done / total) if total else 0.0

    @property
    def is_finished(self) -> bool:
        return self.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)


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


class Dataset(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    split_seed = models.IntegerField(null=True, blank=True)
    validation_ratio = models.FloatField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="dataset_unique_name")]

    def __str__(self) -> str:
        return self.name


class Split(models.TextChoices):
    TRAIN = "train", "Train"
    VALIDATION = "validation", "Validation"


class DatasetEntry(models.Model):
    """An editable copy of a conversation. `log` points at the source, which never changes; the copy
    is compared with the source's canonical messages to show what was edited.

    When the source log is deleted the entry keeps its copy and loses the link; `source_log_id` and
    `source_deleted_*` say which log it was, when it went and who deleted it, so the entry is not taken
    for one imported from a file (those have no source at all)."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="entries", db_index=False)
    log = models.ForeignKey(LogEntry, null=True, blank=True, on_delete=models.SET_NULL, related_name="dataset_entries")
    source_log_id = models.BigIntegerField(null=True, blank=True)  # the deleted log's id, once `log` is gone
    source_deleted_at = models.DateTimeField(null=True, blank=True)
    source_deleted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source_deleted_by_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    messages = OrderedJSONField()
    tools = OrderedJSONField(default=list, blank=True)
    options = OrderedJSONField(default=dict, blank=True)
    split = models.CharField(max_length=16, choices=Split.choices, default=Split.TRAIN)
    edited = models.BooleanField(default=False)
    model = models.CharField(max_length=200, blank=True)
    turns = models.PositiveIntegerField(default=0)
    est_tokens = models.PositiveIntegerField(default=0)
    search_text = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "dataset entries"
        constraints = [
            models.UniqueConstraint(
                fields=["dataset", "log"], condition=Q(log__isnull=False), name="entry_unique_log"
            ),
        ]
        indexes = [models.Index(fields=["dataset", "split", "id"], name="entry_dataset_split")]

    def __str__(self) -> str:
        return f"entry {self.pk} of dataset {self.dataset_id}"

    @property
    def source_deleted(self) -> bool:
        """Copied from a log that was deleted since (an imported entry never had one)."""
        return self.log_id is None and self.source_deleted_at is not None

    @property
    def source_deleted_by_label(self) -> str:
        return actor_label(self.source_deleted_by, self.source_deleted_by_key)


class DatasetSnapshot(BackgroundWork, models.Model):
    """A frozen dataset: an immutable JSONL file (OpenAI chat format) with its SHA-256 and counts.
    Fine-tunes train on snapshots, so a job can be reproduced after the dataset moves on.

    A snapshot a fine-tune trained on outlives its dataset: deleting the dataset deletes its other
    snapshots, and leaves this one with `dataset` null, its project, and the dataset's name then."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="snapshots")
    dataset = models.ForeignKey(Dataset, null=True, blank=True, on_delete=models.SET_NULL, related_name="snapshots")
    dataset_name = models.CharField(max_length=200, blank=True)  # the dataset's name when it was deleted
    # A large dataset is written by a worker: until it succeeds, there is no file and no hash yet.
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    file = models.FileField(upload_to="snapshots/%Y/%m/", blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    rows_total = models.BigIntegerField(default=0)  # while writing: the entries counted when it was asked for
    rows_done = models.BigIntegerField(default=0)
    rows_train = models.BigIntegerField(default=0)
    rows_validation = models.BigIntegerField(default=0)
    split_seed = models.IntegerField(null=True, blank=True)
    validation_ratio = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"snapshot {self.sha256[:12] or self.pk} of {self.dataset_label} ({self.status})"

    @property
    def dataset_label(self) -> str:
        """The dataset's name, or its name when it was deleted."""
        return self.dataset.name if self.dataset is not None else self.dataset_name

    def work_counts(self) -> tuple[int, int]:
        return self.rows_done, self.rows_total


class EntryEmbedding(models.Model):
    """The sentence embedding of a dataset entry (curation.text.embeddings): 384 float32 as bytes, little-endian.

    `text_hash` is the SHA-256 of the text that was embedded (`text_of_conversation`): an entry edited since
    holds another text, so its embedding is stale and is computed again on the next run."""

    entry = models.OneToOneField(DatasetEntry, on_delete=models.CASCADE, related_name="embedding")
    vector = models.BinaryField()
    text_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"embedding of entry {self.entry_id}"


class EmbeddingWork(BackgroundWork, models.Model):
    """What the two embedding jobs share: who asked, status, and progress counted in texts looked at."""

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    total = models.BigIntegerField(default=0)  # texts to look at when the run started
    done = models.BigIntegerField(default=0)  # texts looked at, whether embedded now or already fresh
    embedded = models.BigIntegerField(default=0)  # texts embedded by this job
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    def work_counts(self) -> tuple[int, int]:
        return self.done, self.total


class EmbeddingJob(EmbeddingWork):
    """Embedding the entries of a dataset that have none, or a stale one, in committed batches with progress."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="embedding_jobs")

    def __str__(self) -> str:
        return f"embeddings of {self.dataset_id}: {self.done}/{self.total} ({self.status})"


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


class RedactionJob(BackgroundWork, models.Model):
    """Redacting the personal data of a large dataset's entries (curation.datasets.redaction.services), run by a worker
    in batches, each committed with the job's progress and resume point, so a run that stops resumes after it."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="redaction_jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL)  # for the audit event
    kinds = models.JSONField(default=list)  # the pii kinds replaced, in the library's order
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    total = models.BigIntegerField(default=0)  # entries of the dataset when the job was created
    done = models.BigIntegerField(default=0)  # entries looked at
    changed = models.BigIntegerField(default=0)  # entries that the redaction changed
    last_id = models.BigIntegerField(default=0)  # resume point: entries are walked by ascending id
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)  # when a run last committed a batch
    # When the task was last handed to the broker; None when that failed (the broker was down): the reaper sends it.
    enqueued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"redaction of {self.dataset_id}: {self.done}/{self.total} ({self.status})"

    def work_counts(self) -> tuple[int, int]:
        return self.done, self.total
