"""Reads of the promotion gate: a project's rule (its defaults until an owner changes it) and the verdicts stored
with evaluation runs, beside the verdict the rule in force now gives when it has changed since."""

from django.db.models import JSONField, OuterRef, QuerySet, Subquery

from curation.models import Project
from training.evaluation.gate import GateRule, gate_verdict
from training.models import EvaluationRun, FineTuneJob, FineTuneStatus, PromotionRule


def promotion_rule_get(*, project: Project) -> PromotionRule:
    """The project's rule; one never changed is not stored, and reads as the defaults (an unsaved row)."""
    rule = PromotionRule.objects.select_related("updated_by", "updated_by_key").filter(project=project).first()
    return rule if rule is not None else PromotionRule(project=project)


def evaluation_gate(*, run: EvaluationRun, rule: GateRule) -> dict | None:
    """The verdict stored when the run finished (`passed`, `checks`, `rule`), with `current`: the verdict under
    `rule` (the project's now) when it differs from the rule the run was judged by, else None. None for a run that
    did not succeed, or finished before the gate existed."""
    stored = run.results.get("gate") if run.status == FineTuneStatus.SUCCEEDED else None
    if not isinstance(stored, dict):
        return None
    changed = GateRule.from_dict(stored.get("rule") or {}) != rule
    current = gate_verdict(rule, run.results) | {"rule": rule.as_dict()} if changed else None
    return {**stored, "current": current}


def finetune_gate(*, job: FineTuneJob, rule: GateRule) -> dict | None:
    """The gate of the fine-tune's latest succeeded evaluation (with `evaluation`, its id), or None."""
    run = job.evaluations.filter(status=FineTuneStatus.SUCCEEDED).order_by("-created_at", "-id").first()
    gate = evaluation_gate(run=run, rule=rule) if run is not None else None
    return {"evaluation": run.pk, **gate} if run is not None and gate is not None else None


def finetunes_with_gate(jobs: QuerySet[FineTuneJob]) -> QuerySet[FineTuneJob]:
    """`jobs`, each with `gate_passed`: the stored verdict of its latest succeeded evaluation (None: no verdict)."""
    latest = EvaluationRun.objects.filter(job=OuterRef("pk"), status=FineTuneStatus.SUCCEEDED).order_by(
        "-created_at", "-id"
    )
    return jobs.annotate(gate_passed=Subquery(latest.values("results__gate__passed")[:1], output_field=JSONField()))
