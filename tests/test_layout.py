"""The layout holds: features do not run in import circles, curation builds on no other app, reads never call
writes, and no module borrows another's private names (docs/architecture.md)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("curation", "training")


def _modules() -> dict[str, Path]:
    found = {}
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, str]]:
    """(module imported, name imported from it or "") for every import in the module, functions' included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.append((full, "") if full in MODULES else (node.module, alias.name))
    return [(module, imported) for module, imported in found if module in MODULES and module != name]


GRAPH = {name: {module for module, _ in _imports(name, path)} for name, path in MODULES.items()}


def _circles() -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in GRAPH[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(component)

    for node in GRAPH:
        if node not in index:
            visit(node)
    return circles


def test_the_only_import_circles_are_a_service_and_its_own_task():
    for circle in _circles():
        packages = {name.rsplit(".", 1)[0] for name in circle}
        assert len(circle) == 2 and len(packages) == 1, f"an import circle: {sorted(circle)}"
        (package,) = packages
        assert f"{package}.tasks" in circle, f"an import circle without the package's tasks: {sorted(circle)}"


def test_the_test_finds_a_circle_when_there_is_one(monkeypatch):
    monkeypatch.setitem(GRAPH, "curation.logs.filters", GRAPH["curation.logs.filters"] | {"curation.logs.views"})
    assert any({"curation.logs.filters", "curation.logs.views"} <= circle for circle in _circles())


def test_curation_imports_no_other_app():
    reaching_out = [
        (name, other) for name, others in GRAPH.items() if name.startswith("curation.") for other in others
    ]
    assert [pair for pair in reaching_out if not pair[1].startswith("curation")] == []


@pytest.mark.parametrize("name", [name for name in MODULES if name.endswith((".selectors", ".filters"))])
def test_reads_never_import_writes(name):
    writes = sorted(other for other in GRAPH[name] if other.endswith((".services", ".tasks")))
    assert writes == [], f"{name} reads, yet imports {writes}"


def test_no_module_imports_another_modules_private_names():
    borrowed = [
        f"{name} imports {imported} from {module}"
        for name, path in MODULES.items()
        for module, imported in _imports(name, path)
        if imported.startswith("_") and not imported.startswith("__")
    ]
    assert borrowed == []
