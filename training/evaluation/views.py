"""The verdict on a fine-tune's page: starting an evaluation run, following it, and its results with intervals."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST, require_safe

from curation.common.views import AuthenticatedRequest, can_edit, membership_or_404, validation_errors
from curation.models import Membership, Project, Role
from training import selectors
from training.evaluation.judge import DEFAULT_RUBRIC
from training.evaluation.promotion.selectors import evaluation_gate, promotion_rule_get
from training.evaluation.services import MAX_EXAMPLES, MAX_NEW_TOKENS, evaluation_cancel, evaluation_create
from training.models import EvaluationRun, FineTuneJob, FineTuneStatus, ModelEndpoint

RUNS_SHOWN = 3
METRIC_LABELS = {
    "exact_match": "Exact match", "rouge_l": "ROUGE-L", "chrf": "chrF", "json_valid": "Valid JSON",
    "accuracy": "Label accuracy", "macro_f1": "Label macro-F1",
}  # fmt: skip
COMPARISONS = {"base": "against the base model", "teacher": "against the logged answers (the teacher)"}


class EvaluationForm(forms.Form):
    judge = forms.ModelChoiceField(
        queryset=ModelEndpoint.objects.none(), required=False, empty_label="No judge: metrics only",
        help_text="A model endpoint of the project judges each answer pair, in both orders.",
    )  # fmt: skip
    max_examples = forms.IntegerField(min_value=1, max_value=MAX_EXAMPLES, initial=100, label="Examples at most")
    max_new_tokens = forms.IntegerField(min_value=1, max_value=MAX_NEW_TOKENS, initial=256, label="Answer tokens")
    rubric = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 7}), initial=DEFAULT_RUBRIC,
                             max_length=10_000)  # fmt: skip

    def __init__(self, *args: object, project: Project, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["judge"].queryset = ModelEndpoint.objects.filter(project=project)  # type: ignore[attr-defined]


def _estimate(value: dict | None) -> dict | None:
    if not value:
        return None
    return value | {"width": value["high"] - value["low"]}


def run_view(run: EvaluationRun) -> dict:
    """What the page shows of a run: its metrics by candidate, and each judged comparison."""
    metrics = run.results.get("metrics") or {}
    rows = [
        {"label": label, "base": _estimate(metrics.get("base", {}).get(key)),
         "tuned": _estimate(metrics.get("tuned", {}).get(key))}
        for key, label in METRIC_LABELS.items() if key in metrics.get("tuned", {})
    ]  # fmt: skip
    judged = [
        {"label": COMPARISONS[name], **summary, "win_rate": _estimate(summary.get("win_rate")),
         "position_agreement": _estimate(summary.get("position_agreement"))}
        for name, summary in (run.results.get("judge") or {}).items()
    ]  # fmt: skip
    return {"run": run, "metrics": rows, "judged": judged, "examples": run.results.get("examples")}


def evaluations_context(job: FineTuneJob, membership: Membership, form: EvaluationForm | None = None) -> dict:
    runs = list(job.evaluations.select_related("judge")[:RUNS_SHOWN])
    rule = promotion_rule_get(project=membership.project).gate_rule
    return {
        "evaluation_runs": [run_view(run) | {"gate": evaluation_gate(run=run, rule=rule)} for run in runs],
        "evaluation_form": form or EvaluationForm(project=membership.project),
        "can_evaluate": can_edit(membership)
        and job.status == FineTuneStatus.SUCCEEDED
        and job.weights_deleted_at is None,
        "evaluations_running": any(not run.is_finished for run in runs),
    }


def _job(
    request: AuthenticatedRequest, slug: str, job_id: int, role: str = Role.VIEWER
) -> tuple[Membership, FineTuneJob]:
    membership = membership_or_404(request, slug, role)
    job = selectors.finetune_get(project=membership.project, job_id=job_id)
    if job is None:
        raise Http404("Fine-tune not found")
    return membership, job


@login_required
@require_safe
def evaluations_panel(request: AuthenticatedRequest, slug: str, job_id: int) -> HttpResponse:
    """The verdict section alone, polled while a run is under way."""
    membership, job = _job(request, slug, job_id)
    context = {"project": membership.project, "job": job, **evaluations_context(job, membership)}
    return render(request, "training/_evaluations.html", context)


@login_required
@require_POST
def evaluation_start(request: AuthenticatedRequest, slug: str, job_id: int) -> HttpResponse:
    membership, job = _job(request, slug, job_id, Role.EDITOR)
    form = EvaluationForm(request.POST, project=membership.project)
    if form.is_valid():
        try:
            evaluation_create(
                job=job, judge=form.cleaned_data["judge"], rubric=form.cleaned_data["rubric"],
                max_examples=form.cleaned_data["max_examples"], max_new_tokens=form.cleaned_data["max_new_tokens"],
                actor=request.user,
            )  # fmt: skip
        except ValidationError as exc:
            messages.error(request, validation_errors(exc))
        else:
            messages.success(request, "Evaluation queued: a GPU worker answers, then the answers are scored below.")
    else:
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
    return redirect(reverse("finetune", args=[slug, job.pk]) + "#verdict")


@login_required
@require_POST
def evaluation_cancel_view(request: AuthenticatedRequest, slug: str, job_id: int, evaluation_id: int) -> HttpResponse:
    _, job = _job(request, slug, job_id, Role.EDITOR)
    run = job.evaluations.filter(pk=evaluation_id).first()
    if run is None:
        raise Http404("Evaluation not found")
    if evaluation_cancel(run=run, actor=request.user):
        messages.success(request, f"Evaluation {run.pk} cancelled.")
    return redirect(reverse("finetune", args=[slug, job.pk]) + "#verdict")


urlpatterns = [
    path("p/<slug:slug>/finetunes/<int:job_id>/evaluations/", evaluations_panel, name="finetune-evaluations"),
    path("p/<slug:slug>/finetunes/<int:job_id>/evaluate", evaluation_start, name="finetune-evaluate"),
    path(
        "p/<slug:slug>/finetunes/<int:job_id>/evaluations/<int:evaluation_id>/cancel",
        evaluation_cancel_view,
        name="finetune-evaluation-cancel",
    ),
]
