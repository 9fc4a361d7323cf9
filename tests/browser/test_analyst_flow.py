"""An analyst's whole path in the browser: filter the logs, gather them into a new dataset, export it."""

import json
from pathlib import Path

import pytest
from playwright.sync_api import expect

from curation.logs.services import logs_ingest
from curation.models import Dataset

pytestmark = pytest.mark.django_db(transaction=True)


def test_from_a_filter_to_a_new_dataset_to_a_downloaded_export(project, editor, log_in, page):
    logs_ingest(
        project=project,
        items=[
            {"prompt": "What is 2 + 2?", "completion": "4", "model": "gpt-4o", "tags": ["math"]},
            {"prompt": "What is 3 * 3?", "completion": "9", "model": "gpt-4o", "tags": ["math"]},
            {"prompt": "Write a haiku", "completion": "Soft rain", "model": "gpt-4o", "tags": ["poetry"]},
        ],
    )
    log_in("bob")
    page.goto("/p/acme/logs/?tag=math")
    expect(page.locator("#log-table tbody tr[data-id]")).to_have_count(2)

    page.select_option("#bulk-action", "dataset_add")
    page.select_option("#bulk-dataset", "new")
    page.fill("#bulk-new-dataset", "Math set")
    page.click("text=Review…")
    expect(page.locator("#bulk-confirm")).to_contain_text("2 logs")
    page.click("#bulk-confirm button[type=submit]")
    expect(page.locator(".notice.success")).to_contain_text("Math set")

    dataset = Dataset.objects.get(project=project, name="Math set")
    page.goto(f"/p/acme/datasets/{dataset.pk}/")
    expect(page.locator("body")).to_contain_text("What is 3 * 3?")
    link = page.locator(f'a[href="/api/v1/datasets/{dataset.pk}/export?format=openai&project=acme"]')
    with page.expect_download() as download_info:
        link.click()
    download = download_info.value

    assert download.suggested_filename == "math-set-all-openai.jsonl"
    lines = [json.loads(line) for line in Path(download.path()).read_text().splitlines()]
    assert sorted(line["messages"][0]["content"] for line in lines) == ["What is 2 + 2?", "What is 3 * 3?"]
    assert all(line["messages"][-1]["role"] == "assistant" for line in lines)
