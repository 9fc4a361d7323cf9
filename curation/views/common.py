"""What every page shares: the logged-in request and project membership checks."""

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from curation import selectors
from curation.models import Membership, Role


class AuthenticatedRequest(HttpRequest):
    user: User  # every page here is behind login_required


def membership_or_404(request: AuthenticatedRequest, slug: str, role: str = Role.VIEWER) -> Membership:
    membership = selectors.membership_get(user=request.user, project_slug=slug)
    if membership is None:
        raise Http404("Project not found")
    if Role.rank(membership.role) < Role.rank(role):
        raise PermissionDenied(f"This needs the {role} role.")
    return membership
