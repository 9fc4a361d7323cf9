"""Personal data in the browser: the explorer's facet finds the logs, the log's page marks what was found,
and a dataset is cleaned with a preview before the redaction, its logs left as they were; a large one by a
real Celery worker, the card following its progress."""

import pytest
from django.db.models import QuerySet
from playwright.sync_api import expect

from curation.datasets.redaction import services as redaction
from curation.datasets.services import dataset_add_logs, dataset_create
from curation.models import DatasetEntry, LogEntry, RedactionJob
from tests.browser.test_datasets import shot
from tests.factories import LogEntryFactory

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = "jane.doe@example.com"


def chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


@pytest.fixture
def logs_with_an_email(project) -> QuerySet[LogEntry]:
    """Four logs: the first asks to write to EMAIL (with HTML in its text), the other three hold nothing personal."""
    items = [chat(f"Please write to {EMAIL} about <b>order</b> 12.", "Done.")]
    items += [chat(f"q{i}?", "a") for i in range(3)]
    LogEntryFactory.ingest(project=project, items=items)
    return LogEntry.objects.filter(project=project)


def test_an_editor_finds_personal_data_and_redacts_it_from_a_dataset(
    project, editor, logs_with_an_email, log_in, page
):
    page.on("dialog", lambda dialog: dialog.accept())
    log_in("bob")

    page.goto("/p/acme/logs/")
    facet = page.locator("#facet-pii")
    expect(facet).to_contain_text("e-mail")
    facet.get_by_role("link", name="e-mail").click()
    expect(page.locator("tbody tr .pii-badge")).to_have_count(1)
    page.locator("tbody tr td.msg a").first.click()
    mark = page.locator("mark.pii-email")
    expect(mark).to_have_text(EMAIL)
    expect(page.locator(".plain-text").first).to_contain_text("about <b>order</b> 12.")  # escaped, not HTML
    shot(page, "pii-log")

    dataset = dataset_create(project=project, name="Support", created_by=editor)
    dataset_add_logs(dataset=dataset, logs=logs_with_an_email)
    page.goto(f"/p/acme/datasets/{dataset.pk}/")
    card = page.locator("#personal-data")
    expect(card).to_contain_text("1 of 4 entries hold personal data")
    card.get_by_role("button", name="Preview the redaction").click()
    preview = card.locator(".pii-preview")
    expect(preview).to_contain_text("1 entry would change")
    expect(preview.locator("mark.pii").first).to_have_text("<EMAIL>")
    shot(page, "pii-preview")
    preview.get_by_role("button", name="Redact 1 entry").click()

    expect(page.get_by_text("in 1 entry; the logs stay.", exact=False)).to_be_visible()
    texts = [m["content"] for e in DatasetEntry.objects.filter(dataset=dataset) for m in e.messages]
    assert not any(EMAIL in text for text in texts)
    assert "Please write to <EMAIL> about <b>order</b> 12." in texts
    assert [log.messages[0]["content"] for log in logs_with_an_email if EMAIL in log.messages[0]["content"]] == [
        f"Please write to {EMAIL} about <b>order</b> 12."
    ]  # the log keeps its original


def test_a_large_dataset_is_redacted_by_a_worker_while_the_card_shows_its_progress(
    project, editor, logs_with_an_email, celery_worker, log_in, page, monkeypatch
):
    monkeypatch.setattr(redaction, "INLINE_LIMIT", 2)  # the four entries count as a large dataset
    page.on("dialog", lambda dialog: dialog.accept())
    dataset = dataset_create(project=project, name="Support", created_by=editor)
    dataset_add_logs(dataset=dataset, logs=logs_with_an_email)
    log_in("bob")
    page.goto(f"/p/acme/datasets/{dataset.pk}/")
    card = page.locator("#personal-data")
    card.get_by_role("button", name="Preview the redaction").click()
    expect(card.locator(".pii-preview")).to_contain_text("a worker redacts them")

    card.get_by_role("button", name="Redact 1 entry").click()

    expect(page.get_by_text("in 4 entries: progress below.", exact=False)).to_be_visible()
    done = card.locator("[data-redaction-done]")
    expect(done).to_contain_text("changed 1 of 4 entries", timeout=30_000)
    expect(card).to_contain_text("No personal data found in 4 entries")  # the card counted again
    expect(card.get_by_role("button", name="Preview the redaction")).to_be_visible()
    assert RedactionJob.objects.get(dataset=dataset).changed == 1
    texts = [m["content"] for e in DatasetEntry.objects.filter(dataset=dataset) for m in e.messages]
    assert "Please write to <EMAIL> about <b>order</b> 12." in texts
