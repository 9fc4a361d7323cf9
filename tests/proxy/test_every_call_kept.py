"""The proxy never loses a call: 2026's shapes through the official SDKs are all logged as conversations, with
what no reader knows kept verbatim, and a call no reader can read is stored as "unreadable" with its reason."""

import base64
import json

import anthropic
import httpx
import pytest
from django.core.cache import cache

from curation.models import LogEntry
from tests.proxy.test_proxy import _close_clients, anthropic_client, logs_of, openai_client  # noqa: F401
from tests.proxy.upstream import SHAPES

pytestmark = pytest.mark.services
PIXEL = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
CUSTOM_TOOL = {"type": "custom", "custom": {"name": "code_exec", "description": "Runs Python"}}
SEARCH_RESULT = {
    "type": "search_result",
    "source": "https://kb.example/returns",
    "title": "Returns policy",
    "content": [{"type": "text", "text": "Returns within 30 days."}],
    "citations": {"enabled": True},
}


def post(live_server, key: str, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{live_server.url}/proxy/openai/v1/chat/completions", content=body,
        headers={"X-Logtune-Key": key, "Authorization": "Bearer sk-x", "Content-Type": "application/json"},
    )  # fmt: skip


def test_the_official_sdks_new_shapes_are_all_logged(live_server, celery_worker, proxied, stand_in, editor_key):
    chat = openai_client(live_server, editor_key).chat.completions
    messages = anthropic_client(live_server, editor_key).messages
    custom = chat.create(model="gpt-5-custom", messages=[{"role": "user", "content": "2+2 in Python"}],
                         tools=[CUSTOM_TOOL])  # fmt: skip
    image = {"type": "image_url", "image_url": {"url": PIXEL, "detail": "original"}}
    chat.create(model="gpt-5", messages=[{"role": "user", "content": [{"type": "text", "text": "What?"}, image]}])
    searched = messages.create(
        model="claude-web-search", max_tokens=200, messages=[{"role": "user", "content": "Tide in Brest?"}],
        tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
    )  # fmt: skip
    call = {"type": "tool_use", "id": "toolu_1", "name": "kb", "input": {"q": "returns"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": [SEARCH_RESULT]}
    messages.create(
        model="claude-haiku-4-5", max_tokens=200,
        messages=[
            {"role": "user", "content": "Can I return shoes?"},
            {"role": "assistant", "content": [call]},
            {"role": "user", "content": [result]},
        ],
        tools=[{"name": "kb", "description": "Search the knowledge base", "input_schema": {"type": "object"}}],
    )  # fmt: skip
    strict = {"type": "function", "function": {"name": "f", "strict": True, "parameters": {"type": "object"}}}
    chat.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], parallel_tool_calls=False, tools=[strict]
    )

    assert custom.choices[0].message.tool_calls[0].id == "call_c1"
    assert searched.content[-1].text == "High tide in Brest is at 14:02."
    logs = logs_of(proxied, count=5)
    assert [log.status for log in logs] == ["success"] * 5
    custom_log, image_log, search_log, result_log, strict_log = logs
    assert custom_log.tools == [CUSTOM_TOOL]
    assert custom_log.messages[-1]["tool_calls"] == [
        {"id": "call_c1", "type": "custom", "custom": {"name": "code_exec", "input": "print(2 + 2)"}}
    ]
    assert image_log.messages[0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": PIXEL, "detail": "original"},
    }
    assert search_log.tools == [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]
    assert [part["type"] for part in search_log.messages[-1]["content"]] == [
        "server_tool_use", "web_search_tool_result", "text"
    ]  # fmt: skip
    assert result_log.messages[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": [SEARCH_RESULT]}
    assert strict_log.tools[0]["function"]["strict"] is True
    assert strict_log.options == {"parallel_tool_calls": False}
    for log, seen in zip(logs, stand_in.seen, strict=True):
        assert json.loads(log.original)["request"] == json.loads(seen.body)


def test_the_request_is_kept_byte_for_byte_in_the_original(live_server, celery_worker, proxied, stand_in, editor_key):
    # Sent by hand: an SDK would write its own bytes, and these are the ones to find again.
    body = b'{"model":"gpt-4o-mini",  "messages":[{"role":"user","content":"caf\\u00e9 1.50"}], "temperature":1.0}'

    assert post(live_server, editor_key, body).status_code == 200
    (log,) = logs_of(proxied)
    assert log.original.startswith('{"provider":"openai","request":' + body.decode() + ',"response":')


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ("wrong-type", "response.choices: expected a list, got a string"),
        (
            "not-json",
            "response: expected an object, a stream (a list of its events, or their text) or null, got a string",
        ),
    ],
)
def test_a_call_no_reader_can_read_is_kept_as_unreadable_with_its_reason(
    live_server, celery_worker, proxied, stand_in, editor_key, model, reason
):
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()

    assert post(live_server, editor_key, body).content == SHAPES[model]  # the caller gets what the upstream said

    (log,) = logs_of(proxied)
    assert (log.status, log.error_message, log.status_code) == ("unreadable", reason, 200)
    original = json.loads(log.original)
    assert original["request"]["model"] == model
    assert original["response"] == (SHAPES[model].decode() if model == "not-json" else json.loads(SHAPES[model]))
    assert LogEntry.objects.filter(project=proxied, status="unreadable").count() == 1


def test_an_anthropic_sdk_error_answer_is_still_a_log(live_server, celery_worker, proxied, stand_in, editor_key):
    with pytest.raises(anthropic.BadRequestError):
        anthropic_client(live_server, editor_key).messages.create(
            model="error-400", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )

    (log,) = logs_of(proxied)
    assert (log.status, log.status_code) == ("error", 400)


def test_an_upstreams_cookie_is_never_sent_with_a_later_call(
    live_server, celery_worker, proxied, stand_in, editor_key
):
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()

    post(live_server, editor_key, body)  # the stand-in answers with Set-Cookie: upstream=1
    post(live_server, editor_key, body)

    assert [seen.headers.get("cookie") for seen in stand_in.seen] == [None, None]
    logs_of(proxied, count=2)


def test_proxied_calls_count_against_the_keys_ingest_rate(live_server, celery_worker, proxied, stand_in, editor_key,
                                                          settings):  # fmt: skip
    settings.LOGTUNE_INGEST_RATE = "3/hour"
    cache.clear()
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()

    answers = [post(live_server, editor_key, body) for _ in range(5)]

    assert [answer.status_code for answer in answers] == [200, 200, 200, 429, 429]
    refused = answers[-1]
    assert int(refused.headers["retry-after"]) > 0
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert "3 ingest requests per hour" in refused.json()["error"]["message"]
    assert len(stand_in.seen) == 3  # a refused call is not forwarded
    logs_of(proxied, count=3)
    cache.clear()
