"""The project's Serving page (deployments, routes, the form to add one) and a route's page (its figures, chart and
last calls; Promote and Roll back)."""

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from curation.common.views import (
    AuthenticatedRequest,
    form_problems,
    membership_or_404,
    page_context,
    validation_errors,
)
from curation.models import Membership, Role
from training.models import ProxyRoute, RouteMode
from training.serving.deployments.selectors import deployments_for_project
from training.serving.routes.forms import PromoteForm, RouteForm
from training.serving.routes.selectors import (
    next_share,
    route_calls_recent,
    route_chart,
    route_get,
    route_series,
    route_stats,
    routes_for_project,
)
from training.serving.routes.services import route_create, route_promote, route_rollback

WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "all": None}
DEPLOYMENTS_SHOWN = 50


def _route_or_404(membership: Membership, route_id: int) -> ProxyRoute:
    route = route_get(project=membership.project, route_id=route_id)
    if route is None:
        raise Http404("Route not found")
    return route


@login_required
@require_http_methods(["GET", "POST"])
def serving(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    """Deployments and routes; an editor's form to add a route (POST)."""
    membership = membership_or_404(request, slug, Role.EDITOR if request.method == "POST" else Role.VIEWER)
    project = membership.project
    form = RouteForm(request.POST if request.method == "POST" else None, project=project)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            route = route_create(project=project, name=data["name"], deployment=data["deployment"], mode=data["mode"],
                                 fields=form.route_fields(), actor=request.user)  # fmt: skip
        except ValidationError as exc:
            for field, problems in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, problems)
        else:
            messages.success(
                request, f"Route {route.name} added: matching calls go to {route.deployment.served_name}."
            )
            return redirect("serving-route", slug=slug, route_id=route.pk)
    context = page_context(request, membership) | {
        "deployments": list(deployments_for_project(project=project)[:DEPLOYMENTS_SHOWN]),
        "routes": list(routes_for_project(project=project)),
        "form": form,
    }
    return render(request, "training/serving.html", context, status=400 if form.errors else 200)


def _window(request: AuthenticatedRequest) -> str:
    window = request.GET.get("window", "24h")
    return window if window in WINDOWS else "24h"


def _state_context(route: ProxyRoute) -> dict:
    current = route.share if route.active and route.mode == RouteMode.CANARY else 0.0
    return {"route": route, "next_share": next_share(current), "promote_form": PromoteForm()}


@login_required
@require_safe
def route_detail(request: AuthenticatedRequest, slug: str, route_id: int) -> HttpResponse:
    membership = membership_or_404(request, slug)
    route = _route_or_404(membership, route_id)
    window = _window(request)
    span = WINDOWS[window]
    now = timezone.now()
    points = route_series(route=route, hours=24 if window == "24h" else 168, now=now)
    context = (
        page_context(request, membership)
        | _state_context(route)
        | {
            "window": window,
            "windows": list(WINDOWS),
            "stats": route_stats(route=route, since=now - span if span else None),
            "chart": route_chart(points, now=now),
            "calls": route_calls_recent(route=route),
        }
    )
    return render(request, "training/route.html", context)


def _state(request: AuthenticatedRequest, membership: Membership, route: ProxyRoute) -> HttpResponse:
    """The route's state panel for htmx; the route's page otherwise."""
    if request.headers.get("HX-Request"):
        context = page_context(request, membership) | _state_context(route)
        return render(request, "training/_route_state.html", context)
    return redirect("serving-route", slug=membership.project.slug, route_id=route.pk)


@login_required
@require_POST
def route_promote_view(request: AuthenticatedRequest, slug: str, route_id: int) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.EDITOR)
    route = _route_or_404(membership, route_id)
    form = PromoteForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_problems(form.errors))
        return _state(request, membership, route)
    share = form.cleaned_data["share"]
    try:
        route = route_promote(route=route, share=None if share is None else share / 100, actor=request.user)
    except ValidationError as exc:
        messages.error(request, validation_errors(exc))
    else:
        messages.success(request, f"Route {route.name}: the fine-tune now answers {route.share:.0%} of its calls.")
    return _state(request, membership, route)


@login_required
@require_POST
def route_rollback_view(request: AuthenticatedRequest, slug: str, route_id: int) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.EDITOR)
    route = route_rollback(route=_route_or_404(membership, route_id), actor=request.user)
    messages.success(request, f"Route {route.name} rolled back: every call goes to the provider only.")
    return _state(request, membership, route)


urlpatterns = [
    path("p/<slug:slug>/serving/", serving, name="serving"),
    path("p/<slug:slug>/serving/routes/<int:route_id>/", route_detail, name="serving-route"),
    path("p/<slug:slug>/serving/routes/<int:route_id>/promote", route_promote_view, name="serving-route-promote"),
    path("p/<slug:slug>/serving/routes/<int:route_id>/rollback", route_rollback_view, name="serving-route-rollback"),
]
