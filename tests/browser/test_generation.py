"""Generating training rows in the browser: an analyst (an editor) uploads a Markdown guide, estimates and starts a
job on a stand-in endpoint (a real Celery worker runs it), watches it finish with its drops counted by reason,
reviews rows with the keyboard (accept, reject, edit), accepts the rest in bulk, and finds them in the dataset,
marked synthetic with their provenance."""

import pytest
from playwright.sync_api import expect

from curation.models import DatasetEntry
from tests.browser.test_datasets import shot
from tests.chat_stand_in import start_chat_stand_in
from tests.factories import DatasetFactory, ModelEndpointFactory
from tests.generation_stand_in import generator_answer
from tests.training.test_generation import GUIDE
from training.models import GeneratedRow, RowStatus

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def writer(project, settings):
    settings.LOGTUNE_ENDPOINT_HOSTS = ["127.0.0.1:*"]
    server = start_chat_stand_in(answer=generator_answer)
    yield ModelEndpointFactory(project=project, name="writer", base_url=server.url, model="gen-1",
                               api_key_encrypted="")  # fmt: skip
    server.close()


def test_an_analyst_turns_a_guide_into_reviewed_synthetic_rows(project, editor, writer, celery_worker, log_in, page):
    dataset = DatasetFactory(project=project, name="Support")
    log_in("bob")
    page.goto("/p/acme/")
    page.get_by_role("navigation").get_by_role("link", name="Generate").click()
    page.get_by_role("link", name="Documents →").click()
    page.set_input_files("input[name=files]", files=[
        {"name": "billing.md", "mimeType": "text/markdown", "buffer": GUIDE.encode()}
    ])  # fmt: skip
    page.get_by_role("button", name="Upload").click()
    expect(page.locator(".flash")).to_contain_text("billing.md: 1 chunk")
    page.get_by_role("link", name="billing.md").click()
    expect(page.locator("#chunks tbody tr")).to_have_count(1)  # at the default 4,000 characters: one chunk

    page.goto("/p/acme/generate/?kind=documents")
    form = page.locator("#generation-form")
    form.locator("select[name=endpoint]").select_option(label="writer (gen-1)")
    form.locator("select[name=dataset]").select_option(label="Support")
    page.get_by_label("billing.md (1 chunk)").check()
    form.locator("input[name=chunk_chars]").fill("500")
    form.locator("input[name=overlap_chars]").fill("0")
    form.locator("input[name=rows_per_call]").fill("6")
    form.locator("input[name=min_answer_chars]").fill("10")
    page.get_by_role("button", name="Estimate").click()
    expect(page.locator("#generation-estimate")).to_contain_text("3 calls")
    page.get_by_role("button", name="Start").click()

    expect(page.locator("#job-state")).to_have_text("Succeeded", timeout=60_000)  # the page polls the job
    reasons = page.locator("#drop-reasons")
    for label in ("Same text as another row or entry", "Personal data", "Answer too short", "A refusal"):
        expect(reasons).to_contain_text(label)
    shot(page, "generation-job")
    pending = GeneratedRow.objects.filter(status=RowStatus.PENDING).count()
    assert pending >= 4

    page.get_by_role("link", name=f"Review {pending} rows →").click()
    page.wait_for_load_state()  # the keys' script is a module, run once the page has loaded
    first = page.locator("#review-row").get_attribute("data-row")
    page.keyboard.press("a")
    expect(page.locator("#review-row")).not_to_have_attribute("data-row", first)
    page.wait_for_load_state()
    second = page.locator("#review-row").get_attribute("data-row")
    page.keyboard.press("r")
    expect(page.locator("#review-row")).not_to_have_attribute("data-row", second)
    page.wait_for_load_state()
    third = page.locator("#review-row").get_attribute("data-row")
    page.keyboard.press("e")
    edited = '[{"role": "user", "content": "How fast are refunds paid?"}, ' \
             '{"role": "assistant", "content": "Within five working days of approval."}]'  # fmt: skip
    page.locator("#review-messages").fill(edited)
    page.keyboard.press("Control+Enter")
    expect(page.locator("#review-row")).not_to_have_attribute("data-row", third)
    shot(page, "generation-review")

    page.get_by_role("link", name="generation job").click()
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Accept {pending - 3} pending rows").click()
    expect(page.locator(".flash")).to_contain_text(f"{pending - 3} rows accepted into Support")

    entries = DatasetEntry.objects.filter(dataset=dataset)
    assert entries.count() == pending - 1 and all(entry.synthetic for entry in entries)
    assert GeneratedRow.objects.get(pk=second).status == RowStatus.REJECTED
    edited_entry = GeneratedRow.objects.get(pk=third).entry
    assert edited_entry.messages[-1]["content"] == "Within five working days of approval."
    assert edited_entry.provenance["document"]["name"] == "billing.md" and edited_entry.provenance["reviewed_edit"]
