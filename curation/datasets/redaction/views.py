"""The dataset page's personal data panel: what was found, a preview of the redaction, and running it."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST, require_safe

from curation.common.views import AuthenticatedRequest, can_edit, dataset_or_404
from curation.datasets.redaction.services import (
    dataset_redact_or_queue,
    redaction_job_latest,
    redaction_kinds,
    redaction_preview,
    redaction_runs_inline,
)
from curation.models import RedactionJob, Role
from curation.text.pii.findings import KINDS


@login_required
@require_safe
def dataset_pii_panel(request: AuthenticatedRequest, slug: str, dataset_id: int) -> HttpResponse:
    """Personal data found per kind, loaded after the page: counting scans every entry. With the latest
    redaction job: its progress while it runs (polled through `dataset_pii_job`), then its outcome."""
    membership, dataset = dataset_or_404(request, slug, dataset_id)
    context = {
        "project": membership.project,
        "dataset": dataset,
        "can_edit": can_edit(membership),
        "preview": redaction_preview(dataset=dataset, limit=0),
        "kinds": KINDS,
        "job": redaction_job_latest(dataset=dataset),
    }
    return render(request, "curation/_dataset_pii.html", context)


@login_required
@require_safe
def dataset_pii_job(request: AuthenticatedRequest, slug: str, dataset_id: int) -> HttpResponse:
    """The latest redaction job alone, polled by the card while it runs: counting again on every poll would scan
    the whole dataset, so once the job is done the partial has the card reloaded, once."""
    membership, dataset = dataset_or_404(request, slug, dataset_id)
    context = {"project": membership.project, "dataset": dataset, "job": redaction_job_latest(dataset=dataset),
               "polled": True}  # fmt: skip
    return render(request, "curation/_dataset_pii_job.html", context)


def _kinds(request: AuthenticatedRequest) -> list[str] | None:
    """The kinds ticked in the form; None when none is, or one is unknown."""
    try:
        kinds = redaction_kinds(request.POST.getlist("kinds"))
    except ValueError:
        return None
    return kinds or None


@login_required
@require_POST
def dataset_pii_preview(request: AuthenticatedRequest, slug: str, dataset_id: int) -> HttpResponse:
    membership, dataset = dataset_or_404(request, slug, dataset_id, Role.EDITOR)
    kinds = _kinds(request)
    preview = redaction_preview(dataset=dataset, kinds=kinds) if kinds else None
    context = {
        "project": membership.project,
        "dataset": dataset,
        "preview": preview,
        "in_background": preview is not None and not redaction_runs_inline(entries=preview.entries),
    }
    return render(request, "curation/_dataset_pii_preview.html", context, status=200 if kinds else 400)


@login_required
@require_POST
def dataset_pii_redact(request: AuthenticatedRequest, slug: str, dataset_id: int) -> HttpResponse:
    _, dataset = dataset_or_404(request, slug, dataset_id, Role.EDITOR)
    kinds = _kinds(request)
    if kinds is None:
        messages.error(request, f"Choose what to redact: {', '.join(KINDS)}.")
    else:
        result = dataset_redact_or_queue(dataset=dataset, kinds=kinds, actor=request.user)
        if isinstance(result, RedactionJob) and result.kinds != kinds:
            running = ", ".join(result.kinds)
            messages.error(request, f"A redaction of {running} is already running (progress below): try again after.")
        elif isinstance(result, RedactionJob):
            messages.success(request, f"Redacting {', '.join(kinds)} in {result.total} entries: progress below.")
        else:
            messages.success(
                request, f"Redacted {', '.join(kinds)} in {result} entr{'y' if result == 1 else 'ies'}; the logs stay."
            )
    return redirect(reverse("dataset", args=[slug, dataset_id]) + "#personal-data")


urlpatterns = [
    path("p/<slug:slug>/datasets/<int:dataset_id>/pii", dataset_pii_panel, name="dataset-pii"),
    path("p/<slug:slug>/datasets/<int:dataset_id>/pii/preview", dataset_pii_preview, name="dataset-pii-preview"),
    path("p/<slug:slug>/datasets/<int:dataset_id>/pii/redact", dataset_pii_redact, name="dataset-pii-redact"),
    path("p/<slug:slug>/datasets/<int:dataset_id>/pii/job", dataset_pii_job, name="dataset-pii-job"),
]
