"""A log's `response` posted as the stream the client read: Chat Completions chunks, Anthropic Messages events or
Responses API events, each built with the installed SDKs' own types. The stored conversation must be the one the
same call gives unstreamed. Pure Python: no Django, no database."""

import orjson
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from curation.logs.ingest import IngestError, ParsedLog, parse_log

CHAT_REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Weather in Paris?"}]}
TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}
USAGE = {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}


def chunk(delta: dict, finish: str | None = None, index: int = 0) -> dict:
    """One Chat Completions chunk as the SDK hands it over (every field, nulls included)."""
    return ChatCompletionChunk.model_validate(
        {
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1767225600, "model": "gpt-4o-mini",
            "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
        }
    ).model_dump(mode="json")  # fmt: skip


def usage_chunk() -> dict:
    return ChatCompletionChunk.model_validate(
        {
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1767225600, "model": "gpt-4o-mini",
            "choices": [], "usage": USAGE,
        }
    ).model_dump(mode="json")  # fmt: skip


def completion(*messages: tuple[dict, str]) -> dict:
    """The same call unstreamed: one choice per (message, finish_reason)."""
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1767225600, "model": "gpt-4o-mini",
            "choices": [
                {"index": index, "message": {"role": "assistant", **message}, "finish_reason": finish}
                for index, (message, finish) in enumerate(messages)
            ],
            "usage": USAGE,
        }
    ).model_dump(mode="json")  # fmt: skip


def assert_same_conversation(streamed: ParsedLog, unstreamed: ParsedLog) -> None:
    fields = (
        "provider", "format", "model", "messages", "tools", "status", "error_message", "finish_reason",
        "prompt_tokens", "completion_tokens", "total_tokens", "created_at", "response_model", "alternatives",
    )  # fmt: skip
    assert {name: getattr(streamed, name) for name in fields} == {name: getattr(unstreamed, name) for name in fields}


def test_chat_chunks_with_text_and_usage_give_the_unstreamed_conversation():
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Sunny, "}),
        chunk({"content": "22 °C."}),
        chunk({}, "stop"),
        usage_chunk(),
    ]
    sent = {"request": CHAT_REQUEST, "response": chunks}

    streamed = parse_log(sent, text=orjson.dumps(sent).decode())
    unstreamed = parse_log({"request": CHAT_REQUEST, "response": completion(({"content": "Sunny, 22 °C."}, "stop"))})

    assert_same_conversation(streamed, unstreamed)
    assert streamed.messages[-1] == {"role": "assistant", "content": "Sunny, 22 °C."}
    assert (streamed.prompt_tokens, streamed.completion_tokens) == (20, 9)
    assert streamed.metadata == {"stream": True, "complete": True}
    assert streamed.original_text == orjson.dumps(sent).decode()
    assert streamed.original == sent


def test_chat_tool_call_chunks_give_the_unstreamed_tool_call():
    request = {**CHAT_REQUEST, "tools": [TOOL]}
    start = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    chunks = [
        chunk({"role": "assistant", "tool_calls": [start]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk({}, "tool_calls"),
        usage_chunk(),
        "[DONE]",
    ]
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}

    streamed = parse_log({"request": request, "response": chunks})
    unstreamed = parse_log(
        {"request": request, "response": completion(({"content": None, "tool_calls": [call]}, "tool_calls"))}
    )

    assert_same_conversation(streamed, unstreamed)
    assert streamed.messages[-1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Paris"}'
    assert streamed.finish_reason == "tool_calls"


def test_a_refusal_streamed_is_the_unstreamed_refusal():
    chunks = [
        chunk({"role": "assistant", "refusal": "I can't "}),
        chunk({"refusal": "help."}),
        chunk({}, "stop"),
        usage_chunk(),
    ]

    streamed = parse_log({"request": CHAT_REQUEST, "response": chunks})
    unstreamed = parse_log(
        {"request": CHAT_REQUEST, "response": completion(({"content": None, "refusal": "I can't help."}, "stop"))}
    )

    assert_same_conversation(streamed, unstreamed)
    assert streamed.messages[-1]["refusal"] == "I can't help."


def test_chunks_of_several_choices_give_the_first_choice_as_unstreamed_does():
    chunks = [
        chunk({"role": "assistant", "content": "Rain"}, index=1),
        chunk({"role": "assistant", "content": "Sun"}),
        chunk({"content": "ny."}),
        chunk({"content": "y."}, "stop", index=1),
        chunk({}, "stop"),
        usage_chunk(),
    ]

    streamed = parse_log({"request": {**CHAT_REQUEST, "n": 2}, "response": chunks})
    unstreamed = parse_log(
        {
            "request": {**CHAT_REQUEST, "n": 2},
            "response": completion(({"content": "Sunny."}, "stop"), ({"content": "Rainy."}, "stop")),
        }
    )

    assert_same_conversation(streamed, unstreamed)
    assert streamed.messages[-1]["content"] == "Sunny."
    assert [choice["message"]["content"] for choice in streamed.alternatives] == ["Rainy."]


def test_a_stream_cut_off_is_kept_with_what_arrived_and_marked_incomplete():
    chunks = [chunk({"role": "assistant", "content": "Sunny, "}), chunk({"content": "22"})]

    log = parse_log({"request": CHAT_REQUEST, "response": chunks})

    assert log.messages[-1] == {"role": "assistant", "content": "Sunny, 22"}
    assert (log.status, log.finish_reason, log.prompt_tokens) == ("success", "", None)
    assert log.metadata == {"stream": True, "complete": False}


def test_an_empty_stream_is_a_call_with_no_response():
    log = parse_log({"request": CHAT_REQUEST, "response": []})

    assert (log.status, log.error_message) == ("error", "no response")
    assert log.metadata == {"stream": True, "complete": False}


def test_the_callers_own_metadata_wins_over_the_stream_record():
    log = parse_log({"request": CHAT_REQUEST, "response": [chunk({}, "stop")], "metadata": {"complete": "yes"}})

    assert log.metadata == {"stream": True, "complete": "yes"}


def test_chunks_without_their_object_field_are_read_by_their_deltas():
    chunks = [{"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": "stop"}]}]

    log = parse_log({"request": CHAT_REQUEST, "response": chunks})

    assert log.messages[-1] == {"role": "assistant", "content": "Hi"}
    assert log.metadata == {"stream": True, "complete": True}


def test_server_sent_event_text_is_read_as_its_chunks():
    chunks = [chunk({"role": "assistant", "content": "Hi"}), chunk({}, "stop")]
    text = "".join(f"data: {orjson.dumps(c).decode()}\n\n" for c in chunks) + "data: [DONE]\n\n"

    streamed = parse_log({"request": CHAT_REQUEST, "response": text})

    assert streamed.messages[-1] == {"role": "assistant", "content": "Hi"}
    assert streamed.metadata == {"stream": True, "complete": True}


@pytest.mark.parametrize(
    ("response", "error"),
    [
        ([1, 2, 3], "response.0: expected a stream event (an object), got a number"),
        ([chunk({"content": "a"}), None], "response.1: expected a stream event (an object), got null"),
        ([{"hello": "world"}], "response.0: not a stream event: expected a Chat Completions chunk"),
        ([completion(({"content": "4"}, "stop"))], "response.0: not a stream event: expected a Chat Completions"),
        ("data: {}\n\ndata: oops\n\n", "response (server-sent event 1): expected a stream event (an object), got a"),
        ("Sunny", "response: expected an object, a stream (a list of its events, or their text) or null, got a"),
    ],
)
def test_a_response_that_is_no_stream_is_refused_naming_the_event(response, error):
    with pytest.raises(IngestError) as caught:
        parse_log({"request": CHAT_REQUEST, "response": response})

    assert str(caught.value).startswith(error)


# --- Anthropic Messages -----------------------------------------------------------------------------------------

ANTHROPIC_REQUEST = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 256,
    "messages": [{"role": "user", "content": "Weather in Paris?"}],
    "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
}
_ANTHROPIC_EVENT: TypeAdapter = TypeAdapter(RawMessageStreamEvent)


def anthropic_events(*events: dict) -> list[dict]:
    return [_ANTHROPIC_EVENT.validate_python(event).model_dump(mode="json") for event in events]


def anthropic_stream(*, cut: int | None = None) -> list[dict]:
    start = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 30, "output_tokens": 1},
    }  # fmt: skip
    tool = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
    events = anthropic_events(
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me "}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "check."}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": tool},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"ci'}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": 'ty": "Paris"}'}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
         "usage": {"output_tokens": 40}},
        {"type": "message_stop"},
    )  # fmt: skip
    return events[:cut]


def test_anthropic_events_give_the_unstreamed_message_with_its_tool_use_and_usage():
    message = Message.model_validate(
        {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
            "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 30, "output_tokens": 40},
        }
    ).model_dump(mode="json")  # fmt: skip

    streamed = parse_log({"request": ANTHROPIC_REQUEST, "response": anthropic_stream()})
    unstreamed = parse_log({"request": ANTHROPIC_REQUEST, "response": message})

    assert_same_conversation(streamed, unstreamed)
    assert streamed.provider == "anthropic" and streamed.format == "anthropic_messages"
    assert orjson.loads(streamed.messages[-1]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert (streamed.prompt_tokens, streamed.completion_tokens) == (30, 40)
    assert streamed.metadata == {"stream": True, "complete": True}


def test_an_anthropic_stream_cut_off_keeps_the_text_that_arrived():
    log = parse_log({"request": ANTHROPIC_REQUEST, "response": anthropic_stream(cut=4)})

    assert log.messages[-1] == {"role": "assistant", "content": "Let me check."}
    assert log.provider == "anthropic" and log.metadata == {"stream": True, "complete": False}


def test_an_anthropic_error_event_in_a_stream_makes_an_error_log():
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

    log = parse_log({"request": ANTHROPIC_REQUEST, "response": [*anthropic_stream(cut=3), error]})

    assert (log.status, log.provider) == ("error", "anthropic")
    assert "Overloaded" in log.error_message


# --- OpenAI Responses API ---------------------------------------------------------------------------------------

RESPONSES_REQUEST = {"model": "gpt-5", "input": "Weather in Paris?"}
_RESPONSES_EVENT: TypeAdapter = TypeAdapter(ResponseStreamEvent)


def response_body(output: list[dict], status: str) -> dict:
    return Response.model_validate(
        {
            "id": "resp_1", "object": "response", "created_at": 1767225600, "model": "gpt-5", "output": output,
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "status": status,
            "usage": {"input_tokens": 12, "output_tokens": 6, "total_tokens": 18,
                      "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 0}},
        }
    ).model_dump(mode="json")  # fmt: skip


def responses_stream(*, cut: int | None = None) -> tuple[list[dict], dict]:
    done = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": "Sunny.", "annotations": []}]}  # fmt: skip
    started = {**done, "status": "in_progress", "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    at = {"item_id": "msg_1", "output_index": 0}
    events = [
        {"type": "response.created", "response": response_body([], "in_progress")},
        {"type": "response.output_item.added", "output_index": 0, "item": started},
        {"type": "response.content_part.added", **at, "content_index": 0, "part": part},
        {"type": "response.output_text.delta", **at, "content_index": 0, "delta": "Sun", "logprobs": []},
        {"type": "response.output_text.delta", **at, "content_index": 0, "delta": "ny.", "logprobs": []},
        {"type": "response.output_item.done", "output_index": 0, "item": done},
        {"type": "response.completed", "response": response_body([done], "completed")},
    ]
    dumped = [
        _RESPONSES_EVENT.validate_python({**event, "sequence_number": number}).model_dump(mode="json")
        for number, event in enumerate(events)
    ]
    return dumped[:cut], response_body([done], "completed")


def test_responses_events_give_the_unstreamed_response():
    events, unstreamed_body = responses_stream()

    streamed = parse_log({"request": RESPONSES_REQUEST, "response": events})
    unstreamed = parse_log({"request": RESPONSES_REQUEST, "response": unstreamed_body})

    assert_same_conversation(streamed, unstreamed)
    assert streamed.format == "openai_responses" and streamed.messages[-1]["content"] == "Sunny."
    assert streamed.metadata == {"response_id": "resp_1", "stream": True, "complete": True}


def test_a_responses_stream_cut_off_keeps_the_text_deltas_that_arrived():
    events, _ = responses_stream(cut=4)

    log = parse_log({"request": RESPONSES_REQUEST, "response": events})

    assert log.format == "openai_responses"
    assert log.messages[-1] == {"role": "assistant", "content": "Sun"}
    assert log.metadata["complete"] is False


@pytest.mark.parametrize(
    ("request_body", "error"),
    [
        (CHAT_REQUEST, {"error": {"message": "Overloaded", "type": "server_error"}}),
        (ANTHROPIC_REQUEST, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        (
            RESPONSES_REQUEST,
            {"type": "error", "code": "server_error", "message": "Overloaded", "param": None, "sequence_number": 0},
        ),
    ],
    ids=["chat", "anthropic", "responses"],
)
def test_a_stream_holding_only_an_error_event_is_an_error_log(request_body, error):
    log = parse_log({"request": request_body, "response": [error]})

    assert log.status == "error" and "Overloaded" in log.error_message
    assert log.metadata["complete"] is True
