"""Tenant isolation and roles, for every page and API endpoint there is.

The cases are generated from the URLconf (every route, every method it serves) and checked against the
OpenAPI schema (every operation it documents), so a new endpoint is covered the day it is added:

- another project's object answers 404, whoever asks and however they authenticate;
- a session of a user who is not a member of a project, or an API key of another project, gets 404 for it;
- nothing of the other project (its marker text) appears in any answer, nor where the server keeps its files;
- a viewer cannot edit, delete, download weights or train (a viewer may download a dataset's export or snapshot:
  reading); only owners manage keys and read the audit log; what only a person may do (vote) refuses API keys;
- a role that is allowed gets neither 401, 403 nor 404, and nothing answers 5xx;
- pages need a login (an API key does not open them) and the API needs a key or a session;
- the same holds for fine-tunes and the snapshots they trained on once their dataset is deleted: they keep their
  project (and the deleted dataset's name) and reach it without the dataset.

The role an operation needs follows from a rule (unsafe methods need an editor, weights need an editor, keys
and audit and project settings need an owner); the few exceptions are listed below with their reason.
"""

import re

import pytest
from django.test import Client

from curation.datasets.services import dataset_delete
from curation.models import Dataset, Role
from tests.security.tenants import (
    PERSONS_ONLY,
    ROUTES,
    Answer,
    Route,
    Tenant,
    ask,
    baselines,
    keyed,
    served_methods,
    server_roots,
    session,
    work_done,
)

pytestmark = pytest.mark.django_db

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
# Where the rule below does not fit, the role an operation needs, and why.
EXCEPTIONS = {
    ("api-finetune-estimate", "POST"): (Role.VIEWER, "computes examples, tokens and steps; starts nothing"),
    ("api-finetune-evaluation-estimate", "POST"): (Role.VIEWER, "computes a run's examples and cost; starts nothing"),
    ("bulk-preview", "GET"): (Role.EDITOR, "the confirmation step of a bulk change, for those who may make it"),
    ("finetune-evaluation-vote", "GET"): (Role.EDITOR, "the blind vote page is a ballot, for those who may vote"),
    ("api-promotion-rule", "PUT"): (Role.OWNER, "a project setting: what may take traffic is the owner's to say"),
} | {
    (name, method): (Role.OWNER, "model endpoints hold keys and spend money: the owner manages them")
    for name, method in (("api-endpoints", "POST"), ("api-endpoint", "PATCH"), ("api-endpoint", "DELETE"),
                         ("endpoints", "POST"), ("endpoint-edit", "GET"), ("endpoint-edit", "POST"),
                         ("endpoint-delete", "POST"))
}  # fmt: skip
# Weights trained on the project's data: an editor's right, as training is (the adapter, merged weights, a fine-tune
# exported for a runtime). A dataset's export and a snapshot's download are reading (the entries a viewer reads page
# by page), so they follow the rule for reads.
EXPORTS = re.compile(r"(adapter|merged|finetune-export)$")
# Keys, the audit log and the project's own settings (`project-…`: upstreams, redaction at ingestion).
OWNER_ONLY = re.compile(r"^(api-key-|audit|api-audit|project-)")


def required_role(route: Route, method: str) -> str:
    if OWNER_ONLY.search(route.name):
        return Role.OWNER
    if (route.name, method) in EXCEPTIONS:
        return EXCEPTIONS[route.name, method][0]
    if method in UNSAFE or EXPORTS.search(route.name):
        return Role.EDITOR
    return Role.VIEWER


# --- The matrix ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_every_route_keeps_tenants_apart_and_honours_roles(route: Route, world):
    own, other = world

    problems = matrix_problems(route, own, other)

    assert not problems, f"{route.pattern}:\n" + "\n".join(problems)


def _objects(route: Route) -> set[str]:
    params = re.finditer(r"<(?:\w+:)?(\w+)>", route.pattern)
    return {route.object_for(m.group(1), m.start()) for m in params if m.group(1) != "slug"}


# What outlives a deleted dataset: its fine-tunes (and their playground answers) and the snapshots they trained on.
OUTLIVE_DATASETS = [
    route for route in ROUTES
    if (_objects(route) and _objects(route) <= {"finetune", "generation", "snapshot"})
    or route.name in ("finetunes", "api-finetunes")
]  # fmt: skip


@pytest.mark.parametrize("route", OUTLIVE_DATASETS, ids=lambda r: r.name)
def test_fine_tunes_and_snapshots_whose_dataset_was_deleted_keep_tenants_apart(route: Route, world):
    own, other = world
    for tenant in world:
        dataset_delete(dataset=Dataset.objects.get(pk=tenant.objects["dataset"]))

    problems = matrix_problems(route, own, other)

    assert not problems, f"{route.pattern} (datasets deleted):\n" + "\n".join(problems)


def matrix_problems(route: Route, own: Tenant, other: Tenant) -> list[str]:
    """Every method of `route`, asked by every role and way in, of the own project and crossed with the other's."""
    methods = served_methods(route, own)
    assert methods, f"{route.pattern} serves no method its owner may use"
    problems: list[str] = []
    roots = server_roots()

    def check(case: str, answer: Answer, expect: str) -> None:
        if case.startswith(("GET", "HEAD")) and work_done(answer):
            problems.append(f"{case}: a safe method {', '.join(work_done(answer))}")
        if other.marker in answer.body:
            problems.append(f"{case}: LEAK of the other project's data (HTTP {answer.status})")
        if any(root in answer.body for root in roots):
            problems.append(f"{case}: shows where the server keeps its files (MEDIA_ROOT or the var folder)")
        if answer.status >= 500:
            problems.append(f"{case}: HTTP {answer.status}")
        elif expect == "allowed" and answer.status in (401, 403, 404):
            problems.append(f"{case}: HTTP {answer.status}, expected access: {answer.body[:200]}")
        elif expect == "403 or 404" and answer.status not in (403, 404):
            problems.append(f"{case}: HTTP {answer.status}, expected 403 or 404: {answer.body[:200]}")
        elif expect in ("403", "404") and answer.status != int(expect):
            problems.append(f"{case}: HTTP {answer.status}, expected {expect}: {answer.body[:200]}")
        elif expect == "login" and not (answer.status == 302 and answer.location.startswith("/login/")):
            problems.append(f"{case}: HTTP {answer.status}, expected a redirect to the login page")
        elif expect == "401" and answer.status not in (401, 403):
            problems.append(f"{case}: HTTP {answer.status}, expected 401")

    own_url = route.url(own.objects, own.project.slug)
    # Own project's route, other project's objects: `/p/own/datasets/<other's id>/`.
    crossed_url = route.url(other.objects, own.project.slug)
    # A page of the other project by its slug, ids included: the user is not a member there.
    foreign_page = route.url(other.objects, other.project.slug)
    for method in methods:
        needed = required_role(route, method)
        for role in Role.values:
            granted = "allowed" if Role.rank(role) >= Role.rank(needed) else "403"
            callers = [("session", session(own.users[role]))]
            if route.is_api:
                callers.append(("key", keyed(own.keys[role])))
            for how, client in callers:
                project = own.project.slug if route.is_api and how == "session" else None
                # An operation only a person may make refuses every key, whatever its role.
                expect = "403" if how == "key" and (route.name, method) in PERSONS_ONLY else granted
                check(f"{method} own/{role}/{how}", ask(client, method, own_url, project=project), expect)
                # A GET is also asked with the parameters that lead it furthest: work behind a parameter shows.
                for params in filter(None, baselines(route, own.objects) if method == "GET" else []):
                    answer = ask(client, method, own_url, project=project, params=params)
                    check(f"{method} own/{role}/{how} with {params}", answer, expect)
                # A role too low for the operation is refused before any lookup, found or not: no leak either way.
                denied = "404" if expect == "allowed" else "403 or 404"
                if route.has_objects:
                    answer = ask(client, method, crossed_url, project=project)
                    check(f"{method} other object/{role}/{how}", answer, denied)
                if route.is_api:
                    answer = ask(client, method, own_url, project=other.project.slug)
                    check(f"{method} ?project=other/{role}/{how}", answer, denied)
                elif "<slug:slug>" in route.pattern:
                    check(f"{method} other slug/{role}/{how}", ask(client, method, foreign_page), denied)
        if route.is_api:
            check(f"{method} anonymous", ask(Client(), method, own_url, project=own.project.slug), "401")
        else:
            check(f"{method} anonymous", ask(Client(), method, own_url), "login")
            check(f"{method} API key on a page", ask(keyed(own.keys[Role.OWNER]), method, own_url), "login")
    return problems


def test_the_matrix_covers_every_operation_of_the_openapi_schema():
    """Every documented operation maps to a route of the matrix, with a method that route serves."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    api_routes = {"/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r.pattern) for r in ROUTES if r.is_api}
    documented = {path for path in schema["paths"]}

    assert documented - api_routes == set(), "documented operations the matrix does not reach"
    assert api_routes - documented == set(), "API routes missing from the OpenAPI schema"


def test_the_exceptions_name_real_routes():
    names = {r.name for r in ROUTES}
    assert {name for name, _ in EXCEPTIONS} <= names
    assert {name for name, _ in PERSONS_ONLY} <= {r.name for r in ROUTES if r.is_api}
    assert any(OWNER_ONLY.search(n) for n in names) and any(EXPORTS.search(n) for n in names)
