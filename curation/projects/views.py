"""Pages. Thin: check membership, call selectors and services, render."""

from collections.abc import Callable

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST, require_safe

from curation.common.views import AuthenticatedRequest, form_problems, membership_or_404
from curation.logs.services import project_keep_unreadable_update, project_pii_redaction_update
from curation.models import Project, Role
from curation.projects.forms import ApiKeyCreateForm, ProjectPiiForm, ProjectUnreadableForm, ProjectUpstreamsForm
from curation.projects.selectors import api_key_get, projects_for_user
from curation.projects.services import api_key_create, api_key_revoke
from curation.proxy.upstreams import project_upstreams_update


@login_required
@require_safe
def home(request: AuthenticatedRequest) -> HttpResponse:
    memberships = list(projects_for_user(user=request.user))
    if len(memberships) == 1:
        return redirect("project", slug=memberships[0].project.slug)
    return render(request, "curation/home.html", {"memberships": memberships})


@login_required
@require_POST
def api_key_new(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.OWNER)
    form = ApiKeyCreateForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_problems(form.errors))
        return redirect("project", slug=slug)
    key, raw = api_key_create(
        project=membership.project,
        name=form.cleaned_data["name"],
        role=form.cleaned_data["role"],
        created_by=request.user,
    )
    # Shown once, in the answer to this POST and nowhere else: only its hash is stored. No session row holds it
    # until a next page load, and no cache keeps the page.
    context = {"project": membership.project, "key": key, "raw": raw}
    response = render(request, "curation/api_key_created.html", context)
    add_never_cache_headers(response)
    return response


@login_required
@require_POST
def api_key_revoke_view(request: AuthenticatedRequest, slug: str, key_id: int) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.OWNER)
    key = api_key_get(project=membership.project, key_id=key_id)
    if key is None:
        raise Http404("Key not found")
    api_key_revoke(key=key, actor=request.user)
    messages.success(request, f"Key {key.prefix}… revoked.")
    return redirect("project", slug=slug)


@login_required
@require_POST
def project_upstreams(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    """The logging proxy's upstream URLs (owners only): where the server sends the project's provider calls."""
    membership = membership_or_404(request, slug, Role.OWNER)
    form = ProjectUpstreamsForm(request.POST)
    if form.is_valid():
        project_upstreams_update(project=membership.project, actor=request.user, **form.cleaned_data)
        messages.success(request, "Proxy upstreams saved.")
    else:
        messages.error(request, form_problems(form.errors))
    return redirect("project", slug=slug)


@login_required
@require_POST
def project_pii(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    """Redaction of personal data at ingestion (owners only): whether arriving logs keep it."""
    return _setting_save(
        request, slug, ProjectPiiForm, project_pii_redaction_update,
        on="Personal data will be redacted in arriving logs.", off="Arriving logs are stored as sent.",
    )  # fmt: skip


@login_required
@require_POST
def project_unreadable(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    """Whether the API and imports keep logs no reader can read (owners only)."""
    return _setting_save(
        request, slug, ProjectUnreadableForm, project_keep_unreadable_update,
        on="Logs no reader can read will be kept as Unreadable.", off="Unreadable logs are refused.",
    )  # fmt: skip


def _setting_save(
    request: AuthenticatedRequest,
    slug: str,
    form_class: type[forms.Form],
    service: Callable[..., Project],
    *,
    on: str,
    off: str,
) -> HttpResponse:
    """An owner's on/off project setting: a one-checkbox form, saved (and audited) by its service."""
    membership = membership_or_404(request, slug, Role.OWNER)
    form = form_class(request.POST)
    if form.is_valid():
        service(project=membership.project, actor=request.user, **form.cleaned_data)
        messages.success(request, on if next(iter(form.cleaned_data.values())) else off)
    else:
        messages.error(request, form_problems(form.errors))
    return redirect("project", slug=slug)


urlpatterns = [
    path("", home, name="home"),
    path("p/<slug:slug>/keys/new", api_key_new, name="api-key-new"),
    path("p/<slug:slug>/keys/<int:key_id>/revoke", api_key_revoke_view, name="api-key-revoke"),
    path("p/<slug:slug>/upstreams", project_upstreams, name="project-upstreams"),
    path("p/<slug:slug>/pii", project_pii, name="project-pii"),
    path("p/<slug:slug>/unreadable", project_unreadable, name="project-unreadable"),
]
