"""Datasets: their entries, snapshots, the embeddings of entries, and the jobs that embed or redact them."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from curation.fields import OrderedJSONField
from curation.models.jobs import BackgroundWork, EmbeddingWork, JobStatus
from curation.models.logs import LogEntry
from curation.models.projects import ApiKey, Project, actor_label


class DatasetKind(models.TextChoices):
    """What a dataset's entries are: conversations to train on (SFT), or preference pairs (DPO), each entry a
    conversation whose last assistant turn is the chosen answer, with the rejected one beside it."""

    CHAT = "chat", "Conversations"
    PREFERENCE = "preference", "Preference pairs"


class Dataset(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=16, choices=DatasetKind.choices, default=DatasetKind.CHAT)
    split_seed = models.IntegerField(null=True, blank=True)
    validation_ratio = models.FloatField(null=True, blank=True)
    # Generated (synthetic) entries go to the validation split only when this says so: otherwise an evaluation on
    # the validation split would grade the generator rather than the logs the model will meet.
    synthetic_in_validation = models.BooleanField(default=False)
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
    # A preference pair's rejected answer (one assistant message); the chosen one is the last assistant turn of
    # `messages`. Null for a conversation of a chat dataset.
    rejected = OrderedJSONField(null=True, blank=True)
    split = models.CharField(max_length=16, choices=Split.choices, default=Split.TRAIN)
    edited = models.BooleanField(default=False)
    # Written by a generator rather than logged: counted apart in the statistics and, unless the dataset says
    # otherwise, kept out of the validation split. `provenance` says where a row came from: the generation job,
    # the endpoint and model, the prompt template's hash, the document, chunk and position, the seed log; for a
    # pair, the edited entry or the vote it was made from.
    synthetic = models.BooleanField(default=False)
    provenance = OrderedJSONField(default=dict, blank=True)
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


class EmbeddingJob(EmbeddingWork):
    """Embedding the entries of a dataset that have none, or a stale one, in committed batches with progress."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="embedding_jobs")

    def __str__(self) -> str:
        return f"embeddings of {self.dataset_id}: {self.done}/{self.total} ({self.status})"


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
