import os
import re

import pytest
from playwright.sync_api import expect

from curation.datasets.export import snapshots
from curation.datasets.services import dataset_add_logs, dataset_create, dataset_entries_ingest
from curation.logs.services import logs_ingest
from curation.models import Dataset, DatasetEntry, DatasetSnapshot, LogEntry
from tests.curation.samples import anthropic_log, openai_log

pytestmark = pytest.mark.django_db(transaction=True)

# Set LOGTUNE_SCREENSHOTS=/tmp/shots to keep a picture of each page for a look by eye.
SHOTS = os.environ.get("LOGTUNE_SCREENSHOTS", "")


def shot(page, name: str) -> None:
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


@pytest.fixture
def filled(project, owner) -> Dataset:
    items = [
        openai_log(),
        anthropic_log(),
        *(
            {
                "messages": [
                    {"role": "user", "content": f"Question {i}?\nThink."},
                    {"role": "assistant", "content": f"Answer {i}."},
                ],
                "model": "gpt-4o",
            }
            for i in range(8)
        ),
    ]
    assert logs_ingest(project=project, items=items).accepted == 10
    dataset = dataset_create(project=project, name="Support", description="Answers from production", created_by=owner)
    dataset_add_logs(dataset=dataset, logs=LogEntry.objects.filter(project=project))
    return dataset


def test_an_editor_creates_a_dataset_and_sees_it_with_its_numbers(project, editor, log_in, page):
    logs_ingest(project=project, items=[openai_log(), anthropic_log()])
    log_in("bob")

    page.goto("/p/acme/datasets/")
    page.fill("input[name=name]", "Weather")
    page.click("text=Create dataset")

    expect(page.locator("h1")).to_contain_text("Weather")
    dataset = Dataset.objects.get(name="Weather")
    dataset_add_logs(dataset=dataset, logs=LogEntry.objects.filter(project=project))
    page.reload()
    expect(page.locator("table.entries tbody tr")).to_have_count(2)
    expect(page.locator("#stats .kpis")).to_contain_text("Entries")
    expect(page.locator("#stats .histogram svg rect.bar").first).to_be_attached()
    shot(page, "dataset")


def test_an_edit_shows_its_diff_and_an_unchanged_save_keeps_the_entry_unedited(filled, editor, log_in, page):
    first, *rest = DatasetEntry.objects.filter(dataset=filled).order_by("id")
    multi_line = rest[-1]
    log_in("bob")

    page.goto(f"/p/acme/datasets/{filled.pk}/entries/{multi_line.pk}/")
    page.click("text=Save entry")
    expect(page.locator(".flash")).to_contain_text("matches its source again")
    multi_line.refresh_from_db()
    assert multi_line.edited is False  # textarea round trip: line breaks and leading text kept

    page.goto(f"/p/acme/datasets/{filled.pk}/entries/{first.pk}/")
    expect(page.locator(".diff-card")).to_contain_text("Same as log")
    page.locator("textarea[name=m-content]").last.fill("Four, of course.")
    page.click("text=Save entry")

    expect(page.locator(".diff .line.added")).to_have_text(re.compile("Four, of course."))
    expect(page.locator(".diff .line.removed")).to_have_text(re.compile("^.4$"))
    expect(page.locator("h1 .badge.edited")).to_be_visible()
    shot(page, "entry")
    first.refresh_from_db()
    assert (first.edited, first.messages[-1]["content"]) == (True, "Four, of course.")
    assert LogEntry.objects.get(pk=first.log_id).messages[-1]["content"] == "4"


def test_turns_are_added_and_a_role_change_shows_its_fields(filled, editor, log_in, page):
    entry = DatasetEntry.objects.filter(dataset=filled).order_by("id").first()
    log_in("bob")
    page.goto(f"/p/acme/datasets/{filled.pk}/entries/{entry.pk}/")
    messages = page.locator(".msg")
    expect(messages).to_have_count(3)

    page.click("text=Add turn")
    expect(messages).to_have_count(4)
    new = messages.nth(3)
    expect(new.locator(".tool-calls")).to_be_hidden()
    new.locator("select").select_option("assistant")
    expect(new.locator(".tool-calls summary")).to_be_visible()
    new.locator("select").select_option("tool")
    expect(new.locator("input[name=m-tool_call_id]")).to_be_visible()
    messages.nth(0).locator("text=remove").click()
    expect(messages).to_have_count(3)
    assert DatasetEntry.objects.get(pk=entry.pk).messages == entry.messages  # nothing saved yet


def test_the_validation_panel_finds_problems_and_links_to_the_entries(filled, viewer, log_in, page):
    dataset_entries_ingest(dataset=filled, items=[{"messages": [{"role": "user", "content": "No answer here"}]}])
    unanswered = DatasetEntry.objects.filter(dataset=filled).order_by("id").last()
    log_in("carol")
    page.goto(f"/p/acme/datasets/{filled.pk}/")

    page.fill("input[name=max_tokens]", "20")
    page.click("text=Run checks")

    panel = page.locator("#validation-panel")
    expect(panel.locator(".finding.error").first).to_be_visible()
    expect(panel.locator("[data-code=last_not_assistant]")).to_contain_text("1 entry")
    expect(panel.locator("[data-code=few_examples]")).to_contain_text("Only 11 training examples")
    shot(page, "validation")
    panel.locator("[data-code=last_not_assistant] a").click()
    expect(page.locator("table.entries tbody tr")).to_have_count(1)
    expect(page.locator("table.entries")).to_contain_text("No answer here")
    assert f"ids={unanswered.pk}" in page.url


def test_the_export_preview_lists_what_a_format_loses(filled, editor, log_in, page):
    page.route(
        re.compile(r".*/export/preview\?format=sharegpt.*"),
        lambda route: route.fulfill(status=503, content_type="application/json", body='{"detail": "Try later."}'),
    )
    log_in("bob")
    page.goto(f"/p/acme/datasets/{filled.pk}/")

    page.locator("table.exports tr", has_text="Alpaca").locator("text=preview").click()
    result = page.locator("#export-preview")
    expect(result).to_contain_text("Export as Alpaca")
    expect(result).to_contain_text("of 10 rows written as alpaca")
    expect(result.locator("tr.problem").first).to_be_visible()  # the tool-calling conversation loses something
    shot(page, "preview")

    page.locator("table.exports tr", has_text="ShareGPT").locator("text=preview").click()
    expect(result).to_contain_text("Not available (HTTP 503): Try later.")


def test_an_editor_freezes_a_snapshot_and_gets_its_download_link(filled, editor, log_in, page):
    log_in("bob")
    page.goto(f"/p/acme/datasets/{filled.pk}/")
    page.on("dialog", lambda dialog: dialog.accept())

    page.click("text=Freeze snapshot")

    snapshot = DatasetSnapshot.objects.get(dataset=filled)
    expect(page.locator(".flash.success")).to_contain_text(
        f"Snapshot frozen: 10 rows, SHA-256 {snapshot.sha256[:12]}."
    )
    row = page.locator("#dataset-snapshots tbody tr")
    expect(row).to_contain_text(snapshot.sha256[:12])
    expect(row.locator("a")).to_have_attribute("href", f"/api/v1/snapshots/{snapshot.pk}/download?project=acme")


def test_a_large_snapshot_is_written_by_a_worker_behind_a_progress_bar(
    filled, editor, log_in, page, celery_worker, monkeypatch
):
    monkeypatch.setattr(snapshots, "INLINE_LIMIT", 2)
    log_in("bob")
    page.goto(f"/p/acme/datasets/{filled.pk}/")
    page.on("dialog", lambda dialog: dialog.accept())

    page.click("text=Freeze snapshot")

    expect(page.locator(".flash.success")).to_contain_text("Freezing 10 entries in the background")
    row = page.locator("#dataset-snapshots tbody tr")
    expect(row.locator("a", has_text="download")).to_be_visible(timeout=20_000)  # the panel polled until done
    snapshot = DatasetSnapshot.objects.get(dataset=filled)
    assert (snapshot.status, snapshot.rows_total) == ("succeeded", 10)
    expect(row).to_contain_text(snapshot.sha256[:12])


def test_an_editor_deletes_a_dataset_from_its_page_after_reading_what_goes_and_what_stays(
    filled, editor, log_in, page
):
    log_in("bob")
    page.goto(f"/p/acme/datasets/{filled.pk}/")

    page.click("text=Rename or describe")
    page.click("text=Delete dataset…")
    expect(page.locator("[data-deletion-summary]")).to_have_text("Deletes 10 entries. Keeps the logs.")
    shot(page, "dataset-delete")
    page.click("button:has-text('Delete dataset')")

    expect(page.locator(".flash.success")).to_contain_text(
        "Deleted dataset Support with its 10 entries. Kept the logs."
    )
    assert page.url.endswith("/p/acme/datasets/")
    assert not Dataset.objects.exists()
    assert LogEntry.objects.count() == 10
