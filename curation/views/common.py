"""What every page shares: the logged-in request and project membership checks."""

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from curation import dataset_stats, selectors
from curation.models import Dataset, Membership, Role


class AuthenticatedRequest(HttpRequest):
    user: User  # every page here is behind login_required


def membership_or_404(request: AuthenticatedRequest, slug: str, role: str = Role.VIEWER) -> Membership:
    membership = selectors.membership_get(user=request.user, project_slug=slug)
    if membership is None:
        raise Http404("Project not found")
    if Role.rank(membership.role) < Role.rank(role):
        raise PermissionDenied(f"This needs the {role} role.")
    return membership


def can_edit(membership: Membership) -> bool:
    return Role.rank(membership.role) >= Role.rank(Role.EDITOR)


def dataset_or_404(
    request: AuthenticatedRequest, slug: str, dataset_id: int, role: str = Role.VIEWER
) -> tuple[Membership, Dataset]:
    membership = membership_or_404(request, slug, role)
    dataset = dataset_stats.dataset_get(project=membership.project, dataset_id=dataset_id)
    if dataset is None:
        raise Http404("Dataset not found")
    return membership, dataset
