"""Streamed answers folded into the one response the provider would have sent unstreamed, for the log."""

from curation.logs.ingest.streams import assemble_anthropic, assemble_openai, sse_events


def chunk(delta: dict, finish: str | None = None, index: int = 0) -> dict:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }


def test_server_sent_events_are_read_with_their_names_across_crlf_and_multi_line_data():
    text = 'event: a\r\ndata: {"x": 1}\r\n\r\n: a comment\n\n'
    text += "event: b\ndata: line one\ndata: line two\n\ndata: [DONE]\n\n"

    assert sse_events(text) == [("a", {"x": 1}), ("b", "line one\nline two"), ("", "[DONE]")]


def test_openai_parallel_tool_calls_and_two_choices_are_assembled():
    events = [
        ("", chunk({"role": "assistant", "content": None})),
        (
            "",
            chunk(
                {
                    "tool_calls": [
                        {"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": ""}},
                        {"index": 1, "id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
                    ]
                }
            ),
        ),
        ("", chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"q": 1}'}}]})),
        ("", chunk({"content": "other"}, index=1)),
        ("", chunk({}, "tool_calls")),
        ("", chunk({}, "stop", index=1)),
        ("", "[DONE]"),
    ]

    response = assemble_openai(events)

    assert response is not None
    assert response["object"] == "chat.completion" and response["model"] == "gpt-4o"
    first, second = response["choices"]
    assert first["message"]["content"] is None
    assert first["message"]["tool_calls"] == [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"q": 1}'}},
        {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]
    assert first["finish_reason"] == "tool_calls"
    assert (second["message"]["content"], second["finish_reason"]) == ("other", "stop")


def test_an_error_in_the_middle_of_an_openai_stream_is_the_response():
    error = {"error": {"message": "overloaded", "type": "server_error"}}

    assert assemble_openai([("", chunk({"content": "Hel"})), ("", error)]) == error


def test_an_empty_stream_assembles_to_no_response():
    assert assemble_openai([]) is None
    assert assemble_anthropic([]) is None


def test_anthropic_thinking_and_a_cut_off_tool_input_are_kept():
    events = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "m",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude",
                    "content": [],
                    "usage": {"input_tokens": 3},
                },
            },
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm"}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}},
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"a": '},
            },
        ),
    ]

    message = assemble_anthropic(events)

    assert message is not None
    assert message["content"] == [
        {"type": "thinking", "thinking": "Hmm", "signature": "sig"},
        {"type": "tool_use", "id": "t", "name": "f", "input": {}},  # the stream stopped inside the JSON
    ]
    assert message["usage"] == {"input_tokens": 3}
