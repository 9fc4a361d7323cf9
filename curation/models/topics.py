"""Topics of a project's traffic: its indexed logs clustered by their embeddings (curation/logs/topics/)."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from curation.models.jobs import BackgroundWork, JobStatus
from curation.models.logs import LogEntry
from curation.models.projects import Project

PHASES = {
    "read": "reading the vectors",
    "cluster": "clustering",
    "label": "finding each topic's words",
    "stats": "measuring each topic",
    "write": "storing",
}


class TopicJob(BackgroundWork, models.Model):
    """One computation of a project's topics: a worker clusters the indexed logs and labels, measures and stores
    each topic. The project's latest succeeded job is its current run: its topics are shown, and only its logs'
    memberships are kept. Progress is in percent, moved by phase (read, cluster, label, stats, write)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="topic_jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    requested_k = models.PositiveSmallIntegerField(null=True, blank=True)  # None: chosen from the index's size
    k = models.PositiveSmallIntegerField(null=True, blank=True)  # the number of clusters used
    logs = models.BigIntegerField(default=0)  # indexed logs clustered
    phase = models.CharField(max_length=32, blank=True)
    done = models.PositiveSmallIntegerField(default=0)  # percent
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    seen_at = models.DateTimeField(default=timezone.now)  # the last sign of life: creation, then each phase

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"topics of {self.project_id} ({self.status})"

    def work_counts(self) -> tuple[int, int]:
        return self.done, 100

    @property
    def phase_label(self) -> str:
        return PHASES.get(self.phase, self.phase)


class Topic(models.Model):
    """One cluster of a run: its words and the figures of its logs when the run was computed."""

    job = models.ForeignKey(TopicJob, on_delete=models.CASCADE, related_name="topics")
    number = models.PositiveSmallIntegerField()  # 1 is the largest
    label = models.CharField(max_length=200)
    terms = models.JSONField(default=list)  # the most distinctive terms, best first
    size = models.BigIntegerField()  # logs
    tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=18, decimal_places=8, null=True, blank=True)  # None: no log has a cost
    latency_p50 = models.FloatField(null=True, blank=True)
    latency_p95 = models.FloatField(null=True, blank=True)
    errors = models.BigIntegerField(default=0)
    trend = models.JSONField(default=list)  # logs per day, the 14 days ending with the index's newest log
    trend_end = models.DateField(null=True, blank=True)  # the trend's last day
    trend_change = models.FloatField(null=True, blank=True)  # last 7 days vs the 7 before: 0.5 is +50%

    class Meta:
        ordering = ["number"]
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="topic_job_number")]

    def __str__(self) -> str:
        return f"topic {self.number}: {self.label}"

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.size if self.size else None


class TopicMembership(models.Model):
    """A log's topic in its project's current run (older runs' rows are deleted when a new run completes)."""

    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="memberships", db_index=False)
    log = models.ForeignKey(LogEntry, on_delete=models.CASCADE, related_name="topic_memberships")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["topic", "log"], name="topicmembership_topic_log")]

    def __str__(self) -> str:
        return f"log {self.log_id} in topic {self.topic_id}"
