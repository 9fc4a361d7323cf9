"""Search by meaning in a real browser: `about:` in the search box ranks the indexed logs, the ranking is acted on
like any filter (its logs gathered into a new dataset), and a log opened from it steps through it."""

import re

import pytest
from playwright.sync_api import expect

from curation.logs.similar.about import logs_about
from curation.logs.similar.services import log_embedding_job_create, project_embed_logs
from curation.models import Dataset
from tests.curation.test_about import MATH, OTHER, QUERY
from tests.curation.test_similar import ingest

pytestmark = pytest.mark.django_db(transaction=True)


def rows(page):
    return page.locator("#log-table tbody tr[data-id]")


def test_an_analyst_finds_the_math_logs_by_meaning_and_makes_a_dataset_of_them(editor, project, log_in, page):
    ids = ingest(project, MATH + OTHER)
    project_embed_logs(job_id=log_embedding_job_create(project=project).pk)
    ranking = logs_about(project=project, text=QUERY)
    log_in("bob")
    page.goto("/p/acme/logs/")
    expect(rows(page)).to_have_count(8)

    page.fill("#q", f"about:{QUERY}")

    expect(page.locator("#about-line")).to_contain_text(f"“{QUERY}”")
    expect(page.locator("#about-line")).to_contain_text("of 8 indexed logs")
    expect(rows(page)).to_have_count(len(MATH))
    assert [int(row) for row in rows(page).evaluate_all("rows => rows.map(r => r.dataset.id)")] == ranking.ids
    expect(page.locator("#log-table th[aria-sort=descending]")).to_contain_text("Relevance")
    assert set(ranking.ids) == set(ids[: len(MATH)])

    page.select_option("#bulk-action", "dataset_add")
    page.select_option("#bulk-dataset", "new")
    page.fill("#bulk-new-dataset", "math-by-meaning")
    page.click("text=Review…")
    expect(page.locator("#bulk-confirm")).to_contain_text(f"{len(MATH)} logs matching this filter")
    page.click("#bulk-confirm button[type=submit]")

    expect(page.locator(".notice.success")).to_contain_text("math-by-meaning")
    dataset = Dataset.objects.get(project=project, name="math-by-meaning")
    assert set(dataset.entries.values_list("log_id", flat=True)) == set(ranking.ids)

    rows(page).first.locator("a.clamp").click()
    expect(page).to_have_url(re.compile(rf"/logs/{ranking.ids[0]}/\?q=about"))
    expect(page.locator("#relevance")).to_contain_text("relevance 0.")
    page.keyboard.press("j")
    expect(page).to_have_url(re.compile(rf"/logs/{ranking.ids[1]}/\?q=about"))
