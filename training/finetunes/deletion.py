"""Deleting a fine-tune, or only its weights: each an explicit, audited action whose confirmation says exactly
what goes (`finetune_deletion_plan`). Deleting a dataset never deletes its fine-tunes.

Both are refused while the job, a merge of its adapter or a playground answer is queued or running: a worker
would write into the folder being deleted. Rows go in the caller's transaction, files once it is committed, so
a request that fails or is rolled back leaves every file in place.
"""

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from curation.audit.services import audit_record
from curation.common.server_paths import media_name
from curation.models import ApiKey, DatasetSnapshot
from training.models import LIVE_DEPLOYMENT, FineTuneJob, FineTuneStatus

logger = logging.getLogger(__name__)

# What "the weights" are in a job's folder; the rest (train.log, events.jsonl, evaluation.json, the per-example
# losses, config.json) is small and stays with the row when only the weights are deleted.
WEIGHTS = ("adapter", "merged", "gguf", "checkpoints", "best.safetensors")
_BUSY = (FineTuneStatus.QUEUED, FineTuneStatus.RUNNING)


class FineTuneBusy(ValidationError):
    """Not now: the job, a merge of its adapter or a playground answer is queued or running."""


@dataclass(frozen=True, slots=True)
class OnDisk:
    name: str  # in the job's folder
    label: str
    bytes: int


@dataclass(frozen=True, slots=True)
class FineTuneDeletion:
    """What deleting a fine-tune removes (all of it), and what deleting only its weights removes (`weights`)."""

    job_id: int
    folder: str
    folder_bytes: int  # everything in the job's folder: weights, logs, events, evaluation
    weights: list[OnDisk]  # the weights there are on disk
    metric_points: int
    example_losses: int
    generations: int
    # Deleted with the job: its dataset is gone and no other fine-tune trained on it. Otherwise it stays.
    snapshot: DatasetSnapshot | None
    busy: str  # why neither can be done now; "" when both can

    @property
    def weights_bytes(self) -> int:
        return sum(item.bytes for item in self.weights)

    def as_dict(self) -> dict:
        return {
            "folder": self.folder,
            "bytes": self.folder_bytes,
            "weights": [{"name": item.name, "bytes": item.bytes} for item in self.weights],
            "metric_points": self.metric_points,
            "example_losses": self.example_losses,
            "generations": self.generations,
            "snapshot": self.snapshot.pk if self.snapshot is not None else None,
        }


def disk_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder; 0 when it is not there."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed while counting
                continue
    return total


def _weights_on_disk(job: FineTuneJob) -> list[OnDisk]:
    labels = {
        "adapter": "adapter" if job.uses_adapter else "trained weights",
        "merged": "merged weights",
        "gguf": "GGUF file",
        "checkpoints": "checkpoints",
        "best.safetensors": "best evaluation's weights",
    }
    found = [(name, job.output_dir / name) for name in WEIGHTS]
    return [OnDisk(name, labels[name], disk_bytes(path)) for name, path in found if path.exists()]


def _busy(job: FineTuneJob) -> str:
    if job.status in _BUSY:
        return f"Fine-tune {job.pk} is {job.status}: cancel it first (a running job stops after its current step)."
    if job.merge_status in _BUSY:
        return f"The adapter of fine-tune {job.pk} is being merged: wait until the merge has finished."
    deployed = job.deployments.filter(status__in=LIVE_DEPLOYMENT).first()
    if deployed is not None:
        return f"Fine-tune {job.pk} is deployed as {deployed.served_name}: stop the deployment first."
    if job.gguf_status in _BUSY:
        return f"Fine-tune {job.pk} is being converted to GGUF: wait until the conversion has finished."
    if job.generations.filter(status__in=_BUSY).exists():
        return f"A playground answer of fine-tune {job.pk} is being worked out: wait until it is done."
    return ""


def _snapshot_going_with(job: FineTuneJob) -> DatasetSnapshot | None:
    snapshot = job.snapshot
    if snapshot.dataset_id is not None or snapshot.finetunes.exclude(pk=job.pk).exists():
        return None
    return snapshot


def finetune_deletion_plan(*, job: FineTuneJob) -> FineTuneDeletion:
    """What deleting `job` (or only its weights) would remove now, sizes read from the disk."""
    return FineTuneDeletion(
        job_id=job.pk,
        folder=media_name(job.output_dir),
        folder_bytes=disk_bytes(job.output_dir),
        weights=_weights_on_disk(job),
        metric_points=job.metrics.count(),
        example_losses=job.example_losses.count(),
        generations=job.generations.count(),
        snapshot=_snapshot_going_with(job),
        busy=_busy(job),
    )


def _locked(job: FineTuneJob) -> FineTuneJob:
    """The row, locked until the transaction ends: a cancel, claim or merge request waits for the decision."""
    return FineTuneJob.objects.select_for_update().get(pk=job.pk)


def finetune_delete(*, job: FineTuneJob, actor: User | None = None, api_key: ApiKey | None = None) -> FineTuneDeletion:
    """Delete a fine-tune: its folder (weights, merged weights, checkpoints, logs), its metric points, per-example
    losses and playground answers, and the row; its snapshot too when its dataset is gone and no other fine-tune
    trained on it. Raises FineTuneBusy while the job, a merge or a playground answer is queued or running."""
    with transaction.atomic():
        job = _locked(job)
        plan = finetune_deletion_plan(job=job)
        if plan.busy:
            raise FineTuneBusy(plan.busy)
        audit_record(
            project=job.project, action="finetune.delete", count=1, actor=actor, api_key=api_key,
            detail={"job_id": job.pk, "dataset_id": job.dataset_id, "dataset": job.dataset_name, "model": job.model,
                    "method": job.method, "status": job.status, **plan.as_dict()},
        )  # fmt: skip
        folder = job.output_dir
        job.delete()  # its metric points, per-example losses and playground answers go with it
        snapshot_file = ""
        if plan.snapshot is not None:
            snapshot_file = plan.snapshot.file.name or ""
            plan.snapshot.delete()
        transaction.on_commit(lambda: _remove([folder], snapshot_file=snapshot_file))
    logger.info("training.job_deleted job=%s bytes=%s snapshot=%s", plan.job_id, plan.folder_bytes,
                plan.snapshot.pk if plan.snapshot else None)  # fmt: skip
    return plan


def finetune_weights_delete(
    *, job: FineTuneJob, actor: User | None = None, api_key: ApiKey | None = None
) -> FineTuneDeletion:
    """Delete a fine-tune's weights (adapter or trained weights, merged weights, checkpoints) to free the disk,
    keeping the row, its metrics, evaluation and per-example losses; the job then records when and by whom.
    Asking again changes nothing. Raises FineTuneBusy while the job, a merge or a playground answer is queued or
    running."""
    with transaction.atomic():
        job = _locked(job)
        plan = finetune_deletion_plan(job=job)
        if job.weights_deleted_at is not None:
            return plan
        if plan.busy:
            raise FineTuneBusy(plan.busy)
        FineTuneJob.objects.filter(pk=job.pk).update(
            weights_deleted_at=timezone.now(), weights_deleted_by=actor, weights_deleted_by_key=api_key
        )
        audit_record(
            project=job.project, action="finetune.weights_delete", count=1, actor=actor, api_key=api_key,
            detail={"job_id": job.pk, "dataset_id": job.dataset_id, "dataset": job.dataset_name,
                    "bytes": plan.weights_bytes, "weights": [item.name for item in plan.weights]},
        )  # fmt: skip
        paths = [job.output_dir / item.name for item in plan.weights]
        transaction.on_commit(lambda: _remove(paths))
    logger.info("training.weights_deleted job=%s bytes=%s", plan.job_id, plan.weights_bytes)
    return plan


def _remove(paths: list[Path], *, snapshot_file: str = "") -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if snapshot_file:
        DatasetSnapshot._meta.get_field("file").storage.delete(snapshot_file)
