"""The log explorer: filter, search, read, tag, bulk actions; the tags page and the audit page.

Every filter of the page is the shared one (`curation.filters.logs_filter`), carried in the URL, so a
view can be shared, saved, and acted on in bulk with exactly the logs it shows.
"""

import typing
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST, require_safe

from curation import facets, rendering, selectors
from curation.filters import FILTER_PARAMS, logs_filter
from curation.models import (
    BulkAction,
    Dataset,
    LogEntry,
    LogStatus,
    Membership,
    Project,
    Role,
    SavedView,
    Tag,
)
from curation.pagination import keyset_page
from curation.params import whole_number
from curation.services import bulk as bulk_services
from curation.services import similar as similar_services
from curation.services.datasets import dataset_create
from curation.services.tags import tag_delete, tag_merge, tag_names_clean, tag_update
from curation.views.common import AuthenticatedRequest, membership_or_404

PAGE_SIZE = 50
MAX_SELECTED = 1_000
ORIGINAL_SHOWN = 200_000  # characters of the raw original shown inline; the API has all of it

# The order parameters appear in in shared URLs; any other filter parameter follows, sorted.
FILTER_ORDER = [
    "q", "model", "provider", "status", "tag", "tag_any", "tag_none", "created_after", "created_before",
    "min_tokens", "max_tokens", "min_latency_ms", "max_latency_ms", "metadata", "in_dataset", "not_in_dataset",
    "pii", "similar_to", "min_similarity",
]  # fmt: skip
FILTER_LABELS = {
    "q": "Search", "model": "Model", "provider": "Provider", "status": "Status", "tag": "Has all tags",
    "tag_any": "Has any tag", "tag_none": "Has none of the tags", "created_after": "From", "created_before": "Until",
    "min_tokens": "Min tokens", "max_tokens": "Max tokens", "min_latency_ms": "Min latency",
    "max_latency_ms": "Max latency", "metadata": "Metadata", "in_dataset": "In dataset",
    "not_in_dataset": "Not in dataset", "pii": "Personal data", "similar_to": "Like log",
    "min_similarity": "Similarity at least", "cursor": "Page",
}  # fmt: skip
PII_LABELS = {**rendering.PII_LABELS, "none": "none"}
PII_CHOICES = [
    ("any", "Any"),
    ("none", "None"),
    *((kind, f"Has {label}") for kind, label in PII_LABELS.items() if kind != "none"),
]
ADVANCED = frozenset(FILTER_ORDER) - {"q", "model", "status", "tag"}


def filter_query(params: QueryDict) -> str:
    """The filter part of a query string, blank values dropped, in a stable order: what links, saved
    views and bulk actions carry."""
    keys = [key for key in FILTER_ORDER if key in FILTER_PARAMS] + sorted(FILTER_PARAMS - set(FILTER_ORDER))
    return urlencode([(key, value.strip()) for key in keys for value in params.getlist(key) if value.strip()])


def _query_with(query: str, key: str, value: str | None) -> str:
    params = QueryDict(query, mutable=True)
    params.pop(key, None)
    if value:
        params[key] = value
    return filter_query(params)


def _is_htmx(request: AuthenticatedRequest) -> bool:
    return request.headers.get("HX-Request") == "true" and not request.headers.get("HX-History-Restore-Request")


def _page_context(request: AuthenticatedRequest, membership: Membership) -> dict:
    return {
        "membership": membership,
        "project": membership.project,
        "can_edit": Role.rank(membership.role) >= Role.rank(Role.EDITOR),
        "is_owner": membership.role == Role.OWNER,
        "switcher": selectors.projects_for_user(user=request.user),
    }


def _logs_url(slug: str, query: str = "") -> str:
    return f"/p/{slug}/logs/" + (f"?{query}" if query else "")


# --- the list ------------------------------------------------------------------------------------------


def _facet_links(slug: str, query: str, found: facets.Facets) -> dict:
    """Each facet value with its count and the URL that toggles it in the current filter."""
    params = QueryDict(query)
    tags_now = [name.strip() for name in params.get("tag", "").split(",") if name.strip()]

    def toggle(key: str, value: str) -> tuple[bool, str]:
        active = params.get(key) == value
        return active, _logs_url(slug, _query_with(query, key, None if active else value))

    def tag_toggle(name: str) -> tuple[bool, str]:
        active = name in tags_now
        names = [n for n in tags_now if n != name] if active else [*tags_now, name]
        return active, _logs_url(slug, _query_with(query, "tag", ",".join(names)))

    def pii_toggle(kind: str) -> tuple[bool, str]:
        # Kinds combine as "any of them"; "none" stands alone: choosing it drops the kinds, and back.
        now = [k.strip() for k in params.get("pii", "").split(",") if k.strip()]
        active = kind in now
        if active:
            chosen = [k for k in now if k != kind]
        else:
            chosen = [kind] if kind == "none" else [*(k for k in now if k not in ("none", "any")), kind]
        return active, _logs_url(slug, _query_with(query, "pii", ",".join(chosen)))

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
    return {"models": models, "statuses": statuses, "tags": tags, "pii": kinds}


def _explorer_context(request: AuthenticatedRequest, membership: Membership) -> dict:
    project = membership.project
    query = filter_query(request.GET)
    cursor = request.GET.get("cursor") or None
    context = _page_context(request, membership) | {
        "query": query,
        "params": request.GET,
        "metadata_values": [pair for pair in request.GET.getlist("metadata") if pair.strip()],
        "logs_url": _logs_url(project.slug, query),
        "errors": {},
        "rows": [],
        "saved_views": SavedView.objects.filter(project=project),
        "datasets": facets.datasets_for_project(project=project),
    }
    if not _is_htmx(request):  # a table refresh leaves the filter bar and the jobs above it as they are
        context |= {
            "model_names": facets.model_names(project=project),
            "tag_names": facets.tag_names(project=project),
            "jobs": facets.bulk_jobs_active(project=project),
        }
    try:
        logs = logs_filter(project=project, params=QueryDict(query), queryset=selectors.log_list(project=project))
        page = keyset_page(logs, cursor=cursor, size=PAGE_SIZE, searching=bool(request.GET.get("q")))
    except ValidationError as exc:
        context["errors"] = {FILTER_LABELS.get(key, key): value for key, value in exc.message_dict.items()}
        return context
    detail_suffix = f"?{query}" if query else ""
    context |= {
        "rows": [(log, f"/p/{project.slug}/logs/{log.pk}/{detail_suffix}") for log in page.items],
        "facets_url": f"/p/{project.slug}/logs/facets/{detail_suffix}",
        "next_url": page.next_cursor
        and _logs_url(project.slug, _join(query, urlencode({"cursor": page.next_cursor}))),
        "paged": bool(cursor),
    }
    return context


def _join(*queries: str) -> str:
    return "&".join(q for q in queries if q)


@login_required
@require_safe
def explorer(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    membership = membership_or_404(request, slug)
    context = _explorer_context(request, membership)
    context["advanced_open"] = any(request.GET.get(key) for key in ADVANCED)
    context["pii_choices"] = PII_CHOICES
    context["pii_chosen_known"] = request.GET.get("pii", "") in dict(PII_CHOICES)
    if _is_htmx(request) and request.headers.get("HX-Target") == "explorer-body":
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
    found = facets.log_facets(project=project, logs=logs, searching=bool(request.GET.get("q")))
    context = {
        "project": project,
        "found": found,
        "facets": found and _facet_links(slug, query, found),
        "filtered": bool(query),
    }
    return render(request, "curation/explorer_facets.html", context)


@login_required
@require_safe
def log_detail(request: AuthenticatedRequest, slug: str, log_id: int) -> HttpResponse:
    membership = membership_or_404(request, slug)
    project = membership.project
    log = selectors.log_get(project=project, log_id=log_id)
    if log is None:
        raise Http404("Log not found")
    query = filter_query(request.GET)
    try:
        newer, older = facets.log_neighbours(logs=logs_filter(project=project, params=QueryDict(query)), log=log)
    except ValidationError:
        newer = older = None
    original = log.original
    # The exact text is often one long line: an indented copy, keys in the order sent, is easier to read.
    value = log.original_value if len(original) <= ORIGINAL_SHOWN else None
    indented = rendering.pretty_json(value) if value is not None and "\n" not in original else ""
    if not indented.isascii() and not _encodable(indented):  # lone surrogate escapes, decoded: only the exact text
        indented = ""
    suffix = f"?{query}" if query else ""
    context = _page_context(request, membership) | {
        "log": log,
        "query": query,
        "back_url": _logs_url(slug, query),
        "newer_url": newer and f"/p/{slug}/logs/{newer}/{suffix}",
        "older_url": older and f"/p/{slug}/logs/{older}/{suffix}",
        "turns": rendering.conversation_turns(log.messages),
        "pii_summary": rendering.pii_summary(log.messages),
        "tools": rendering.tool_definitions(log.tools),
        "metadata": rendering.pretty_json(log.metadata) if log.metadata else "",
        "original": original[:ORIGINAL_SHOWN],
        "original_cut": len(original) > ORIGINAL_SHOWN,
        "original_indented": indented,
        "datasets": facets.datasets_for_project(project=project),
        "in_datasets": facets.datasets_of_log(log=log),
        "tag_names": facets.tag_names(project=project),
        "self_url": f"/p/{slug}/logs/{log.pk}/{suffix}",
        "similar_url": f"/p/{slug}/logs/{log.pk}/similar{suffix}",
    }
    return render(request, "curation/log_detail.html", context)


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


# --- more like this -------------------------------------------------------------------------------------


def _similar_context(request: AuthenticatedRequest, membership: Membership, log: LogEntry) -> dict:
    """The "more like this" panel: the index's state, and the logs nearest `log` within the explorer filter the
    page was opened with, once any log is indexed."""
    project = membership.project
    query = filter_query(request.GET)
    suffix = f"?{query}" if query else ""
    job = similar_services.log_embedding_job_latest(project=project)
    indexed = similar_services.log_index_size(project=project)
    context = _page_context(request, membership) | {
        "log": log,
        "query": query,
        "job": job,
        "indexed": indexed,
        "index_limit": settings.LOGTUNE_SIMILAR_LOGS_MAX,
        "logs_total": project.logs.count(),
        "panel_url": f"/p/{project.slug}/logs/{log.pk}/similar{suffix}",
        "filter_pairs": [
            (key, value)
            for key, values in QueryDict(query).lists()
            if key not in ("similar_to", "min_similarity")
            for value in values
        ],
        "min_similarity": similar_services.SIMILARITY_DEFAULT,
        "similarity_min": similar_services.SIMILARITY_MIN,
        "found": None,
        "rows": [],
        "error": "",
    }
    if not indexed:
        return context
    try:
        within = logs_filter(project=project, params=QueryDict(query)) if query else None
    except ValidationError as exc:
        context["error"] = "The filter has a problem: " + _errors(exc)
        return context
    found = similar_services.logs_similar(project=project, log=log, within=within)
    context["found"] = found
    context["rows"] = [(entry, score, f"/p/{project.slug}/logs/{entry.pk}/{suffix}") for entry, score in found.results]
    return context


@login_required
@require_safe
def log_similar(request: AuthenticatedRequest, slug: str, log_id: int) -> HttpResponse:
    """The logs most like this one (the panel under "More like this" on a log's page; a page of its own without
    htmx). Polled while the project's logs are being indexed."""
    membership = membership_or_404(request, slug)
    log = selectors.log_get(project=membership.project, log_id=log_id)
    if log is None:
        raise Http404("Log not found")
    context = _similar_context(request, membership, log)
    template = "curation/_log_similar.html" if _is_htmx(request) else "curation/log_similar.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_POST
def logs_embed_start(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    """Index the project's newest logs for "more like this" (a job); back to the panel or page it came from."""
    membership = membership_or_404(request, slug, Role.EDITOR)
    project = membership.project
    similar_services.log_embedding_job_create(project=project, actor=request.user)
    log_id = whole_number(request.POST.get("log", ""))  # the log whose panel asked; none: back to the page
    log = selectors.log_get(project=project, log_id=log_id) if log_id is not None else None
    if log is not None and _is_htmx(request):
        return render(request, "curation/_log_similar.html", _similar_context(request, membership, log))
    messages.success(request, 'Indexing the newest logs for "more like this".')
    return redirect(_next_url(request, slug, {"next": request.POST.get("next", "")}))


# --- bulk actions ----------------------------------------------------------------------------------------


class IdsField(forms.Field):
    widget = forms.MultipleHiddenInput

    def to_python(self, value: object) -> list[int]:
        values: list = value if isinstance(value, list) else [value] if value else []
        numbers = [whole_number(str(v)) for v in values]
        if None in numbers:
            raise ValidationError("Log ids are whole numbers.")
        ids = list(dict.fromkeys(typing.cast(list[int], numbers)))
        if len(ids) > MAX_SELECTED:
            raise ValidationError(f"Select at most {MAX_SELECTED:,} logs; for more, act on all matching.")
        return ids


class BulkForm(forms.Form):
    action = forms.ChoiceField(choices=BulkAction.choices)
    scope = forms.ChoiceField(choices=[("selected", "selected logs"), ("matching", "all matching logs")])
    ids = IdsField(required=False)
    tags = forms.CharField(required=False, max_length=5000)
    dataset = forms.CharField(required=False)
    new_dataset = forms.CharField(required=False, max_length=200)
    filter = forms.CharField(required=False, max_length=10_000)
    expected = forms.IntegerField(required=False, min_value=0)
    next = forms.CharField(required=False, max_length=10_000)

    def __init__(self, data: QueryDict, *, project: Project) -> None:
        super().__init__(data)
        self.project = project

    def clean(self) -> dict:
        data = super().clean() or {}
        action, scope = data.get("action"), data.get("scope")
        if scope == "selected" and not data.get("ids"):
            self.add_error("ids", "Select logs first (tick their boxes or press x), or choose all matching.")
        data["filter"] = filter_query(QueryDict(data.get("filter") or ""))
        if action in (BulkAction.TAG_ADD, BulkAction.TAG_REMOVE):
            try:
                data["tag_list"] = tag_names_clean(data.get("tags") or "")
            except ValidationError as exc:
                self.add_error("tags", exc.message_dict["tags"])
        if action == BulkAction.DATASET_ADD:
            self._clean_dataset(data)
        return data

    def _clean_dataset(self, data: dict) -> None:
        new_name = (data.get("new_dataset") or "").strip()
        chosen = data.get("dataset") or ""
        if new_name and chosen in ("", "new"):
            if Dataset.objects.filter(project=self.project, name=new_name).exists():
                self.add_error("new_dataset", f"A dataset named '{new_name}' already exists: pick it in the list.")
            data["dataset_obj"], data["new_dataset"] = None, new_name
            return
        dataset_id = whole_number(chosen)
        dataset = None if dataset_id is None else Dataset.objects.filter(project=self.project, pk=dataset_id).first()
        if dataset is None:
            self.add_error("dataset", "Pick a dataset, or name a new one.")
        data["dataset_obj"], data["new_dataset"] = dataset, ""


def _bulk_target(project: Project, data: dict) -> QuerySet[LogEntry]:
    if data["scope"] == "selected":
        return LogEntry.objects.filter(project=project, id__in=data["ids"])
    return logs_filter(project=project, params=QueryDict(data["filter"]))


def _plural(n: int, word: str = "log") -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def in_datasets_note(in_datasets: int, count: int) -> str:
    """What deleting logs does to the datasets they are in: their entries keep a copy."""
    if not in_datasets:
        return "None of them is in a dataset." if count > 1 else "It is in no dataset."
    if count == 1:
        return "It is in a dataset; its entries keep their copy."
    verb = "is in a dataset" if in_datasets == 1 else "are in datasets"
    return f"{in_datasets:,} of these {count:,} logs {verb}; their entries keep their copies."


def _bulk_summary(data: dict, count: int, in_datasets: int = 0) -> str:
    logs = _plural(count)
    where = "selected" if data["scope"] == "selected" else "matching this filter"
    action = data["action"]
    if action == BulkAction.TAG_ADD:
        return f"Add {', '.join(data['tag_list'])} to {logs} {where}."
    if action == BulkAction.TAG_REMOVE:
        return f"Remove {', '.join(data['tag_list'])} from {logs} {where}."
    if action == BulkAction.DATASET_ADD:
        target = f"new dataset '{data['new_dataset']}'" if data["new_dataset"] else f"'{data['dataset_obj'].name}'"
        return f"Add {logs} {where} to {target}."
    return f"Delete {logs} {where}. {in_datasets_note(in_datasets, count)} This cannot be undone."


def _confirm_label(action: str, count: int) -> str:
    verbs: dict[str, str] = {BulkAction.TAG_ADD: "Tag", BulkAction.TAG_REMOVE: "Untag", BulkAction.DATASET_ADD: "Add"}
    verb = verbs.get(action, "Delete")
    return f"{verb} {_plural(count)}"


def _next_url(request: AuthenticatedRequest, slug: str, data: dict) -> str:
    wanted = data.get("next") or ""
    if wanted.startswith(f"/p/{slug}/") and url_has_allowed_host_and_scheme(wanted, {request.get_host()}):
        return wanted
    return _logs_url(slug, data.get("filter", ""))


def _bulk_params(data: dict, dataset: Dataset | None = None) -> dict:
    if data["action"] in (BulkAction.TAG_ADD, BulkAction.TAG_REMOVE):
        return {"tags": data["tag_list"]}
    if data["action"] == BulkAction.DATASET_ADD:
        return {"dataset": (dataset or data["dataset_obj"]).pk}
    return {}


def _bulk_render(request: AuthenticatedRequest, template: str, context: dict) -> HttpResponse:
    """A bulk step: a fragment in the explorer's panel, or a page of its own without htmx."""
    if _is_htmx(request):
        return render(request, template, context)
    if "next" not in context:
        given = request.POST if request.method == "POST" else request.GET
        wanted = {"next": given.get("next", ""), "filter": filter_query(QueryDict(given.get("filter", "")))}
        context["next"] = _next_url(request, context["project"].slug, wanted)
    return render(request, "curation/explorer_bulk.html", context | {"fragment": template})


@login_required
@require_safe
def bulk_preview(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    """Before acting: exactly how many logs the action will touch, and a button to go ahead."""
    membership = membership_or_404(request, slug, Role.EDITOR)
    project = membership.project
    context = _page_context(request, membership)
    form = BulkForm(request.GET, project=project)
    if not form.is_valid():
        return _bulk_render(request, "curation/_bulk_confirm.html", context | {"form": form})
    data = form.cleaned_data
    try:
        target = _bulk_target(project, data)
        count = target.count()
    except ValidationError as exc:
        form.add_error(None, "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()))
        return _bulk_render(request, "curation/_bulk_confirm.html", context | {"form": form})
    confirm = _confirm_context(request, context, form, count, target)
    return _bulk_render(request, "curation/_bulk_confirm.html", confirm)


def _confirm_context(
    request: AuthenticatedRequest, context: dict, form: BulkForm, count: int, target: QuerySet[LogEntry]
) -> dict:
    data = form.cleaned_data
    is_delete = data["action"] == BulkAction.DELETE
    in_datasets = selectors.logs_in_datasets_count(logs=target) if is_delete and count else 0
    return context | {
        "form": form,
        "data": data,
        "count": count,
        "in_datasets": in_datasets,
        "summary": _bulk_summary(data, count, in_datasets),
        "confirm_label": _confirm_label(data["action"], count),
        "is_delete": is_delete,
        "next": _next_url(request, context["project"].slug, data),
        "hidden": [
            (key, value)
            for key in ("action", "scope", "tags", "dataset", "new_dataset", "filter")
            if (value := data.get(key))
        ]
        + [("ids", log_id) for log_id in data["ids"]],
    }


@login_required
@require_POST
def bulk_run(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.EDITOR)
    project = membership.project
    context = _page_context(request, membership)
    form = BulkForm(request.POST, project=project)
    if not form.is_valid() or form.cleaned_data.get("expected") is None:
        if not form.errors:
            form.add_error(None, "Review the action first: the page confirms how many logs it touches.")
        return _bulk_render(request, "curation/_bulk_confirm.html", context | {"form": form})
    data = form.cleaned_data
    target = _bulk_target(project, data)
    count = len(data["ids"]) if data["scope"] == "selected" else target.count()
    # Small actions run now, on exactly the ids counted; large ones as a job with progress.
    inline = data["scope"] == "selected" or count <= bulk_services.INLINE_LIMIT
    ids = list(target.values_list("id", flat=True)) if inline else []
    count = len(ids) if inline else count
    if count != data["expected"]:
        confirm = _confirm_context(request, context, form, count, target)
        confirm["changed_from"] = data["expected"]
        return _bulk_render(request, "curation/_bulk_confirm.html", confirm)
    try:
        with transaction.atomic():
            dataset = (
                dataset_create(project=project, name=data["new_dataset"], created_by=request.user)
                if data.get("new_dataset")
                else None
            )
            params = _bulk_params(data, dataset)
            if not inline:
                job = bulk_services.bulk_job_create(
                    project=project, action=data["action"], params=params, query=data["filter"], actor=request.user
                )
            else:
                changed = _apply_inline(request, project, data, params, ids)
    except ValidationError as exc:
        form.add_error(None, "; ".join(" ".join(v) for v in exc.message_dict.values()))
        return _bulk_render(request, "curation/_bulk_confirm.html", context | {"form": form})
    next_url = _next_url(request, slug, data)
    if not inline:
        message = f"Working on {_plural(job.total)} in the background: progress is shown above the table."
        if not _is_htmx(request):
            messages.info(request, message)
            return redirect(next_url)
        return render(request, "curation/_bulk_result.html", context | {"message": message, "job": job})
    message = _result_message(data, count, changed, dataset)
    if not _is_htmx(request):
        messages.success(request, message)
        return redirect(next_url)
    response = render(request, "curation/_bulk_result.html", context | {"message": message})
    response["HX-Trigger"] = "logtune:logs-changed"
    return response


def _apply_inline(request: AuthenticatedRequest, project: Project, data: dict, params: dict, ids: list[int]) -> int:
    query = data["filter"] if data["scope"] == "matching" else ""
    return bulk_services.bulk_apply_to_ids(
        project=project, action=data["action"], params=params, ids=ids, actor=request.user, query=query
    )


def _result_message(data: dict, count: int, changed: int, dataset: Dataset | None) -> str:
    action = data["action"]
    if action == BulkAction.TAG_ADD:
        return f"Tagged {_plural(count)} with {', '.join(data['tag_list'])}."
    if action == BulkAction.TAG_REMOVE:
        return f"Removed {', '.join(data['tag_list'])} from {_plural(count)}."
    if action == BulkAction.DATASET_ADD:
        name = (dataset or data["dataset_obj"]).name
        already = count - changed
        return f"Added {_plural(changed)} to {name}" + (f" ({already:,} were already in it)." if already else ".")
    return f"Deleted {_plural(changed)}."


@login_required
@require_safe
def bulk_job_panel(request: AuthenticatedRequest, slug: str, job_id: int) -> HttpResponse:
    """One bulk job's progress, polled by the explorer while it runs."""
    membership = membership_or_404(request, slug)
    job = facets.bulk_job_get(project=membership.project, job_id=job_id)
    if job is None:
        raise Http404("Job not found")
    response = render(request, "curation/_bulk_job.html", {"project": membership.project, "job": job})
    if job.is_finished and request.GET.get("polling"):
        response["HX-Trigger"] = "logtune:logs-changed"  # the table shows what the job changed
    return response


# --- saved views ---------------------------------------------------------------------------------------


class SavedViewForm(forms.Form):
    name = forms.CharField(max_length=100)
    query = forms.CharField(required=False, max_length=10_000)


@login_required
@require_POST
def saved_view_new(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.EDITOR)
    form = SavedViewForm(request.POST)
    query = filter_query(QueryDict(request.POST.get("query", "")))
    if not form.is_valid():
        messages.error(request, "A saved view needs a name of at most 100 characters.")
        return redirect(_logs_url(slug, query))
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
    return redirect(_logs_url(slug, query))


@login_required
@require_POST
def saved_view_delete(request: AuthenticatedRequest, slug: str, view_id: int) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.EDITOR)
    deleted, _ = SavedView.objects.filter(project=membership.project, pk=view_id).delete()
    if not deleted:
        raise Http404("View not found")
    messages.success(request, "View deleted.")
    return redirect(_logs_url(slug))


# --- tags ----------------------------------------------------------------------------------------------


@login_required
@require_safe
def tags_page(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    membership = membership_or_404(request, slug)
    tags = facets.tags_with_counts(project=membership.project)
    return render(request, "curation/tags.html", _page_context(request, membership) | {"tags": tags})


def _tag_or_404(membership: Membership, tag_id: int) -> Tag:
    tag = Tag.objects.filter(project=membership.project, pk=tag_id).first()
    if tag is None:
        raise Http404("Tag not found")
    return tag


def _errors(exc: ValidationError) -> str:
    return " ".join(message for messages_ in exc.message_dict.values() for message in messages_)


@login_required
@require_POST
def tag_edit(request: AuthenticatedRequest, slug: str, tag_id: int) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.EDITOR)
    tag = _tag_or_404(membership, tag_id)
    try:
        tag_update(tag=tag, name=request.POST.get("name"), color=request.POST.get("color") or None, actor=request.user)
    except ValidationError as exc:
        messages.error(request, _errors(exc))
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
        messages.error(request, _errors(exc))
        return redirect("tags", slug=slug)
    messages.success(request, f"Merged '{source.name}' into '{target.name}': {_plural(moved)} newly tagged.")
    return redirect("tags", slug=slug)


@login_required
@require_POST
def tag_delete_view(request: AuthenticatedRequest, slug: str, tag_id: int) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.EDITOR)
    tag = _tag_or_404(membership, tag_id)
    removed = tag_delete(tag=tag, actor=request.user)
    messages.success(request, f"Tag '{tag.name}' deleted from {_plural(removed)}; the logs stay.")
    return redirect("tags", slug=slug)


# --- audit -----------------------------------------------------------------------------------------------


@login_required
@require_safe
def audit_page(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.OWNER)
    action = request.GET.get("action", "")
    context = _page_context(request, membership) | {
        "action": action,
        "actions": facets.audit_actions(project=membership.project),
        "events": [],
        "next_url": None,
        "error": "",
    }
    events = facets.audit_events(project=membership.project, action=action)
    try:
        page = keyset_page(events, cursor=request.GET.get("cursor") or None, size=PAGE_SIZE)
    except ValidationError as exc:
        context["error"] = _errors(exc)
        return render(request, "curation/audit.html", context)
    base = urlencode({"action": action}) if action else ""
    context["events"] = page.items
    context["next_url"] = page.next_cursor and f"?{_join(base, urlencode({'cursor': page.next_cursor}))}"
    return render(request, "curation/audit.html", context)


urlpatterns = [
    path("p/<slug:slug>/logs/", explorer, name="explorer"),
    path("p/<slug:slug>/logs/facets/", explorer_facets, name="explorer-facets"),
    path("p/<slug:slug>/logs/<int:log_id>/", log_detail, name="log-detail"),
    path("p/<slug:slug>/logs/<int:log_id>/similar", log_similar, name="log-similar"),
    path("p/<slug:slug>/logs/embeddings", logs_embed_start, name="logs-embed"),
    path("p/<slug:slug>/logs/bulk/", bulk_preview, name="bulk-preview"),
    path("p/<slug:slug>/logs/bulk/run", bulk_run, name="bulk-run"),
    path("p/<slug:slug>/logs/bulk/jobs/<int:job_id>/", bulk_job_panel, name="bulk-job"),
    path("p/<slug:slug>/logs/views/new", saved_view_new, name="saved-view-new"),
    path("p/<slug:slug>/logs/views/<int:view_id>/delete", saved_view_delete, name="saved-view-delete"),
    path("p/<slug:slug>/tags/", tags_page, name="tags"),
    path("p/<slug:slug>/tags/<int:tag_id>/edit", tag_edit, name="tag-edit"),
    path("p/<slug:slug>/tags/<int:tag_id>/merge", tag_merge_view, name="tag-merge"),
    path("p/<slug:slug>/tags/<int:tag_id>/delete", tag_delete_view, name="tag-delete"),
    path("p/<slug:slug>/audit/", audit_page, name="audit"),
]
