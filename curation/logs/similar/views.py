""" "More like this" on a log's page, and building the index of the project's logs."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_POST, require_safe

from curation.common.params import whole_number
from curation.common.views import AuthenticatedRequest, is_htmx, membership_or_404, page_context, validation_errors
from curation.logs.filters import logs_filter
from curation.logs.links import filter_query, next_url
from curation.logs.selectors import log_get
from curation.logs.similar import selectors as similar_selectors
from curation.logs.similar import services as similar_services
from curation.models import LogEntry, Membership, Role


def _similar_context(request: AuthenticatedRequest, membership: Membership, log: LogEntry) -> dict:
    """The "more like this" panel: the index's state, and the logs nearest `log` within the explorer filter the
    page was opened with, once any log is indexed."""
    project = membership.project
    query = filter_query(request.GET)
    suffix = f"?{query}" if query else ""
    job = similar_selectors.log_embedding_job_latest(project=project)
    indexed = similar_selectors.log_index_size(project=project)
    context = page_context(request, membership) | {
        "log": log,
        "query": query,
        "job": job,
        "indexed": indexed,
        "index_limit": settings.LOGTUNE_SIMILAR_LOGS_MAX,
        "logs_total": project.logs.count(),
        "panel_url": reverse("log-similar", args=[project.slug, log.pk]) + suffix,
        "filter_pairs": [
            (key, value)
            for key, values in QueryDict(query).lists()
            if key not in ("similar_to", "min_similarity")
            for value in values
        ],
        "min_similarity": similar_selectors.SIMILARITY_DEFAULT,
        "similarity_min": similar_selectors.SIMILARITY_MIN,
        "found": None,
        "rows": [],
        "error": "",
    }
    if not indexed:
        return context
    try:
        within = logs_filter(project=project, params=QueryDict(query)) if query else None
    except ValidationError as exc:
        context["error"] = "The filter has a problem: " + validation_errors(exc)
        return context
    found = similar_services.logs_similar(project=project, log=log, within=within)
    context["found"] = found
    context["rows"] = [
        (entry, score, reverse("log-detail", args=[project.slug, entry.pk]) + suffix) for entry, score in found.results
    ]
    return context


@login_required
@require_safe
def log_similar(request: AuthenticatedRequest, slug: str, log_id: int) -> HttpResponse:
    """The logs most like this one (the panel under "More like this" on a log's page; a page of its own without
    htmx). Polled while the project's logs are being indexed."""
    membership = membership_or_404(request, slug)
    log = log_get(project=membership.project, log_id=log_id)
    if log is None:
        raise Http404("Log not found")
    context = _similar_context(request, membership, log)
    template = "curation/_log_similar.html" if is_htmx(request) else "curation/log_similar.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_POST
def logs_embed_start(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    """Index the project's newest logs for "more like this" (a job); back to the panel or page it came from."""
    membership = membership_or_404(request, slug, Role.EDITOR)
    project = membership.project
    similar_services.log_embedding_job_create(project=project, actor=request.user)
    log_id = whole_number(request.POST.get("log", ""))  # the log whose panel asked; none: back to the page
    log = log_get(project=project, log_id=log_id) if log_id is not None else None
    if log is not None and is_htmx(request):
        return render(request, "curation/_log_similar.html", _similar_context(request, membership, log))
    messages.success(request, 'Indexing the newest logs for "more like this".')
    return redirect(next_url(request, slug, {"next": request.POST.get("next", "")}))


urlpatterns = [
    path("p/<slug:slug>/logs/<int:log_id>/similar", log_similar, name="log-similar"),
    path("p/<slug:slug>/logs/embeddings", logs_embed_start, name="logs-embed"),
]
