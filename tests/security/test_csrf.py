"""CSRF: every form carries a token, and every unsafe request of a browser session without one is refused.

The routes come from the URLconf (as in the tenant matrix), so a new form or endpoint is covered without a list.
"""

import re
from pathlib import Path

import pytest
from django.test import Client

from curation.models import Role
from tests.security.tenants import ROUTES, Route, ask, keyed, served_methods

pytestmark = pytest.mark.django_db

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.DOTALL | re.IGNORECASE)


def test_every_post_form_in_the_templates_carries_a_csrf_token():
    forms = [
        (path.relative_to(TEMPLATES), body)
        for path in TEMPLATES.rglob("*.html")
        for attributes, body in FORM.findall(path.read_text())
        if re.search(r'method="post"', attributes, re.IGNORECASE)
    ]

    assert len(forms) > 10  # the pattern finds the forms at all
    assert [str(path) for path, body in forms if "{% csrf_token %}" not in body] == []


def test_htmx_requests_send_the_token():
    assert """hx-headers='{"X-CSRFToken": "{{ csrf_token }}"}'""" in (TEMPLATES / "base.html").read_text()


def _unsafe(world) -> list[tuple[Route, str]]:
    own, _ = world
    return [(r, m) for r in ROUTES for m in served_methods(r, own) if m != "GET"]


def test_a_session_without_the_token_is_refused_on_every_unsafe_route(world):
    own, _ = world
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(own.users[Role.OWNER])
    unsafe = _unsafe(world)
    assert any(r.is_api for r, _ in unsafe) and any(not r.is_api for r, _ in unsafe)

    answers = {
        f"{method} {route.pattern}": ask(
            browser,
            method,
            route.url(own.objects, own.project.slug),
            project=own.project.slug if route.is_api else None,
        )
        for route, method in unsafe
    }

    not_refused = {case: a.status for case, a in answers.items() if a.status != 403 or "CSRF" not in a.body}
    assert not_refused == {}


def test_the_token_lets_a_session_through_and_an_api_key_needs_none(world):
    own, _ = world
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(own.users[Role.OWNER])
    browser.get(f"/p/{own.project.slug}/")  # sets the csrftoken cookie, as a page load does
    token = browser.cookies["csrftoken"].value
    dataset = own.objects["dataset"]

    page = browser.post(f"/p/{own.project.slug}/datasets/{dataset}/edit", {"name": "renamed"}, HTTP_X_CSRFTOKEN=token)
    api = browser.patch(
        f"/api/v1/datasets/{dataset}?project={own.project.slug}",
        '{"description": "by session"}',
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )
    key = keyed(own.keys[Role.EDITOR])
    key.handler.enforce_csrf_checks = True
    by_key = key.patch(f"/api/v1/datasets/{dataset}", '{"description": "by key"}', content_type="application/json")

    assert page.status_code == 302
    assert api.status_code == 200 and api.json()["description"] == "by session"
    assert by_key.status_code == 200 and by_key.json()["description"] == "by key"
