"""The project page's imports: uploading a file of logs and following its job."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_POST, require_safe

from curation.common.views import AuthenticatedRequest, form_problems, membership_or_404
from curation.logs.imports.batch_join import BatchJoinError, batch_files_join, join_summary
from curation.logs.imports.files import ExpandedTooLarge
from curation.logs.imports.forms import ImportUploadForm
from curation.logs.imports.selectors import import_jobs_for_project
from curation.logs.imports.services import PendingImportsTooLarge, import_job_create
from curation.logs.selectors import log_list, unreadable_count
from curation.models import Role
from curation.projects.forms import ApiKeyCreateForm, ProjectPiiForm, ProjectUnreadableForm, ProjectUpstreamsForm
from curation.projects.hooks import project_page_extensions
from curation.projects.selectors import api_keys_for_project


@login_required
@require_safe
def project(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    membership = membership_or_404(request, slug)
    context = {
        "membership": membership,
        "project": membership.project,
        "is_owner": membership.role == Role.OWNER,
        "can_edit": Role.rank(membership.role) >= Role.rank(Role.EDITOR),
        "logs": log_list(project=membership.project).order_by("-created_at", "-id")[:25],
        "imports": import_jobs_for_project(project=membership.project)[:10],
        "import_form": ImportUploadForm(),
        "key_form": ApiKeyCreateForm(),
        "upstreams_form": ProjectUpstreamsForm(
            initial={name: getattr(membership.project, name) for name in ProjectUpstreamsForm.base_fields}
        ),
        "pii_form": ProjectPiiForm(initial={"redact_pii_on_ingest": membership.project.redact_pii_on_ingest}),
        "unreadable_form": ProjectUnreadableForm(initial={"keep_unreadable": membership.project.keep_unreadable}),
        "unreadable_count": unreadable_count(project=membership.project),
        "api_keys": api_keys_for_project(project=membership.project) if membership.role == Role.OWNER else [],
    }
    for extension in project_page_extensions():
        context |= extension.settings_context(membership=membership)
    return render(request, "curation/project.html", context)


@login_required
@require_safe
def imports_panel(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    """The imports table alone, polled by the project page while an import runs."""
    membership = membership_or_404(request, slug)
    imports = import_jobs_for_project(project=membership.project)[:10]
    return render(request, "curation/_imports.html", {"project": membership.project, "imports": imports})


@login_required
@require_POST
def import_upload(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.EDITOR)
    form = ImportUploadForm(request.POST, request.FILES)
    if form.is_valid():
        upload, batch_input = form.cleaned_data["file"], form.cleaned_data["batch_input"]
        try:
            join = batch_files_join(upload, batch_input) if batch_input else None
            import_job_create(
                project=membership.project, file=join.file if join else upload, source_name=upload.name,
                created_by=request.user, format=form.cleaned_data["format"],
            )  # fmt: skip
        except (PendingImportsTooLarge, BatchJoinError, ExpandedTooLarge) as exc:
            form.add_error("batch_input" if isinstance(exc, BatchJoinError) else "file", str(exc))
        else:
            joined = f" with its input file ({join_summary(join)})" if join else ""
            messages.success(request, f"Importing {upload.name}{joined}: progress below.")
    if form.errors:
        messages.error(request, form_problems(form.errors))
    return redirect("project", slug=slug)


urlpatterns = [
    path("p/<slug:slug>/", project, name="project"),
    path("p/<slug:slug>/imports/", imports_panel, name="imports-panel"),
    path("p/<slug:slug>/imports/upload", import_upload, name="import-upload"),
]
