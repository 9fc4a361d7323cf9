"""Templates link with {% url %} and {% static %} only, and the page scripts keep one style: modules, no `var`,
no handlers written in attributes. Read from the files, so a path typed by hand fails here before a page breaks."""

import re
from pathlib import Path

from django.conf import settings

TEMPLATES = Path(settings.BASE_DIR, "templates")
SCRIPTS = Path(settings.BASE_DIR, "static", "js")

# An attribute that names a URL, its value starting with "/" rather than with {% url %}, {% static %} or {{ ... }}.
URL_ATTRIBUTE = r"(?:href|action|src|hx-(?:get|post|put|patch|delete)|data-[\w-]+)"
TYPED_PATH = re.compile(rf"""\s({URL_ATTRIBUTE}\s*=\s*["']?/[^"'\s>]*)""")
# A quoted path inside a template tag or variable: a URL assembled with |add: or {% with %}.
BUILT_PATH = re.compile(r"""\{[{%][^}]*?(["']/[^"']*["'])[^}]*?[}%]\}""")
INLINE_HANDLER = re.compile(r"<[a-zA-Z][^>]*?\s(on[a-z]+)\s*=", re.DOTALL)
PAGE_SCRIPT = re.compile(r"<script\b[^>]*\{% static '(js/[^']+)' %\}[^>]*>")


def template_text(template: Path) -> str:
    text = template.read_text()
    text = re.sub(r"\{% comment %\}.*?\{% endcomment %\}", "", text, flags=re.DOTALL)
    return re.sub(r"\{#.*?#\}", "", text)  # template comments may name what they avoid


def script_code(script: Path) -> str:
    return re.sub(r"/\*.*?\*/|//[^\n]*", "", script.read_text(), flags=re.DOTALL)


def templates() -> list[Path]:
    return sorted(TEMPLATES.rglob("*.html"))


def test_no_template_types_a_path_in_a_link_attribute():
    offenders = [
        f"{template.relative_to(TEMPLATES)}: {match}"
        for template in templates()
        for match in TYPED_PATH.findall(template_text(template))
    ]
    assert offenders == []


def test_no_template_builds_a_path_from_strings():
    offenders = [
        f"{template.relative_to(TEMPLATES)}: {match}"
        for template in templates()
        for match in BUILT_PATH.findall(template_text(template))
    ]
    assert offenders == []


def test_no_template_has_an_inline_event_handler():
    offenders = [
        f"{template.relative_to(TEMPLATES)}: {handler}"
        for template in templates()
        for handler in INLINE_HANDLER.findall(template_text(template))
    ]
    assert offenders == []


def test_page_scripts_declare_with_const_and_let_never_var():
    offenders = [script.name for script in sorted(SCRIPTS.glob("*.js")) if re.search(r"\bvar\s", script_code(script))]
    assert offenders == []


def test_page_scripts_are_modules_without_a_wrapper():
    # Modules are strict and keep their names to themselves: two classic scripts on one page declaring the same
    # top-level name (dataset.js and explorer.js both have `rows`) would fail to load.
    wrapped = [script.name for script in sorted(SCRIPTS.glob("*.js")) if re.search(r"^\(", script_code(script), re.M)]
    loaded = [
        (template.relative_to(TEMPLATES), tag.group(1), 'type="module"' in tag.group(0))
        for template in templates()
        for tag in PAGE_SCRIPT.finditer(template_text(template))
    ]
    assert wrapped == []
    assert loaded and [(name, script) for name, script, module in loaded if not module] == []
    assert {script for _, script, _ in loaded} == {f"js/{script.name}" for script in SCRIPTS.glob("*.js")}
