"""Projects, their members and their API keys."""

from django.conf import settings
from django.db import models
from django.utils import timezone


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
