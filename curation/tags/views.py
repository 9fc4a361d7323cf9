"""The tags page: each tag with its count of logs; rename, merge, delete."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_POST, require_safe

from curation.common.params import whole_number
from curation.common.views import AuthenticatedRequest, membership_or_404, page_context, plural, validation_errors
from curation.models import Membership, Role, Tag
from curation.tags.selectors import tags_with_counts
from curation.tags.services import tag_delete, tag_merge, tag_update


@login_required
@require_safe
def tags_page(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    membership = membership_or_404(request, slug)
    tags = tags_with_counts(project=membership.project)
    return render(request, "curation/tags.html", page_context(request, membership) | {"tags": tags})


def _tag_or_404(membership: Membership, tag_id: int) -> Tag:
    tag = Tag.objects.filter(project=membership.project, pk=tag_id).first()
    if tag is None:
        raise Http404("Tag not found")
    return tag


@login_required
@require_POST
def tag_edit(request: AuthenticatedRequest, slug: str, tag_id: int) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.EDITOR)
    tag = _tag_or_404(membership, tag_id)
    try:
        tag_update(tag=tag, name=request.POST.get("name"), color=request.POST.get("color") or None, actor=request.user)
    except ValidationError as exc:
        messages.error(request, validation_errors(exc))
        return redirect("tags", slug=slug)
    messages.success(request, f"Tag '{tag.name}' saved.")
    return redirect("tags", slug=slug)


@login_required
@require_POST
def tag_merge_view(request: AuthenticatedRequest, slug: str, tag_id: int) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.EDITOR)
    source = _tag_or_404(membership, tag_id)
    into = whole_number(request.POST.get("into", ""))
    target = _tag_or_404(membership, into) if into is not None else None
    if target is None:
        messages.error(request, "Pick the tag to merge into.")
        return redirect("tags", slug=slug)
    try:
        moved = tag_merge(source=source, target=target, actor=request.user)
    except ValidationError as exc:
        messages.error(request, validation_errors(exc))
        return redirect("tags", slug=slug)
    messages.success(request, f"Merged '{source.name}' into '{target.name}': {plural(moved)} newly tagged.")
    return redirect("tags", slug=slug)


@login_required
@require_POST
def tag_delete_view(request: AuthenticatedRequest, slug: str, tag_id: int) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.EDITOR)
    tag = _tag_or_404(membership, tag_id)
    removed = tag_delete(tag=tag, actor=request.user)
    messages.success(request, f"Tag '{tag.name}' deleted from {plural(removed)}; the logs stay.")
    return redirect("tags", slug=slug)


urlpatterns = [
    path("p/<slug:slug>/tags/", tags_page, name="tags"),
    path("p/<slug:slug>/tags/<int:tag_id>/edit", tag_edit, name="tag-edit"),
    path("p/<slug:slug>/tags/<int:tag_id>/merge", tag_merge_view, name="tag-merge"),
    path("p/<slug:slug>/tags/<int:tag_id>/delete", tag_delete_view, name="tag-delete"),
]
