"""The log explorer: filter, search, read, tag, bulk actions; the tags page and the audit page.

Every filter of the page is the shared one (`curation.logs.filters.logs_filter`), carried in the URL, so a
view can be shared, saved, and acted on in bulk with exactly the logs it shows."""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.cache import patch_vary_headers
from django.utils.formats import date_format
from django.views.decorators.http import require_POST, require_safe

from curation.common.views import AuthenticatedRequest, is_htmx, membership_or_404, page_context
from curation.datasets.selectors import dataset_names, datasets_of_log
from curation.logs.bulk.selectors import bulk_jobs_active
from curation.logs.filters import logs_filter
from curation.logs.forms import SavedViewForm
from curation.logs.links import FILTER_ORDER, filter_query, logs_url, queries_join, query_with
from curation.logs.selectors import (
    RELEVANCE,
    SORT_DEFAULT,
    Dashboard,
    Facets,
    log_dashboard,
    log_facets,
    log_get,
    log_list,
    log_neighbours,
    log_page,
    model_names,
    sort_default,
)
from curation.logs.similar.about import RANKED_MAX, ranking_of
from curation.models import LogEntry, LogStatus, Membership, Role, SavedView
from curation.tags.selectors import tag_names
from curation.text import rendering
from curation.text.rendering import search_match

PAGE_SIZE = 50
ORIGINAL_SHOWN = 200_000  # characters of the raw original shown inline; the API has all of it


FILTER_LABELS = {
    "q": "Search", "model": "Model", "response_model": "Answered by", "provider": "Provider", "status": "Status",
    "tag": "Has all tags",
    "tag_any": "Has any tag", "tag_none": "Has none of the tags", "created_after": "From", "created_before": "Until",
    "min_tokens": "Min tokens", "max_tokens": "Max tokens", "min_latency_ms": "Min latency",
    "max_latency_ms": "Max latency", "metadata": "Metadata", "score": "Score", "has_score": "Has scores",
    "no_score": "Has none of the scores", "in_dataset": "In dataset",
    "not_in_dataset": "Not in dataset", "pii": "Personal data", "similar_to": "Like log",
    "min_similarity": "Similarity at least", "external_id": "External id", "cursor": "Page", "since": "Last",
    "sort": "Sort", "about": "About", "min_relevance": "Relevance at least", "topic": "Topic",
}  # fmt: skip

# The quick ranges over the table: `since` values.
RANGES = [("1h", "1 h"), ("24h", "24 h"), ("7d", "7 d"), ("30d", "30 d")]

# The sortable columns: a click sorts descending first (the most tokens, the newest), a second ascending.
SORTABLE = {"time": "Time", "tokens": "Tokens", "latency": "Latency", "cost": "Cost"}


# The log page's links to the logs around it in the list: by time by default, else in the order it was shown.
NEIGHBOURS_BY_TIME, NEIGHBOURS = ("Newer", "Older"), ("Previous", "Next")

PII_LABELS = {**rendering.PII_LABELS, "none": "none"}


PII_CHOICES = [
    ("any", "Any"),
    ("none", "None"),
    *((kind, f"Has {label}") for kind, label in PII_LABELS.items() if kind != "none"),
]


ADVANCED = frozenset(FILTER_ORDER) - {"q", "model", "status", "tag"}


def _facet_links(slug: str, query: str, found: Facets) -> dict:
    """Each facet value with its count and the URL that toggles it in the current filter."""
    params = QueryDict(query)
    tags_now = [name.strip() for name in params.get("tag", "").split(",") if name.strip()]

    def toggle(key: str, value: str) -> tuple[bool, str]:
        active = params.get(key) == value
        return active, logs_url(slug, query_with(query, key, None if active else value))

    def tag_toggle(name: str) -> tuple[bool, str]:
        active = name in tags_now
        names = [n for n in tags_now if n != name] if active else [*tags_now, name]
        return active, logs_url(slug, query_with(query, "tag", ",".join(names)))

    def pii_toggle(kind: str) -> tuple[bool, str]:
        # Kinds combine as "any of them"; "none" stands alone: choosing it drops the kinds, and back.
        now = [k.strip() for k in params.get("pii", "").split(",") if k.strip()]
        active = kind in now
        if active:
            chosen = [k for k in now if k != kind]
        else:
            chosen = [kind] if kind == "none" else [*(k for k in now if k not in ("none", "any")), kind]
        return active, logs_url(slug, query_with(query, "pii", ",".join(chosen)))

    def score_toggle(expression: str) -> tuple[bool, str]:
        # `score` repeats: one expression is added or taken away, the others stay.
        now = [value for value in params.getlist("score") if value.strip()]
        active = expression in now
        chosen = QueryDict(query, mutable=True)
        chosen.setlist("score", [e for e in now if e != expression] if active else [*now, expression])
        return active, logs_url(slug, filter_query(chosen))

    def has_score_toggle(name: str) -> tuple[bool, str]:
        now = [n for n in params.get("has_score", "").split(",") if n]
        active = name in now
        names = [n for n in now if n != name] if active else [*now, name]
        return active, logs_url(slug, query_with(query, "has_score", ",".join(names)))

    scores = []
    for facet in found.scores:
        active, url = has_score_toggle(facet.name)
        values = []
        for value, n in facet.values:
            value_active, value_url = score_toggle(f"{facet.name}:{value}")
            values.append({"label": value, "count": n, "active": value_active, "url": value_url})
        scores.append({"name": facet.name, "count": facet.count, "average": facet.average, "active": active,
                       "url": url, "values": values})  # fmt: skip

    models, statuses, tags, kinds = [], [], [], []
    for kind, count in found.pii:
        active, url = pii_toggle(kind)
        kinds.append(
            {"label": PII_LABELS.get(kind, kind), "value": kind, "count": count, "active": active, "url": url}
        )
    for model, count in found.models:
        # Logs without a model cannot be asked for by model: the value is shown, not linked.
        active, url = toggle("model", model) if model else (False, "")
        models.append({"label": model or "(none)", "count": count, "active": active, "url": url})
    for status, count in found.statuses:
        active, url = toggle("status", status)
        label = LogStatus(status).label if status in LogStatus.values else status
        statuses.append({"label": label, "value": status, "count": count, "active": active, "url": url})
    for tag, count in found.tags:
        active, url = tag_toggle(tag.name)
        tags.append({"label": tag.name, "color": tag.color, "count": count, "active": active, "url": url})
    return {"models": models, "statuses": statuses, "tags": tags, "pii": kinds, "scores": scores}


def _sort_links(slug: str, query: str, sort: str, default: str) -> dict:
    """Each sortable column's header: its link (descending first, ascending when it is sorted descending now) and
    the arrow of the current sort. A search by meaning adds its own order, the most relevant first."""
    links = {}
    for name, label in SORTABLE.items():
        wanted = name if sort == f"-{name}" else f"-{name}"
        arrow = "↓" if sort == f"-{name}" else "↑" if sort == name else ""
        link = logs_url(slug, queries_join(query, "" if wanted == default else urlencode({"sort": wanted})))
        links[name] = {"label": label, "url": link, "arrow": arrow, "sort": wanted}
    if default == RELEVANCE:
        arrow = "↓" if sort == RELEVANCE else ""
        links["relevance"] = {"label": "Relevance", "url": logs_url(slug, query), "arrow": arrow, "sort": RELEVANCE}
    return links


def _range_links(slug: str, query: str, sort_query: str) -> list[dict]:
    since = QueryDict(query).get("since", "")
    return [
        {
            "label": label,
            "active": since == value,
            "url": logs_url(
                slug, queries_join(query_with(query, "since", None if since == value else value), sort_query)
            ),
        }
        for value, label in RANGES
    ]


def _explorer_context(request: AuthenticatedRequest, membership: Membership) -> dict:
    project = membership.project
    query = filter_query(request.GET)
    cursor = request.GET.get("cursor") or None
    try:
        ranking = ranking_of(project=project, params=QueryDict(query))
    except ValidationError:
        ranking = None  # the filter below says what is wrong
    default = sort_default(ranking)
    sort = request.GET.get("sort") or default
    sort_query = "" if sort == default else urlencode({"sort": sort})
    list_query = queries_join(query, sort_query)
    text = "" if ranking is not None else request.GET.get("q", "").strip()
    context = page_context(request, membership) | {
        "query": query,
        "sort": sort,
        "sort_query": sort_query,
        "sort_links": _sort_links(project.slug, query, sort, default),
        "ranking": ranking,
        "ranked_max": RANKED_MAX,
        "ranges": _range_links(project.slug, query, sort_query),
        "params": request.GET,
        "metadata_values": [pair for pair in request.GET.getlist("metadata") if pair.strip()],
        "score_values": [expression for expression in request.GET.getlist("score") if expression.strip()],
        "logs_url": logs_url(project.slug, list_query),
        "errors": {},
        "rows": [],
        "saved_views": SavedView.objects.filter(project=project),
        "datasets": dataset_names(project=project),
    }
    if not is_htmx(request):  # a table refresh leaves the filter bar and the jobs above it as they are
        context |= {
            "model_names": model_names(project=project),
            "tag_names": tag_names(project=project),
            "jobs": bulk_jobs_active(project=project),
        }
    try:
        logs = logs_filter(
            project=project, params=QueryDict(query), queryset=log_list(project=project), ranking=ranking
        )
        page = log_page(logs=logs, sort=sort, cursor=cursor, size=PAGE_SIZE, searching=bool(text), ranking=ranking)
    except ValidationError as exc:
        context["errors"] = {FILTER_LABELS.get(key, key): value for key, value in exc.message_dict.items()}
        return context
    detail_query = queries_join(query, sort_query)
    detail_suffix = f"?{detail_query}" if detail_query else ""
    context |= {
        "rows": [
            (
                log,
                reverse("log-detail", args=[project.slug, log.pk]) + detail_suffix,
                text and _row_match(log, text),
            )
            for log in page.items
        ],
        "facets_url": reverse("explorer-facets", args=[project.slug]) + (f"?{query}" if query else ""),
        "dashboard_url": reverse("explorer-dashboard", args=[project.slug]) + (f"?{query}" if query else ""),
        "next_url": page.next_cursor
        and logs_url(project.slug, queries_join(list_query, urlencode({"cursor": page.next_cursor}))),
        "paged": bool(cursor),
    }
    return context


def _row_match(log: LogEntry, text: str) -> rendering.Match | str | None:
    """Why a searched row matched: the turn holding the text, else the tag or metadata value equal to it."""
    match = search_match(log.messages, text)
    if match is not None:
        return match
    wanted = text.lower()
    if any(tag.name.lower() == wanted for tag in log.tags.all()):
        return f"tagged {text}"
    metadata = log.metadata if isinstance(log.metadata, dict) else {}
    keys = [key for key, value in metadata.items() if not isinstance(value, dict | list) and str(value) == text]
    return f"metadata {keys[0]}: {text}" if keys else None


@login_required
@require_safe
def explorer(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    membership = membership_or_404(request, slug)
    context = _explorer_context(request, membership)
    context["advanced_open"] = any(request.GET.get(key) for key in ADVANCED)
    context["pii_choices"] = PII_CHOICES
    context["pii_chosen_known"] = request.GET.get("pii", "") in dict(PII_CHOICES)
    if is_htmx(request) and request.headers.get("HX-Target") == "explorer-body":
        # A new filter makes a pending confirmation stale: the panel is cleared with the table.
        context |= {"oob": True, "clear_panel": request.headers.get("HX-Trigger") == "filters"}
        response = render(request, "curation/explorer_body.html", context)
    else:
        response = render(request, "curation/explorer.html", context)
    # The same URL answers a whole page or the table alone: caches must tell them apart.
    patch_vary_headers(response, ["HX-Request", "HX-Target"])
    return response


@login_required
@require_safe
def explorer_facets(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    """Counts per model, status and tag, and the total, of the current filter: loaded after the table,
    so a slow count never holds the table up."""
    membership = membership_or_404(request, slug)
    project = membership.project
    query = filter_query(request.GET)
    try:
        logs = logs_filter(project=project, params=QueryDict(query))
    except ValidationError:  # the table says what is wrong
        return render(request, "curation/explorer_facets.html", {"project": project, "invalid": True})
    found = log_facets(project=project, logs=logs, searching=bool(request.GET.get("q")))
    context = {
        "project": project,
        "found": found,
        "facets": found and _facet_links(slug, query, found),
        "filtered": bool(query),
    }
    return render(request, "curation/explorer_facets.html", context)


@login_required
@require_safe
def explorer_dashboard(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    """Logs, tokens, cost, latency and errors over time of the current filter: loaded after the table, as the
    facets are."""
    membership = membership_or_404(request, slug)
    project = membership.project
    query = filter_query(request.GET)
    try:
        logs = logs_filter(project=project, params=QueryDict(query))
    except ValidationError:  # the table says what is wrong
        return render(request, "curation/explorer_dashboard.html", {"project": project, "invalid": True})
    dashboard = log_dashboard(logs=logs)
    context = {"project": project, "dashboard": dashboard, "charts": dashboard and dashboard_charts(dashboard)}
    return render(request, "curation/explorer_dashboard.html", context)


_BUCKET_LABELS = {"minute": "H:i", "hour": "M j H:i", "day": "M j", "week": "M j"}


def dashboard_charts(dashboard: Dashboard) -> list[dict]:
    """The dashboard's series as the chart code draws them (static/js/charts.js, bars over time)."""
    labels = [date_format(b.start, _BUCKET_LABELS[dashboard.bucket]) if b.start else "" for b in dashboard.series]

    def chart(key: str, title: str, values: list, unit: str = "", second: list | None = None) -> dict:
        points = [{"label": label, "value": value} for label, value in zip(labels, values, strict=True)]
        if second is not None:
            for point, value in zip(points, second, strict=True):
                point["second"] = value
        return {"id": f"dash-series-{key}", "title": title, "unit": unit, "points": points}

    series = dashboard.series
    return [
        chart("logs", "Logs", [b.logs for b in series]),
        chart("tokens", "Tokens", [b.tokens for b in series]),
        chart("cost", "Cost (USD)", [float(b.cost_usd) if b.cost_usd is not None else 0 for b in series], "$"),
        chart(
            "latency", "Latency p95 (p50 line)", [b.latency_p95 for b in series], "ms", [b.latency_p50 for b in series]
        ),
        chart(
            "errors",
            "Error rate",
            [round(b.error_rate * 100, 2) if b.error_rate is not None else None for b in series],
            "%",
        ),
    ]


@login_required
@require_safe
def log_detail(request: AuthenticatedRequest, slug: str, log_id: int) -> HttpResponse:
    membership = membership_or_404(request, slug)
    project = membership.project
    log = log_get(project=project, log_id=log_id)
    if log is None:
        raise Http404("Log not found")
    query = filter_query(request.GET)
    sort = request.GET.get("sort", "")
    try:
        ranking = ranking_of(project=project, params=QueryDict(query))
        logs = logs_filter(project=project, params=QueryDict(query), ranking=ranking)
        previous, following = log_neighbours(logs=logs, log=log, sort=sort or sort_default(ranking), ranking=ranking)
    except ValidationError:
        ranking, previous, following = None, None, None
    list_query = queries_join(query, urlencode({"sort": sort}) if sort else "")
    original = log.original
    # The exact text is often one long line: an indented copy, keys in the order sent, is easier to read.
    value = log.original_value if len(original) <= ORIGINAL_SHOWN else None
    indented = rendering.pretty_json(value) if value is not None and "\n" not in original else ""
    if not indented.isascii() and not _encodable(indented):  # lone surrogate escapes, decoded: only the exact text
        indented = ""
    suffix = f"?{list_query}" if list_query else ""
    context = page_context(request, membership) | {
        "log": log,
        "query": query,
        "back_url": logs_url(slug, list_query),
        # Previous and Next in the list's order: newer and older by default, or the sort or ranking it was shown in.
        "newer_url": previous and reverse("log-detail", args=[slug, previous]) + suffix,
        "older_url": following and reverse("log-detail", args=[slug, following]) + suffix,
        "neighbour_labels": NEIGHBOURS_BY_TIME if (sort or sort_default(ranking)) == SORT_DEFAULT else NEIGHBOURS,
        "relevance": ranking.scores.get(log.pk) if ranking is not None else None,
        "turns": rendering.conversation_turns(log.messages),
        "alternatives": rendering.alternative_answers(log.alternatives),
        "pii_summary": rendering.pii_summary(log.messages),
        "tools": rendering.tool_definitions(log.tools),
        "metadata": rendering.pretty_json(log.metadata) if log.metadata else "",
        "original": original[:ORIGINAL_SHOWN],
        "original_cut": len(original) > ORIGINAL_SHOWN,
        "original_indented": indented,
        "datasets": dataset_names(project=project),
        "in_datasets": datasets_of_log(log=log),
        "tag_names": tag_names(project=project),
        "self_url": reverse("log-detail", args=[slug, log.pk]) + suffix,
        "similar_url": reverse("log-similar", args=[slug, log.pk]) + suffix,
    }
    return render(request, "curation/log_detail.html", context)


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


@login_required
@require_POST
def saved_view_new(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.EDITOR)
    form = SavedViewForm(request.POST)
    query = filter_query(QueryDict(request.POST.get("query", "")))
    if not form.is_valid():
        messages.error(request, "A saved view needs a name of at most 100 characters.")
        return redirect(logs_url(slug, query))
    try:
        logs_filter(project=membership.project, params=QueryDict(query))  # only a working filter is saved
        with transaction.atomic():
            SavedView.objects.create(
                project=membership.project,
                name=form.cleaned_data["name"].strip(),
                query=query,
                created_by=request.user,
            )
    except ValidationError:
        messages.error(request, "Fix the filter before saving it.")
    except IntegrityError:
        messages.error(request, f"A view named '{form.cleaned_data['name']}' already exists.")
    else:
        messages.success(request, f"Saved view '{form.cleaned_data['name']}'.")
    return redirect(logs_url(slug, query))


@login_required
@require_POST
def saved_view_delete(request: AuthenticatedRequest, slug: str, view_id: int) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.EDITOR)
    deleted, _ = SavedView.objects.filter(project=membership.project, pk=view_id).delete()
    if not deleted:
        raise Http404("View not found")
    messages.success(request, "View deleted.")
    return redirect(logs_url(slug))


urlpatterns = [
    path("p/<slug:slug>/logs/", explorer, name="explorer"),
    path("p/<slug:slug>/logs/facets/", explorer_facets, name="explorer-facets"),
    path("p/<slug:slug>/logs/dashboard/", explorer_dashboard, name="explorer-dashboard"),
    path("p/<slug:slug>/logs/<int:log_id>/", log_detail, name="log-detail"),
    path("p/<slug:slug>/logs/views/new", saved_view_new, name="saved-view-new"),
    path("p/<slug:slug>/logs/views/<int:view_id>/delete", saved_view_delete, name="saved-view-delete"),
]
