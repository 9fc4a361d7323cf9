"""The logging proxy end to end: the official SDKs, pointed at the app (live_server), against a stand-in upstream;
the logs are stored by a real Celery worker, as in production."""

import json
import logging
import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest
from django.forms.models import model_to_dict

from curation.models import LogEntry, Project, Role
from curation.projects.services import api_key_create
from tests.factories import ProjectFactory
from tests.proxy.conftest import ANTHROPIC_PROVIDER_KEY, PROVIDER_KEY
from tests.proxy.upstream import ANTHROPIC_ERRORS, OPENAI_ERRORS

pytestmark = pytest.mark.services
CHAT = [{"role": "user", "content": "Say hello."}]


# The SDK clients of a test, closed after it: a keep-alive connection left open would keep the live server's
# thread, and its database connection, alive past the end of the tests.
_clients: list[openai.OpenAI | anthropic.Anthropic] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def openai_client(live_server, key: str, headers: dict[str, str] | None = None) -> openai.OpenAI:
    client = openai.OpenAI(
        base_url=f"{live_server.url}/proxy/openai/v1", api_key=PROVIDER_KEY,
        default_headers={"X-Logtune-Key": key} if headers is None else headers, max_retries=0,
    )  # fmt: skip
    _clients.append(client)
    return client


def anthropic_client(live_server, key: str) -> anthropic.Anthropic:
    client = anthropic.Anthropic(
        base_url=f"{live_server.url}/proxy/anthropic", api_key=ANTHROPIC_PROVIDER_KEY,
        default_headers={"X-Logtune-Key": key}, max_retries=0,
    )  # fmt: skip
    _clients.append(client)
    return client


def logs_of(project: Project, count: int = 1, seconds: float = 30) -> list[LogEntry]:
    """The project's logs once `count` are stored: the worker stores them after the answer was sent."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        logs = list(LogEntry.objects.filter(project=project).order_by("id"))
        if len(logs) >= count:
            return logs
        time.sleep(0.05)
    raise AssertionError(f"{len(logs)} logs stored in {project.slug} after {seconds}s, expected {count}")


def assert_no_secrets(log: LogEntry, *secrets: str) -> None:
    stored = json.dumps(model_to_dict(log), default=str)
    for secret in secrets:
        assert secret not in stored


# --- OpenAI ------------------------------------------------------------------------------------------------


def test_an_openai_call_gets_the_upstreams_answer_and_is_logged(live_server, celery_worker, proxied, stand_in,
                                                                 editor_key):  # fmt: skip
    raw = openai_client(live_server, editor_key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=CHAT, extra_headers={"X-Logtune-Tags": f"greeting, sdk,, {'x' * 101}"}
    )

    assert raw.http_response.content == stand_in.sent[0]
    assert raw.parse().choices[0].message.content == "Hello from the stand-in."
    assert raw.headers["x-request-id"] == "req_1"
    assert "set-cookie" not in raw.headers
    seen = stand_in.seen[0]
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert not {"x-logtune-key", "x-logtune-tags", "cookie"} & seen.headers.keys()
    assert json.loads(seen.body) == {"model": "gpt-4o-mini", "messages": CHAT}
    (log,) = logs_of(proxied)
    assert (log.provider, log.status, log.status_code, log.model) == ("openai", "success", 200, "gpt-4o-mini")
    assert log.original_value["response"] == json.loads(stand_in.sent[0])
    assert log.messages[-1] == {"role": "assistant", "content": "Hello from the stand-in."}
    assert (log.prompt_tokens, log.completion_tokens) == (9, 5)
    assert log.latency_ms is not None
    assert log.metadata["proxy"]["stream"] is False
    assert sorted(log.tags.values_list("name", flat=True)) == ["greeting", "sdk"]
    assert_no_secrets(log, PROVIDER_KEY, editor_key)


def test_a_streamed_openai_call_arrives_chunk_by_chunk_and_is_logged_assembled(
    live_server, celery_worker, proxied, stand_in, editor_key
):
    stream = openai_client(live_server, editor_key).chat.completions.create(
        model="gpt-4o-mini", messages=CHAT, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    deltas = [c.choices[0].delta.content for c in chunks if c.choices]
    assert deltas == ["", "Hello", " from", " the", " stand-in.", None]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 13
    (log,) = logs_of(proxied)
    response = log.original_value["response"]
    assert response["object"] == "chat.completion"
    assert response["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "Hello from the stand-in."}, "finish_reason": "stop"}
    ]
    assert response["usage"]["total_tokens"] == 13
    assert (log.status, log.finish_reason, log.total_tokens) == ("success", "stop", 13)
    assert log.metadata["proxy"]["stream"] is True and log.metadata["proxy"]["complete"] is True
    assert_no_secrets(log, PROVIDER_KEY, editor_key)


def test_a_stream_is_passed_on_byte_for_byte_as_it_arrives(live_server, celery_worker, proxied, stand_in, editor_key):
    stand_in.go_on.clear()  # the stand-in holds the stream after its first event
    url = f"{live_server.url}/proxy/openai/v1/chat/completions"
    headers = {"X-Logtune-Key": editor_key, "Authorization": f"Bearer {PROVIDER_KEY}"}
    body = {"model": "tools", "messages": CHAT, "stream": True}
    with httpx.stream("POST", url, json=body, headers=headers, timeout=20) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        parts = response.iter_raw()
        first = next(parts)
        assert first.startswith(b"data: ") and first.endswith(b"\n\n")  # it came while the upstream held the rest
        stand_in.go_on.set()
        received = first + b"".join(parts)

    assert received == stand_in.sent[0]
    (log,) = logs_of(proxied)
    message = log.original_value["response"]["choices"][0]["message"]
    function = {"name": "lookup_order", "arguments": '{"order_id": "48213"}'}
    assert message["tool_calls"] == [{"id": "call_1", "type": "function", "function": function}]
    assert log.finish_reason == "tool_calls"
    assert log.messages[-1]["tool_calls"][0]["function"]["name"] == "lookup_order"


def test_an_upstream_error_is_returned_as_is_and_logged_with_its_status(live_server, celery_worker, proxied,
                                                                        stand_in, editor_key):  # fmt: skip
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client(live_server, editor_key).chat.completions.create(model="error-429", messages=CHAT)

    assert caught.value.response.status_code == 429
    assert caught.value.response.content == stand_in.sent[0]
    assert caught.value.response.headers["retry-after"] == "7"
    (log,) = logs_of(proxied)
    assert (log.status, log.status_code, log.error_message) == ("error", 429, "Rate limit reached")
    assert log.original_value["response"] == OPENAI_ERRORS["error-429"][1]


def test_an_unreachable_upstream_is_answered_502_in_the_providers_shape_and_logged(
    live_server, celery_worker, proxied, editor_key, settings
):
    settings.LOGTUNE_PROXY_UPSTREAM_HOSTS = ["127.0.0.1:9"]
    proxied.openai_base_url = "http://127.0.0.1:9/v1"  # the discard port: nothing listens
    proxied.save()

    with pytest.raises(openai.APIStatusError) as caught:
        openai_client(live_server, editor_key).chat.completions.create(model="gpt-4o-mini", messages=CHAT)

    assert caught.value.status_code == 502
    assert "could not be reached" in caught.value.response.json()["error"]["message"]
    (log,) = logs_of(proxied)
    assert (log.status, log.status_code) == ("error", 502)


# --- Anthropic ---------------------------------------------------------------------------------------------


def test_an_anthropic_call_gets_the_upstreams_answer_and_is_logged(live_server, celery_worker, proxied, stand_in,
                                                                    editor_key):  # fmt: skip
    raw = anthropic_client(live_server, editor_key).messages.with_raw_response.create(
        model="claude-3-5-haiku-20241022", max_tokens=64, messages=CHAT
    )

    assert raw.http_response.content == stand_in.sent[0]
    assert raw.parse().content[0].text == "Hello from the stand-in."  # type: ignore[union-attr]
    seen = stand_in.seen[0]
    assert seen.path == "/v1/messages"
    # Whichever header this SDK version carries the key in (x-api-key, or Authorization: Bearer), it arrives.
    sent_key = seen.headers.get("x-api-key") or seen.headers.get("authorization", "").removeprefix("Bearer ")
    assert sent_key == ANTHROPIC_PROVIDER_KEY
    assert "anthropic-version" in seen.headers
    assert "x-logtune-key" not in seen.headers
    (log,) = logs_of(proxied)
    assert (log.provider, log.format, log.status) == ("anthropic", "anthropic_messages", "success")
    assert log.status_code == 200
    assert log.original_value["response"] == json.loads(stand_in.sent[0])
    assert log.messages[-1]["content"] == "Hello from the stand-in."
    assert_no_secrets(log, ANTHROPIC_PROVIDER_KEY, editor_key)


def test_a_streamed_anthropic_call_arrives_in_order_and_is_logged_assembled(live_server, celery_worker, proxied,
                                                                            stand_in, editor_key):  # fmt: skip
    client = anthropic_client(live_server, editor_key)
    with client.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=64, messages=CHAT) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()

    assert texts == ["Let me", " look", " that up."]
    assert final.stop_reason == "tool_use"
    (log,) = logs_of(proxied)
    response = log.original_value["response"]
    assert response["content"] == [
        {"type": "text", "text": "Let me look that up."},
        {"type": "tool_use", "id": "toolu_1", "name": "lookup_order", "input": {"order_id": "48213"}},
    ]
    assert response["stop_reason"] == "tool_use"
    assert response["usage"] == {"input_tokens": 9, "output_tokens": 12}
    assert (log.status, log.finish_reason, log.prompt_tokens, log.completion_tokens) == ("success", "tool_use", 9, 12)
    assert log.messages[-1]["tool_calls"][0]["function"]["name"] == "lookup_order"
    assert_no_secrets(log, ANTHROPIC_PROVIDER_KEY, editor_key)


def test_an_anthropic_error_is_returned_as_is_and_logged(live_server, celery_worker, proxied, stand_in, editor_key):
    with pytest.raises(anthropic.BadRequestError) as caught:
        anthropic_client(live_server, editor_key).messages.create(model="error-400", max_tokens=64, messages=CHAT)

    assert caught.value.response.content == stand_in.sent[0]
    (log,) = logs_of(proxied)
    assert (log.status, log.status_code, log.error_message) == ("error", 400, "max_tokens: required")
    assert log.original_value["response"] == ANTHROPIC_ERRORS["error-400"][1]


# --- Keys, roles, projects ----------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "lt_not_a_real_key", "sk-looks-like-a-provider-key"])
def test_a_call_without_a_valid_logtune_key_is_refused_and_forwards_nothing(live_server, proxied, stand_in, header):
    client = openai_client(live_server, "", headers={"X-Logtune-Key": header} if header else {})
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=CHAT)

    assert caught.value.status_code == 401
    assert "Logtune" in caught.value.response.json()["error"]["message"]
    assert stand_in.seen == []


def test_a_viewer_key_is_refused_in_the_providers_shape(live_server, proxied, stand_in):
    viewer_key = api_key_create(project=proxied, name="reader", role=Role.VIEWER)[1]

    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        anthropic_client(live_server, viewer_key).messages.create(model="m", max_tokens=8, messages=CHAT)

    assert caught.value.response.json()["error"]["type"] == "permission_error"
    assert stand_in.seen == []


def test_a_revoked_key_is_refused(live_server, proxied, stand_in):
    from curation.projects.services import api_key_revoke

    key, raw = api_key_create(project=proxied, name="old", role=Role.EDITOR)
    api_key_revoke(key=key)

    with pytest.raises(openai.AuthenticationError):
        openai_client(live_server, raw).chat.completions.create(model="gpt-4o-mini", messages=CHAT)
    assert stand_in.seen == []


def test_a_browser_session_opens_nothing(proxied, stand_in, owner, client):
    client.force_login(owner)

    response = client.post("/proxy/openai/v1/chat/completions", {"model": "m", "messages": CHAT},
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {PROVIDER_KEY}")  # fmt: skip

    assert response.status_code == 401
    assert stand_in.seen == []


def test_the_key_decides_the_project_its_upstream_and_where_the_log_goes(live_server, celery_worker, proxied,
                                                                         stand_in, editor_key):  # fmt: skip
    other = ProjectFactory(slug="other", name="Other", openai_base_url=f"{stand_in.url}/elsewhere/v1")
    other_key = api_key_create(project=other, name="their app", role=Role.EDITOR)[1]

    openai_client(live_server, other_key).chat.completions.create(model="gpt-4o-mini", messages=CHAT)

    assert stand_in.seen[0].path == "/elsewhere/v1/chat/completions"
    (log,) = logs_of(other)
    assert log.metadata["proxy"]["upstream"] == f"{stand_in.url}/elsewhere/v1/chat/completions"
    assert not LogEntry.objects.filter(project=proxied).exists()


def test_an_upstream_host_the_server_does_not_allow_is_never_called(live_server, proxied, stand_in, editor_key,
                                                                    settings):  # fmt: skip
    settings.LOGTUNE_PROXY_UPSTREAM_HOSTS = ["api.openai.com"]  # narrowed after the project saved its URL

    with pytest.raises(openai.APIStatusError) as caught:
        openai_client(live_server, editor_key).chat.completions.create(model="gpt-4o-mini", messages=CHAT)

    assert caught.value.status_code == 502
    assert "LOGTUNE_PROXY_UPSTREAM_HOSTS" in caught.value.response.json()["error"]["message"]
    assert stand_in.seen == []


def test_the_call_succeeds_and_is_logged_when_the_broker_is_down(
    live_server, proxied, stand_in, editor_key, monkeypatch, caplog
):
    from kombu.exceptions import OperationalError

    from curation.proxy.tasks import proxy_log_store_task

    def broker_down(*args: object, **kwargs: object) -> None:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(proxy_log_store_task, "apply_async", broker_down)
    caplog.set_level(logging.WARNING, logger="curation.proxy.services")

    answer = openai_client(live_server, editor_key).chat.completions.create(model="gpt-4o-mini", messages=CHAT)

    assert answer.choices[0].message.content == "Hello from the stand-in."
    deadline = time.monotonic() + 10
    while not any(r.message == "proxy.log_stored_in_process" for r in caplog.records) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r.message for r in caplog.records if r.message.startswith("proxy.log")] == [
        "proxy.log_not_queued",
        "proxy.log_stored_in_process",
    ]
    (log,) = logs_of(proxied)
    assert log.messages[-1] == {"role": "assistant", "content": "Hello from the stand-in."}
    assert_no_secrets(log, PROVIDER_KEY, editor_key)


def test_an_x_api_key_header_is_forwarded_untouched(live_server, celery_worker, proxied, stand_in, editor_key):
    headers = {"X-Logtune-Key": editor_key, "x-api-key": ANTHROPIC_PROVIDER_KEY, "anthropic-version": "2023-06-01"}
    body = {"model": "claude-3-5-haiku-20241022", "max_tokens": 8, "messages": CHAT}

    response = httpx.post(f"{live_server.url}/proxy/anthropic/v1/messages", json=body, headers=headers, timeout=20)

    assert response.status_code == 200
    assert stand_in.seen[0].headers["x-api-key"] == ANTHROPIC_PROVIDER_KEY
    assert stand_in.seen[0].headers["anthropic-version"] == "2023-06-01"
    assert_no_secrets(logs_of(proxied)[0], ANTHROPIC_PROVIDER_KEY, editor_key)
