"""What every page shares: the logged-in request and project membership checks."""

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import BadRequest, PermissionDenied, RequestDataTooBig, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.views import defaults

from curation.common.params import whole_number
from curation.datasets import selectors as dataset_stats
from curation.models import Dataset, Membership, Role
from curation.projects.selectors import membership_get, projects_for_user


class AuthenticatedRequest(HttpRequest):
    user: User  # every page here is behind login_required


def membership_or_404(request: AuthenticatedRequest, slug: str, role: str = Role.VIEWER) -> Membership:
    membership = membership_get(user=request.user, project_slug=slug)
    if membership is None:
        raise Http404("Project not found")
    if Role.rank(membership.role) < Role.rank(role):
        raise PermissionDenied(f"This needs the {role} role.")
    return membership


def form_problems(errors: dict) -> str:
    """A form's errors in one flash message: `field: message; other: message`."""
    return "; ".join(f"{field}: {' '.join(map(str, messages))}" for field, messages in errors.items())


def error_messages(errors: dict) -> str:
    """A form's or a ValidationError's messages in one flash message, without the field names."""
    return "; ".join(" ".join(map(str, messages)) for messages in errors.values())


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


def whole_number_param(params: QueryDict, name: str) -> int | None:
    """A page's whole-number parameter (`?after=`, `?loss_job=`): None when absent or blank, else digits that a
    bigint holds (curation.common.params), or a 400 naming the parameter: never int()'s ValueError, a 500."""
    raw = params.get(name, "").strip()
    if not raw:
        return None
    number = whole_number(raw)
    if number is None:
        shown = raw if len(raw) <= 40 else raw[:37] + "..."
        raise BadRequest(f"{name}: expected a whole number of at most 18 digits, got {shown!r}")
    return number


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """A parameter a page refused (BadRequest) is answered 400 with the reason. Django answers a form body over
    DATA_UPLOAD_MAX_MEMORY_SIZE like any suspicious request, 400 with no reason given; it is a size limit, so
    it is answered 413 with the limit, like the API's bodies."""
    if isinstance(exception, BadRequest):
        return HttpResponse(str(exception), status=400, content_type="text/plain; charset=utf-8")
    if not isinstance(exception, RequestDataTooBig):
        return defaults.bad_request(request, exception)
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    detail = f"Request body is larger than {limit} bytes; the limit is {limit} (files uploaded do not count)."
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": detail}, status=413)
    return HttpResponse(detail, status=413, content_type="text/plain; charset=utf-8")


def is_htmx(request: HttpRequest) -> bool:
    """A partial update asked for by htmx (not the restore of a page from history, which wants it whole)."""
    return request.headers.get("HX-Request") == "true" and not request.headers.get("HX-History-Restore-Request")


def page_context(request: AuthenticatedRequest, membership: Membership) -> dict:
    """What the header of every project page shows: the project, the member's rights, the project switcher."""
    return {
        "membership": membership,
        "project": membership.project,
        "can_edit": Role.rank(membership.role) >= Role.rank(Role.EDITOR),
        "is_owner": membership.role == Role.OWNER,
        "switcher": projects_for_user(user=request.user),
    }


def plural(n: int, word: str = "log") -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def validation_errors(exc: ValidationError) -> str:
    return " ".join(message for messages_ in exc.message_dict.values() for message in messages_)
