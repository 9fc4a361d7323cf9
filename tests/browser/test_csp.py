"""The Content-Security-Policy breaks no page: Chromium reports no violation on the main pages, and what their
scripts do (htmx loads, the explorer's filters, the key form) still works under it."""

import re

import pytest
from playwright.sync_api import expect

from curation.datasets.services import dataset_add_logs, dataset_create
from curation.logs.services import logs_ingest
from curation.models import LogEntry
from tests.curation.samples import anthropic_log, openai_log

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def violations(page) -> list[str]:
    """What Chromium says about the policy in the console, and any script error, as the pages load."""
    seen: list[str] = []
    page.on(
        "console", lambda message: seen.append(message.text) if "Content Security Policy" in message.text else None
    )
    page.on("pageerror", lambda error: seen.append(f"page error: {error}"))
    return seen


def visit(page, path: str) -> None:
    page.goto(path)
    page.wait_for_load_state("networkidle")


def test_the_main_pages_load_without_a_violation(project, owner, log_in, page, violations):
    logs_ingest(project=project, items=[openai_log(tags=["math"]), anthropic_log(tags=["billing"])])
    dataset = dataset_create(project=project, name="Support", created_by=owner)
    dataset_add_logs(dataset=dataset, logs=LogEntry.objects.filter(project=project))
    log = LogEntry.objects.filter(project=project).first()
    entry = dataset.entries.first()

    visit(page, "/login/")
    log_in("alice")
    for path in [
        "/p/acme/",
        "/p/acme/logs/",
        f"/p/acme/logs/{log.pk}/",
        "/p/acme/tags/",
        "/p/acme/audit/",
        "/p/acme/datasets/",
        f"/p/acme/datasets/{dataset.pk}/",
        f"/p/acme/datasets/{dataset.pk}/entries/{entry.pk}/",
        f"/p/acme/datasets/{dataset.pk}/finetune/",
        "/p/acme/finetunes/",
        "/api/v1/docs",
    ]:
        visit(page, path)
        assert violations == [], f"{path}: {violations}"

    visit(page, "/api/v1/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Logtune API")
    assert violations == []
    visit(page, "/api/v1/redoc")
    expect(page.locator("h1").first).to_contain_text("Logtune API")
    # Redoc's "by Redocly" logo would come from its makers' site: blocked on purpose, nothing else is.
    assert [text for text in violations if "cdn.redoc.ly/redoc/logo-mini.svg" not in text] == []


def test_the_explorers_filters_still_reload_the_table(project, owner, log_in, page, violations):
    logs_ingest(project=project, items=[openai_log(), {"prompt": "Why?", "completion": "", "status_code": 500}])
    log_in("alice")

    visit(page, "/p/acme/logs/")
    page.select_option("select[name=status]", "error")

    expect(page).to_have_url(re.compile(r"status=error"))
    expect(page.locator("#log-table tbody tr[data-id]")).to_have_count(1)
    assert violations == []


def test_a_new_key_page_shows_the_key_without_a_violation(project, owner, log_in, page, violations):
    log_in("alice")

    page.fill("input[name=name]", "backend")
    page.click("text=Create key")

    expect(page.locator("pre.secret")).to_contain_text("lt_")
    assert violations == []
