"""Writes of the promotion gate: an owner's change of the project's rule (audited), and the verdict stored with a
run when it finishes, under the rule in force then."""

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from curation.audit.services import audit_record
from curation.models import ApiKey, Project
from training.evaluation.gate import GATE_FIELDS, GateRule, gate_record
from training.evaluation.promotion.selectors import promotion_rule_get
from training.models import EvaluationRun, FineTuneStatus, PromotionRule


@transaction.atomic
def promotion_rule_update(
    *, project: Project, rule: GateRule, actor: User | None = None, api_key: ApiKey | None = None
) -> PromotionRule:
    """Set the project's rule (audited as `promotion_rule.update` with each value changed, from and to). It judges
    the runs that finish from now on; the verdicts stored with earlier runs stay as they were."""
    stored, _ = PromotionRule.objects.select_for_update().get_or_create(project=project)
    changed = {
        name: {"from": getattr(stored, name), "to": getattr(rule, name)}
        for name in GATE_FIELDS
        if getattr(stored, name) != getattr(rule, name)
    }
    if not changed:
        return stored
    for name in changed:
        setattr(stored, name, getattr(rule, name))
    stored.updated_at, stored.updated_by, stored.updated_by_key = timezone.now(), actor, api_key
    stored.save()
    audit_record(project=project, action="promotion_rule.update", actor=actor, api_key=api_key, detail=changed)
    return stored


@transaction.atomic
def evaluation_gate_record(*, run_id: int) -> None:
    """Store the verdict of a succeeded run under the project's rule now, with that rule (`results["gate"]`); once."""
    run = EvaluationRun.objects.select_for_update(of=("self",)).select_related("job__project").get(pk=run_id)
    if run.status != FineTuneStatus.SUCCEEDED or "gate" in run.results:
        return
    rule = promotion_rule_get(project=run.job.project).gate_rule
    run.results = {**run.results, "gate": gate_record(rule, run.results)}
    run.save(update_fields=["results"])
