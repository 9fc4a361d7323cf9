"""Writes of serving: deploying a fine-tune (past the promotion gate, or forced past it by an owner, audited either
way) and stopping a deployment. The serving supervisor (supervisor.py) does the rest: it claims the deployment,
loads it on a model server and says where it answers."""

import re

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from curation.audit.services import audit_record
from curation.models import ApiKey
from training.evaluation.promotion.selectors import finetune_gate, promotion_rule_get
from training.models import LIVE_DEPLOYMENT, Deployment, DeploymentStatus, FineTuneJob

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


def served_name_of(*, project_slug: str, name: str) -> str:
    """The `model` a call names to reach a deployment: `ft:<project>/<name>`."""
    return f"ft:{project_slug}/{name}"


def deployment_create(
    *,
    job: FineTuneJob,
    name: str = "",
    force: bool = False,
    reason: str = "",
    actor: User | None = None,
    api_key: ApiKey | None = None,
) -> Deployment:
    """Deploy `job` as `ft:<project>/<name>` (name: `ft-<job id>` by default). The fine-tune must have passed the
    project's promotion gate (its latest evaluation's verdict under the rule in force now); `force` deploys it past
    a failed or missing verdict, with a `reason`. Audited as `deployment.create` with the verdict, and whether it
    was forced; who may force is the caller's to check (owners)."""
    if not job.has_weights:
        raise ValidationError({"job": "Only a succeeded fine-tune whose weights are kept can be deployed."})
    name = (name or f"ft-{job.pk}").strip().lower()
    if not _NAME.match(name):
        raise ValidationError(
            {"name": "1 to 64 lowercase letters, digits and dashes, starting with a letter or digit."}
        )
    rule = promotion_rule_get(project=job.project).gate_rule
    gate = finetune_gate(job=job, rule=rule) or {}
    verdict = gate.get("current") or gate
    passed = bool(verdict.get("passed"))
    if not passed and not force:
        reasons = [check.get("reason", "") for check in verdict.get("checks", []) if not check.get("passed")]
        why = "; ".join(filter(None, reasons)) or "it has no evaluation with a verdict yet"
        raise ValidationError({"gate": f"This fine-tune has not passed the promotion gate: {why}."})
    if force and not passed and not reason.strip():
        raise ValidationError({"reason": "Say why it is deployed past the promotion gate."})
    try:
        with transaction.atomic():
            deployment = Deployment.objects.create(
                project=job.project, job=job, name=name,
                served_name=served_name_of(project_slug=job.project.slug, name=name),
                gate=gate, forced=force and not passed, reason=reason.strip() if force and not passed else "",
                created_by=actor, created_by_key=api_key,
            )  # fmt: skip
            audit_record(
                project=job.project, action="deployment.create", actor=actor, api_key=api_key,
                detail={"deployment_id": deployment.pk, "job_id": job.pk, "model": deployment.served_name,
                        "gate_passed": passed, "forced": deployment.forced, "reason": deployment.reason},
            )  # fmt: skip
    except IntegrityError:
        raise ValidationError({"name": f"A deployment named {name} is already live in this project."}) from None
    return deployment


def deployment_stop(*, deployment: Deployment, actor: User | None = None, api_key: ApiKey | None = None) -> Deployment:
    """Stop serving a deployment: its server unloads it within seconds. Refused while an active route sends calls
    to it (roll the route back first). Stopping again changes nothing."""
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(pk=deployment.pk)
        if deployment.status not in (*LIVE_DEPLOYMENT, DeploymentStatus.FAILED):
            return deployment
        routes = list(deployment.routes.filter(active=True).values_list("name", flat=True))
        if routes:
            raise ValidationError(
                {"routes": f"Route {', '.join(routes)} sends calls to this deployment: roll it back first."}
            )
        deployment.status = DeploymentStatus.STOPPED
        deployment.stopped_at, deployment.stopped_by, deployment.stopped_by_key = timezone.now(), actor, api_key
        deployment.save(update_fields=["status", "stopped_at", "stopped_by", "stopped_by_key"])
        audit_record(
            project=deployment.project, action="deployment.stop", actor=actor, api_key=api_key,
            detail={"deployment_id": deployment.pk, "job_id": deployment.job_id, "model": deployment.served_name},
        )  # fmt: skip
    return deployment
