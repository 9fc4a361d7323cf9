"""The explorer's overview: the dashboard over the filter, sortable columns, relative ranges, search over tags and
metadata, highlighted matches; and the same in the API (GET /api/v1/logs?sort=, GET /api/v1/logs/stats)."""

import base64
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest

from curation.common.pagination import column_page
from curation.logs import filters
from curation.logs import views as explorer_views
from curation.logs.selectors import SORTS, bucket_start, log_dashboard, log_page, percentile_cont
from curation.models import LogEntry
from curation.text.rendering import search_match
from tests.factories import LogEntryFactory

pytestmark = pytest.mark.django_db

LOGS = "/p/acme/logs/"
T0 = datetime(2026, 9, 1, 10, 0, tzinfo=UTC)


def log_at(project, minutes: float, **columns: object) -> LogEntry:
    """A log created `minutes` after T0, its numbers set exactly as given (None: unknown)."""
    log = LogEntryFactory(project=project, created_at=T0 + timedelta(minutes=minutes))
    if columns:
        LogEntry.objects.filter(pk=log.pk).update(**columns)
        log.refresh_from_db()
    return log


def ids_shown(response) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-id="(\d+)"', response.content.decode())]


@pytest.fixture
def as_editor(client, editor):
    client.force_login(editor)
    return client


@pytest.fixture
def numbered(project) -> list[LogEntry]:
    """Nine logs with ties and unknowns in every sortable column."""
    rows = [
        (0, 10, 100, "0.001"),
        (1, 30, 300, "0.003"),
        (2, 10, 100, "0.001"),
        (3, None, None, None),
        (4, 30, 50, "0.003"),
        (5, 20, None, "0.002"),
        (6, None, 700, None),
        (7, 10, 100, "0.001"),
        (8, 20, 200, None),
    ]
    return [
        log_at(project, minute, total_tokens=tokens, latency_ms=latency, cost_usd=cost and Decimal(cost))
        for minute, tokens, latency, cost in rows
    ]


def expected_order(logs: list[LogEntry], sort: str) -> list[int]:
    column = {"time": "created_at", "tokens": "total_tokens", "latency": "latency_ms", "cost": "cost_usd"}[
        sort.lstrip("-")
    ]
    descending = sort.startswith("-")
    valued = sorted(
        (log for log in logs if getattr(log, column) is not None), key=lambda x: (getattr(x, column), x.pk)
    )
    empty = sorted((log for log in logs if getattr(log, column) is None), key=lambda x: (x.created_at, x.pk))
    return [log.pk for log in (valued[::-1] if descending else valued)] + [log.pk for log in empty[::-1]]


# --- sorting --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("size", [1, 2, 4])
def test_every_sort_pages_through_ties_and_unknowns_without_duplicates_or_gaps(project, numbered, sort, size):
    logs = LogEntry.objects.filter(project=project)
    seen, cursor = [], None
    for _ in range(20):
        page = log_page(logs=logs, sort=sort, cursor=cursor, size=size)
        seen += [log.pk for log in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break

    assert seen == expected_order(numbered, sort)


def test_a_page_of_exactly_the_valued_rows_continues_with_the_unknown_ones(project, numbered):
    logs = LogEntry.objects.filter(project=project)
    first = column_page(logs, column="total_tokens", descending=True, cursor=None, size=7)
    second = column_page(logs, column="total_tokens", descending=True, cursor=first.next_cursor, size=7)

    assert len(first.items) == 7 and first.next_cursor
    assert [log.pk for log in second.items] == [numbered[6].pk, numbered[3].pk]
    assert second.next_cursor is None


def test_the_page_sorts_by_a_header_and_keeps_the_sort_across_pages_and_filters(as_editor, numbered, monkeypatch):
    monkeypatch.setattr(explorer_views, "PAGE_SIZE", 4)

    first = as_editor.get(f"{LOGS}?sort=-tokens&model=gpt-4o-mini")
    second = as_editor.get(first.context["next_url"])
    header = first.context["sort_links"]["tokens"]

    assert ids_shown(first) + ids_shown(second) == expected_order(numbered, "-tokens")[:8]
    assert "sort=-tokens" in first.context["next_url"] and "model=gpt-4o-mini" in first.context["next_url"]
    assert header["arrow"] == "↓" and "sort=tokens" in header["url"]  # a second click sorts ascending
    assert 'name="sort" value="-tokens"' in first.content.decode()  # a filter change keeps the sort
    assert first.context["query"] == "model=gpt-4o-mini"  # bulk actions and saved views carry the filter alone


def test_an_unknown_sort_or_a_cursor_of_another_sort_is_explained(as_editor, numbered, monkeypatch):
    monkeypatch.setattr(explorer_views, "PAGE_SIZE", 4)
    page = as_editor.get(f"{LOGS}?sort=-tokens")
    mixed = as_editor.get(f"{LOGS}?sort=-time&cursor={page.context['next_url'].split('cursor=')[1]}")

    assert "Sort" in as_editor.get(f"{LOGS}?sort=size").context["errors"]
    assert mixed.status_code == 200 and "Page" in mixed.context["errors"]


def test_the_cost_column_shows_each_logs_cost(as_editor, project):
    log_at(project, 0, cost_usd=Decimal("0.00125"))

    assert "$0.00125" in as_editor.get(LOGS).content.decode()


def test_the_api_lists_in_the_sort_asked_for_and_refuses_others(key_client, numbered):
    first = key_client.get("/api/v1/logs", {"sort": "latency", "limit": 5})
    second = key_client.get("/api/v1/logs", {"sort": "latency", "limit": 5, "cursor": first.json()["next_cursor"]})
    refused = key_client.get("/api/v1/logs", {"sort": "size"})

    ids = [log["id"] for log in first.json()["results"] + second.json()["results"]]
    assert ids == expected_order(numbered, "latency")
    assert refused.status_code == 400 and "sort" in refused.json()


# --- relative ranges ------------------------------------------------------------------------------------


def test_a_relative_range_counts_back_from_now(as_editor, project, monkeypatch):
    logs = [log_at(project, minutes) for minutes in (0, 60 * 20, 60 * 23.5)]
    monkeypatch.setattr(filters, "timezone", SimpleNamespace(now=lambda: T0 + timedelta(hours=24)))

    last_hour = as_editor.get(f"{LOGS}?since=1h")
    last_day = as_editor.get(f"{LOGS}?since=24h")

    assert ids_shown(last_hour) == [logs[2].pk]
    assert ids_shown(last_day) == [logs[2].pk, logs[1].pk, logs[0].pk]
    assert [r["label"] for r in last_hour.context["ranges"]] == ["1 h", "24 h", "7 d", "30 d"]
    assert [r["active"] for r in last_hour.context["ranges"]] == [True, False, False, False]


@pytest.mark.parametrize("value", ["24", "1y", "0h", "-1d", "999999d"])
def test_a_range_that_is_not_a_number_and_a_unit_is_explained(as_editor, value):
    assert "Last" in as_editor.get(f"{LOGS}?since={value}").context["errors"]


def test_the_range_links_keep_the_filter_in_its_stable_order(as_editor, project):
    page = as_editor.get(f"{LOGS}?tag=math&q=x&sort=cost")

    assert page.context["ranges"][1]["url"] == f"{LOGS}?q=x&tag=math&since=24h&sort=cost"


# --- search over tags and metadata, highlighted ---------------------------------------------------------


def test_free_text_finds_tags_and_metadata_values_as_well_as_words(as_editor, project):
    in_text = LogEntryFactory(project=project, prompt="A math question")
    tagged = LogEntryFactory(project=project, prompt="What is 2 + 2?", tags=["Math"])
    hinted = LogEntryFactory(project=project, prompt="Integrate this", metadata={"topic_hint": "math"})
    LogEntryFactory(project=project, prompt="A poem", tags=["poetry"], metadata={"topic_hint": "poetry"})

    found = as_editor.get(f"{LOGS}?q=math")
    html = found.content.decode()

    assert sorted(ids_shown(found)) == sorted([in_text.pk, tagged.pk, hinted.pk])
    assert "<mark>tagged math</mark>" in html.split(f'<tr data-id="{tagged.pk}"')[1].split("</tr>")[0]
    assert "<mark>metadata topic_hint: math</mark>" in html.split(f'<tr data-id="{hinted.pk}"')[1].split("</tr>")[0]


def test_a_number_in_metadata_is_found_by_its_text(project):
    log = LogEntryFactory(project=project, metadata={"customer": 4242})
    LogEntryFactory(project=project, metadata={"customer": 17})

    assert list(filters.logs_filter(project=project, params={"q": "4242"})) == [log]


def test_the_row_marks_the_match_and_names_a_later_turn(as_editor, project):
    first = LogEntryFactory(project=project, prompt="Tell me about <zebras> please")
    later = LogEntryFactory(
        project=project,
        messages=[{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"},
                  {"role": "user", "content": "And zebras?"}],
    )  # fmt: skip

    html = as_editor.get(f"{LOGS}?q=zebras").content.decode()
    first_row = html.split(f'<tr data-id="{first.pk}"')[1].split("</tr>")[0]
    later_row = html.split(f'<tr data-id="{later.pk}"')[1].split("</tr>")[0]

    assert "&lt;<mark>zebras</mark>&gt;" in first_row and "turn " not in first_row
    assert "turn 3 · user" in later_row and "And <mark>zebras</mark>?" in later_row


def test_a_match_snippet_marks_every_term_around_the_first():
    messages = [{"role": "system", "content": "x " * 200 + "refund policy and the Refund form" + " y" * 200}]

    match = search_match(messages, 'refund "the refund" -spam or form')

    assert match is not None and match.turn == 1 and not match.first_user
    assert match.html.startswith("…") and match.html.endswith("…")
    assert match.html.count("<mark>") == 3 and "spam" not in match.html


# --- the dashboard --------------------------------------------------------------------------------------


@pytest.fixture
def traffic(project) -> list[LogEntry]:
    """Six logs over three hours: the second hour empty, an error in the third."""
    rows = [
        (0, 10, 100, "0.01", 200),
        (20, 20, 300, "0.02", 200),
        (50, 30, 200, None, 200),
        (125, 40, 1000, "0.04", 200),
        (130, None, None, None, 500),
        (170, 50, 400, "0.05", 200),
    ]
    logs = []
    for minute, tokens, latency, cost, code in rows:
        log = LogEntryFactory(project=project, created_at=T0 + timedelta(minutes=minute), status_code=code)
        LogEntry.objects.filter(pk=log.pk).update(
            total_tokens=tokens, latency_ms=latency, cost_usd=cost and Decimal(cost)
        )
        logs.append(log)
    return logs


def test_the_dashboard_sums_and_percentiles_the_filtered_logs_per_bucket(project, traffic):
    dashboard = log_dashboard(logs=LogEntry.objects.filter(project=project))

    assert dashboard is not None and dashboard.bucket == "minute"  # 170 minutes span
    assert (dashboard.total.logs, dashboard.total.tokens, dashboard.total.cost_usd) == (6, 150, Decimal("0.12"))
    assert dashboard.total.latency_p50 == 300 and dashboard.total.latency_p95 == pytest.approx(880)
    assert dashboard.total.errors == 1 and dashboard.total.error_rate == pytest.approx(1 / 6)
    assert len(dashboard.series) == 171 and sum(b.logs for b in dashboard.series) == 6
    assert dashboard.series[0].start == T0 and dashboard.series[130].errors == 1


def test_the_bucket_follows_the_range_of_the_logs(project, traffic):
    def bucket(**filter_params: str) -> tuple[str, list[int]]:
        found = log_dashboard(logs=filters.logs_filter(project=project, params=filter_params))
        assert found is not None
        return found.bucket, [b.logs for b in found.series]

    LogEntry.objects.filter(pk=traffic[0].pk).update(created_at=T0 - timedelta(hours=2))

    assert bucket() == ("hour", [1, 0, 2, 0, 3])
    assert bucket(min_tokens="20")[0] == "minute" and len(bucket(min_tokens="20")[1]) == 151
    LogEntry.objects.filter(pk=traffic[0].pk).update(created_at=T0 - timedelta(days=30))
    assert bucket()[0] == "day"
    LogEntry.objects.filter(pk=traffic[0].pk).update(created_at=T0 - timedelta(days=400))
    assert bucket()[0] == "week"


def test_the_python_dashboard_gives_the_same_numbers_as_postgresql(postgres, project, traffic):
    from curation.logs import selectors

    logs = LogEntry.objects.filter(project=project)
    in_sql = {b.start: b for b in selectors._dashboard_sql(logs, "hour")}
    in_python = {b.start: b for b in selectors._dashboard_python(logs, "hour")}

    assert in_sql == in_python


def test_bucket_starts_and_percentiles_match_postgresqls():
    moment = datetime(2026, 9, 3, 10, 42, 17, tzinfo=UTC)  # a Thursday

    assert bucket_start(moment, "week") == datetime(2026, 8, 31, tzinfo=UTC)
    assert bucket_start(moment, "hour") == datetime(2026, 9, 3, 10, tzinfo=UTC)
    assert percentile_cont([100, 200, 300, 1000], 0.95) == pytest.approx(895)
    assert percentile_cont([], 0.5) is None


def test_the_dashboard_page_shows_totals_and_charts_of_the_filter(as_editor, traffic):
    page = as_editor.get(f"{LOGS}?status=success")
    dashboard = as_editor.get(page.context["dashboard_url"])
    html = dashboard.content.decode()

    assert page.context["dashboard_url"] == "/p/acme/logs/dashboard/?status=success"
    assert re.search(r'id="dash-logs">5<', html) and re.search(r'id="dash-tokens">150<', html)
    assert re.search(r'id="dash-cost">\$0.12<', html)
    for chart in ("logs", "tokens", "cost", "latency", "errors"):
        assert f'data-time-bars="dash-series-{chart}"' in html and f'id="dash-series-{chart}"' in html


def test_the_dashboard_of_a_bad_filter_or_no_logs_says_so(as_editor, traffic):
    assert "Fix the filter" in as_editor.get("/p/acme/logs/dashboard/?since=never").content.decode()
    assert "Nothing to chart" in as_editor.get("/p/acme/logs/dashboard/?model=none").content.decode()


def test_an_outsider_gets_404_for_the_dashboard_and_the_stats(client, outsider, client_for, traffic):
    client.force_login(outsider)

    assert client.get("/p/acme/logs/dashboard/").status_code == 404
    assert client_for(outsider).get("/api/v1/logs/stats", {"project": "acme"}).status_code == 404


def test_the_stats_api_answers_the_dashboard_of_the_same_filter(key_client, traffic):
    body = key_client.get("/api/v1/logs/stats", {"min_latency_ms": "200"}).json()

    assert body["bucket"] == "minute"
    assert body["total"] | {"start": None} == {
        "start": None, "logs": 4, "tokens": 140, "cost_usd": "0.11000000", "latency_p50": 350.0,
        "latency_p95": pytest.approx(910.0), "error_count": 0, "error_rate": 0.0,
    }  # fmt: skip
    assert body["series"][0]["start"] == "2026-09-01T10:20:00Z" and body["series"][0]["logs"] == 1


@pytest.mark.parametrize(
    "raw",
    [
        '["1e30", null, 1]',
        '["NaN", null, 1]',
        '["12", null, -1]',
        '["12", "2026-09-01T10:00:00+00:00", 1]',
        '[null, "2026-09-01T10:00:00", 1]',
        "[null, null, 1]",
        '"12"',
    ],
)
def test_a_sorted_cursor_that_the_server_did_not_make_is_a_400_naming_it(key_client, numbered, raw):
    cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    answer = key_client.get("/api/v1/logs", {"sort": "-tokens", "cursor": cursor})

    assert answer.status_code == 400 and "cursor" in answer.json()
