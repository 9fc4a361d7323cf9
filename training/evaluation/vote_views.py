"""The blind vote page of an evaluation run: a conversation, two answers "1" and "2" (the fine-tune's and the other
one, in an order drawn per voter, example and comparison), and buttons to say which is better. Editors vote."""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_http_methods, require_POST

from curation.common.views import (
    AuthenticatedRequest,
    page_context,
    validation_errors,
    whole_number_param,
)
from curation.datasets.forms import PairsForm
from curation.models import Role
from curation.text.rendering import conversation_turns
from training.evaluation.pairs import evaluation_pairs_from_votes
from training.evaluation.votes import (
    Ballot,
    blind_outcome,
    vote_next,
    vote_progress,
    vote_record,
    vote_tuned_first,
)
from training.lookups import finetune_or_404
from training.models import Comparison, EvaluationRun

AGAINST: dict[str, str] = {
    Comparison.TEACHER: "the logged answer (the teacher)",
    Comparison.BASE: "the base model's answer",
}
CHOICES = ("1", "2", "tie")


def _comparison(request: AuthenticatedRequest) -> str:
    against = request.GET.get("against") or Comparison.TEACHER
    if against not in Comparison.values:
        raise BadRequest(f"against: one of {', '.join(Comparison.values)}")
    return against


def _page(run: EvaluationRun, slug: str, comparison: str, position: int) -> str:
    url = reverse("finetune-evaluation-vote", args=[slug, run.job_id, run.pk])
    return f"{url}?{urlencode({'against': comparison, 'at': position})}"


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def evaluation_vote(request: AuthenticatedRequest, slug: str, job_id: int, evaluation_id: int) -> HttpResponse:
    membership, job = finetune_or_404(request, slug, job_id, Role.EDITOR)
    run = job.evaluations.filter(pk=evaluation_id).first()
    if run is None:
        raise Http404("Evaluation not found")
    comparison = _comparison(request)
    if request.method == "POST":
        return _vote(request, run, slug, comparison)
    start = whole_number_param(request.GET, "at") or 0
    ballot = vote_next(run=run, voter=request.user, comparison=comparison, start=start) if run.is_finished else None
    return render(request, "training/evaluation_vote.html", {
        **page_context(request, membership), "job": job, "run": run, "comparison": comparison,
        "against": AGAINST[comparison], "others": {c: label for c, label in AGAINST.items() if c != comparison},
        "progress": vote_progress(run=run, voter=request.user, comparison=comparison), "ballot": ballot,
        **(_shown(ballot) if ballot else {}),
    })  # fmt: skip


def _shown(ballot: Ballot) -> dict:
    """The conversation and the two answers as turns: both answers rendered alike, as "1" and "2"."""
    first, second = conversation_turns([{"role": "assistant", "content": a} for a in (ballot.first, ballot.second)])
    return {"turns": conversation_turns(ballot.prompt), "first": first, "second": second}


def _vote(request: AuthenticatedRequest, run: EvaluationRun, slug: str, comparison: str) -> HttpResponse:
    choice = request.POST.get("choice", "")
    if choice not in CHOICES:
        raise BadRequest("choice: 1, 2 or tie")
    example = whole_number_param(request.POST, "example")
    if example is None:
        raise BadRequest("example: the index of the example voted on")
    position = whole_number_param(request.POST, "at") or 0
    tuned_first = vote_tuned_first(run=run, voter=request.user, example=example, comparison=comparison)
    try:
        vote_record(
            run=run, voter=request.user, example=example, comparison=comparison,
            outcome=blind_outcome(choice, tuned_first=tuned_first), tuned_first=tuned_first,
        )  # fmt: skip
    except ValidationError as exc:
        messages.error(request, validation_errors(exc))
        return redirect(_page(run, slug, comparison, position))
    return redirect(_page(run, slug, comparison, position + 1))


@login_required
@require_POST
def evaluation_pairs(request: AuthenticatedRequest, slug: str, job_id: int, evaluation_id: int) -> HttpResponse:
    """Preference pairs from people's votes on the run, into a dataset of pairs (a new one, or one chosen)."""
    membership, job = finetune_or_404(request, slug, job_id, Role.EDITOR)
    run = job.evaluations.filter(pk=evaluation_id).first()
    if run is None:
        raise Http404("Evaluation not found")
    form = PairsForm(request.POST, project=membership.project)
    back = reverse("finetune", args=[slug, job_id]) + "#verdict"
    if not form.is_valid():
        messages.error(request, validation_errors(ValidationError(form.errors)))
        return redirect(back)
    try:
        result = evaluation_pairs_from_votes(run=run, **form.cleaned_data, actor=request.user)
    except ValidationError as exc:
        messages.error(request, validation_errors(exc))
        return redirect(back)
    skipped = "; ".join(f"{count} {reason}" for reason, count in result.skipped.most_common())
    messages.success(request, f"Added {result.added} pair{'s' if result.added != 1 else ''} to {result.dataset.name}"
                     + (f" ({skipped})." if skipped else "."))  # fmt: skip
    return redirect("dataset", slug=slug, dataset_id=result.dataset.pk)


urlpatterns = [
    path(
        "p/<slug:slug>/finetunes/<int:job_id>/evaluations/<int:evaluation_id>/vote",
        evaluation_vote,
        name="finetune-evaluation-vote",
    ),
    path(
        "p/<slug:slug>/finetunes/<int:job_id>/evaluations/<int:evaluation_id>/pairs",
        evaluation_pairs,
        name="finetune-evaluation-pairs",
    ),
]
