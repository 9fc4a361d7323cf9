"""What the background jobs of every feature share: their states and how their progress is read."""

from django.conf import settings
from django.db import models
from django.utils import timezone


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
