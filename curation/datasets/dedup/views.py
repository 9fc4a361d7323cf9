"""The dataset page's near-duplicates panel: embedding the entries, the clusters, keeping one per cluster."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST, require_safe

from curation.common.views import AuthenticatedRequest, can_edit, dataset_or_404, error_messages
from curation.datasets.dedup.services import (
    KEEP_DEFAULT,
    KEEP_RULES,
    THRESHOLD_DEFAULT,
    THRESHOLD_MAX,
    THRESHOLD_MIN,
    dataset_keep_one_per_cluster,
    dataset_near_duplicates,
    embedding_job_create,
    embedding_job_latest,
    kept_of,
    threshold_clean,
)
from curation.models import Dataset, Membership, Role

DUPLICATE_CLUSTERS_SHOWN = 50


DUPLICATE_ENTRIES_SHOWN = 5


def _duplicates_context(membership: Membership, dataset: Dataset, raw: str, keep: str = KEEP_DEFAULT) -> dict:
    """The card's state: the latest embedding job, and the clusters at the threshold asked for once there are
    embeddings (the clusters are computed from the stored vectors on each request)."""
    job = embedding_job_latest(dataset=dataset)
    context = {
        "project": membership.project,
        "dataset": dataset,
        "can_edit": can_edit(membership),
        "job": job,
        "threshold": raw or str(THRESHOLD_DEFAULT),
        "threshold_min": THRESHOLD_MIN,
        "threshold_max": THRESHOLD_MAX,
        "error": "",
        "found": None,
        "clusters": [],
        "entries_shown": DUPLICATE_ENTRIES_SHOWN,
        "keep": keep if keep in KEEP_RULES else KEEP_DEFAULT,  # an unknown rule: the default, as the page shows
        "keep_rules": KEEP_RULES,
    }
    if job is None or (not job.is_finished and not job.done):
        return context
    try:
        threshold = threshold_clean(raw or THRESHOLD_DEFAULT)
    except ValidationError as exc:
        context["error"] = error_messages(exc.message_dict)
        return context
    found = dataset_near_duplicates(dataset=dataset, threshold=threshold)
    shown = found.clusters[:DUPLICATE_CLUSTERS_SHOWN]
    rule = str(context["keep"])
    context.update(found=found, clusters=[(cluster, kept_of(cluster, rule).id) for cluster in shown])
    return context


@login_required
@require_safe
def dataset_duplicates_panel(request: AuthenticatedRequest, slug: str, dataset_id: int) -> HttpResponse:
    """The near-duplicates card, loaded after the page and polled while embeddings are computed."""
    membership, dataset = dataset_or_404(request, slug, dataset_id)
    context = _duplicates_context(
        membership, dataset, request.GET.get("threshold", "").strip(), request.GET.get("keep", KEEP_DEFAULT)
    )
    return render(request, "curation/_dataset_duplicates.html", context, status=400 if context["error"] else 200)


@login_required
@require_POST
def dataset_embed_start(request: AuthenticatedRequest, slug: str, dataset_id: int) -> HttpResponse:
    membership, dataset = dataset_or_404(request, slug, dataset_id, Role.EDITOR)
    embedding_job_create(dataset=dataset, actor=request.user)
    if request.headers.get("HX-Request"):
        return render(request, "curation/_dataset_duplicates.html", _duplicates_context(membership, dataset, ""))
    messages.success(request, "Computing the embeddings of the entries: progress below.")
    return redirect(reverse("dataset", args=[slug, dataset_id]) + "#near-duplicates")


@login_required
@require_POST
def dataset_duplicates_keep_one(request: AuthenticatedRequest, slug: str, dataset_id: int) -> HttpResponse:
    _, dataset = dataset_or_404(request, slug, dataset_id, Role.EDITOR)
    keep = request.POST.get("keep", KEEP_DEFAULT)
    try:
        _, dropped = dataset_keep_one_per_cluster(
            dataset=dataset, threshold=threshold_clean(request.POST.get("threshold", "")), keep=keep,
            actor=request.user,
        )  # fmt: skip
    except ValidationError as exc:
        messages.error(request, error_messages(exc.message_dict))
    else:
        messages.success(
            request, f"Deleted {len(dropped)} near-duplicate entr{'y' if len(dropped) == 1 else 'ies'}; "
            f"{KEEP_RULES[keep]} of each cluster stays."
        )  # fmt: skip
    return redirect(reverse("dataset", args=[slug, dataset_id]) + "#near-duplicates")


urlpatterns = [
    path("p/<slug:slug>/datasets/<int:dataset_id>/duplicates", dataset_duplicates_panel, name="dataset-duplicates"),
    path("p/<slug:slug>/datasets/<int:dataset_id>/embeddings", dataset_embed_start, name="dataset-embed"),
    path(
        "p/<slug:slug>/datasets/<int:dataset_id>/duplicates/keep-one",
        dataset_duplicates_keep_one,
        name="dataset-duplicates-keep-one",
    ),
]
