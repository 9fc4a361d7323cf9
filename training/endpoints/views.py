"""The project's model endpoints page: members see them, owners add, change and remove them, editors check one."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_http_methods, require_POST

from curation.common.views import AuthenticatedRequest, membership_or_404, page_context
from curation.models import Membership, Role
from training.endpoints.forms import EndpointForm
from training.endpoints.secrets import SecretUnreadable
from training.endpoints.services import (
    EndpointRefused,
    endpoint_check,
    endpoint_create,
    endpoint_delete,
    endpoint_update,
)
from training.models import ModelEndpoint


def _endpoint_or_404(membership: Membership, endpoint_id: int) -> ModelEndpoint:
    endpoint = ModelEndpoint.objects.filter(project=membership.project, pk=endpoint_id).first()
    if endpoint is None:
        raise Http404("Endpoint not found")
    return endpoint


def _render(
    request: AuthenticatedRequest, membership: Membership, form: EndpointForm, **extra: object
) -> HttpResponse:
    context = page_context(request, membership) | {
        "endpoints": ModelEndpoint.objects.filter(project=membership.project),
        "form": form,
        **extra,
    }
    return render(request, "training/endpoints.html", context, status=400 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def endpoints(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    """The list, and the owner's form to add one (POST)."""
    membership = membership_or_404(request, slug, Role.OWNER if request.method == "POST" else Role.VIEWER)
    if request.method != "POST":
        return _render(request, membership, EndpointForm())
    form = EndpointForm(request.POST)
    if form.is_valid():
        try:
            endpoint = endpoint_create(
                project=membership.project, fields=form.endpoint_fields(), secret=form.secret(changing=False) or "",
                actor=request.user,
            )  # fmt: skip
        except ValidationError as exc:
            for field, problems in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, problems)
        else:
            messages.success(request, f"Endpoint '{endpoint.name}' added. Check that it answers below.")
            return redirect("endpoints", slug=slug)
    return _render(request, membership, form)


@login_required
@require_http_methods(["GET", "POST"])
def endpoint_edit(request: AuthenticatedRequest, slug: str, endpoint_id: int) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.OWNER)
    endpoint = _endpoint_or_404(membership, endpoint_id)
    if request.method != "POST":
        initial = {name: getattr(endpoint, name) for name in EndpointForm.base_fields if hasattr(endpoint, name)}
        initial.pop("api_key", None)
        return _render(request, membership, EndpointForm(initial=initial), editing=endpoint)
    form = EndpointForm(request.POST)
    if form.is_valid():
        try:
            endpoint_update(
                endpoint=endpoint, fields=form.endpoint_fields(), secret=form.secret(changing=True), actor=request.user
            )
        except ValidationError as exc:
            for field, problems in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, problems)
        else:
            messages.success(request, f"Endpoint '{endpoint.name}' saved.")
            return redirect("endpoints", slug=slug)
    return _render(request, membership, form, editing=endpoint)


@login_required
@require_POST
def endpoint_delete_view(request: AuthenticatedRequest, slug: str, endpoint_id: int) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.OWNER)
    endpoint = _endpoint_or_404(membership, endpoint_id)
    endpoint_delete(endpoint=endpoint, actor=request.user)
    messages.success(request, f"Endpoint '{endpoint.name}' removed.")
    return redirect("endpoints", slug=slug)


@login_required
@require_POST
def endpoint_check_view(request: AuthenticatedRequest, slug: str, endpoint_id: int) -> HttpResponse:
    """One tiny call; the answer (or what went wrong) as the endpoint's row's check cell, for htmx."""
    membership = membership_or_404(request, slug, Role.EDITOR)
    endpoint = _endpoint_or_404(membership, endpoint_id)
    try:
        answer = endpoint_check(endpoint)
        result = {"ok": not answer.error, "text": answer.text[:200], "latency_ms": answer.latency_ms,
                  "error": answer.error}  # fmt: skip
    except (EndpointRefused, SecretUnreadable) as exc:
        result = {"ok": False, "text": "", "latency_ms": 0, "error": str(exc)}
    return render(request, "training/_endpoint_check.html", {"endpoint": endpoint, "result": result})


urlpatterns = [
    path("p/<slug:slug>/endpoints/", endpoints, name="endpoints"),
    path("p/<slug:slug>/endpoints/<int:endpoint_id>/edit", endpoint_edit, name="endpoint-edit"),
    path("p/<slug:slug>/endpoints/<int:endpoint_id>/delete", endpoint_delete_view, name="endpoint-delete"),
    path("p/<slug:slug>/endpoints/<int:endpoint_id>/check", endpoint_check_view, name="endpoint-check"),
]
