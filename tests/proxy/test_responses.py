"""The OpenAI Responses API through the logging proxy: the official SDK's `client.responses`, pointed at the app
(live_server), against a stand-in upstream; the logs are stored by a real Celery worker, as in production."""

import json
from collections.abc import Iterator

import openai
import pytest

from curation.logs.ingest.streams import assemble, sse_events
from tests.proxy.conftest import PROVIDER_KEY
from tests.proxy.test_proxy import assert_no_secrets, logs_of
from tests.proxy.upstream import RESPONSES_ANSWER, responses_events


@pytest.fixture
def client(live_server, editor_key: str) -> Iterator[openai.OpenAI]:
    # Closed after the test: a keep-alive connection left open would keep the live server's thread alive.
    with openai.OpenAI(
        base_url=f"{live_server.url}/proxy/openai/v1", api_key=PROVIDER_KEY,
        default_headers={"X-Logtune-Key": editor_key}, max_retries=0,
    ) as client:  # fmt: skip
        yield client


@pytest.mark.services
def test_a_responses_call_gets_the_upstreams_answer_and_is_logged(celery_worker, proxied, stand_in, client,
                                                                  editor_key):  # fmt: skip
    raw = client.responses.with_raw_response.create(
        model="gpt-5-mini", instructions="Be brief.", input="Say hello.", extra_headers={"X-Logtune-Tags": "sdk"}
    )

    assert raw.http_response.content == stand_in.sent[0]
    assert raw.parse().output_text == "Hello from the stand-in."
    seen = stand_in.seen[0]
    assert seen.path == "/v1/responses"
    assert seen.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert json.loads(seen.body) == {"input": "Say hello.", "instructions": "Be brief.", "model": "gpt-5-mini"}
    (log,) = logs_of(proxied)
    assert (log.provider, log.format, log.status, log.model) == ("openai", "openai_responses", "success", "gpt-5-mini")
    assert log.original_value["response"] == json.loads(stand_in.sent[0])
    assert [message["role"] for message in log.messages] == ["system", "user", "assistant"]
    assert log.messages[-1]["content"] == "Hello from the stand-in."
    assert log.messages[-1]["reasoning"][0]["summary"][0]["text"] == "A greeting."
    assert (log.prompt_tokens, log.completion_tokens, log.total_tokens, log.finish_reason) == (9, 5, 14, "completed")
    assert log.metadata["response_id"] == "resp_standin1" and log.metadata["proxy"]["stream"] is False
    assert list(log.tags.values_list("name", flat=True)) == ["sdk"]
    assert_no_secrets(log, PROVIDER_KEY, editor_key)


@pytest.mark.services
def test_a_streamed_responses_call_arrives_event_by_event_and_is_logged_as_its_completed_response(
    celery_worker, proxied, stand_in, client
):
    events = list(client.responses.create(model="gpt-5-mini", input="Say hello.", stream=True))

    assert [event.type for event in events][:3] == ["response.created", "response.in_progress",
                                                    "response.output_item.added"]  # fmt: skip
    assert [event.delta for event in events if event.type == "response.output_text.delta"] == [
        "Hello",
        " from",
        " the",
        " stand-in.",
    ]
    assert events[-1].type == "response.completed"
    (log,) = logs_of(proxied)
    assert log.original_value["response"]["status"] == "completed"
    assert log.original_value["response"]["output"][0]["content"][0]["text"] == "Hello from the stand-in."
    assert (log.format, log.status, log.total_tokens) == ("openai_responses", "success", 14)
    assert log.messages[-1] == {"role": "assistant", "content": "Hello from the stand-in."}
    assert log.metadata["proxy"]["stream"] is True and log.metadata["proxy"]["complete"] is True


@pytest.mark.services
def test_a_streamed_function_call_through_the_sdks_stream_helper_is_logged_as_a_tool_call(
    celery_worker, proxied, stand_in, client
):
    tool = {"type": "function", "name": "lookup_order", "parameters": {"type": "object", "properties": {}}}
    with client.responses.stream(model="tools", input="Where is order 48213?", tools=[tool]) as stream:  # type: ignore[list-item]
        final = stream.get_final_response()

    assert final.output[0].type == "function_call"
    assert final.output[0].arguments == '{"order_id": "48213"}'
    (log,) = logs_of(proxied)
    assert log.messages[-1]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "lookup_order", "arguments": '{"order_id": "48213"}'},
        }
    ]
    assert log.tools == [{"type": "function", "function": {"name": "lookup_order", "parameters": tool["parameters"]}}]


@pytest.mark.services
def test_an_upstream_error_to_a_responses_call_is_returned_as_is_and_logged(celery_worker, proxied, stand_in, client):
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="error-429", input="Hi")

    (log,) = logs_of(proxied)
    assert (log.format, log.status, log.status_code, log.error_message) == (
        "openai_responses", "error", 429, "Rate limit reached"
    )  # fmt: skip


# --- assembly, without a server ------------------------------------------------------------------------------


def as_sse(events: list[tuple[str, dict]]) -> str:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)


def test_a_finished_stream_is_its_final_events_response():
    response = assemble("openai", sse_events(as_sse(responses_events("gpt-5-mini", tools=False))))

    assert response == {**RESPONSES_ANSWER, "model": "gpt-5-mini", "output": [response["output"][0]]}  # type: ignore[index]
    assert response["output"][0]["content"][0]["text"] == "Hello from the stand-in."  # type: ignore[index]


@pytest.mark.parametrize("tools", [False, True])
def test_a_stream_cut_short_is_its_last_snapshot_with_the_deltas_that_arrived(tools: bool):
    events = responses_events("gpt-5-mini", tools=tools)
    arrived = (".created", ".in_progress", ".output_item.added", ".content_part.added", ".delta")
    cut = [event for event in events if event[0].endswith(arrived)]  # no done events, no ending

    response = assemble("openai", sse_events(as_sse(cut)))

    assert response is not None and response["status"] == "in_progress"
    (item,) = response["output"]
    if tools:
        assert item["arguments"] == '{"order_id": "48213"}'
    else:
        assert item["content"] == [{"type": "output_text", "text": "Hello from the stand-in.", "annotations": []}]


def test_an_error_event_in_a_responses_stream_is_the_response():
    events = [
        ("response.created", {"type": "response.created", "response": {**RESPONSES_ANSWER, "output": []}}),
        ("error", {"type": "error", "code": "server_error", "message": "Overloaded.", "param": None}),
    ]

    assert assemble("openai", events) == {"error": {"code": "server_error", "message": "Overloaded.", "param": None}}
