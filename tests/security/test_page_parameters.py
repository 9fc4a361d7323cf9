"""Hostile parameter values on every page, as the API's schemathesis pass does for the API: no page answers 5xx.

The routes come from the URLconf (tests/security/tenants.py), so a new page is covered the day it is added. Which
parameters a page reads is not listed by hand: each request records the names the view asks its query string or
form for, and every name found gets every hostile value in turn, as its owner would send it, until no request
reveals a new name. A whole number that `str.isdigit` takes and `int()` refuses (`²`), or that `int()` takes and a
bigint column refuses (30 digits), must be a 400 or a form error, never a 500; and a GET, whatever its
parameters, writes and queues nothing (tenants.work_done).
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from django.http import QueryDict
from django.test import Client
from django.utils.datastructures import MultiValueDict

from curation.models import Role
from tests.security.tenants import (
    BASELINES,
    ROUTES,
    Answer,
    Route,
    Tenant,
    ask,
    baselines,
    served_methods,
    session,
    work_done,
)

pytestmark = pytest.mark.django_db

HOSTILE = [
    "²",  # str.isdigit() says yes, int() says no
    "٣",  # an Arabic-Indic 3: int() takes it
    "1" * 30,  # int() takes it, bigint does not
    str(2**63),  # one past bigint
    "-1",
    "1e9",
    "NaN",
    "\x00",  # PostgreSQL text cannot hold it
    "9" * 5_000,  # more digits than int() reads
    "x" * 5_000,
]
# Values some parameters are also given: the shapes they parse beyond a plain number.
HOSTILE_FOR = {
    "op": ["remove:²", "remove:" + "9" * 5_000],  # the entry editor's "remove turn i"
    "ids": ["1,²", "²,2", "1" * 30],  # the entries list's `?ids=` (comma-separated) and the forms' repeated ids
    # Times Python reads and PostgreSQL does not: an offset past 15:59, year 10000 once in UTC.
    "created_after": ["2026-01-01T00:00:00-18:56", "9999-12-31T23:59:59-14:00"],
    "created_before": ["2026-01-01T00:00:00-18:56", "0001-01-01T00:00:00+14:00"],
    "metadata": ["env:NaN", "env:-inf"],  # numbers JSON has not: jsonb refuses them
}
# Names read that are not parameters of the page.
NOT_PARAMETERS = {"csrfmiddlewaretoken"}
MAX_NAMES = 80  # a page reading more names than this is a loop in the test, not a page


@contextmanager
def reads_recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """The names looked up in any QueryDict (request.GET, request.POST, a filter read from a string) meanwhile."""
    names: set[str] = set()

    def recording(method: Callable) -> Callable:
        def lookup(self: MultiValueDict, key: object, *args: object, **kwargs: object) -> object:
            if isinstance(self, QueryDict) and isinstance(key, str):
                names.add(key)
            return method(self, key, *args, **kwargs)

        return lookup

    with monkeypatch.context() as patch:
        for method in ("get", "getlist", "__getitem__", "__contains__"):
            patch.setattr(MultiValueDict, method, recording(getattr(MultiValueDict, method)))
        yield names


def send(client: Client, method: str, url: str, params: dict[str, str]) -> Answer | str:
    """One request, rolled back (tenants.ask); a crash as its exception, for the report."""
    try:
        return ask(client, method, url, params=params)
    except Exception as exc:  # the test client re-raises what the view raised: that is the 500
        return f"{type(exc).__name__}: {str(exc)[:200]}"


def hostile_problems(route: Route, own: Tenant, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    client = session(own.users[Role.OWNER])
    url = route.url(own.objects, own.project.slug)
    problems: list[str] = []

    def check(method: str, params: dict[str, str], case: str) -> set[str]:
        with reads_recorded(monkeypatch) as names:
            answer = send(client, method, url, params)
        if isinstance(answer, str) or answer.status >= 500:
            problems.append(f"{method} {case}: {answer if isinstance(answer, str) else answer.status}")
        elif method == "GET" and work_done(answer):
            problems.append(f"{method} {case}: a safe method {', '.join(work_done(answer))}")
        return names - NOT_PARAMETERS

    for method in served_methods(route, own):
        for base in baselines(route, own.objects):
            queue = sorted(check(method, base, "baseline") | set(base))
            seen = set(queue)
            while queue:
                name = queue.pop()
                for value in [*HOSTILE, *HOSTILE_FOR.get(name, [])]:
                    found = check(method, base | {name: value}, f"{name}={value[:40]!r}")
                    queue.extend(sorted(found - seen))
                    seen |= found
                assert len(seen) <= MAX_NAMES, f"{route.pattern} reads {len(seen)} names"
    return problems


def huge_id_problems(route: Route, own: Tenant) -> list[str]:
    """Ids in the path past bigint: `<int:…>` takes any number of digits, the row is simply not there."""
    client = session(own.users[Role.OWNER])
    url = route.url(dict.fromkeys(own.objects, 10**30), own.project.slug)
    answers = {method: send(client, method, url, {}) for method in served_methods(route, own)}
    statuses = {method: answer if isinstance(answer, str) else answer.status for method, answer in answers.items()}
    return [f"{method} {url}: {status}, expected 404" for method, status in statuses.items() if status != 404]


PAGES = [route for route in ROUTES if not route.is_api]


@pytest.mark.parametrize("route", PAGES, ids=lambda r: r.name)
def test_no_page_answers_5xx_to_hostile_parameters(route: Route, world, monkeypatch):
    own, _ = world

    problems = hostile_problems(route, own, monkeypatch)
    if route.has_objects:
        problems += huge_id_problems(route, own)

    assert not problems, f"{route.pattern}:\n" + "\n".join(problems)


def test_the_baselines_name_real_pages():
    assert set(BASELINES) <= {route.name for route in PAGES}


def test_a_page_names_the_parameter_it_refuses(world):
    own, _ = world
    client = session(own.users[Role.OWNER])
    dataset = f"/p/{own.project.slug}/datasets/{own.objects['dataset']}/"

    for params, reason in [
        ({"after": "²"}, "after: expected a whole number of at most 18 digits, got '²'"),
        ({"loss_job": "1" * 30}, "loss_job: expected a whole number of at most 18 digits"),
        ({"q": "a\x00b"}, "q: contains a NUL character (\\u0000)."),
    ]:
        response = client.get(dataset, params)
        assert response.status_code == 400
        assert response.content.decode().startswith(reason)
