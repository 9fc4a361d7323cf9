"""Every page carries a Content-Security-Policy that allows no inline script, no eval and nothing from another
site; the browser side (no violation on the main pages) is tests/browser/test_csp.py."""

import re
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db


def policy(response) -> dict[str, list[str]]:
    directives = (part.strip().split() for part in response["Content-Security-Policy"].split(";") if part.strip())
    return {name: values for name, *values in directives}


def test_a_page_carries_the_policy(client, owner):
    client.force_login(owner)

    directives = policy(client.get("/p/acme/"))

    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert directives["style-src-attr"] == ["'unsafe-inline'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["form-action"] == ["'self'"]


def test_the_login_page_carries_it_too(client):
    assert "script-src 'self'" in client.get("/login/")["Content-Security-Policy"]


def test_only_the_redoc_page_relaxes_styles_and_never_scripts(client, owner):
    client.force_login(owner)

    redoc = policy(client.get("/api/v1/redoc"))
    swagger = policy(client.get("/api/v1/docs"))

    assert redoc["style-src"] == ["'self'", "'unsafe-inline'"]
    assert redoc["script-src"] == swagger["script-src"] == ["'self'"]
    assert swagger["style-src"] == ["'self'"]


def test_no_template_has_an_inline_script_style_element_or_event_handler():
    offenders = []
    for template in Path(settings.BASE_DIR, "templates").rglob("*.html"):
        text = re.sub(r"\{#.*?#\}", "", template.read_text())  # template comments may name what they avoid
        for marker in ("<script>", " onclick=", " onload=", " onchange=", " onsubmit=", "hx-on", "<style"):
            if marker in text:
                offenders.append(f"{template.name}: {marker.strip()}")
    assert offenders == []
