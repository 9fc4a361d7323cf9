"""Deployed fine-tunes behind the proxy, end to end: the official openai SDK pointed at the app (live_server), a
stand-in provider and a stand-in model server; logs and route records stored by a real Celery worker."""

import random
import time
from collections.abc import Iterator

import openai
import pytest

from curation.models import LogEntry, Project
from tests.proxy.conftest import PROVIDER_KEY
from tests.proxy.upstream import StandIn
from tests.serving.engine import Engine
from training.models import Deployment, ProxyRoute, RouteCall, RouteMode, Side
from training.serving.router import serving_table_forget

pytestmark = pytest.mark.services
CHAT = [{"role": "user", "content": "Say hello."}]
_clients: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


@pytest.fixture
def serving_worker(celery_session_app, transactional_db: None) -> Iterator[object]:
    """A real worker on the default queue (logs, route records) and the shadow queue (shadow answers)."""
    from celery.contrib.testing.worker import start_worker

    celery_session_app.control.purge()
    with start_worker(
        celery_session_app, pool="solo", perform_ping_check=False, queues=["default", "shadow"], shutdown_timeout=30
    ) as worker:
        yield worker


def client(live_server, key: str, **headers: str) -> openai.OpenAI:
    sdk = openai.OpenAI(
        base_url=f"{live_server.url}/proxy/openai/v1", api_key=PROVIDER_KEY,
        default_headers={"X-Logtune-Key": key, **headers}, max_retries=0,
    )  # fmt: skip
    _clients.append(sdk)
    return sdk


def route(deployment: Deployment, mode: str, **fields: object) -> ProxyRoute:
    return ProxyRoute.objects.create(
        project=deployment.project, name=fields.pop("name", f"{mode}-route"), deployment=deployment, mode=mode,
        **fields,
    )  # fmt: skip


def wait_for(condition, seconds: float = 30):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not true after {seconds}s")


def logs_of(project: Project, count: int) -> list[LogEntry]:
    return wait_for(lambda: (logs := list(LogEntry.objects.filter(project=project).order_by("id"))) and
                    len(logs) >= count and logs)  # fmt: skip


def chats(engine: Engine) -> list[dict]:
    return [r for r in engine.requests if r["path"] == "/v1/chat/completions"]


# --- A call that names the deployment ---------------------------------------------------------------------------


def test_a_call_naming_the_deployment_is_answered_by_it_and_logged(live_server, serving_worker, deployed, engine,
                                                                   stand_in: StandIn, editor_key):  # fmt: skip
    answer = client(live_server, editor_key).chat.completions.create(model="ft:acme/support-v1", messages=CHAT)

    assert answer.choices[0].message.content == "ft:acme/support-v1: Say hello."
    assert stand_in.seen == []  # the provider was not called
    sent = chats(engine)[0]
    assert sent["body"]["model"] == "ft:acme/support-v1"
    # The caller's provider key and Logtune key stay with Logtune: the model server is ours.
    assert not {"authorization", "x-logtune-key"} & {name.lower() for name in sent["headers"]}
    (log,) = logs_of(deployed.project, 1)
    assert log.model == "ft:acme/support-v1" and log.status == "success"
    assert log.prompt_tokens == 7 and log.completion_tokens == 4
    assert "model:ft:acme/support-v1" in set(log.tags.values_list("name", flat=True))
    proxy = log.metadata["proxy"]
    assert proxy["upstream"] == "ft:acme/support-v1"  # not the model server's address
    assert proxy["route"]["mode"] == "direct" and proxy["route"]["side"] == Side.FINETUNE


def test_a_streamed_call_to_the_deployment_streams_and_is_logged_whole(live_server, serving_worker, deployed,
                                                                       editor_key):  # fmt: skip
    stream = client(live_server, editor_key).chat.completions.create(
        model="ft:acme/support-v1", messages=CHAT, stream=True, stream_options={"include_usage": True}
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    assert text.strip() == "ft:acme/support-v1: Say hello."
    (log,) = logs_of(deployed.project, 1)
    assert log.messages[-1]["content"].strip() == "ft:acme/support-v1: Say hello."
    assert log.metadata["proxy"]["stream"] is True and log.completion_tokens == 4


def test_an_unknown_or_stopped_deployment_is_a_404_and_nothing_is_forwarded(live_server, deployed, engine,
                                                                           stand_in, editor_key):  # fmt: skip
    sdk = client(live_server, editor_key)
    with pytest.raises(openai.NotFoundError, match="ft:acme/nope does not exist"):
        sdk.chat.completions.create(model="ft:acme/nope", messages=CHAT)
    deployed.status = "stopped"
    deployed.save()
    serving_table_forget()
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="ft:acme/support-v1", messages=CHAT)
    with pytest.raises(openai.BadRequestError, match="chat/completions"):
        sdk.responses.create(model="ft:acme/support-v1", input="hi")
    assert chats(engine) == [] and stand_in.seen == []


# --- Shadow ---------------------------------------------------------------------------------------------------


def test_a_shadowed_call_gets_the_providers_answer_and_both_logs_are_stored_as_a_pair(
    live_server, serving_worker, deployed, engine, stand_in, editor_key
):
    route(deployed, RouteMode.SHADOW, name="checkout", match_metadata_key="feature", match_metadata_value="checkout")
    sdk = client(live_server, editor_key)

    answer = sdk.chat.completions.create(model="gpt-4o-mini", messages=CHAT, metadata={"feature": "checkout"})
    other = sdk.chat.completions.create(model="gpt-4o-mini", messages=CHAT, metadata={"feature": "search"})

    assert answer.choices[0].message.content == "Hello from the stand-in."
    assert other.choices[0].message.content == "Hello from the stand-in."
    call = wait_for(lambda: RouteCall.objects.filter(route__name="checkout").first())
    logs = {log.external_id: log for log in logs_of(deployed.project, 3)}
    assert len(logs) == 3  # the two provider calls, and the one shadow answer
    provider, shadow = logs[call.provider_log], logs[call.finetune_log]
    assert call.served_by == Side.PROVIDER and call.mode == RouteMode.SHADOW and call.fallback == ""
    assert shadow.metadata["proxy"]["route"]["shadow_of"] == provider.external_id
    assert shadow.messages[-1]["content"] == "ft:acme/support-v1: Say hello."
    assert provider.messages[-1]["content"] == "Hello from the stand-in."
    assert {"route:checkout"} <= set(provider.tags.values_list("name", flat=True))
    assert {"route:checkout", "shadow", "model:ft:acme/support-v1"} <= set(shadow.tags.values_list("name", flat=True))
    assert call.provider_status == 200 and call.finetune_status == 200
    assert call.provider_model == "gpt-4o-mini" and call.finetune_completion_tokens == 4
    assert len(chats(engine)) == 1 and chats(engine)[0]["body"]["model"] == "ft:acme/support-v1"


# --- Canary ---------------------------------------------------------------------------------------------------


def test_a_canary_call_is_answered_by_the_fine_tune(live_server, serving_worker, deployed, stand_in, editor_key):
    route(deployed, RouteMode.CANARY, match_model="gpt-4o-mini", share=1.0)

    answer = client(live_server, editor_key).chat.completions.create(model="gpt-4o-mini", messages=CHAT)

    assert answer.choices[0].message.content == "ft:acme/support-v1: Say hello."
    assert stand_in.seen == []
    call = wait_for(lambda: RouteCall.objects.first())
    assert call.served_by == Side.FINETUNE and call.finetune_status == 200 and call.fallback == ""
    (log,) = logs_of(deployed.project, 1)
    assert log.external_id == call.finetune_log and log.model == "gpt-4o-mini"  # as the caller asked
    assert {"route:canary-route", "model:ft:acme/support-v1"} <= set(log.tags.values_list("name", flat=True))


@pytest.mark.parametrize(
    ("message", "request_extra", "reason"),
    [
        ("fail please", {}, "status 500"),
        ("slow please", {}, "timeout"),
        ("not-json please", {"response_format": {"type": "json_object"}}, "not the JSON"),
        ("bad-tool please", {"tools": [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]},
         "did not give"),
    ],
)  # fmt: skip
def test_a_canary_falls_back_to_the_provider_when_the_fine_tune_fails(
    live_server, serving_worker, deployed, stand_in, editor_key, message, request_extra, reason
):
    route(deployed, RouteMode.CANARY, share=1.0, timeout_ms=1000)

    answer = client(live_server, editor_key).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": message}], **request_extra
    )

    assert answer.choices[0].message.content == "Hello from the stand-in."  # the provider's
    call = wait_for(lambda: RouteCall.objects.first())
    assert call.served_by == Side.PROVIDER and reason in call.fallback
    logs = {log.external_id: log for log in logs_of(deployed.project, 1 if reason == "timeout" else 2)}
    served = logs[call.provider_log]
    assert reason in served.metadata["proxy"]["route"]["fallback"]
    if reason == "timeout":
        assert call.finetune_log == ""  # nothing came back to keep
    else:
        attempt = logs[call.finetune_log]  # the fine-tune's answer, kept beside the provider's
        assert attempt.metadata["proxy"]["route"]["pair"] == served.external_id
        assert "fallback" in set(attempt.tags.values_list("name", flat=True))


def test_a_streamed_canary_with_a_check_is_read_whole_then_streamed(live_server, serving_worker, deployed, editor_key):
    route(deployed, RouteMode.CANARY, share=1.0)
    stream = client(live_server, editor_key).chat.completions.create(
        model="gpt-4o-mini", messages=CHAT, stream=True, response_format={"type": "json_object"}
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert '"ft:acme/support-v1: Say hello."' in text
    assert wait_for(lambda: RouteCall.objects.first()).served_by == Side.FINETUNE


def test_the_canary_share_is_the_routes_within_statistical_bounds(live_server, deployed, engine, stand_in,
                                                                  editor_key):  # fmt: skip
    route(deployed, RouteMode.CANARY, share=0.3, match_route="checkout")
    sdk = client(live_server, editor_key, **{"X-Logtune-Route": "checkout"})
    random.seed(7)
    calls = 300
    served = sum(
        sdk.chat.completions.create(model="gpt-4o-mini", messages=CHAT).choices[0].message.content.startswith("ft:")
        for _ in range(calls)
    )
    # Binomial(300, 0.3): mean 90, standard deviation 7.9; ±4.5 deviations fail once in ~150,000 runs.
    assert 55 <= served <= 125
    assert len(chats(engine)) == served and len(stand_in.seen) == calls - served


def test_a_rolled_back_route_sends_every_call_to_the_provider(live_server, deployed, engine, stand_in, editor_key):
    canary = route(deployed, RouteMode.CANARY, share=1.0)
    sdk = client(live_server, editor_key)
    assert sdk.chat.completions.create(model="gpt-4o-mini", messages=CHAT).choices[0].message.content.startswith("ft:")
    canary.active = False
    canary.save()
    serving_table_forget()  # what every web process does within TABLE_SECONDS
    assert sdk.chat.completions.create(model="gpt-4o-mini", messages=CHAT).choices[0].message.content == (
        "Hello from the stand-in."
    )


def test_live_shadow_pairs_are_judged_and_the_route_shows_the_win_rate(live_server, serving_worker, deployed, settings,
                                                                       editor_key):  # fmt: skip
    from tests.chat_stand_in import start_chat_stand_in
    from tests.factories import ModelEndpointFactory
    from training.serving.routes.selectors import route_stats

    def judge(body: dict) -> str:  # prefers the fine-tune's answer, wherever it is shown
        prompt = body["messages"][-1]["content"]
        return "Verdict: A" if "<answer_a>\nft:" in prompt else "Verdict: B"

    judge_server = start_chat_stand_in(answer=judge)
    try:
        settings.LOGTUNE_ENDPOINT_HOSTS = ["127.0.0.1:*"]
        endpoint = ModelEndpointFactory(project=deployed.project, base_url=judge_server.url, model="judge")
        shadow = route(deployed, RouteMode.SHADOW, judge=endpoint, judge_sample=1.0)
        sdk = client(live_server, editor_key)
        for _ in range(3):
            sdk.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
        wait_for(lambda: RouteCall.objects.filter(verdict__isnull=False).count() == 3, seconds=60)
    finally:
        judge_server.close()

    assert len(judge_server.requests) == 6  # each pair in both orders
    stats = route_stats(route=shadow)
    assert stats.calls == 3 and stats.judged == 3
    assert stats.win_rate.wins == 3 and stats.win_rate.rate is not None
    assert (stats.win_rate.rate.value, stats.win_rate.rate.n) == (1.0, 3)
