"""Fine-tunes: the jobs, their metrics over time, per-example losses, the base models on offer, and the
playground's generations. The trainer itself (`training.trainer`) knows nothing of these tables."""

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from curation.common.server_paths import media_name, paths_hidden
from curation.fields import OrderedJSONField
from curation.models import (
    ApiKey,
    BackgroundWork,
    Dataset,
    DatasetEntry,
    DatasetSnapshot,
    Project,
    actor_label,
)
from training.evaluation import metrics
from training.evaluation.gate import GATE_FIELDS, GateRule


class FineTuneStatus(models.TextChoices):
    """JobStatus plus "cancelled", which only a fine-tune can be. The first four values are JobStatus's,
    so the shared progress and waiting helpers read these rows the same way."""

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED = (FineTuneStatus.SUCCEEDED, FineTuneStatus.FAILED, FineTuneStatus.CANCELLED)


class Method(models.TextChoices):
    LORA = "lora", "LoRA"
    QLORA = "qlora", "QLoRA (4-bit base, CUDA)"
    FULL = "full", "Full fine-tuning"
    FREEZE = "freeze", "Full, first layers frozen"


class BaseModel(models.Model):
    """A model the GPU workers can load: a hub id or a folder they can read. Besides these rows, the ids
    listed in LOGTUNE_BASE_MODELS are offered; `create_demo_model` registers a tiny local one."""

    name = models.CharField(max_length=200, unique=True)
    path = models.CharField(max_length=1000, help_text="Hub id or folder, as the trainer's `model` setting.")
    description = models.TextField(blank=True)
    # Trainer settings this model wants unless told otherwise ({"learning_rate": 0.01}): the fine-tune form's
    # initial values and the API's defaults, over TrainConfig's own.
    default_hyperparameters = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


# Why a fine-tune whose weights were deleted cannot be merged, converted, asked or deployed.
WEIGHTS_DELETED = "The weights of this fine-tune were deleted; its metrics and evaluation are all that is left."


class FineTuneJob(BackgroundWork, models.Model):
    """A base model trained on a dataset snapshot by a GPU worker. The worker relays the trainer's events
    into `MetricPoint` rows and the progress columns here, and writes `heartbeat_at` every second or so;
    the reaper re-queues or fails a running job whose heartbeat stops."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="finetunes")
    # A fine-tune outlives its dataset: deleting the dataset keeps the job, its weights and the snapshot it
    # trained on (which keeps the dataset's name). Only deleting the job itself removes them.
    dataset = models.ForeignKey(Dataset, null=True, blank=True, on_delete=models.SET_NULL, related_name="finetunes")
    snapshot = models.ForeignKey(DatasetSnapshot, on_delete=models.RESTRICT, related_name="finetunes")
    base_model = models.ForeignKey(BaseModel, null=True, blank=True, on_delete=models.SET_NULL)
    model = models.CharField(max_length=1000)  # what the trainer loads: the base model's path when it has a row
    method = models.CharField(max_length=16, choices=Method.choices, default=Method.LORA)
    # Every TrainConfig field but model, data_path, output_dir and method, defaults resolved on submit,
    # so a job can be run again the same way after the defaults change.
    hyperparameters = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=FineTuneStatus.choices, default=FineTuneStatus.QUEUED)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    eta_seconds = models.FloatField(null=True, blank=True)
    # What the trainer reported besides steps: its start event, checkpoints, warnings, the done event,
    # and the interruptions of earlier attempts.
    summary = models.JSONField(default=dict, blank=True)
    evaluation = models.JSONField(default=dict, blank=True)  # evaluation.json, once succeeded
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    events_offset = models.BigIntegerField(default=0)  # bytes of events.jsonl already relayed
    worker = models.CharField(max_length=255, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # When its task was last handed to the broker; null when that failed (the broker was down): the reaper
    # sends it then. A worker that gets it twice finds it claimed and does nothing.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    merge_status = models.CharField(max_length=16, choices=FineTuneStatus.choices, blank=True)
    merge_error = models.TextField(blank=True)
    merge_started_at = models.DateTimeField(null=True, blank=True)
    # Converting the result to GGUF with llama.cpp's converter (training/exports), like a merge: a GPU-queue task.
    gguf_status = models.CharField(max_length=16, choices=FineTuneStatus.choices, blank=True)
    gguf_error = models.TextField(blank=True)
    gguf_started_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Set when the weights (adapter, merged weights, checkpoints) were deleted and the row, metrics and
    # evaluation kept: by a user, or by an API key.
    weights_deleted_at = models.DateTimeField(null=True, blank=True)
    weights_deleted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    weights_deleted_by_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["project", "-created_at"], name="finetune_project_created"),
            models.Index(fields=["dataset", "-created_at"], name="finetune_dataset_created"),
            models.Index(fields=["status", "heartbeat_at"], name="finetune_status_heartbeat"),
        ]

    def __str__(self) -> str:
        return f"fine-tune {self.pk} of {self.model} ({self.status})"

    def work_counts(self) -> tuple[int, int]:
        return self.step, self.total_steps

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    @property
    def has_weights(self) -> bool:
        """Succeeded, and its weights not deleted since: they can be downloaded, merged and asked."""
        return self.status == FineTuneStatus.SUCCEEDED and self.weights_deleted_at is None

    def weights_or_refuse(self, unsucceeded: str) -> None:
        """A ValidationError (on `status`) unless the weights are here: `unsucceeded` says why a fine-tune that did
        not succeed cannot serve ("Only a succeeded fine-tune has an adapter to merge.")."""
        if self.status != FineTuneStatus.SUCCEEDED:
            raise ValidationError({"status": unsucceeded})
        if self.weights_deleted_at is not None:
            raise ValidationError({"status": WEIGHTS_DELETED})

    @property
    def weights_deleted_by_label(self) -> str:
        return actor_label(self.weights_deleted_by, self.weights_deleted_by_key)

    @property
    def dataset_name(self) -> str:
        """The dataset's name, or, once it is deleted, its name then (kept by the snapshot)."""
        return self.dataset.name if self.dataset is not None else self.snapshot.dataset_name

    @property
    def uses_adapter(self) -> bool:
        return self.method in (Method.LORA, Method.QLORA)

    @property
    def output_dir(self) -> Path:
        return Path(settings.MEDIA_ROOT) / "finetunes" / str(self.pk)

    @property
    def adapter_dir(self) -> Path:
        """The result: a PEFT adapter, or the full weights for full and freeze."""
        return self.output_dir / "adapter"

    @property
    def merged_dir(self) -> Path:
        return self.output_dir / "merged"

    @property
    def gguf_path(self) -> Path:
        """The GGUF file converted from the result: a LoRA adapter's, or the full weights'."""
        return self.output_dir / "gguf" / f"finetune-{self.pk}{'-lora' if self.uses_adapter else ''}.gguf"

    @property
    def log_path(self) -> Path:
        return self.output_dir / "train.log"

    @property
    def folder_name(self) -> str:
        """The job's folder as members see it: its place in the data folder (`finetunes/7`)."""
        return media_name(self.output_dir)

    @property
    def model_name(self) -> str:
        """What the trainer loads as members see it: a hub id, or a folder of the data folders by its place there."""
        return paths_hidden(self.model)

    @property
    def tuned_model(self) -> tuple[str, str | None]:
        """(model, adapter_dir) to load the fine-tuned model with."""
        if self.uses_adapter:
            return self.model, str(self.adapter_dir)
        return str(self.adapter_dir), None


class MetricPoint(models.Model):
    """One training step or evaluation the trainer reported. Points after the checkpoint a resumed run
    starts from are deleted when it starts, so a step is never shown twice."""

    job = models.ForeignKey(FineTuneJob, on_delete=models.CASCADE, related_name="metrics", db_index=False)
    step = models.PositiveIntegerField()
    epoch = models.FloatField(null=True, blank=True)
    train_loss = models.FloatField(null=True, blank=True)
    eval_loss = models.FloatField(null=True, blank=True)  # step 0: the base model
    learning_rate = models.FloatField(null=True, blank=True)
    grad_norm = models.FloatField(null=True, blank=True)
    tokens_per_second = models.FloatField(null=True, blank=True)
    time = models.DateTimeField()

    class Meta:
        ordering = ["step", "id"]
        indexes = [models.Index(fields=["job", "step", "id"], name="metricpoint_job_step")]

    def __str__(self) -> str:
        return f"step {self.step} of job {self.job_id}"


class ExampleLoss(models.Model):
    """The fine-tuned model's loss on one training example: the highest are the likeliest bad labels."""

    job = models.ForeignKey(FineTuneJob, on_delete=models.CASCADE, related_name="example_losses", db_index=False)
    entry = models.ForeignKey(DatasetEntry, null=True, blank=True, on_delete=models.SET_NULL, related_name="losses")
    line = models.PositiveIntegerField()  # of the snapshot file, from 1
    loss = models.FloatField()
    tokens = models.PositiveIntegerField(default=0)  # trained tokens of the example

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "line"], name="exampleloss_unique_line")]
        indexes = [models.Index(fields=["job", "-loss"], name="exampleloss_job_loss")]

    def __str__(self) -> str:
        return f"line {self.line}: {self.loss:.3f}"


class Generation(BackgroundWork, models.Model):
    """A playground prompt answered by the base and the fine-tuned model, on a GPU worker."""

    job = models.ForeignKey(FineTuneJob, on_delete=models.CASCADE, related_name="generations")
    messages = models.JSONField()
    max_new_tokens = models.PositiveIntegerField(default=64)
    status = models.CharField(max_length=16, choices=FineTuneStatus.choices, default=FineTuneStatus.QUEUED)
    base_output = models.TextField(blank=True)
    tuned_output = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"generation {self.pk} of job {self.job_id} ({self.status})"

    def work_counts(self) -> tuple[int, int]:
        return 0, 1  # one answer pair, done at once

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED


class LossPreview(BackgroundWork, models.Model):
    """Which tokens of an entry count toward the loss under a base model's chat template. A worker works it
    out: loading a tokenizer through transformers imports torch, which web processes never load."""

    entry = models.ForeignKey(DatasetEntry, on_delete=models.CASCADE, related_name="loss_previews", db_index=False)
    base_model = models.CharField(max_length=200)  # as offered: a BaseModel name or a LOGTUNE_BASE_MODELS id
    status = models.CharField(max_length=16, choices=FineTuneStatus.choices, default=FineTuneStatus.QUEUED)
    pieces = models.JSONField(default=list, blank=True)  # [{"text", "trained"}], runs of tokens alike
    tokens = models.PositiveIntegerField(default=0)
    trained_tokens = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["entry", "base_model", "-created_at"], name="losspreview_entry_model")]

    def __str__(self) -> str:
        return f"loss preview of entry {self.entry_id} under {self.base_model} ({self.status})"

    def work_counts(self) -> tuple[int, int]:
        return 0, 1

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED


class ModelEndpoint(models.Model):
    """An OpenAI-compatible chat API a project calls (a judge, a teacher, a generator): vLLM, Ollama, llama.cpp's
    server, TGI or a provider. Its API key is stored encrypted (training.endpoints.secrets) and never shown again;
    only its last four characters are kept in the clear, to tell keys apart."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="endpoints")
    name = models.CharField(max_length=100)
    base_url = models.CharField(max_length=500, help_text="Up to /v1, e.g. https://api.openai.com/v1.")
    model = models.CharField(max_length=200, help_text="The `model` each call names.")
    api_key_encrypted = models.TextField(blank=True)  # a Fernet token; "" when the endpoint takes no key
    api_key_hint = models.CharField(max_length=8, blank=True)  # "…" and the key's last four characters
    max_concurrency = models.PositiveSmallIntegerField(default=8)
    timeout_s = models.PositiveIntegerField(default=120)
    # USD per million tokens; null: the price table's price for `model`, if it has one (curation/logs/pricing.py).
    input_price_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    output_price_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="modelendpoint_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.model})"


class EvaluationRun(BackgroundWork, models.Model):
    """A fine-tune judged on the validation split of the snapshot it trained on: the tuned model's answers against
    the base model's and against the logged answers (the teacher), by metrics with intervals and, with a judge
    endpoint, by pairwise verdicts. A GPU worker writes the answers; a CPU worker scores them and asks the judge."""

    job = models.ForeignKey(FineTuneJob, on_delete=models.CASCADE, related_name="evaluations")
    status = models.CharField(max_length=16, choices=FineTuneStatus.choices, default=FineTuneStatus.QUEUED)
    stage = models.CharField(max_length=16, blank=True)  # "answers" (GPU), "scoring" (metrics and the judge)
    # The judge; null: no judge (metrics only), or its endpoint was removed since (judge_name keeps which it was).
    judge = models.ForeignKey("ModelEndpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    judge_name = models.CharField(max_length=200, blank=True)  # "endpoint (model)" when the run started
    rubric = models.TextField(blank=True)
    max_examples = models.PositiveIntegerField(default=100)
    max_new_tokens = models.PositiveIntegerField(default=256)
    # Logs of the project outside the training snapshot answered by both models (forgetting); 0: none.
    retention_examples = models.PositiveIntegerField(default=100)
    slice_key = models.CharField(max_length=100, blank=True)  # a metadata key every metric is also broken down by
    done = models.PositiveIntegerField(default=0)  # judge calls answered
    total = models.PositiveIntegerField(default=0)  # judge calls to make
    examples = models.JSONField(default=list, blank=True)  # [{entry_id, line, prompt, reference, base, tuned}]
    results = models.JSONField(default=dict, blank=True)
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_by_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"evaluation {self.pk} of job {self.job_id} ({self.status})"

    def work_counts(self) -> tuple[int, int]:
        return self.done, self.total

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED


class RegressionSet(models.Model):
    """A dataset or a snapshot pinned by a project as a regression set: every evaluation run of the project's
    fine-tunes also answers its conversations, so a new model is checked on what earlier ones had to get right. A
    pinned dataset is read from its newest snapshot at each run; a pinned snapshot never changes."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="regression_sets")
    dataset = models.ForeignKey(Dataset, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    snapshot = models.ForeignKey(DatasetSnapshot, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(dataset__isnull=False, snapshot__isnull=True)
                | models.Q(dataset__isnull=True, snapshot__isnull=False),
                name="regressionset_dataset_or_snapshot",
            ),
            models.UniqueConstraint(fields=["project", "dataset"], name="regressionset_unique_dataset"),
            models.UniqueConstraint(fields=["project", "snapshot"], name="regressionset_unique_snapshot"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def name(self) -> str:
        if self.snapshot is not None:
            return f"snapshot {self.snapshot_id} of {self.snapshot.dataset_label}"
        return f"dataset {self.dataset.name if self.dataset else self.dataset_id}"


class Comparison(models.TextChoices):
    """What the tuned model's answer is compared with: the base model's answer, or the logged one (the teacher)."""

    BASE = "base", "Base model"
    TEACHER = "teacher", "Logged answer (the teacher)"


class Outcome(float, models.Choices):
    """A verdict for the tuned model, in the values the judge's verdicts and win rates use (metrics.WIN…)."""

    WIN = metrics.WIN, "Win"
    TIE = metrics.TIE, "Tie"
    LOSS = metrics.LOSS, "Loss"


class EvaluationVote(models.Model):
    """One person's blind verdict on one example of a finished evaluation run: the tuned model's answer against the
    base model's or the logged one. A person votes once per example and comparison; voting again replaces it."""

    run = models.ForeignKey(EvaluationRun, on_delete=models.CASCADE, related_name="votes", db_index=False)
    example = models.PositiveIntegerField()  # its index in run.examples
    comparison = models.CharField(max_length=16, choices=Comparison.choices)
    voter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    outcome = models.FloatField(choices=Outcome.choices)
    # The blind page showed the tuned model's answer as "1"; null: the vote came through the API, which shows nothing.
    tuned_first = models.BooleanField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "example", "comparison", "voter"], name="evaluationvote_unique")
        ]
        indexes = [models.Index(fields=["run", "-created_at", "-id"], name="evaluationvote_run_created")]

    def __str__(self) -> str:
        return f"vote on example {self.example} of evaluation {self.run_id} ({self.comparison}: {self.outcome})"


_DEFAULT_RULE = GateRule()


class PromotionRule(models.Model):
    """A project's promotion gate: what an evaluation must show for its fine-tune to pass
    (training.evaluation.gate). A project that never changed it has none stored and reads the defaults; a threshold
    left empty is not checked. Each finished run stores its verdict with a copy of the rule, so a change applies to
    the runs that finish after it."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="promotion_rule")
    min_teacher_win_rate = models.FloatField(null=True, blank=True, default=_DEFAULT_RULE.min_teacher_win_rate)
    min_teacher_win_rate_low = models.FloatField(null=True, blank=True, default=_DEFAULT_RULE.min_teacher_win_rate_low)
    min_base_win_rate = models.FloatField(null=True, blank=True, default=_DEFAULT_RULE.min_base_win_rate)
    max_retention_loss_increase = models.FloatField(
        null=True, blank=True, default=_DEFAULT_RULE.max_retention_loss_increase
    )
    no_flagged_slices = models.BooleanField(default=_DEFAULT_RULE.no_flagged_slices)
    min_judged_examples = models.PositiveIntegerField(default=_DEFAULT_RULE.min_judged_examples)
    updated_at = models.DateTimeField(null=True, blank=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_by_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(min_teacher_win_rate__gte=0, min_teacher_win_rate__lte=1)
                | Q(min_teacher_win_rate__isnull=True),
                name="promotionrule_teacher_rate_range",
            ),
            models.CheckConstraint(
                condition=Q(min_teacher_win_rate_low__gte=0, min_teacher_win_rate_low__lte=1)
                | Q(min_teacher_win_rate_low__isnull=True),
                name="promotionrule_teacher_low_range",
            ),
            models.CheckConstraint(
                condition=Q(min_base_win_rate__gte=0, min_base_win_rate__lte=1) | Q(min_base_win_rate__isnull=True),
                name="promotionrule_base_rate_range",
            ),
            models.CheckConstraint(
                condition=Q(max_retention_loss_increase__gte=-1, max_retention_loss_increase__lte=1)
                | Q(max_retention_loss_increase__isnull=True),
                name="promotionrule_retention_range",
            ),
        ]

    def __str__(self) -> str:
        return f"promotion rule of {self.project}"

    @property
    def gate_rule(self) -> GateRule:
        return GateRule(**{name: getattr(self, name) for name in GATE_FIELDS})

    @property
    def updated_by_label(self) -> str:
        return actor_label(self.updated_by, self.updated_by_key)


class SourceDocument(models.Model):
    """A document uploaded to generate training data from: the original file byte for byte, its SHA-256, and what
    reading it gave (blocks and chunks, or why it could not be read: a file that cannot be read is kept with its
    reason, never dropped)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="documents")
    name = models.CharField(max_length=255)  # the uploaded file's name
    file = models.FileField(upload_to="documents/%Y/%m/")
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField(default=0)
    kind = models.CharField(max_length=16, blank=True)  # pdf, docx, html, markdown, text; "" when unreadable
    title = models.CharField(max_length=500, blank=True)
    pages = models.PositiveIntegerField(null=True, blank=True)
    characters = models.BigIntegerField(default=0)
    chunks = models.PositiveIntegerField(default=0)  # at the default chunk size
    error = models.TextField(blank=True)  # why it could not be read; "" when it was
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_by_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["project", "sha256"], name="sourcedocument_unique_sha")]

    def __str__(self) -> str:
        return f"document {self.name} ({self.pk})"

    @property
    def readable(self) -> bool:
        return not self.error


class GenerationKind(models.TextChoices):
    DOCUMENTS = "documents", "Questions and answers from documents"
    TEACHER = "teacher", "Teacher re-answers of logs"
    VARIATIONS = "variations", "Variations of logs' prompts"


class GenerationJob(BackgroundWork, models.Model):
    """Training rows written by a model endpoint, from documents or from logs, checked by the filters and left
    for review. `params` holds what the job was asked (the prompt template, rows per call, the chunk size, the
    seeds, the variation styles, the judge threshold); `manifest` what it did (model, template hash, seed, counts
    generated and dropped per filter), written as it goes and complete when it finishes."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="generation_jobs")
    dataset = models.ForeignKey(Dataset, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    dataset_name = models.CharField(max_length=200, blank=True)  # the target dataset's name when it started
    kind = models.CharField(max_length=16, choices=GenerationKind.choices)
    endpoint = models.ForeignKey("ModelEndpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    endpoint_name = models.CharField(max_length=200, blank=True)  # "endpoint (model)" when it started
    judge = models.ForeignKey("ModelEndpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    judge_name = models.CharField(max_length=200, blank=True)
    params = models.JSONField(default=dict, blank=True)
    estimate = models.JSONField(default=dict, blank=True)  # calls, tokens in and out, cost in USD, capped groups
    manifest = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=FineTuneStatus.choices, default=FineTuneStatus.QUEUED)
    total = models.PositiveIntegerField(default=0)  # calls to make
    done = models.PositiveIntegerField(default=0)  # calls answered (or failed)
    failed_calls = models.PositiveIntegerField(default=0)
    generated = models.PositiveIntegerField(default=0)  # rows the answers held
    dropped = models.PositiveIntegerField(default=0)  # rows a filter dropped
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_by_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"], name="generationjob_project_created")]

    def __str__(self) -> str:
        return f"generation job {self.pk} ({self.kind}, {self.status})"

    def work_counts(self) -> tuple[int, int]:
        return self.done, self.total

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    @property
    def created_by_label(self) -> str:
        return actor_label(self.created_by, self.created_by_key)


class RowStatus(models.TextChoices):
    CHECKING = "checking", "Being checked"  # written, waiting for the near-duplicate search and the judge
    PENDING = "pending", "Waiting for review"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"
    DROPPED = "dropped", "Dropped by a filter"


class GeneratedRow(models.Model):
    """One row a generation job wrote: a conversation, where it came from, and what became of it. A filter's drop
    keeps the row with its reason; accepting adds it to the dataset as a synthetic entry (or, for a teacher's
    re-answer, revises the seed entry, its log's answer kept as the original)."""

    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="rows", db_index=False)
    status = models.CharField(max_length=16, choices=RowStatus.choices, default=RowStatus.CHECKING)
    drop_reason = models.CharField(max_length=32, blank=True)  # a filter's code (training/generation/filters.py)
    drop_detail = models.TextField(blank=True)
    messages = OrderedJSONField()
    original = OrderedJSONField(null=True, blank=True)  # the seed's conversation a teacher re-answered, or None
    provenance = OrderedJSONField(default=dict, blank=True)
    judge_score = models.FloatField(null=True, blank=True)
    # The seed log's id, not a foreign key: logs are deleted in bulk without Django's collector, and a row keeps
    # which log it came from after the log is gone (as its provenance does).
    seed_log_id = models.BigIntegerField(null=True, blank=True)
    seed_entry = models.ForeignKey(DatasetEntry, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    entry = models.ForeignKey(DatasetEntry, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    edited = models.BooleanField(default=False)  # changed by a reviewer before acceptance
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    reviewed_by_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["job", "status", "id"], name="generatedrow_job_status")]

    def __str__(self) -> str:
        return f"generated row {self.pk} of job {self.job_id} ({self.status})"


# Serving's tables live beside its code; importing them here registers them with the app.
from training.serving.models import (  # noqa: E402
    LIVE_DEPLOYMENT,
    Deployment,
    DeploymentStatus,
    Engine,
    ModelServer,
    ProxyRoute,
    RouteCall,
    RouteMode,
    Side,
)

__all__ = [
    "LIVE_DEPLOYMENT", "Deployment", "DeploymentStatus", "Engine", "ModelServer", "ProxyRoute", "RouteCall",
    "RouteMode", "Side",
]  # fmt: skip
