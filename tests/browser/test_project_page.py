import re

import pytest
from playwright.sync_api import expect

from curation.logs.services import logs_ingest
from tests.curation.samples import openai_log

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_owner_logs_in_sees_recent_logs_and_creates_a_key(project, owner, log_in, page):
    logs_ingest(project=project, items=[openai_log(tags=["math"])])

    log_in("alice")

    expect(page).to_have_url(re.compile(r"/p/acme/$"))
    expect(page.locator("text=Recent logs")).to_be_visible()
    expect(page.locator("table >> text=gpt-4o-mini").first).to_be_visible()
    page.fill("input[name=name]", "backend")
    page.click("text=Create key")
    expect(page.locator("pre.secret")).to_contain_text("lt_")
