"""Deployments, the model servers that answer for them, and the proxy's routes to them (docs/serving.md).

A deployment names the exact fine-tune it serves. A serving supervisor (`manage.py serve_models`, on a GPU worker)
claims it, starts or reuses an engine process for its base model (vLLM, or the small transformers server), loads its
adapter there, and says where it answers. The proxy sends a call there when its `model` is the deployment's name, or
when one of the project's routes picks the call.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from curation.models import ApiKey, Project, actor_label


class DeploymentStatus(models.TextChoices):
    PENDING = "pending", "Waiting for a model server"
    LOADING = "loading", "Loading"
    SERVING = "serving", "Serving"
    FAILED = "failed", "Failed"
    STOPPED = "stopped", "Stopped"


LIVE_DEPLOYMENT = (DeploymentStatus.PENDING, DeploymentStatus.LOADING, DeploymentStatus.SERVING)


class Engine(models.TextChoices):
    VLLM = "vllm", "vLLM"
    TRANSFORMERS = "transformers", "transformers (small server)"


class ModelServer(models.Model):
    """One engine process a serving supervisor runs: one base model (or one full fine-tune's weights), with the
    adapters of its deployments loaded at run time."""

    supervisor = models.CharField(max_length=255)  # host:pid of the `serve_models` process that runs it
    engine = models.CharField(max_length=16, choices=Engine.choices)
    weights = models.CharField(max_length=1000)  # what the engine loads: a base model's path, or full weights
    url = models.CharField(max_length=500)  # up to /v1, where the proxy sends calls
    pid = models.PositiveIntegerField(null=True, blank=True)
    ready = models.BooleanField(default=False)
    restarts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    heartbeat_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.engine} server of {self.weights} at {self.url}"


class Deployment(models.Model):
    """A fine-tune served as an OpenAI-compatible chat model named `ft:<project>/<name>` at the proxy."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="deployments")
    # A fine-tune or its weights cannot be deleted while it is deployed (training/finetunes/deletion.py); a stopped
    # deployment goes with its fine-tune.
    job = models.ForeignKey("training.FineTuneJob", on_delete=models.CASCADE, related_name="deployments")
    name = models.SlugField(max_length=64)
    served_name = models.CharField(max_length=200)  # "ft:<project slug>/<name>": the `model` callers name
    status = models.CharField(max_length=16, choices=DeploymentStatus.choices, default=DeploymentStatus.PENDING)
    engine = models.CharField(max_length=16, choices=Engine.choices, blank=True)  # once a server took it
    server = models.ForeignKey(
        ModelServer, null=True, blank=True, on_delete=models.SET_NULL, related_name="deployments"
    )
    gate = models.JSONField(default=dict, blank=True)  # the gate's verdict when deployed (finetune_gate)
    forced = models.BooleanField(default=False)  # deployed past a failed or missing verdict
    reason = models.TextField(blank=True)  # why, when forced
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_by_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    serving_since = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    stopped_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    stopped_by_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One live deployment per name in a project; a stopped one keeps its name for the record.
            models.UniqueConstraint(
                fields=["project", "name"],
                condition=Q(status__in=["pending", "loading", "serving", "failed"]),
                name="deployment_live_name",
            )
        ]
        indexes = [models.Index(fields=["status", "server"], name="deployment_status_server")]

    def __str__(self) -> str:
        return f"{self.served_name} ({self.status})"

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_DEPLOYMENT

    @property
    def created_by_label(self) -> str:
        return actor_label(self.created_by, self.created_by_key)

    @property
    def stopped_by_label(self) -> str:
        return actor_label(self.stopped_by, self.stopped_by_key)


class RouteMode(models.TextChoices):
    SHADOW = "shadow", "Shadow: the provider answers, the fine-tune answers the same call in the background"
    CANARY = "canary", "Canary: a share of the calls is answered by the fine-tune, the provider on a failure"


class ProxyRoute(models.Model):
    """Which proxied calls go to a deployment, and how. A call matches when every condition set matches; the first
    active route of the project (by position) that matches takes it."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="routes")
    name = models.SlugField(max_length=64)
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="routes")
    mode = models.CharField(max_length=16, choices=RouteMode.choices, default=RouteMode.SHADOW)
    active = models.BooleanField(default=True)
    position = models.PositiveIntegerField(default=0)
    match_model = models.CharField(max_length=200, blank=True)  # the request's `model`; empty: any
    match_route = models.CharField(max_length=100, blank=True)  # the X-Logtune-Route header's value; empty: any
    match_metadata_key = models.CharField(max_length=100, blank=True)  # a key of the request's `metadata`
    match_metadata_value = models.CharField(max_length=200, blank=True)  # its value; empty: the key is present
    share = models.FloatField(default=1.0)  # of the matching calls: shadowed (shadow) or served by the fine-tune
    timeout_ms = models.PositiveIntegerField(default=10_000)  # canary: the fine-tune's first byte, then fallback
    check_json = models.BooleanField(default=True)  # canary: an answer must satisfy the request's response_format
    check_tools = models.BooleanField(default=True)  # canary: tool calls must name a tool given, with JSON arguments
    judge = models.ForeignKey(
        "training.ModelEndpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )  # judges a sample of the shadow pairs
    judge_sample = models.FloatField(default=0.1)  # share of the pairs judged
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="proxyroute_unique_name"),
            models.CheckConstraint(condition=Q(share__gte=0, share__lte=1), name="proxyroute_share_range"),
            models.CheckConstraint(
                condition=Q(judge_sample__gte=0, judge_sample__lte=1), name="proxyroute_judge_range"
            ),
        ]

    def __str__(self) -> str:
        return f"route {self.name} ({self.mode}, {self.share:.0%})"


class Side(models.TextChoices):
    PROVIDER = "provider", "Provider"
    FINETUNE = "finetune", "Fine-tune"


class RouteCall(models.Model):
    """One call a route picked: which side answered the application, why the provider did when the fine-tune was
    meant to (a fallback), each side's latency, tokens and log, and for a shadow pair, the judge's verdict."""

    route = models.ForeignKey(ProxyRoute, on_delete=models.CASCADE, related_name="calls", db_index=False)
    mode = models.CharField(max_length=16, choices=RouteMode.choices)
    served_by = models.CharField(max_length=16, choices=Side.choices)
    fallback = models.CharField(max_length=200, blank=True)  # why the fine-tune's answer was not used
    provider_status = models.PositiveSmallIntegerField(null=True, blank=True)
    provider_ms = models.FloatField(null=True, blank=True)
    provider_log = models.CharField(max_length=64, blank=True)  # the log's external_id
    provider_prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    provider_completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    provider_model = models.CharField(max_length=200, blank=True)
    finetune_status = models.PositiveSmallIntegerField(null=True, blank=True)
    finetune_ms = models.FloatField(null=True, blank=True)
    finetune_log = models.CharField(max_length=64, blank=True)
    finetune_prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    finetune_completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    verdict = models.FloatField(null=True, blank=True)  # shadow pairs judged: 1 fine-tune wins, 0.5 tie, 0 loses
    judged_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["route", "-created_at"], name="routecall_route_created")]

    def __str__(self) -> str:
        return f"{self.mode} call of route {self.route_id} answered by {self.served_by}"
