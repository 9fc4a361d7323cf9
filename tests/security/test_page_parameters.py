"""Hostile parameter values on every page, as the API's schemathesis pass does for the API: no page answers 5xx.

The routes come from the URLconf (tests/security/tenants.py), so a new page is covered the day it is added. Which
parameters a page reads is not listed by hand: each request records the names the view asks its query string or
form for, and every name found gets every hostile value in turn, as its owner would send it, until no request
reveals a new name. A whole number that `str.isdigit` takes and `int()` refuses (`²`), or that `int()` takes and a
bigint column refuses (30 digits), must be a 400 or a form error, never a 500.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, fields

import pytest
from django.db import transaction
from django.http import QueryDict
from django.test import Client
from django.utils.datastructures import MultiValueDict

from curation.models import Role
from tests.security.tenants import ROUTES, Route, Tenant, served_methods, session
from training.config import TrainConfig
from training.forms import ADVANCED, MAIN

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
}
# A fine-tune form filled with TrainConfig's defaults: each hyperparameter is then made hostile on its own.
FINETUNE = {"base_model": "tiny", "method": "lora"} | {
    f.name: str(f.default) for f in fields(TrainConfig)
    if f.name in (*MAIN, *ADVANCED) and not any(f.default is nothing for nothing in (MISSING, None, False))
}  # fmt: skip
# Valid values that lead a view down a path where it reads more (filled with the tenant's object ids): a form
# whose other fields are valid, so that a hostile value in one of them reaches the service behind the form.
BASELINES = {
    "bulk-preview": [{"action": "dataset_add", "scope": "selected", "ids": "{log}"}],
    "bulk-run": [{"action": "dataset_add", "scope": "matching", "expected": "1", "dataset": "{dataset}"}],
    "dataset": [{}, {"loss_job": "{finetune}"}],
    "dataset-entry": [{"m-role": "user", "m-content": "hi", "m-kind": "text", "m-tool_calls": "",
                       "m-tool_call_id": "", "m-extra": ""}],
    "dataset-entries-action": [{"action": "delete", "ids": "{entry}"}],
    "dataset-split": [{"validation_ratio": "0.2", "seed": "1"}],
    "dataset-new": [{"name": "fuzzed"}],
    "dataset-edit": [{"name": "fuzzed"}],
    "dataset-finetune": [FINETUNE],
    "dataset-finetune-estimate": [FINETUNE],
    "dataset-entry-loss-preview": [{"base_model": "tiny"}],
    "finetune-playground": [{"prompt": "hi", "max_new_tokens": "8"}],
    "saved-view-new": [{"name": "fuzzed", "query": "q=x"}],
    "api-key-new": [{"name": "fuzzed", "role": "viewer"}],
    "tag-edit": [{"name": "fuzzed"}],
    "tag-merge": [{"into": "{tag}"}],
}  # fmt: skip
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


def send(client: Client, method: str, url: str, params: dict[str, str]) -> int | str:
    """The status of one request, rolled back; a crash as its exception, for the report."""
    try:
        with transaction.atomic():
            response = client.get(url, params) if method == "GET" else client.post(url, params)
            transaction.set_rollback(True)
    except Exception as exc:  # the test client re-raises what the view raised: that is the 500
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return response.status_code


def filled(baseline: dict[str, str], objects: dict[str, int]) -> dict[str, str]:
    return {name: value.format(**objects) for name, value in baseline.items()}


def hostile_problems(route: Route, own: Tenant, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    client = session(own.users[Role.OWNER])
    url = route.url(own.objects, own.project.slug)
    problems: list[str] = []

    def check(method: str, params: dict[str, str], case: str) -> set[str]:
        with reads_recorded(monkeypatch) as names:
            status = send(client, method, url, params)
        if not isinstance(status, int) or status >= 500:
            problems.append(f"{method} {case}: {status}")
        return names - NOT_PARAMETERS

    for method in served_methods(route, own):
        for baseline in BASELINES.get(route.name, [{}]):
            base = filled(baseline, own.objects)
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
    return [f"{method} {url}: {answer}, expected 404" for method, answer in answers.items() if answer != 404]


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
