"""The Topics page of a project: its current topics with their figures, computing them, and the two ways on from a
topic (its logs in the explorer, a dataset of them)."""

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_POST, require_safe

from curation.common.views import AuthenticatedRequest, error_messages, membership_or_404, page_context, plural
from curation.logs.bulk.services import bulk_action_run
from curation.logs.links import logs_url
from curation.logs.similar.selectors import log_index_size
from curation.logs.topics import selectors
from curation.logs.topics.services import K_HIGH, K_LOW, topic_job_create
from curation.models import BulkAction, Role, Topic, TopicJob

SORT_LABELS = {"volume": "Logs", "cost": "Cost", "latency": "Latency p50 / p95", "errors": "Errors"}


class TopicsComputeForm(forms.Form):
    k = forms.IntegerField(required=False, min_value=K_LOW, max_value=K_HIGH, label="Topics")


class TopicDatasetForm(forms.Form):
    name = forms.CharField(required=False, max_length=200, label="Dataset name")


def _row(topic: Topic, run: TopicJob, slug: str) -> dict:
    return {
        "topic": topic,
        "share": topic.size / run.logs if run.logs else 0.0,
        "explorer_url": logs_url(slug, f"topic={topic.pk}"),
        "trend_id": f"trend-{topic.pk}",
        "trend": _trend_points(topic),
    }


def _trend_points(topic: Topic) -> list[dict]:
    """The topic's logs per day as the chart code draws bars: a label and a value each."""
    end = topic.trend_end
    if end is None:
        return []
    first = end - timedelta(days=len(topic.trend) - 1)
    return [
        {"label": (first + timedelta(days=n)).strftime("%b %-d"), "value": count}
        for n, count in enumerate(topic.trend)
    ]


@login_required
@require_safe
def topics_page(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    """The project's topics, sorted by a column (the largest first); polled while a computation runs."""
    membership = membership_or_404(request, slug)
    project = membership.project
    sort = request.GET.get("sort", "")
    sort = sort if sort in selectors.SORTS else selectors.SORT_DEFAULT
    run = selectors.topic_run_current(project=project)
    topics = list(selectors.topics_of_run(run=run, sort=sort)) if run else []
    rows = [_row(topic, run, slug) for topic in topics] if run else []
    page = reverse("topics", args=[slug])
    context = page_context(request, membership) | {
        "job": selectors.topic_job_latest(project=project),
        "run": run,
        "rows": rows,
        "indexed": log_index_size(project=project),
        "sort": sort,
        "sorts": [(key, label, f"{page}?sort={key}") for key, label in SORT_LABELS.items()],
        "volumes": [{"label": f"#{row['topic'].number}", "value": row["topic"].size} for row in rows],
        "compute_form": TopicsComputeForm(),
        "k_low": K_LOW,
        "k_high": K_HIGH,
    }
    response = render(request, "curation/topics.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_POST
def topics_compute(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    """Compute (or recompute) the project's topics, as a job; back to the page, which shows its progress."""
    membership = membership_or_404(request, slug, Role.EDITOR)
    form = TopicsComputeForm(request.POST)
    if not form.is_valid():
        messages.error(request, error_messages(form.errors))
        return redirect("topics", slug)
    try:
        topic_job_create(project=membership.project, k=form.cleaned_data["k"], actor=request.user)
    except ValidationError as exc:
        messages.error(request, _problem(exc))
    else:
        messages.success(request, "Computing the topics of the indexed logs: the page shows the progress.")
    return redirect("topics", slug)


@login_required
@require_POST
def topic_dataset(request: AuthenticatedRequest, slug: str, topic_id: int) -> HttpResponse:
    """A new dataset of the topic's logs, through the explorer's bulk action on the filter `topic=ID`: the dataset's
    page when they were added at once, the explorer with the job's progress when they are many."""
    membership = membership_or_404(request, slug, Role.EDITOR)
    project = membership.project
    topic = selectors.topic_get(project=project, topic_id=topic_id)
    if topic is None:
        raise Http404("Topic not found")
    form = TopicDatasetForm(request.POST)
    name = (form.cleaned_data["name"].strip() if form.is_valid() else "") or f"Topic {topic.number}: {topic.label}"
    query = f"topic={topic.pk}"
    try:
        outcome = bulk_action_run(
            project=project, action=BulkAction.DATASET_ADD, params={}, query=query, new_dataset=name[:200],
            actor=request.user,
        )  # fmt: skip
    except ValidationError as exc:
        messages.error(request, _problem(exc))
        return redirect("topics", slug)
    if outcome.job is not None or outcome.dataset is None:
        messages.info(request, f"Adding {plural(outcome.matched)} to {name[:200]} in the background.")
        return redirect(logs_url(slug, query))
    messages.success(request, f"Added {plural(outcome.changed or 0)} of topic {topic.number} to {name[:200]}.")
    return redirect("dataset", slug, outcome.dataset.pk)


def _problem(exc: ValidationError) -> str:
    return error_messages(exc.message_dict) if hasattr(exc, "error_dict") else " ".join(exc.messages)


urlpatterns = [
    path("p/<slug:slug>/topics/", topics_page, name="topics"),
    path("p/<slug:slug>/topics/compute", topics_compute, name="topics-compute"),
    path("p/<slug:slug>/topics/<int:topic_id>/dataset", topic_dataset, name="topic-dataset"),
]
