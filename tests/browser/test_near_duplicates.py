"""Near-duplicates in the browser: an editor computes the embeddings of a dataset (a real Celery worker runs
the job, the card shows its progress), finds the cluster of rephrased questions, and keeps one of it."""

import pytest
from playwright.sync_api import expect

from curation.models import Dataset, DatasetEntry
from tests.browser.test_datasets import shot
from tests.factories import DatasetEntryFactory, DatasetFactory, qa

pytestmark = pytest.mark.django_db(transaction=True)

REPHRASED = [
    "How do I reset my password?",
    "How can I reset my password?",
    "How do I reset my password, please?",
]
OTHERS = ["What is the capital of France?", "Write a haiku about the sea."]


@pytest.fixture
def rephrased_dataset(project) -> Dataset:
    """Support: the three REPHRASED questions, then the two OTHERS, all answered alike."""
    dataset = DatasetFactory(project=project, name="Support")
    for question in REPHRASED + OTHERS:
        DatasetEntryFactory(dataset=dataset, messages=qa(question, "Here is how."), est_tokens=12)
    return dataset


def test_an_editor_finds_rephrased_entries_and_keeps_one(editor, rephrased_dataset, celery_worker, log_in, page):
    page.on("dialog", lambda dialog: dialog.accept())
    log_in("bob")
    page.goto(f"/p/acme/datasets/{rephrased_dataset.pk}/")
    card = page.locator("#near-duplicates")

    card.get_by_role("button", name="Compute embeddings").click()
    threshold = card.locator("input[type=number][name=threshold]")
    expect(threshold).to_be_visible(timeout=60_000)  # the worker loads the model, then embeds 5 entries
    threshold.fill("0.85")
    card.get_by_role("button", name="Find clusters").click()

    cluster = card.locator("tr[data-cluster-size]")
    expect(cluster).to_have_count(1)
    expect(cluster).to_have_attribute("data-cluster-size", "3")
    for question in REPHRASED:
        expect(cluster).to_contain_text(question)
    shot(page, "near-duplicates")
    card.get_by_role("button", name="Keep one per cluster").click()

    page.wait_for_load_state()
    kept = [e.messages[0]["content"] for e in DatasetEntry.objects.filter(dataset=rephrased_dataset).order_by("id")]
    assert kept == [REPHRASED[0], *OTHERS]
