"""Who may act in which project: the project a request acts in, and the role it needs (a project the caller is
not a member of answers 404)."""

from rest_framework import exceptions, permissions
from rest_framework.request import Request

from curation.models import ApiKey, Project, Role
from curation.projects.selectors import membership_get


class IsUserOrApiKey(permissions.BasePermission):
    message = "Authentication required: a project API key (Authorization: Bearer lt_…) or a logged-in session."

    def has_permission(self, request: Request, view: object) -> bool:
        return isinstance(request.auth, ApiKey) or bool(request.user and request.user.is_authenticated)


def project_for_request(request: Request, *, role: str = Role.VIEWER) -> Project:
    """The project the request acts in, checked against the caller's role.

    API keys act in their own project with their own role. Session users name one with `?project=SLUG` (or the
    `X-Logtune-Project` header); a project they are not a member of is reported as not found.
    """
    slug = request.query_params.get("project") or request.headers.get("X-Logtune-Project", "")
    if isinstance(request.auth, ApiKey):
        project = request.auth.project
        if slug and slug != project.slug:
            # As for a session user who is not a member: the other project is not found, whether it exists or not.
            raise exceptions.NotFound(f"Project '{slug}' not found (this API key belongs to '{project.slug}').")
        granted: str = request.auth.role
    else:
        if not slug:
            raise exceptions.ValidationError({"project": ["Required: the slug of one of your projects."]})
        membership = membership_get(user=request.user, project_slug=slug)  # type: ignore[arg-type]
        if membership is None:
            raise exceptions.NotFound(f"Project '{slug}' not found.")
        project, granted = membership.project, membership.role
    if Role.rank(granted) < Role.rank(role):
        raise exceptions.PermissionDenied(f"This needs the {role} role in project '{project.slug}'.")
    return project
