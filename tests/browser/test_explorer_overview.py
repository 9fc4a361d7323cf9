"""The explorer's overview in a real browser: the dashboard drawn over the filter, and sorting by a column."""

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from curation.models import LogEntry
from tests.factories import LogEntryFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def priced_logs(project) -> list[LogEntry]:
    """Four logs a minute apart, each with its own tokens and cost; the third an error."""
    items = [
        {"prompt": "Small question", "completion": "ok", "model": "gpt-4o"},
        {"prompt": "Large question", "completion": "ok", "model": "gpt-4o"},
        {"prompt": "Failing question", "completion": "", "model": "gpt-4o", "status_code": 500},
        {"prompt": "Middle question", "completion": "ok", "model": "gpt-4o"},
    ]
    for minute, item in enumerate(items, start=1):
        item["created_at"] = f"2026-09-01T10:{minute:02d}:00Z"
    logs = LogEntryFactory.ingest(project=project, items=items)
    for log, tokens, cost in zip(logs, (10, 900, None, 300), ("0.001", "0.09", None, "0.03"), strict=True):
        LogEntry.objects.filter(pk=log.pk).update(
            total_tokens=tokens, latency_ms=tokens and tokens * 2, cost_usd=cost and Decimal(cost)
        )
    return logs


def rows(page):
    return page.locator("#log-table tbody tr[data-id]")


def test_the_dashboard_charts_the_filter_and_follows_it(editor, priced_logs, log_in, page):
    log_in("bob")
    page.goto("/p/acme/logs/")

    expect(page.locator("#dash-logs")).to_have_text("4")
    expect(page.locator("#dash-cost")).to_have_text("$0.121")
    for chart in ("logs", "tokens", "cost", "latency", "errors"):
        expect(page.locator(f'[data-time-bars="dash-series-{chart}"] svg rect.bar').first).to_be_attached()
    expect(page.locator('[data-time-bars="dash-series-latency"] svg path.second')).to_be_attached()

    page.select_option("select[name=status]", "error")

    expect(page.locator("#dash-logs")).to_have_text("1")
    expect(page.locator("#dash-errors")).to_contain_text("100.0%")


def test_a_column_header_sorts_descending_then_ascending_and_the_filter_keeps_the_sort(
    editor, priced_logs, log_in, page
):
    log_in("bob")
    page.goto("/p/acme/logs/")

    page.click("#log-table th a.sort:text('Cost')")

    expect(page).to_have_url(re.compile(r"\?sort=-cost$"))
    expect(rows(page).first).to_contain_text("Large question")
    expect(rows(page).last).to_contain_text("Failing question")  # no cost: after the others
    expect(page.locator("#log-table th[aria-sort=descending]")).to_contain_text("Cost")

    page.click("#log-table th a.sort:text('Cost')")

    expect(page).to_have_url(re.compile(r"\?sort=cost$"))
    expect(rows(page).first).to_contain_text("Small question")

    page.fill("#q", "question")

    expect(page).to_have_url(re.compile(r"\?q=question&sort=cost$"))
    expect(rows(page).first).to_contain_text("Small question")
    expect(rows(page)).to_have_count(4)


def test_a_quick_range_is_a_link_that_filters_and_a_second_click_clears(editor, priced_logs, log_in, page):
    log_in("bob")
    page.goto("/p/acme/logs/")

    page.click(".ranges a:text('30 d')")

    expect(page).to_have_url(re.compile(r"\?since=30d$"))
    expect(page.locator(".ranges a.active")).to_have_text("30 d")
    expect(page.locator("#log-table tr.none")).to_be_visible()  # the logs are from September: none in range

    page.click(".ranges a:text('30 d')")

    expect(page).to_have_url(re.compile(r"/p/acme/logs/$"))
    expect(rows(page)).to_have_count(4)
