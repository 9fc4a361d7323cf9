"""The pages of generation: documents, starting a job (with its estimate first), a job's page with its progress,
counts and manifest, and the review queue, driven by the keyboard (static/js/generation_review.js)."""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest, ValidationError
from django.http import Http404, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from curation.common.views import (
    AuthenticatedRequest,
    membership_or_404,
    page_context,
    validation_errors,
    whole_number_param,
)
from curation.models import Membership, Role
from curation.text.diffs import diff_conversations, render_conversation
from curation.text.rendering import conversation_turns
from training.generation import selectors
from training.generation.documents import document_delete, document_upload
from training.generation.filters import DROP_REASONS
from training.generation.forms import REQUEST_TO_FORM, GenerationForm
from training.generation.services import (
    RowFilter,
    estimate_dict,
    generation_cancel,
    generation_create,
    generation_estimate,
    row_accept,
    row_reject,
    rows_accept_bulk,
    rows_matching,
)
from training.models import GeneratedRow, GenerationJob, RowStatus, SourceDocument

ROWS_SHOWN = 50


def _document_or_404(membership: Membership, document_id: int) -> SourceDocument:
    document = selectors.document_get(project=membership.project, document_id=document_id)
    if document is None:
        raise Http404("Document not found")
    return document


def _job_or_404(membership: Membership, job_id: int) -> GenerationJob:
    job = selectors.generation_job_get(project=membership.project, job_id=job_id)
    if job is None:
        raise Http404("Generation job not found")
    return job


# --- documents ------------------------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def documents(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    """The project's documents; an editor uploads one or several (POST, `files`)."""
    membership = membership_or_404(request, slug, Role.EDITOR if request.method == "POST" else Role.VIEWER)
    if request.method == "POST":
        uploads = request.FILES.getlist("files")
        if not uploads:
            messages.error(request, "Choose one or more files to upload.")
        for upload in uploads:
            try:
                document, created = document_upload(project=membership.project, name=upload.name or "document",
                                                    data=upload.read(), actor=request.user)  # fmt: skip
            except ValidationError as exc:
                messages.error(request, validation_errors(exc))
                continue
            if document.error:
                messages.warning(request, f"{document.name} is kept, but cannot be read: {document.error}")
            elif created:
                messages.success(request, f"{document.name}: {document.chunks} chunk{'s' * (document.chunks != 1)}.")
            else:
                messages.info(request, f"{upload.name} is already here, as {document.name}.")
        return redirect("documents", slug=slug)
    context = page_context(request, membership) | {"documents": selectors.documents_of(project=membership.project)}
    return render(request, "training/documents.html", context)


@login_required
@require_GET
def document_detail(request: AuthenticatedRequest, slug: str, document_id: int) -> HttpResponse:
    membership = membership_or_404(request, slug)
    document = _document_or_404(membership, document_id)
    context = page_context(request, membership) | {
        "document": document, "chunks": selectors.document_chunk_list(document),
    }  # fmt: skip
    return render(request, "training/document.html", context)


@login_required
@require_POST
def document_delete_view(request: AuthenticatedRequest, slug: str, document_id: int) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.EDITOR)
    document = _document_or_404(membership, document_id)
    document_delete(document=document, actor=request.user)
    messages.success(request, f"{document.name} removed. Rows generated from it keep their provenance.")
    return redirect("documents", slug=slug)


# --- starting a job -------------------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def generation(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    """The jobs, and the form of a new one: "Estimate" shows its calls and cost first, "Start" queues it."""
    membership = membership_or_404(request, slug, Role.EDITOR if request.method == "POST" else Role.VIEWER)
    project = membership.project
    estimate = None
    if request.method == "POST":
        form = GenerationForm(request.POST, project=project)
        if form.is_valid():
            try:
                if request.POST.get("action") == "start":
                    job = generation_create(project=project, request=form.generation_request(), actor=request.user)
                    messages.success(request, f"Generation job {job.pk} queued: {job.total:,} calls.")
                    return redirect("generation-job", slug=slug, generation_job_id=job.pk)
                estimate = estimate_dict(generation_estimate(project=project, request=form.generation_request()))
            except ValidationError as exc:
                for field, problems in exc.message_dict.items():
                    name = REQUEST_TO_FORM.get(field, field)
                    form.add_error(name if name in form.fields else None, problems)
    else:
        initial = {name: request.GET[name] for name in ("kind", "dataset", "seed_dataset", "seed_query")
                   if request.GET.get(name)}  # fmt: skip
        form = GenerationForm(initial=initial, project=project)
    context = page_context(request, membership) | {
        "form": form, "estimate": estimate, "jobs": selectors.generation_jobs(project=project)[:20],
        "has_endpoints": form.fields["endpoint"].queryset.exists(),  # type: ignore[attr-defined]
    }  # fmt: skip
    return render(request, "training/generation.html", context, status=400 if form.errors else 200)


# --- a job ----------------------------------------------------------------------------------------------------------


def _bulk_filter(params: QueryDict) -> RowFilter:
    """The bulk acceptance's filter from a page's parameters (`min_score`, `document`, `style`)."""
    raw = params.get("min_score", "").strip()
    try:
        score = float(raw) if raw else None
    except ValueError:
        raise BadRequest(f"min_score: expected a number from 0 to 10, got {raw[:40]!r}") from None
    if score is not None and not 0 <= score <= 10:  # NaN too
        raise BadRequest(f"min_score: expected a number from 0 to 10, got {raw[:40]!r}")
    return RowFilter(min_judge_score=score, document_id=whole_number_param(params, "document"),
                     style=params.get("style", "")[:100])  # fmt: skip


@login_required
@require_GET
def generation_job(request: AuthenticatedRequest, slug: str, generation_job_id: int) -> HttpResponse:
    membership = membership_or_404(request, slug)
    job = _job_or_404(membership, generation_job_id)
    wanted, reason = request.GET.get("status", ""), request.GET.get("reason", "")
    wanted = wanted if wanted in RowStatus.values else ""
    reason = reason if reason in DROP_REASONS else ""
    rows = list(selectors.rows_of(job=job, status=wanted, reason=reason)[:ROWS_SHOWN])
    bulk = _bulk_filter(request.GET)
    drops = selectors.drop_counts(job=job)
    context = page_context(request, membership) | {
        "job": job, "rows": rows, "status_filter": wanted, "reason_filter": reason,
        "by_status": selectors.status_counts(job=job),
        "drops": [(code, DROP_REASONS.get(code, code), n) for code, n in drops.items()],
        "bulk": bulk, "bulk_count": rows_matching(job=job, row_filter=bulk).count(),
        "manifest": json.dumps(job.manifest, indent=2, ensure_ascii=False),
        "reason_label": DROP_REASONS.get(reason, reason),
    }  # fmt: skip
    return render(request, "training/generation_job.html", context)


@login_required
@require_GET
def generation_job_manifest(request: AuthenticatedRequest, slug: str, generation_job_id: int) -> HttpResponse:
    job = _job_or_404(membership_or_404(request, slug), generation_job_id)
    response = JsonResponse(job.manifest, json_dumps_params={"indent": 2, "ensure_ascii": False})
    response["Content-Disposition"] = f'attachment; filename="generation-{job.pk}-manifest.json"'
    return response


@login_required
@require_POST
def generation_job_cancel(request: AuthenticatedRequest, slug: str, generation_job_id: int) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.EDITOR)
    job = _job_or_404(membership, generation_job_id)
    if generation_cancel(job=job, actor=request.user):
        messages.success(request, "Cancelled: no new call starts. The rows already written stay for review.")
    else:
        messages.info(request, f"The job has {job.status} already.")
    return redirect("generation-job", slug=slug, generation_job_id=job.pk)


@login_required
@require_POST
def generation_job_accept(request: AuthenticatedRequest, slug: str, generation_job_id: int) -> HttpResponse:
    """Accept in bulk the pending rows the filter takes, if as many match as the page showed (`expected`)."""
    membership = membership_or_404(request, slug, Role.EDITOR)
    job = _job_or_404(membership, generation_job_id)
    try:
        expected = int(request.POST.get("expected", ""))
        accepted = rows_accept_bulk(job=job, row_filter=_bulk_filter(request.POST), expected=expected,
                                    actor=request.user)  # fmt: skip
    except ValueError:
        messages.error(request, "Count the rows first.")
    except ValidationError as exc:
        messages.error(request, validation_errors(exc))
    else:
        messages.success(request, f"{accepted:,} row{'s' * (accepted != 1)} accepted into {job.dataset_name}.")
    return redirect("generation-job", slug=slug, generation_job_id=job.pk)


# --- review ---------------------------------------------------------------------------------------------------------


@login_required
@require_GET
def generation_review(request: AuthenticatedRequest, slug: str, generation_job_id: int) -> HttpResponse:
    """One row at a time: the pending row `?row=` (or the first), its conversation, provenance and score."""
    membership = membership_or_404(request, slug)
    job = _job_or_404(membership, generation_job_id)
    pending = GeneratedRow.objects.filter(job=job, status=RowStatus.PENDING)
    chosen = whole_number_param(request.GET, "row")
    row = (GeneratedRow.objects.filter(job=job, pk=chosen).first() if chosen else None) or pending.order_by(
        "id"
    ).first()
    context = page_context(request, membership) | {"job": job, "row": row, "left": pending.count()}
    if row is not None:
        before, after = selectors.review_neighbours(job=job, row_id=row.pk)
        diff = None
        if row.original:
            diff = diff_conversations(render_conversation(row.original, []), render_conversation(row.messages, []))
        context |= {
            "turns": conversation_turns(row.messages), "previous_row": before, "next_row": after, "diff": diff,
            "messages_json": json.dumps(row.messages, indent=2, ensure_ascii=False),
            "reason_label": DROP_REASONS.get(row.drop_reason, row.drop_reason),
        }  # fmt: skip
    return render(request, "training/generation_review.html", context)


@login_required
@require_POST
def generation_row_decide(request: AuthenticatedRequest, slug: str, row_id: int) -> HttpResponse:
    """Accept (`decision=accept`, with `messages` when edited) or reject a row; then the next pending one."""
    membership = membership_or_404(request, slug, Role.EDITOR)
    row = selectors.row_get(project=membership.project, row_id=row_id)
    if row is None:
        raise Http404("Row not found")
    _, after = selectors.review_neighbours(job=row.job, row_id=row.pk)
    decision = request.POST.get("decision")
    try:
        if decision == "accept":
            edited = request.POST.get("messages", "").strip()
            changed = json.loads(edited) if edited else None
            if changed == row.messages:
                changed = None
            row_accept(row=row, messages=changed, actor=request.user)
        elif decision == "reject":
            row_reject(row=row, actor=request.user)
        else:
            messages.error(request, "Accept or reject.")
    except json.JSONDecodeError as exc:
        messages.error(request, f"The edited conversation is not JSON: {exc}.")
        after = row.pk
    except ValidationError as exc:
        messages.error(request, validation_errors(exc))
        after = row.pk
    url = reverse("generation-review", kwargs={"slug": slug, "generation_job_id": row.job_id})
    return redirect(f"{url}?row={after}" if after else url)


urlpatterns = [
    path("p/<slug:slug>/documents/", documents, name="documents"),
    path("p/<slug:slug>/documents/<int:document_id>/", document_detail, name="document"),
    path("p/<slug:slug>/documents/<int:document_id>/delete", document_delete_view, name="document-delete"),
    path("p/<slug:slug>/generate/", generation, name="generation"),
    path("p/<slug:slug>/generate/<int:generation_job_id>/", generation_job, name="generation-job"),
    path(
        "p/<slug:slug>/generate/<int:generation_job_id>/manifest.json",
        generation_job_manifest,
        name="generation-job-manifest",
    ),
    path("p/<slug:slug>/generate/<int:generation_job_id>/cancel", generation_job_cancel, name="generation-job-cancel"),
    path("p/<slug:slug>/generate/<int:generation_job_id>/accept", generation_job_accept, name="generation-job-accept"),
    path("p/<slug:slug>/generate/<int:generation_job_id>/review", generation_review, name="generation-review"),
    path("p/<slug:slug>/generation-rows/<int:row_id>/decide", generation_row_decide, name="generation-row-decide"),
]
