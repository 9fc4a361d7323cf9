"""The verdict on a fine-tune's page: starting an evaluation run, following it, and its results with intervals."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST, require_safe

from curation.common.views import AuthenticatedRequest, can_edit, membership_or_404, validation_errors
from curation.models import Dataset, DatasetSnapshot, JobStatus, Membership, Project, Role
from training.evaluation.judge import DEFAULT_RUBRIC
from training.evaluation.promotion.selectors import evaluation_gate, promotion_rule_get
from training.evaluation.regression import regression_set_pin, regression_set_unpin
from training.evaluation.services import (
    MAX_EXAMPLES,
    MAX_NEW_TOKENS,
    MAX_SLICE_KEY,
    evaluation_cancel,
    evaluation_create,
    evaluation_estimate,
)
from training.evaluation.sets import general_sets, regression_snapshot
from training.evaluation.votes import votes_summary
from training.lookups import finetune_or_404
from training.models import EvaluationRun, FineTuneJob, FineTuneStatus, ModelEndpoint, RegressionSet

RUNS_SHOWN = 3
METRIC_LABELS = {
    "exact_match": "Exact match", "rouge_l": "ROUGE-L", "chrf": "chrF", "json_valid": "Valid JSON",
    "schema_match": "Matches its JSON schema", "tool_names": "Calls the same tools",
    "tool_arguments": "Same tools, same arguments", "accuracy": "Label accuracy", "macro_f1": "Label macro-F1",
}  # fmt: skip
SLICE_METRICS = {"rouge_l": "ROUGE-L", "loss": "Loss", "win_rate_vs_base": "Win rate against the base"}
COMPARISONS = {"base": "against the base model", "teacher": "against the logged answers (the teacher)"}


RETENTION_DEFAULT = 100


def _retention(form: "EvaluationForm") -> int:
    """Left empty: the default sample."""
    value = form.cleaned_data["retention_examples"]
    return RETENTION_DEFAULT if value is None else value


class EvaluationForm(forms.Form):
    judge = forms.ModelChoiceField(
        queryset=ModelEndpoint.objects.none(), required=False, empty_label="No judge: metrics only",
        help_text="A model endpoint of the project judges each answer pair, in both orders.",
    )  # fmt: skip
    max_examples = forms.IntegerField(min_value=1, max_value=MAX_EXAMPLES, initial=100, label="Examples at most")
    max_new_tokens = forms.IntegerField(min_value=1, max_value=MAX_NEW_TOKENS, initial=256, label="Answer tokens")
    retention_examples = forms.IntegerField(
        min_value=0, max_value=MAX_EXAMPLES, initial=RETENTION_DEFAULT, required=False, label="Retention logs",
        help_text="Logs of the project outside the training data, answered by both models to measure forgetting "
        "(0: none).",
    )  # fmt: skip
    slice_key = forms.CharField(
        required=False, max_length=MAX_SLICE_KEY, label="Slice by metadata key",
        help_text="Every metric is broken down by tag, and by this key's values (language, customer tier…).",
    )  # fmt: skip
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
    people = _people(run)
    judged = [
        {"label": COMPARISONS[name], **summary, "win_rate": _estimate(summary.get("win_rate")),
         "position_agreement": _estimate(summary.get("position_agreement")), "votes": people.pop(name, [])}
        for name, summary in (run.results.get("judge") or {}).items()
    ]  # fmt: skip
    loss = run.results.get("loss") or {}
    forgetting = run.results.get("forgetting")
    return {
        "run": run, "metrics": rows, "judged": judged, "examples": run.results.get("examples"),
        "loss": {"base": _estimate(loss.get("base")), "tuned": _estimate(loss.get("tuned")),
                 "change": _estimate(loss.get("change")), "base_perplexity": loss.get("base_perplexity"),
                 "tuned_perplexity": loss.get("tuned_perplexity")} if loss else None,
        "sets": [_set_view(item) for item in run.results.get("sets") or [] if isinstance(item, dict)],
        "forgetting": _forgetting_view(forgetting) if forgetting else None,
        "slices": [
            item | {"label": SLICE_METRICS.get(item["metric"], item["metric"]), "delta": _estimate(item.get("delta")),
                    "tuned": _estimate(item.get("tuned")), "base": _estimate(item.get("base"))}
            for item in run.results.get("slices") or []
        ],
        "slices_flagged": sum(1 for item in run.results.get("slices") or [] if item.get("flagged")),
        "votes": [row for rows in people.values() for row in rows],
    }  # fmt: skip


def _set_view(item: dict) -> dict:
    metrics, loss = item.get("metrics") or {}, item.get("loss") or {}
    return item | {
        "rouge_base": _estimate((metrics.get("base") or {}).get("rouge_l")),
        "rouge_tuned": _estimate((metrics.get("tuned") or {}).get("rouge_l")),
        "loss_base": _estimate(loss.get("base")), "loss_tuned": _estimate(loss.get("tuned")),
        "loss_change": _estimate(loss.get("change")),
    }  # fmt: skip


def _forgetting_view(forgetting: dict) -> dict:
    changes = forgetting.get("changes") or {}
    return {
        "examples": forgetting.get("examples"), "loss_change": _estimate(forgetting.get("loss_change")),
        "changes": [{"label": METRIC_LABELS[key], "change": _estimate(value)} for key, value in changes.items()
                    if key in METRIC_LABELS and value],
    }  # fmt: skip


def _people(run: EvaluationRun) -> dict[str, list[dict]]:
    """People's votes by comparison (training/_evaluation_votes.html), once a run has its answers to vote on."""
    if not (run.is_finished and run.examples):
        return {}
    return {
        name: [{**summary, "name": name, "label": COMPARISONS[name], "win_rate": _estimate(summary["win_rate"]),
                "agreement": _estimate(summary["agreement"])}]
        for name, summary in votes_summary(run=run).items()
    }  # fmt: skip


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
        "can_vote": can_edit(membership),
    }


@login_required
@require_safe
def evaluations_panel(request: AuthenticatedRequest, slug: str, job_id: int) -> HttpResponse:
    """The verdict section alone, polled while a run is under way."""
    membership, job = finetune_or_404(request, slug, job_id)
    context = {"project": membership.project, "job": job, **evaluations_context(job, membership)}
    return render(request, "training/_evaluations.html", context)


@login_required
@require_POST
def evaluation_start(request: AuthenticatedRequest, slug: str, job_id: int) -> HttpResponse:
    membership, job = finetune_or_404(request, slug, job_id, Role.EDITOR)
    form = EvaluationForm(request.POST, project=membership.project)
    if form.is_valid():
        try:
            evaluation_create(
                job=job, judge=form.cleaned_data["judge"], rubric=form.cleaned_data["rubric"],
                max_examples=form.cleaned_data["max_examples"], max_new_tokens=form.cleaned_data["max_new_tokens"],
                retention_examples=_retention(form), slice_key=form.cleaned_data["slice_key"], actor=request.user,
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
    _, job = finetune_or_404(request, slug, job_id, Role.EDITOR)
    run = job.evaluations.filter(pk=evaluation_id).first()
    if run is None:
        raise Http404("Evaluation not found")
    if evaluation_cancel(run=run, actor=request.user):
        messages.success(request, f"Evaluation {run.pk} cancelled.")
    return redirect(reverse("finetune", args=[slug, job.pk]) + "#verdict")


@login_required
@require_safe
def evaluation_estimate_panel(request: AuthenticatedRequest, slug: str, job_id: int) -> HttpResponse:
    """What the form's run would answer and cost, refreshed as the form changes."""
    membership, job = finetune_or_404(request, slug, job_id)
    form = EvaluationForm(request.GET or None, project=membership.project)
    estimate = None
    if form.is_valid():
        estimate = evaluation_estimate(
            job=job, judge=form.cleaned_data["judge"], max_examples=form.cleaned_data["max_examples"],
            max_new_tokens=form.cleaned_data["max_new_tokens"],
            retention_examples=_retention(form),
        )  # fmt: skip
    return render(request, "training/_evaluation_estimate.html", {"estimate": estimate, "form": form})


class RegressionSetForm(forms.Form):
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none(), required=False, empty_label="—",
                                     help_text="Read from its newest snapshot at each run.")  # fmt: skip
    snapshot = forms.ModelChoiceField(queryset=DatasetSnapshot.objects.none(), required=False, empty_label="—",
                                      help_text="Fixed: the same conversations at every run.")  # fmt: skip

    def __init__(self, *args: object, project: Project, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["dataset"].queryset = Dataset.objects.filter(project=project).order_by("name")  # type: ignore[attr-defined]
        self.fields["snapshot"].queryset = (  # type: ignore[attr-defined]
            DatasetSnapshot.objects.filter(project=project, status=JobStatus.SUCCEEDED)
            .select_related("dataset")
            .order_by("-created_at")[:200]
        )


@login_required
def evaluation_sets_page(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    """The project's eval sets: regression sets (editors pin and unpin them) and the general sets on disk."""
    membership = membership_or_404(request, slug)
    project = membership.project
    form = RegressionSetForm(project=project)
    if request.method == "POST":
        if not can_edit(membership):
            raise PermissionDenied("Editors and owners pin regression sets.")
        form = RegressionSetForm(request.POST, project=project)
        if form.is_valid():
            try:
                pinned = regression_set_pin(project=project, dataset=form.cleaned_data["dataset"],
                                            snapshot=form.cleaned_data["snapshot"], actor=request.user)  # fmt: skip
            except ValidationError as exc:
                messages.error(request, validation_errors(exc))
            else:
                messages.success(request, f"Pinned {pinned.name}: evaluation runs answer it from now on.")
                return redirect("evaluation-sets", slug)
    elif request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "POST"])
    pinned_sets = [
        {"set": pinned, "snapshot": regression_snapshot(pinned)}
        for pinned in RegressionSet.objects.filter(project=project).select_related("dataset", "snapshot__dataset")
    ]
    context = {"project": project, "pinned_sets": pinned_sets, "form": form, "can_edit": can_edit(membership),
               "general_sets": [{"name": path.stem, "file": path.name} for path in general_sets()]}  # fmt: skip
    return render(request, "training/evaluation_sets.html", context)


@login_required
@require_POST
def regression_set_unpin_view(request: AuthenticatedRequest, slug: str, set_id: int) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.EDITOR)
    pinned = RegressionSet.objects.filter(project=membership.project, pk=set_id).first()
    if pinned is None:
        raise Http404("Regression set not found")
    name = pinned.name
    regression_set_unpin(pinned=pinned, actor=request.user)
    messages.success(request, f"Unpinned {name}: runs already made keep their results.")
    return redirect("evaluation-sets", slug)


urlpatterns = [
    path("p/<slug:slug>/evaluation-sets/", evaluation_sets_page, name="evaluation-sets"),
    path("p/<slug:slug>/evaluation-sets/<int:set_id>/unpin", regression_set_unpin_view, name="regression-set-unpin"),
    path(
        "p/<slug:slug>/finetunes/<int:job_id>/evaluations/estimate",
        evaluation_estimate_panel,
        name="finetune-evaluation-estimate",
    ),
    path("p/<slug:slug>/finetunes/<int:job_id>/evaluations/", evaluations_panel, name="finetune-evaluations"),
    path("p/<slug:slug>/finetunes/<int:job_id>/evaluate", evaluation_start, name="finetune-evaluate"),
    path(
        "p/<slug:slug>/finetunes/<int:job_id>/evaluations/<int:evaluation_id>/cancel",
        evaluation_cancel_view,
        name="finetune-evaluation-cancel",
    ),
]
