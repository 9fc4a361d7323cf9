"""The log explorer in a real browser: filtering, search, bulk tagging with its confirmation, keyboard review."""

import re

import pytest
from playwright.sync_api import expect

from curation.logs.bulk import services as bulk
from curation.models import BulkJob, JobStatus, LogEntry
from tests.factories import LogEntryFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def four_logs(project) -> list[LogEntry]:
    """Four logs a minute apart, newest last: a sum tagged math, a haiku on claude, a greeting, a 500 error."""
    items = [
        {"prompt": "What is 2 + 2?", "completion": "4", "model": "gpt-4o", "tags": ["math"]},
        {"prompt": "Write a haiku about rain", "completion": "Soft rain on the roof", "model": "claude-3-5-sonnet"},
        {"prompt": "Bonjour !", "completion": "Salut !", "model": "gpt-4o"},
        {"prompt": "Why is the sky blue?", "completion": "Rayleigh scattering", "model": "gpt-4o", "status_code": 500},
    ]
    for minute, item in enumerate(items, start=1):
        item["created_at"] = f"2026-09-01T10:{minute:02d}:00Z"
    return LogEntryFactory.ingest(project=project, items=items)


def rows(page):
    return page.locator("#log-table tbody tr[data-id]")


def test_searching_and_filtering_update_the_table_and_the_url(editor, four_logs, log_in, page):
    log_in("bob")
    page.goto("/p/acme/logs/")
    expect(rows(page)).to_have_count(4)

    page.fill("#q", "haiku")

    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_contain_text("Write a haiku about rain")
    expect(page).to_have_url(re.compile(r"/p/acme/logs/\?q=haiku$"))

    page.fill("#q", "")
    page.select_option("select[name=status]", "error")

    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_contain_text("Why is the sky blue?")
    expect(page).to_have_url(re.compile(r"/p/acme/logs/\?status=error$"))  # blank fields stay out of the URL
    page.reload()  # the URL alone brings the view back
    expect(rows(page)).to_have_count(1)
    expect(page.locator("select[name=status]")).to_have_value("error")


def test_a_bad_filter_value_is_explained_without_losing_the_page(editor, four_logs, log_in, page):
    log_in("bob")
    page.goto("/p/acme/logs/")

    page.click("text=More filters")
    page.fill("input[name=min_tokens]", "lots")
    page.keyboard.press("Enter")

    expect(page.locator("#filter-errors")).to_contain_text("Min tokens: Enter a number.")
    expect(rows(page)).to_have_count(0)


def test_tagging_all_matching_logs_names_the_count_then_shows_the_tag(editor, four_logs, log_in, page):
    log_in("bob")
    page.goto("/p/acme/logs/?model=gpt-4o")
    expect(rows(page)).to_have_count(3)

    page.select_option("#bulk-action", "tag_add")
    page.fill("#bulk-tags", "reviewed")
    page.click("text=Review…")

    expect(page.locator("#bulk-confirm")).to_contain_text("Add reviewed to 3 logs matching this filter.")
    assert not LogEntry.objects.filter(tags__name="reviewed").exists()
    page.click("#bulk-confirm button:has-text('Tag 3 logs')")

    expect(page.locator(".notice.success")).to_contain_text("Tagged 3 logs with reviewed.")
    expect(page.locator("#log-table .chip", has_text="reviewed")).to_have_count(3)
    page.goto("/p/acme/logs/?tag=reviewed")
    expect(rows(page)).to_have_count(3)


def test_a_large_action_runs_as_a_job_with_a_progress_bar(editor, four_logs, log_in, page, celery_worker, monkeypatch):
    monkeypatch.setattr(bulk, "INLINE_LIMIT", 2)
    log_in("bob")
    page.goto("/p/acme/logs/")

    page.fill("#bulk-tags", "batch")
    page.click("text=Review…")
    expect(page.locator("#bulk-confirm")).to_contain_text("Add batch to 4 logs matching this filter.")
    page.click("#bulk-confirm button[type=submit]")

    expect(page.locator(".notice.success")).to_contain_text("Working on 4 logs in the background")
    job = page.locator("#jobs .job")
    expect(job).to_contain_text("Succeeded", timeout=20_000)
    expect(job).to_contain_text("4 / 4")
    expect(page.locator("#log-table .chip", has_text="batch")).to_have_count(4)  # the table refreshed itself
    assert BulkJob.objects.get().status == JobStatus.SUCCEEDED


def test_keyboard_review_moves_selects_tags_and_opens(editor, four_logs, log_in, page):
    log_in("bob")
    page.goto("/p/acme/logs/")
    newest_first = [log.pk for log in reversed(four_logs)]

    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    expect(page.locator("#log-table tr.current")).to_have_attribute("data-id", str(newest_first[0]))
    page.keyboard.press("x")
    page.keyboard.press("j")
    page.keyboard.press("x")

    expect(page.locator("[data-selected-count]")).to_have_text("2")
    expect(page.locator("#log-table tr.selected")).to_have_count(2)
    expect(page.locator("#bulk-form input[value=selected]")).to_be_checked()

    page.keyboard.press("t")
    expect(page.locator("#bulk-tags")).to_be_focused()
    page.keyboard.type("keep")
    page.keyboard.press("Enter")
    expect(page.locator("#bulk-confirm")).to_contain_text("Add keep to 2 logs selected.")
    expect(page.locator("#bulk-confirm button[type=submit]")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(".notice.success")).to_contain_text("Tagged 2 logs with keep.")
    assert set(LogEntry.objects.filter(tags__name="keep").values_list("pk", flat=True)) == set(newest_first[:2])

    expect(page.locator("#log-table tr.current")).to_have_attribute("data-id", str(newest_first[1]))  # kept
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"/p/acme/logs/{newest_first[2]}/$"))
    page.keyboard.press("j")  # on a log's page: the next older one
    expect(page).to_have_url(re.compile(rf"/p/acme/logs/{newest_first[3]}/$"))
