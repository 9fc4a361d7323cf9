"""The audit page: a project's events, filtered by action, for its owners."""

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import path
from django.views.decorators.http import require_safe

from curation.audit.selectors import audit_actions, audit_events
from curation.common.pagination import keyset_page
from curation.common.views import AuthenticatedRequest, membership_or_404, page_context, validation_errors
from curation.logs.links import queries_join
from curation.models import Role

PAGE_SIZE = 50


@login_required
@require_safe
def audit_page(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.OWNER)
    action = request.GET.get("action", "")
    context = page_context(request, membership) | {
        "action": action,
        "actions": audit_actions(project=membership.project),
        "events": [],
        "next_url": None,
        "error": "",
    }
    events = audit_events(project=membership.project, action=action)
    try:
        page = keyset_page(events, cursor=request.GET.get("cursor") or None, size=PAGE_SIZE)
    except ValidationError as exc:
        context["error"] = validation_errors(exc)
        return render(request, "curation/audit.html", context)
    base = urlencode({"action": action}) if action else ""
    context["events"] = page.items
    context["next_url"] = page.next_cursor and f"?{queries_join(base, urlencode({'cursor': page.next_cursor}))}"
    return render(request, "curation/audit.html", context)


urlpatterns = [
    path("p/<slug:slug>/audit/", audit_page, name="audit"),
]
