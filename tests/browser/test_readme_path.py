"""The README's first steps in a real browser: the demo `make run` sets up, its login, a key created on the project
page, the README's own first log sent with it, and that log found in the explorer and read on its page."""

import re
import shlex

import httpx
import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from tests.test_readme import README

pytestmark = pytest.mark.django_db(transaction=True)


def readme_first_log() -> str:
    """The body of the README's first curl (its `-d '…'`), exactly as a newcomer would paste it."""
    text = README.read_text()
    block = text.split("## Send your first log", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    command = block.split("curl", 1)[1].split("\n# ", 1)[0].replace("\\\n", " ")
    words = shlex.split(command)
    return words[words.index("-d") + 1]


def test_a_newcomer_logs_in_to_the_demo_creates_a_key_and_sees_the_readmes_first_log(live_server, page):
    call_command("bootstrap_demo", address=live_server.url.removeprefix("http://"))
    body = readme_first_log()

    page.goto("/login/")
    page.fill("input[name=username]", "demo")
    page.fill("input[name=password]", "demo")
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/p/demo/$"))
    page.fill("input[name=name]", "first steps")
    page.click("text=Create key")
    key = page.locator("pre.secret").inner_text().strip()
    assert key.startswith("lt_")

    sent = httpx.post(
        f"{live_server.url}/api/v1/logs",
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert sent.status_code == 200 and sent.json()["accepted"] == 1, sent.text

    page.goto("/p/demo/logs/?external_id=req_123")
    rows = page.locator("#log-table tbody tr[data-id]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("2+2?")
    expect(rows.first.locator(".chip", has_text="math")).to_be_visible()
    rows.first.locator("a.clamp").click()
    expect(page.locator(".conversation")).to_contain_text("4")
    expect(page.locator("body")).to_contain_text("req_123")
