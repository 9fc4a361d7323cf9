"""Logs kept whatever they hold, in the browser: the explorer counts the unreadable ones, a log's page says why
it is unreadable and opens its original, and a log stored with U+FFFD says what changed."""

import pytest
from playwright.sync_api import expect

from curation.logs.services import logs_ingest
from tests.browser.test_datasets import shot

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_viewer_finds_unreadable_logs_and_reads_why(project, viewer, log_in, page):
    items = [
        {"request": {"messages": "not a list"}, "external_id": "bad-1"},
        {"prompt": "half an emoji \ud83d", "completion": "kept"},
        {"prompt": "fine", "completion": "too"},
    ]
    result = logs_ingest(project=project, items=items, keep_unreadable=True)
    assert (result.accepted, len(result.unreadable), len(result.notes)) == (3, 1, 1)
    log_in("carol")

    page.goto("/p/acme/logs/")
    page.select_option("select[name=status]", "unreadable")  # the explorer filters as it changes
    rows = page.locator("tbody tr[data-id]")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".status")).to_have_text("Unreadable")
    rows.first.locator("td.msg a").click()
    expect(page.locator("#unreadable")).to_contain_text("request.messages: expected a list, got a string")
    expect(page.locator("#raw pre")).to_have_text('{"request":{"messages":"not a list"},"external_id":"bad-1"}')
    shot(page, "unreadable-log")

    page.goto("/p/acme/logs/?q=emoji")
    page.locator("tbody tr td.msg a").first.click()
    expect(page.locator("#notes")).to_contain_text("prompt: invalid Unicode")
    shot(page, "log-with-notes")
