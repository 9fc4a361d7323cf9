"""Fine-tunes compared in the browser: the list sorts by a column, its Compare button waits for two ticks, and the
compare page draws every run's curves in its own colour."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_datasets import shot
from tests.training import test_finetune_compare as compared

# The jobs, metric points and evaluation runs of the page tests.
three, x_and_y = compared.three, compared.x_and_y

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_viewer_sorts_the_list_ticks_two_fine_tunes_and_compares_them(viewer, x_and_y, log_in, page):
    a, b = x_and_y
    log_in("carol")
    page.goto("/p/acme/finetunes/")

    page.locator("th a[data-sort=duration]").click()
    page.wait_for_url(re.compile(r"\?sort=duration$"))
    expect(page.locator("tbody tr").first).to_have_attribute("data-job", str(b.pk))  # 1:00, the shortest
    button = page.locator("[data-compare-button]")
    expect(button).to_be_disabled()
    page.get_by_label(f"Compare fine-tune {a.pk}").check()
    expect(button).to_be_disabled()
    page.get_by_label(f"Compare fine-tune {b.pk}").check()
    expect(button).to_be_enabled()
    shot(page, "finetunes-table")
    button.click()

    page.wait_for_url(re.compile(r"/p/acme/finetunes/compare\?ids="))
    chart = page.locator("#compare-chart svg")
    expect(chart).to_be_visible()
    expect(chart.locator("g.series.s0 path.line")).to_have_count(1)  # A has no validation point: its train loss
    expect(chart.locator("g.series.s1 path.line")).to_have_count(1)
    expect(chart.locator("text.legend")).to_have_text([f"#{b.pk} train", f"#{a.pk} train"])
    expect(page.locator('tr.differs[data-setting="learning_rate"]')).to_be_visible()
    expect(page.locator('tr[data-setting="batch_size"]')).not_to_have_class(re.compile("differs"))
    expect(page.locator("#examples tbody tr")).to_have_count(3)
    shot(page, "finetunes-compared")
