"""The one filter language for logs: the API, the pages, bulk actions and the CLI all go through
`logs_filter`, so a filter means the same thing everywhere.

Query parameters (all optional, all combined with AND):
  model, provider, status     comma-separated values, any of them
  tag                         comma-separated: has all of these tags
  tag_any / tag_none          comma-separated: has any / none of these tags
  created_after/before        ISO-8601 date-times (after is inclusive, before exclusive)
  since                       a range relative to now: a number and a unit, m(inutes) h(ours) d(ays) w(eeks):
                              15m, 1h, 24h, 7d, 30d (created at or after now minus that)
  min_tokens/max_tokens       total tokens, inclusive
  min_latency_ms/max_latency_ms
  metadata                    key:value, repeatable; dots reach nested keys (user.plan:pro)
  score                       NAME:VALUE (or NAME=VALUE), NAME>=N, NAME<=N, NAME>N, NAME<N; repeatable: a log
                              matches when any of its scores of that name does (thumbs:up, quality>=4)
  has_score / no_score        comma-separated score names: has a score of each / of none of them
  in_dataset / not_in_dataset dataset id: is / is not in that dataset
  pii                         personal data in the conversation: any, none, or comma-separated kinds
                              (EMAIL,PHONE,CARD,IBAN,IP,SECRET): has any of them
  external_id                 exactly this external_id (the sender's own id of a log)
  q                           free text: words (any language) or a substring (CJK, code), case-insensitive;
                              `about:WORDS` searches by meaning instead, as `about` does
  about                       words saying what the logs are about: the indexed logs whose meaning is closest
                              (curation/logs/similar/about.py), whatever words they use
  min_relevance               with `about`: how alike, 0 to 1 (default 0.2)
  topic                       topic id: the logs of that topic of the project's current topics (logs/topics/)
"""

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, timedelta
from decimal import Decimal
from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from curation.common.params import ID_MAX
from curation.logs.ingest.scores import NAME_PATTERN
from curation.logs.similar.about import PREFIX as ABOUT_PREFIX
from curation.logs.similar.about import Ranking, about_text, logs_about, query_clean, relevance_param
from curation.logs.similar.selectors import SIMILARITY_DEFAULT, LogNotIndexed, logs_like_ids
from curation.logs.topics.selectors import topic_log_ids
from curation.models import DatasetEntry, LogEntry, LogScore, LogStatus, LogTag, Project, Tag
from curation.text.pii.findings import KINDS

_METADATA_KEY = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")

# A score filter: a name, an operator, a value. The comparisons take a number as JSON writes one; equality takes
# any text (a category, or a number). The API's schema declares the same pattern (curation.common.apis).
SCORE_NUMBER = r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?"
SCORE_EXPRESSION = rf"{NAME_PATTERN}((:|=)[\s\S]*|(>=|<=|>|<){SCORE_NUMBER})"
SCORE_NAMES = rf"{NAME_PATTERN}(,{NAME_PATTERN})*"
_SCORE = re.compile(rf"(?P<name>{NAME_PATTERN})(?P<op>>=|<=|>|<|:|=)(?P<value>[\s\S]*)")
_SCORE_COMPARISONS = {">=": "gte", "<=": "lte", ">": "gt", "<": "lt"}


# A relative range: `since=24h`. Up to 5 digits: 99,999 weeks is far past any log, and within what Python adds.
SINCE_PATTERN = r"^([1-9][0-9]{0,4})([mhdw])$"
_SINCE_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def relative_span(value: str) -> timedelta | None:
    """`24h` → 24 hours; None for a blank value; ValidationError for anything else."""
    text = value.strip()
    if not text:
        return None
    match = re.fullmatch(SINCE_PATTERN, text)
    if match is None:
        raise ValidationError({"since": f"'{value}' is not a number and a unit: 15m, 1h, 24h, 7d, 30d, 2w."})
    return timedelta(**{_SINCE_UNITS[match.group(2)]: int(match.group(1))})


class CharInFilter(django_filters.BaseInFilter, django_filters.CharFilter):
    pass


class ChoiceInFilter(django_filters.BaseInFilter, django_filters.ChoiceFilter):
    pass


class _RepeatedField(forms.Field):
    """A parameter that may be given several times (?metadata=a:1&metadata=b:2)."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: object) -> list[str]:
        if not value:
            return []
        values = [value] if isinstance(value, str) else list(value)  # type: ignore[call-overload]
        return [str(v) for v in values if str(v).strip()]


class RepeatedFilter(django_filters.Filter):
    field_class = _RepeatedField


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def _has_tag(project: Project, names: Iterable[str]) -> Exists:
    # The tag ids are looked up first: filtering on tag_id lets PostgreSQL use the per-tag row counts it
    # keeps for LogTag, where a join on the name makes it guess (and, for a common tag, guess 10x low).
    ids = list(Tag.objects.filter(project=project, name__in=list(names)).values_list("id", flat=True))
    return Exists(LogTag.objects.filter(log=OuterRef("pk"), tag_id__in=ids))


def _json_scalar(value: str) -> object:
    """'42' → 42, 'true' → True: metadata values may have been sent as numbers or booleans. 'NaN' and 'inf' are
    text: JSON has no such numbers, and jsonb refuses them."""
    if value in ("true", "false"):
        return value == "true"
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


class _UtcDateTimeField(django_filters.fields.IsoDateTimeField):
    """An ISO-8601 time in UTC. PostgreSQL takes offsets up to 15:59 only, and Python none past year 9999 once in
    UTC: `2026-01-01T00:00:00-18:56` or `9999-12-31T23:59:59-14:00` would fail in the query, not here."""

    def to_python(self, value: object) -> Any:
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise ValidationError("Out of range once in UTC.") from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = _UtcDateTimeField


class LogFilter(django_filters.FilterSet):
    model = CharInFilter(field_name="model")
    response_model = CharInFilter(field_name="response_model")  # the model that answered (a dated snapshot)
    provider = CharInFilter(field_name="provider")
    status = ChoiceInFilter(field_name="status", choices=LogStatus.choices)
    tag = django_filters.CharFilter(method="filter_tag_all")
    tag_any = django_filters.CharFilter(method="filter_tag_any")
    tag_none = django_filters.CharFilter(method="filter_tag_none")
    created_after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt")
    since = django_filters.CharFilter(method="filter_since")
    min_tokens = django_filters.NumberFilter(field_name="total_tokens", lookup_expr="gte", min_value=0)
    max_tokens = django_filters.NumberFilter(field_name="total_tokens", lookup_expr="lte", min_value=0)
    min_latency_ms = django_filters.NumberFilter(field_name="latency_ms", lookup_expr="gte", min_value=0)
    max_latency_ms = django_filters.NumberFilter(field_name="latency_ms", lookup_expr="lte", min_value=0)
    metadata = RepeatedFilter(method="filter_metadata")
    score = RepeatedFilter(method="filter_score")
    has_score = django_filters.CharFilter(method="filter_has_score")
    no_score = django_filters.CharFilter(method="filter_no_score")
    in_dataset = django_filters.NumberFilter(method="filter_in_dataset", min_value=1, max_value=ID_MAX)
    not_in_dataset = django_filters.NumberFilter(method="filter_not_in_dataset", min_value=1, max_value=ID_MAX)
    pii = django_filters.CharFilter(method="filter_pii")
    q = django_filters.CharFilter(method="filter_q")
    external_id = django_filters.CharFilter(field_name="external_id")  # exact: the sender's own id of a log
    # "More like this" as a filter: the indexed logs at least `min_similarity` like log `similar_to`.
    similar_to = django_filters.NumberFilter(method="filter_similar_to", min_value=1, max_value=ID_MAX)
    min_similarity = django_filters.NumberFilter(method="filter_min_similarity", min_value=0.5, max_value=1)
    # Search by meaning: the indexed logs closest to these words (or `q=about:WORDS`), at least `min_relevance`.
    about = django_filters.CharFilter(method="filter_about")
    min_relevance = django_filters.CharFilter(method="filter_min_relevance")
    topic = django_filters.NumberFilter(method="filter_topic", min_value=1, max_value=ID_MAX)

    class Meta:
        model = LogEntry
        fields: list[str] = []

    def __init__(self, *args: Any, project: Project, ranking: Ranking | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.project = project
        self.ranking = ranking  # the search by meaning's ranking when the caller has it already

    def filter_since(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        span = relative_span(value)
        return queryset.filter(created_at__gte=timezone.now() - span) if span else queryset

    def filter_tag_all(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        for tag in _names(value):
            queryset = queryset.filter(_has_tag(self.project, [tag]))
        return queryset

    def filter_tag_any(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        names = _names(value)
        return queryset.filter(_has_tag(self.project, names)) if names else queryset

    def filter_tag_none(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        names = _names(value)
        return queryset.exclude(_has_tag(self.project, names)) if names else queryset

    def filter_metadata(self, queryset: QuerySet, name: str, value: list[str]) -> QuerySet:
        for pair in value:
            key, sep, wanted = pair.partition(":")
            if not sep or not _METADATA_KEY.match(key):
                raise ValidationError(
                    {"metadata": f"'{pair}' is not key:value (key of letters, digits, _ - and dots)"}
                )
            queryset = queryset.filter(_metadata_equals(key.split("."), wanted))
        return queryset

    def filter_score(self, queryset: QuerySet, name: str, value: list[str]) -> QuerySet:
        for expression in value:
            queryset = queryset.filter(_score_matches(self.project, expression))
        return queryset

    def filter_has_score(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        for score in _score_names(name, value):
            queryset = queryset.filter(_has_score(self.project, score, _ANY_VALUE))
        return queryset

    def filter_no_score(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        for score in _score_names(name, value):
            queryset = queryset.exclude(_has_score(self.project, score, _ANY_VALUE))
        return queryset

    def filter_in_dataset(self, queryset: QuerySet, name: str, value: int) -> QuerySet:
        return queryset.filter(_in_dataset(value))

    def filter_not_in_dataset(self, queryset: QuerySet, name: str, value: int) -> QuerySet:
        return queryset.exclude(_in_dataset(value))

    def filter_pii(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        kinds = [kind.upper() for kind in _names(value)]
        if not kinds:
            return queryset
        if kinds == ["ANY"]:
            return queryset.exclude(pii=[])
        if kinds == ["NONE"]:
            return queryset.filter(pii=[])
        unknown = [kind for kind in kinds if kind not in KINDS]
        if unknown:
            raise ValidationError({"pii": f"'{value}' is not any, none or kinds among {', '.join(KINDS)}"})
        condition = Q()
        for kind in kinds:
            condition |= _has_pii_kind(kind)
        return queryset.filter(condition)

    def filter_similar_to(self, queryset: QuerySet, name: str, value: Decimal) -> QuerySet:
        log = LogEntry.objects.filter(project=self.project, pk=int(value)).first() if value == int(value) else None
        if log is None:
            raise ValidationError({"similar_to": f"No log {value} in this project."})
        threshold = self.form.cleaned_data.get("min_similarity")
        try:
            ids = logs_like_ids(project=self.project, log=log, min_similarity=float(threshold or SIMILARITY_DEFAULT))
        except LogNotIndexed:
            raise ValidationError(
                {
                    "similar_to": f"Log {log.pk} is not in the index of similar logs yet: open More like this on its "
                    "page (or GET /api/v1/logs/ID/similar), or index the project's logs, then filter again."
                }
            ) from None
        return queryset.filter(pk__any_of=ids)

    def filter_min_similarity(self, queryset: QuerySet, name: str, value: Decimal) -> QuerySet:
        if value is not None and self.form.cleaned_data.get("similar_to") is None:
            raise ValidationError({"min_similarity": "Applies with similar_to (the log to compare with)."})
        return queryset  # read by filter_similar_to

    def filter_topic(self, queryset: QuerySet, name: str, value: Decimal) -> QuerySet:
        if value != int(value):
            raise ValidationError({"topic": f"Topic {value} not found in this project."})
        return queryset.filter(pk__in=topic_log_ids(project=self.project, topic_id=int(value)))

    def filter_about(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return self._about(queryset)

    def filter_min_relevance(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        if value.strip() and not about_text(self.data):
            raise ValidationError({"min_relevance": "Applies with about (the words to search by meaning)."})
        relevance_param(self.data)
        return queryset  # read by _about

    def _about(self, queryset: QuerySet) -> QuerySet:
        text = about_text(self.data)
        if not text or getattr(self, "_about_done", False):  # `about` and `q=about:` both given: one search
            return queryset
        self._about_done = True
        ranking = self.ranking
        if ranking is None or ranking.text != query_clean(text) or ranking.min_relevance != relevance_param(self.data):
            ranking = logs_about(project=self.project, text=text, min_relevance=relevance_param(self.data))
        return queryset.filter(pk__any_of=ranking.ids)

    def filter_q(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        text = value.strip()
        if text.lower().startswith(ABOUT_PREFIX):
            if self.data.get("about", "").strip():
                raise ValidationError({"q": "Search by meaning once: either about= or q=about:, not both."})
            return self._about(queryset)
        return queryset.filter(text_search(text) | labelled(self.project, text)) if text else queryset


# A score filter matching at most this many scores reads its logs by id (see _has_score).
SCORE_IDS_MAX = 5_000
# Every score has one value or the other (a check constraint): said so, PostgreSQL reads a name's scores from the
# two partial indexes on (project, name, value, log), the only ones that start with the project and the name.
_ANY_VALUE = Q(value_number__isnull=False) | Q(value_text__isnull=False)


def _has_score(project: Project, name: str, condition: Q) -> Q:
    """Logs with a score of `name` that meets `condition`. As for tags, the scores are looked up first: PostgreSQL
    cannot tell how few scores a name and a range select together (it judges `value >= 0.99` over every name's
    values), and for a rare one it walked the newest logs probing each (1.8 s on a million). When few match, their
    logs are read by id; otherwise EXISTS, through the (log, name) index, finds the newest quickly."""
    scores = LogScore.objects.filter(condition, project=project, name=name)
    ids = list(scores.order_by().values_list("log_id", flat=True)[: SCORE_IDS_MAX + 1])
    if len(ids) <= SCORE_IDS_MAX:
        return Q(pk__in=set(ids))
    return Q(Exists(scores.filter(log=OuterRef("pk"))))


def _score_matches(project: Project, expression: str) -> Q:
    """Logs with at least one score that `expression` (NAME:VALUE, NAME>=N, ...) holds for."""
    match = _SCORE.fullmatch(expression)
    if match is None:
        raise ValidationError(
            {"score": f"'{expression}' is not NAME:VALUE or NAME>=N, <=, >, < (a name of a-z, 0-9, _ and -)"}
        )
    name, op, wanted = match.group("name", "op", "value")
    is_number = re.fullmatch(SCORE_NUMBER, wanted) is not None
    if op in _SCORE_COMPARISONS:
        if not is_number:
            raise ValidationError({"score": f"'{expression}': {op} compares with a number, got '{wanted}'"})
        return _has_score(project, name, Q(**{f"value_number__{_SCORE_COMPARISONS[op]}": float(wanted)}))
    # Equality: a category, or a number however it is written (4 is 4.0).
    condition = Q(value_text=wanted) | Q(value_number=float(wanted)) if is_number else Q(value_text=wanted)
    return _has_score(project, name, condition)


def _score_names(parameter: str, value: str) -> list[str]:
    if not re.fullmatch(SCORE_NAMES, value):
        raise ValidationError({parameter: f"'{value}' is not score names, comma-separated (a-z, 0-9, _ and -)"})
    return list(dict.fromkeys(value.split(",")))


def _in_dataset(dataset_id: int) -> Exists:
    return Exists(DatasetEntry.objects.filter(dataset_id=dataset_id, log=OuterRef("pk")))


def text_search(text: str) -> Q:
    """Logs whose conversation contains `text`: on PostgreSQL its words in any order (stored tsvector,
    'simple' configuration, so any language) or the exact substring (trigram index: CJK, code);
    elsewhere a case-insensitive substring. See curation/logs/lookups.py."""
    if connection.vendor != "postgresql":
        return Q(search_text__icontains=text)
    return Q(search_text__text_match=text)


# The metadata keys a free-text search looks in: those of the project's newest logs (see `labelled`).
METADATA_KEYS_SAMPLE = 1_000
METADATA_KEYS_MAX = 50


def labelled(project: Project, text: str) -> Q:
    """Logs tagged `text` (any case) or with `text` as a metadata value: what a free-text search finds besides the
    conversation ("math" finds the logs tagged math and those with topic_hint=math). The values are those of the
    top-level keys of the project's newest METADATA_KEYS_SAMPLE logs, each a containment the GIN index on metadata
    answers; nested values are found with the `metadata` filter."""
    tags = list(Tag.objects.filter(project=project, name__iexact=text).values_list("id", flat=True))
    condition = Q(Exists(LogTag.objects.filter(log=OuterRef("pk"), tag_id__in=tags))) if tags else Q(pk__in=[])
    for key in metadata_keys(project=project):
        condition |= _metadata_equals([key], text)
    return condition


def metadata_keys(*, project: Project) -> list[str]:
    """The top-level metadata keys of the project's newest logs, most used first."""
    newest = LogEntry.objects.filter(project=project).order_by("-created_at", "-id")[:METADATA_KEYS_SAMPLE]
    counts: dict[str, int] = {}
    for metadata in newest.values_list("metadata", flat=True):
        for key in metadata if isinstance(metadata, dict) else ():
            counts[key] = counts.get(key, 0) + 1
    keys = sorted(counts, key=lambda key: (-counts[key], key))
    return [key for key in keys if _PLAIN_KEY.match(key)][:METADATA_KEYS_MAX]


def _has_pii_kind(kind: str) -> Q:
    if connection.vendor == "postgresql":
        return Q(pii__contains=[kind])  # jsonb containment (@>)
    # SQLite has no containment: `pii` is a JSON list of bare upper-case kinds, so the quoted kind
    # appears in its text exactly when the list holds it.
    return Q(pii__icontains=f'"{kind}"')


def _metadata_equals(path: list[str], wanted: str) -> Q:
    scalar = _json_scalar(wanted)
    if connection.vendor == "postgresql":
        # Containment (@>) compares JSON values with their types and can use a GIN index.
        def nest(value: object) -> dict:
            for key in reversed(path):
                value = {key: value}
            return value  # type: ignore[return-value]

        condition = Q(metadata__contains=nest(wanted))
        return condition | Q(metadata__contains=nest(scalar)) if scalar is not None else condition
    lookup = "metadata__" + "__".join(path)
    condition = Q(**{lookup: wanted})
    return condition | Q(**{lookup: scalar}) if scalar is not None else condition


def logs_filter(
    *, project: Project, params: Mapping, queryset: QuerySet | None = None, ranking: Ranking | None = None
) -> QuerySet[LogEntry]:
    """Logs of `project` matching `params` (a QueryDict or a plain dict of the parameters above); `ranking`, the
    search by meaning's when the caller has computed it (`about.ranking_of`). Raises ValidationError with a message
    per bad parameter."""
    base = queryset if queryset is not None else LogEntry.objects.all()
    filterset = LogFilter(data=params, queryset=base.filter(project=project), project=project, ranking=ranking)
    if not filterset.is_valid():
        raise ValidationError({field: list(errors) for field, errors in filterset.errors.items()})
    return filterset.qs


FILTER_PARAMS = frozenset(LogFilter.base_filters)
