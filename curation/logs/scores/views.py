"""The scores on a log's page: adding one (thumbs up or down, or a name and value) and deleting one, in place with
htmx, or by a plain form post that comes back to the page."""

import re

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from curation.common.views import AuthenticatedRequest, is_htmx, membership_or_404, page_context
from curation.logs.filters import SCORE_NUMBER
from curation.logs.ingest.canonical import IngestError
from curation.logs.ingest.scores import score_read
from curation.logs.scores.selectors import log_score_get, log_scores
from curation.logs.scores.services import log_score_delete, log_scores_add
from curation.logs.selectors import log_get
from curation.models import LogEntry, Membership, Role


def _log_or_404(membership: Membership, log_id: int) -> LogEntry:
    log = log_get(project=membership.project, log_id=log_id)
    if log is None:
        raise Http404("Log not found")
    return log


def _answer(request: AuthenticatedRequest, membership: Membership, log: LogEntry, error: str = "") -> HttpResponse:
    """The scores panel again (htmx), or back to the log's page with the error, if any, as a message."""
    if is_htmx(request):
        context = page_context(request, membership) | {"log": log, "scores": log_scores(log=log), "error": error}
        return render(request, "curation/_log_scores.html", context)
    if error:
        messages.error(request, error)
    return redirect(reverse("log-detail", args=[membership.project.slug, log.pk]) + "#scores")


@login_required
@require_POST
def log_score_add(request: AuthenticatedRequest, slug: str, log_id: int) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.EDITOR)
    log = _log_or_404(membership, log_id)
    raw = request.POST.get("value", "").strip()
    # A form sends text: what reads as a number is a number (a rating), the rest a category.
    value: object = float(raw) if re.fullmatch(SCORE_NUMBER, raw) else raw
    fields = {"name": request.POST.get("name", "").strip(), "value": value, "comment": request.POST.get("comment")}
    try:
        score = score_read(fields, "")
    except IngestError as exc:
        return _answer(request, membership, log, f"Not added: {exc}.")
    log_scores_add(log=log, scores=[score], actor=request.user)
    return _answer(request, membership, log)


@login_required
@require_POST
def log_score_remove(request: AuthenticatedRequest, slug: str, log_id: int, score_id: int) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.EDITOR)
    log = _log_or_404(membership, log_id)
    score = log_score_get(log=log, score_id=score_id)
    if score is None:
        raise Http404("Score not found")
    log_score_delete(score=score, actor=request.user)
    return _answer(request, membership, log)


urlpatterns = [
    path("p/<slug:slug>/logs/<int:log_id>/scores/", log_score_add, name="log-score-add"),
    path("p/<slug:slug>/logs/<int:log_id>/scores/<int:score_id>/delete", log_score_remove, name="log-score-delete"),
]
