"""The proxy's router and a canary's checks, as functions: which calls a route picks, what it sends the fine-tune,
and which answers it refuses."""

import json

import orjson
import pytest

from curation.proxy.hooks import Refusal, Routing
from training.models import Deployment, ProxyRoute, RouteMode
from training.serving.checks import answer_problem
from training.serving.router import ServingRouter

CHAT = "/chat/completions"


def ask(project, body: dict | bytes, *, provider: str = "openai", path: str = CHAT, **headers: str):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return ServingRouter().route(project_id=project.pk, provider=provider, path=path, body=raw, headers=headers)


def add_route(deployment: Deployment, name: str, **fields: object) -> ProxyRoute:
    return ProxyRoute.objects.create(project=deployment.project, name=name, deployment=deployment, **fields)


def test_a_project_without_deployments_or_routes_is_not_routed(project):
    assert ask(project, {"model": "gpt-4o-mini", "messages": []}) is None


def test_a_call_naming_a_serving_deployment_goes_to_its_server_unchanged(deployed, engine):
    body = b'{"model": "ft:acme/support-v1", "messages": [], "temperature": 0.10}'
    routing = ask(deployed.project, body)
    assert isinstance(routing, Routing)
    assert routing.mode == "direct" and routing.serve and routing.body == body  # byte for byte
    assert routing.url == f"{engine.url}/chat/completions"


def test_a_route_matches_on_every_condition_it_sets(deployed):
    add_route(deployed, "checkout", mode=RouteMode.SHADOW, match_model="gpt-4o-mini", match_route="checkout",
              match_metadata_key="feature", match_metadata_value="pay")  # fmt: skip
    call = {"model": "gpt-4o-mini", "messages": [], "metadata": {"feature": "pay"}}
    assert ask(deployed.project, call, **{"X-Logtune-Route": "checkout"}) is not None
    assert ask(deployed.project, call) is None  # no header
    assert ask(deployed.project, {**call, "model": "gpt-4o"}, **{"X-Logtune-Route": "checkout"}) is None
    assert (
        ask(deployed.project, {**call, "metadata": {"feature": "search"}}, **{"X-Logtune-Route": "checkout"}) is None
    )
    assert ask(deployed.project, {**call, "metadata": None}, **{"X-Logtune-Route": "checkout"}) is None


def test_the_first_active_route_by_position_takes_the_call(deployed):
    add_route(deployed, "later", mode=RouteMode.CANARY, position=2)
    add_route(deployed, "first", mode=RouteMode.SHADOW, position=1)
    add_route(deployed, "off", mode=RouteMode.CANARY, position=0, active=False)
    routing = ask(deployed.project, {"model": "gpt-4o-mini", "messages": []})
    assert isinstance(routing, Routing) and routing.route_name == "first" and routing.tags == ("route:first",)


def test_a_routed_call_reaches_the_fine_tune_under_its_name_with_the_rest_of_the_request_kept(deployed):
    add_route(deployed, "all", mode=RouteMode.CANARY)
    routing = ask(deployed.project, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "é"}],
                                     "unknown_field": {"kept": True}})  # fmt: skip
    assert isinstance(routing, Routing) and routing.serve
    assert orjson.loads(routing.body) == {
        "model": "ft:acme/support-v1", "messages": [{"role": "user", "content": "é"}], "unknown_field": {"kept": True}
    }  # fmt: skip


def test_an_unpicked_canary_call_is_still_routed_to_be_counted_but_not_served(deployed):
    add_route(deployed, "none", mode=RouteMode.CANARY, share=0.0)
    routing = ask(deployed.project, {"model": "gpt-4o-mini", "messages": []})
    assert isinstance(routing, Routing) and not routing.serve


def test_an_unpicked_shadow_call_is_not_routed(deployed):
    add_route(deployed, "shadow-none", mode=RouteMode.SHADOW, share=0.0)
    assert ask(deployed.project, {"model": "gpt-4o-mini", "messages": []}) is None


def test_only_chat_completions_calls_are_routed_and_ft_models_elsewhere_are_refused(deployed):
    add_route(deployed, "all", mode=RouteMode.CANARY)
    assert ask(deployed.project, {"model": "gpt-5", "input": "hi"}, path="/responses") is None
    assert (
        ask(deployed.project, {"model": "claude", "messages": []}, provider="anthropic", path="/v1/messages") is None
    )
    refusal = ask(deployed.project, {"model": "ft:acme/support-v1", "input": "hi"}, path="/responses")
    assert isinstance(refusal, Refusal) and refusal.status == 400


def test_a_body_that_is_not_json_is_not_routed(deployed):
    add_route(deployed, "all", mode=RouteMode.CANARY)
    assert ask(deployed.project, b'{"model": "gpt-4o-mini", ') is None
    assert ask(deployed.project, b"[1, 2]") is None


def test_checks_apply_only_to_calls_that_give_them_something_to_check(deployed):
    add_route(deployed, "all", mode=RouteMode.CANARY)
    plain = ask(deployed.project, {"model": "m", "messages": []})
    shaped = ask(deployed.project, {"model": "m", "messages": [], "response_format": {"type": "json_object"},
                                    "tools": [{"type": "function", "function": {"name": "f"}}]})  # fmt: skip
    assert isinstance(plain, Routing) and plain.checks == ()
    assert isinstance(shaped, Routing) and shaped.checks == ("json", "tools")


def answer(content: str | None = None, tool_calls: list | None = None) -> dict:
    message = {"role": "assistant", "content": content, **({"tool_calls": tool_calls} if tool_calls else {})}
    return {"object": "chat.completion", "choices": [{"index": 0, "message": message}]}


SCHEMA = {"type": "json_schema", "json_schema": {"name": "a", "schema": {
    "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}}  # fmt: skip
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


def call(name: str, arguments: str) -> list[dict]:
    return [{"type": "function", "function": {"name": name, "arguments": arguments}}]


@pytest.mark.parametrize(
    ("request_extra", "reply", "problem"),
    [
        ({"response_format": {"type": "json_object"}}, answer('{"a": 1}'), ""),
        ({"response_format": {"type": "json_object"}}, answer("Sure! {"), "not the JSON"),
        ({"response_format": {"type": "json_object"}}, answer("[1]"), "not an object"),
        ({"response_format": SCHEMA}, answer('{"n": 3}'), ""),
        ({"response_format": SCHEMA}, answer('{"n": "three"}'), "does not match"),
        ({"tools": TOOLS}, answer(None, call("lookup", "{}")), ""),
        ({"tools": TOOLS}, answer(None, call("drop", "{}")), "did not give"),
        ({"tools": TOOLS}, answer(None, call("lookup", "{")), "not a JSON object"),
        ({}, answer("anything"), ""),
        ({"response_format": {"type": "text"}}, answer("plain"), ""),
    ],
)  # fmt: skip
def test_a_canary_answer_is_refused_only_for_what_its_request_asked(request_extra, reply, problem):
    body = json.dumps({"model": "m", "messages": [], **request_extra}).encode()
    found = answer_problem(request_body=body, answer=reply, checks=("json", "tools"))
    assert (problem in found) if problem else found == ""
