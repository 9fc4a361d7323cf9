"""Links to the log explorer: the filter part of a query string in one stable order, so links, saved views and
bulk actions carry the same text for the same filter."""

from urllib.parse import urlencode

from django.http import HttpRequest, QueryDict
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from curation.logs.filters import FILTER_PARAMS

FILTER_ORDER = [
    "q", "about", "min_relevance", "model", "response_model", "provider", "status", "tag", "tag_any", "tag_none",
    "created_after", "created_before", "since", "min_tokens", "max_tokens", "min_latency_ms", "max_latency_ms",
    "metadata", "score", "has_score", "no_score", "in_dataset", "not_in_dataset", "pii", "similar_to",
    "min_similarity", "external_id", "topic",
]  # fmt: skip


def filter_query(params: QueryDict) -> str:
    """The filter part of a query string, blank values dropped, in a stable order: what links, saved
    views and bulk actions carry."""
    keys = [key for key in FILTER_ORDER if key in FILTER_PARAMS] + sorted(FILTER_PARAMS - set(FILTER_ORDER))
    return urlencode([(key, value.strip()) for key in keys for value in params.getlist(key) if value.strip()])


def query_with(query: str, key: str, value: str | None) -> str:
    """`query` with `key` set to `value` (or removed when `value` is empty)."""
    params = QueryDict(query, mutable=True)
    params.pop(key, None)
    if value:
        params[key] = value
    return filter_query(params)


def queries_join(*queries: str) -> str:
    return "&".join(q for q in queries if q)


def logs_url(slug: str, query: str = "") -> str:
    return reverse("explorer", args=[slug]) + (f"?{query}" if query else "")


def next_url(request: HttpRequest, slug: str, data: dict) -> str:
    """Where to go after a form: the page it asked for when that is one of this project's, else the explorer."""
    wanted = data.get("next") or ""
    if wanted.startswith(f"/p/{slug}/") and url_has_allowed_host_and_scheme(wanted, {request.get_host()}):
        return wanted
    return logs_url(slug, data.get("filter", ""))
