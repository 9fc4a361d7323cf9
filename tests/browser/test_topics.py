"""Topics in the browser: an analyst (an editor) computes the topics of the project's indexed logs (a real Celery
worker runs the job, the page shows its progress), sees them with their words and figures, opens one in the
explorer, and makes a dataset of another."""

import pytest
from playwright.sync_api import expect

from curation.models import Dataset, Topic
from tests.browser.test_datasets import shot
from tests.curation.test_topics import WORDS, planted_logs

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_analyst_computes_topics_opens_one_in_the_explorer_and_makes_a_dataset_of_another(
    project, editor, celery_worker, log_in, page
):
    planted = planted_logs(project)
    log_in("bob")
    page.goto("/p/acme/")
    page.get_by_role("navigation").get_by_role("link", name="Topics").click()
    expect(page.locator("h1")).to_contain_text("Topics")

    page.get_by_label("Topics").fill("3")
    page.get_by_role("button", name="Compute topics").click()
    rows = page.locator("tr[data-topic]")
    expect(rows).to_have_count(3, timeout=60_000)  # the page polls the job until it has finished
    expect(page.get_by_role("button", name="Recompute")).to_be_visible()
    for row in range(3):
        expect(rows.nth(row).locator("td").nth(2)).to_have_text("12")
    expect(page.locator(".sparkline svg").first).to_be_visible()
    shot(page, "topics")

    sso = Topic.objects.get(memberships__log_id=planted["sso"][0])
    billing = Topic.objects.get(memberships__log_id=planted["billing"][0])
    assert set(sso.terms) <= set(WORDS["sso"])
    sso_row = page.locator(f"tr[data-topic='{sso.pk}']")
    expect(sso_row).to_contain_text(sso.label)
    sso_row.get_by_role("link", name="Open in explorer").click()
    page.wait_for_url(f"**/p/acme/logs/?topic={sso.pk}")
    expect(page.locator("#log-table tbody tr[data-id]")).to_have_count(12)

    page.go_back()
    page.locator(f"tr[data-topic='{billing.pk}']").get_by_role("button", name="Make a dataset").click()
    dataset = Dataset.objects.get()
    page.wait_for_url(f"**/p/acme/datasets/{dataset.pk}/")
    expect(page.locator(".flash")).to_contain_text("Added 12 logs")
    assert sorted(dataset.entries.values_list("log_id", flat=True)) == sorted(planted["billing"])
