"""What a fine-tune's pages look up first: the member's project and its fine-tune, or a 404."""

from django.http import Http404

from curation.common.views import AuthenticatedRequest, membership_or_404
from curation.models import Membership, Role
from training import selectors
from training.models import FineTuneJob


def finetune_or_404(
    request: AuthenticatedRequest, slug: str, job_id: int, role: str = Role.VIEWER
) -> tuple[Membership, FineTuneJob]:
    """The membership (with at least `role`) and the project's fine-tune `job_id`; 404 for a fine-tune of another
    project, as for one that does not exist."""
    membership = membership_or_404(request, slug, role)
    job = selectors.finetune_get(project=membership.project, job_id=job_id)
    if job is None:
        raise Http404("Fine-tune not found")
    return membership, job
