"""More like this in the browser: an editor opens a log, indexes the project's logs (a real Celery worker runs
the job, the panel shows its progress), sees the rephrased questions first, and opens one of them."""

import pytest
from playwright.sync_api import expect

from curation.logs.services import logs_ingest
from curation.models import LogEntry
from tests.browser.test_datasets import shot

pytestmark = pytest.mark.django_db(transaction=True)

REPHRASED = ["How do I reset my password?", "How can I reset my password?", "I forgot my password, how to reset it?"]
OTHERS = ["What is the capital of France?", "Write a haiku about the sea.", "Translate 'good morning' to German."]


@pytest.fixture
def logs(project) -> list[int]:
    items = [
        {"model": "gpt-4o", "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "Sure."}]}
        for q in [REPHRASED[0], *OTHERS, *REPHRASED[1:]]
    ]
    assert logs_ingest(project=project, items=items).accepted == len(items)
    return list(LogEntry.objects.filter(project=project).order_by("id").values_list("id", flat=True))


def test_an_editor_finds_logs_like_this_one(editor, logs, celery_worker, log_in, page):
    log_in("bob")
    page.goto(f"/p/acme/logs/{logs[0]}/")

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
    page.wait_for_url(lambda url: f"/logs/{logs[-1]}/" in url or f"/logs/{logs[-2]}/" in url)
