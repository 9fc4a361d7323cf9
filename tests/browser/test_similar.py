"""More like this in the browser: an editor opens a log, indexes the project's logs (a real Celery worker runs
the job, the panel shows its progress), sees the rephrased questions first, and opens one of them."""

import pytest
from playwright.sync_api import expect

from tests.browser.test_datasets import shot
from tests.factories import LogEntryFactory

pytestmark = pytest.mark.django_db(transaction=True)

REPHRASED = ["How do I reset my password?", "How can I reset my password?", "I forgot my password, how to reset it?"]
OTHERS = ["What is the capital of France?", "Write a haiku about the sea.", "Translate 'good morning' to German."]


@pytest.fixture
def rephrased_log_ids(project) -> list[int]:
    """The ids of six logs, oldest first: a REPHRASED question, the three OTHERS, then the other two REPHRASED."""
    questions = [REPHRASED[0], *OTHERS, *REPHRASED[1:]]
    return [LogEntryFactory(project=project, prompt=q, completion="Sure.", model="gpt-4o").pk for q in questions]


def test_an_editor_finds_logs_like_this_one(editor, rephrased_log_ids, celery_worker, log_in, page):
    log_in("bob")
    page.goto(f"/p/acme/logs/{rephrased_log_ids[0]}/")

    page.keyboard.press("m")  # the key of the "More like this" button
    panel = page.locator("#similar")
    expect(panel).to_contain_text("No log of this project is indexed yet")
    panel.get_by_role("button", name="Index the newest").click()
    rows = panel.locator("tr[data-score]")
    expect(rows.first).to_be_visible(timeout=60_000)  # the worker loads the model, then embeds 6 logs
    expect(panel).to_contain_text("Update the index")

    expect(rows).to_have_count(5)
    for row in range(2):
        expect(rows.nth(row)).to_contain_text("password")
    expect(rows.nth(2)).not_to_contain_text("password")
    shot(page, "more-like-this")
    rows.nth(0).get_by_role("link").click()
    page.wait_for_url(lambda url: f"/logs/{rephrased_log_ids[-1]}/" in url or f"/logs/{rephrased_log_ids[-2]}/" in url)
