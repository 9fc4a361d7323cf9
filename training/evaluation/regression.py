"""Regression sets: datasets and snapshots a project pins so that every evaluation run also answers them
(sets.py reads them). Pinning and unpinning are audited; editors do both."""

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from curation.audit.services import audit_record
from curation.models import ApiKey, Dataset, DatasetSnapshot, JobStatus, Project
from training.models import RegressionSet


@transaction.atomic
def regression_set_pin(
    *, project: Project, dataset: Dataset | None = None, snapshot: DatasetSnapshot | None = None,
    actor: User | None = None, api_key: ApiKey | None = None,
) -> RegressionSet:  # fmt: skip
    """Pin a dataset (read from its newest snapshot at each run) or one snapshot. Raises ValidationError naming the
    field: neither or both given, another project's, a snapshot not finished, already pinned."""
    if (dataset is None) == (snapshot is None):
        raise ValidationError({"dataset": "Give a dataset or a snapshot, one of the two."})
    if dataset is not None and dataset.project_id != project.pk:
        raise ValidationError({"dataset": f"Dataset {dataset.pk} not found in this project."})
    if snapshot is not None:
        if snapshot.project_id != project.pk:
            raise ValidationError({"snapshot": f"Snapshot {snapshot.pk} not found in this project."})
        if snapshot.status != JobStatus.SUCCEEDED:
            raise ValidationError({"snapshot": f"Snapshot {snapshot.pk} is not finished ({snapshot.status})."})
    try:
        with transaction.atomic():
            pinned = RegressionSet.objects.create(
                project=project, dataset=dataset, snapshot=snapshot, created_by=actor
            )
    except IntegrityError:
        field = "dataset" if dataset is not None else "snapshot"
        raise ValidationError({field: "Already a regression set of this project."}) from None
    audit_record(project=project, action="evaluation.regression_set_pin", actor=actor, api_key=api_key,
                 detail={"regression_set": pinned.pk, "set": pinned.name})  # fmt: skip
    return pinned


@transaction.atomic
def regression_set_unpin(*, pinned: RegressionSet, actor: User | None = None, api_key: ApiKey | None = None) -> None:
    """Stop using a regression set in new runs; runs already made keep their results."""
    audit_record(project=pinned.project, action="evaluation.regression_set_unpin", actor=actor, api_key=api_key,
                 detail={"regression_set": pinned.pk, "set": pinned.name})  # fmt: skip
    pinned.delete()
