"""Every API operation takes the query parameters its OpenAPI schema declares, and refuses any other the same way:
a 400 naming it, with the parameters it takes (curation/common/query.py)."""

import ast
import inspect
import re
import textwrap

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator

from curation.common.apis import ProjectScopedApi

METHODS = ("get", "post", "put", "patch", "delete")


def _operations() -> list[tuple[str, str, dict]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [
        (path, method.upper(), operation)
        for path, item in schema["paths"].items()
        if path.startswith("/api/v1/") and path != "/api/v1/schema"
        for method, operation in item.items()
        if method in METHODS
    ]


def _query_names(operation: dict) -> set[str]:
    return {parameter["name"] for parameter in operation.get("parameters", []) if parameter["in"] == "query"}


def _url(path: str) -> str:
    return re.sub(r"{\w+}", "1", path)  # the check runs before a view looks its rows up


OPERATIONS = _operations()
LABELS = [f"{method} {path}" for path, method, _ in OPERATIONS]


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS, ids=LABELS)
def test_an_unknown_parameter_is_refused_naming_it_and_what_is_taken(key_client, path, method, operation):
    response = key_client.generic(method, f"{_url(path)}?tagz=math", content_type="application/json")

    assert response.status_code == 400, response.content
    taken = sorted(_query_names(operation) | {"format"})
    assert response.json() == {"tagz": [f"Unknown parameter. Expected one of {', '.join(taken)}."]}


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS, ids=LABELS)
def test_every_declared_parameter_is_taken(key_client, path, method, operation):
    for name in sorted(_query_names(operation)):
        response = key_client.generic(method, f"{_url(path)}?{name}=", content_type="application/json")

        refusal = response.json() if response.status_code == 400 else {}
        assert "Unknown parameter" not in str(refusal.get(name, "")), (name, refusal)


def test_every_operation_declares_its_project_parameter_with_a_slug_pattern():
    for path, method, operation in OPERATIONS:
        project = [p for p in operation.get("parameters", []) if p["name"] == "project"]
        assert project and project[0]["schema"]["pattern"] == "^[-a-zA-Z0-9_]*$", f"{method} {path}"


def test_a_session_user_names_the_project_and_may_ask_for_a_format(client_for, owner):
    client = client_for(owner)

    assert client.get("/api/v1/tags?project=acme&format=json").status_code == 200
    assert client.get("/api/v1/tags?project=acme&page=2").json() == {
        "page": ["Unknown parameter. Expected one of cursor, format, limit, project."]
    }


def test_several_unknown_parameters_are_each_named(key_client):
    response = key_client.get("/api/v1/logs?tags=math&offset=5&limit=2")

    assert response.status_code == 400
    assert set(response.json()) == {"tags", "offset"}


def _views() -> list[tuple[str, type]]:
    found = []

    def walk(patterns: list, prefix: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern) and hasattr(pattern.callback, "view_class"):
                found.append((prefix + str(pattern.pattern), pattern.callback.view_class))

    walk(get_resolver().url_patterns, "/")
    # The schema and its two readers are drf-spectacular's own, and public.
    return [(r, view) for r, view in found if r.startswith("/api/v1/") and not view.__module__.startswith("drf_")]


def _read_in(function: object) -> set[str]:
    """The parameter names a method reads literally: `request.query_params.get("x")`, `params["x"]`."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            target = ast.unparse(node.func.value)
            if target.endswith(("query_params", "params")) and node.args and isinstance(node.args[0], ast.Constant):
                names.add(node.args[0].value)
        elif (
            isinstance(node, ast.Subscript)
            and ast.unparse(node.value).endswith(("query_params", "params"))
            and isinstance(node.slice, ast.Constant)
        ):
            names.add(node.slice.value)
    return names


def test_every_parameter_a_view_reads_is_in_its_schema():
    declared = {(path, method): _query_names(operation) for path, method, operation in OPERATIONS}
    checked = 0
    for route, view in _views():
        assert issubclass(view, ProjectScopedApi), f"{route}: every API view checks its parameters"
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
        for method in METHODS:
            if hasattr(view, method) and (path, method.upper()) in declared:
                read = _read_in(getattr(view, method)) - {"project"}
                assert read <= declared[(path, method.upper())], f"{method.upper()} {path} reads {sorted(read)}"
                checked += 1
    assert checked == len(OPERATIONS)
