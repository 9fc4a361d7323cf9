"""Reading provider-shaped logs into the canonical conversation. Pure Python: no Django, no database."""

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from curation.logs.ingest import IngestError, parse_log

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> dict:
    return orjson.loads((FIXTURES / f"{name}.json").read_bytes())


def error_of(obj: object) -> str:
    with pytest.raises(IngestError) as caught:
        parse_log(obj)
    return str(caught.value)


def chat(*messages: dict, **request: object) -> dict:
    return {"request": {"model": "gpt-4o", "messages": list(messages), **request}}


USER = {"role": "user", "content": "Hi"}


# --- OpenAI Chat Completions ------------------------------------------------------------------


def test_it_reads_an_openai_chat_completion():
    obj = load("openai_chat")
    log = parse_log(obj)

    assert log.provider == "openai"
    assert log.format == "openai_chat"
    assert log.model == "gpt-4o"  # what was asked for, not the dated snapshot that answered
    assert log.messages == [
        {"role": "system", "content": "You are a concise support assistant for Acme Cloud."},
        {"role": "user", "content": "How do I rotate my API key?"},
        {
            "role": "assistant",
            "content": 'Open Settings → API keys, click "Rotate", then update your clients with the new key.',
        },
    ]
    assert log.tools == []
    assert (log.status, log.status_code, log.error_message, log.finish_reason) == ("success", 200, "", "stop")
    assert (log.prompt_tokens, log.completion_tokens, log.total_tokens) == (31, 22, 53)
    assert log.latency_ms == 812
    assert log.created_at == datetime(2026, 9, 1, 10, 0, tzinfo=UTC)
    assert log.metadata == {"user_id": "u_1842", "feature": "support-bot"}
    assert log.tags == ["support", "prod"]
    assert log.external_id == "req_8f2c1a9b"
    assert log.search_text == (
        "You are a concise support assistant for Acme Cloud.\n"
        "How do I rotate my API key?\n"
        'Open Settings → API keys, click "Rotate", then update your clients with the new key.'
    )


def test_it_keeps_the_original_object_untouched():
    obj = load("openai_tools")
    before = copy.deepcopy(obj)

    log = parse_log(obj)

    assert log.original is obj
    assert obj == before


def test_it_keeps_a_tool_call_round_trip_and_the_tools():
    log = parse_log(load("openai_tools"))

    assert log.messages == [
        {"role": "system", "content": "Answer questions about orders. Use the tools."},
        {"role": "user", "content": "Where is order A-1042?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_Vx1OY4cVvbdZ3aRJ6JTgWWvd",
                    "type": "function",
                    "function": {"name": "get_order_status", "arguments": '{"order_id":"A-1042"}'},
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "call_Vx1OY4cVvbdZ3aRJ6JTgWWvd",
            "content": '{"status":"in_transit","eta":"2026-09-03"}',
        },
        {"role": "assistant", "content": "Order A-1042 is in transit and should arrive on 3 September."},
    ]
    assert log.tools == [
        {
            "type": "function",
            "function": {
                "name": "get_order_status",
                "description": "Look up the shipping status of an order.",
                "parameters": {
                    "type": "object",
                    "properties": {"order_id": {"type": "string"}},
                    "required": ["order_id"],
                    "additionalProperties": False,
                },
                "strict": True,
            },
        }
    ]
    assert "get_order_status\n" + '{"order_id":"A-1042"}' in log.search_text
    assert '{"status":"in_transit","eta":"2026-09-03"}' in log.search_text


def test_it_reads_parallel_tool_calls_in_the_response():
    log = parse_log(load("openai_tool_call_response"))

    assert log.provider == "azure"
    assert log.format == "openai_chat"
    assert log.finish_reason == "tool_calls"
    assert log.messages[-1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_abc123",
                "type": "function",
                "function": {"name": "search_docs", "arguments": '{"query": "free plan rate limit"}'},
            },
            {
                "id": "call_def456",
                "type": "function",
                "function": {"name": "search_docs", "arguments": '{"query": "pricing tiers"}'},
            },
        ],
    }
    assert log.tools == [
        {
            "type": "function",
            "function": {
                "name": "search_docs",
                "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
            },
        }
    ]


def test_it_keeps_image_parts_in_user_content():
    log = parse_log(load("openai_image"))

    assert log.provider == "openrouter"
    assert log.messages == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What breed is this dog?"},
                {"type": "image_url", "image_url": {"url": "https://images.example.com/dog.jpg", "detail": "low"}},
            ],
        },
        {"role": "assistant", "content": "It looks like a Border Collie."},
    ]
    assert log.search_text == "What breed is this dog?\nIt looks like a Border Collie."


def test_it_keeps_a_refusal_on_the_assistant_turn():
    log = parse_log(load("openai_refusal"))

    assert log.messages[-1] == {"role": "assistant", "content": None, "refusal": "I'm sorry, I can't help with that."}
    assert log.status == "success"
    assert log.search_text.endswith("I'm sorry, I can't help with that.")


def test_it_records_a_rate_limited_call_as_an_error_without_an_answer():
    log = parse_log(load("openai_rate_limited"))

    assert log.status == "error"
    assert log.status_code == 429
    assert log.error_message.startswith("Rate limit reached for gpt-4o in organization org-abc123")
    assert log.messages == [{"role": "user", "content": "Summarise this ticket."}]
    assert (log.prompt_tokens, log.completion_tokens, log.total_tokens, log.finish_reason) == (None, None, None, "")


def test_it_records_an_error_body_as_an_error_even_without_a_status_code():
    obj = load("openai_bad_request")
    del obj["status_code"]

    log = parse_log(obj)

    assert log.status == "error"
    assert log.status_code is None
    assert log.error_message.startswith("This model's maximum context length is 128000 tokens.")
    assert log.messages == [{"role": "user", "content": "A very long document..."}]


def test_it_records_an_error_status_code_without_a_body_as_an_error():
    log = parse_log({**chat(USER), "status_code": 504, "response": None})

    assert (log.status, log.error_message, log.messages) == ("error", "HTTP 504", [USER])


def test_it_records_a_request_that_got_no_response_as_an_error():
    log = parse_log(chat(USER))

    assert (log.status, log.status_code, log.error_message) == ("error", None, "no response")


def test_it_takes_the_response_created_time_when_the_log_has_none():
    obj = load("openai_tools")

    assert parse_log(obj).created_at == datetime.fromtimestamp(1756720861, UTC)


def test_it_takes_the_response_model_when_the_request_has_none():
    obj = load("openai_chat")
    del obj["request"]["model"]

    assert parse_log(obj).model == "gpt-4o-2024-08-06"


def test_it_collapses_text_only_parts_into_one_string():
    log = parse_log(chat({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}))

    assert log.messages == [{"role": "user", "content": "a\nb"}]


def test_it_turns_legacy_function_calls_into_tool_calls():
    obj = chat(
        USER,
        {"role": "assistant", "content": None, "function_call": {"name": "lookup", "arguments": '{"q": "x"}'}},
        {"role": "function", "name": "lookup", "content": "found"},
        functions=[{"name": "lookup", "parameters": {"type": "object"}}],
    )

    log = parse_log(obj)

    assert log.messages[1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "name": "lookup", "content": "found"},
    ]
    assert log.tools == [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


# --- Anthropic Messages -----------------------------------------------------------------------


def test_it_turns_anthropic_tool_use_into_openai_tool_calls():
    log = parse_log(load("anthropic_tools"))

    assert log.provider == "anthropic"
    assert log.format == "anthropic_messages"
    assert log.model == "claude-sonnet-4-5"
    assert log.messages == [
        {"role": "system", "content": "You are a weather assistant."},
        {"role": "user", "content": "What's the weather like in San Francisco?"},
        {
            "role": "assistant",
            "content": "I'll check the current weather in San Francisco.",
            "tool_calls": [
                {
                    "id": "toolu_01A09q90qw90lq917835lq9",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"San Francisco, CA"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees, foggy"},
        {"role": "user", "content": "Answer in Celsius please."},
        {"role": "assistant", "content": "It's 15 °C and foggy in San Francisco right now."},
    ]
    assert log.tools == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get the current weather in a given location",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}
                    },
                    "required": ["location"],
                },
            },
        }
    ]
    assert (log.status, log.status_code, log.finish_reason) == ("success", 200, "end_turn")
    # Cached prompt tokens count as prompt tokens.
    assert (log.prompt_tokens, log.completion_tokens, log.total_tokens) == (472 + 1024, 18, 472 + 1024 + 18)
    assert log.created_at == datetime(2026, 9, 1, 10, 30, tzinfo=UTC)


def test_it_turns_anthropic_images_into_image_url_parts_and_drops_thinking():
    obj = load("anthropic_image_thinking")
    log = parse_log(obj)

    assert log.provider == "bedrock-anthropic"
    assert log.format == "anthropic_messages"
    assert log.model == "claude-sonnet-4-20250514"
    assert log.messages == [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://upload.example.org/chart.png"}},
                {"type": "text", "text": "Which of these two charts shows higher growth?"},
            ],
        },
        {"role": "assistant", "content": "The second chart shows higher growth."},
    ]
    assert (log.prompt_tokens, log.completion_tokens, log.total_tokens) == (1650, 212, 1862)
    assert obj["response"]["content"][0]["type"] == "thinking"  # still in the original


def test_it_records_an_anthropic_error():
    log = parse_log(load("anthropic_overloaded"))

    assert log.provider == "anthropic"  # detected from the error body
    assert (log.status, log.status_code, log.error_message) == ("error", 529, "Overloaded")
    assert log.messages == [
        {"role": "system", "content": "Reply in French."},
        {"role": "user", "content": "Good morning!"},
    ]


def test_it_emits_each_tool_result_before_the_rest_of_the_user_turn():
    obj = {
        "provider": "anthropic",
        "request": {
            "model": "claude-haiku-4-5",
            "messages": [
                {"role": "user", "content": "Compare both files."},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "a.txt"}},
                        {"type": "tool_use", "id": "toolu_2", "name": "read", "input": {"path": "b.txt"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Be brief."},
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "alpha"},
                        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "no such file", "is_error": True},
                    ],
                },
            ],
        },
    }

    assert parse_log(obj).messages[1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "read", "arguments": '{"path":"a.txt"}'}},
                {"id": "toolu_2", "type": "function", "function": {"name": "read", "arguments": '{"path":"b.txt"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "alpha"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "no such file", "is_error": True},
        {"role": "user", "content": "Be brief."},
    ]


def test_it_joins_a_prefilled_answer_and_its_continuation_into_one_turn():
    obj = {
        "provider": "anthropic",
        "request": {
            "model": "claude-sonnet-4-5",
            "messages": [
                {"role": "user", "content": "List three colours as JSON."},
                {"role": "assistant", "content": "["},
            ],
        },
        "response": {"type": "message", "content": [{"type": "text", "text": '"red", "green", "blue"]'}]},
    }

    assert parse_log(obj).messages == [
        {"role": "user", "content": "List three colours as JSON."},
        {"role": "assistant", "content": '["red", "green", "blue"]'},
    ]


def test_it_turns_anthropic_documents_into_file_parts():
    document = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}}
    obj = {
        "provider": "anthropic",
        "request": {"messages": [{"role": "user", "content": [{**document, "title": "q3.pdf"}]}]},
    }

    assert parse_log(obj).messages == [
        {
            "role": "user",
            "content": [
                {"type": "file", "file": {"filename": "q3.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}}
            ],
        }
    ]


# --- provider detection -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "provider", "format"),
    [
        (
            {"request": {"messages": [USER]}, "response": load("anthropic_tools")["response"]},
            "anthropic",
            "anthropic_messages",
        ),
        ({"request": {"messages": [USER]}, "response": load("openai_chat")["response"]}, "openai", "openai_chat"),
        ({"request": {"system": "Be terse.", "messages": [USER]}}, "anthropic", "anthropic_messages"),
        (
            {"request": {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]}]}},
            "anthropic",
            "anthropic_messages",
        ),
        ({"request": {"messages": [USER]}}, "openai", "openai_chat"),
    ],
    ids=["anthropic-response", "openai-response", "top-level-system", "tool-result-block", "default"],
)
def test_it_detects_the_provider_when_the_log_does_not_say(obj, provider, format):
    log = parse_log(obj)

    assert (log.provider, log.format) == (provider, format)


def test_it_reads_other_given_providers_as_openai_chat():
    log = parse_log({**chat(USER), "provider": "Together"})

    assert (log.provider, log.format) == ("together", "openai_chat")


def test_it_reads_vertex_anthropic_as_anthropic_messages():
    log = parse_log({"provider": "vertex-anthropic", "request": {"system": "S", "messages": [USER]}})

    assert log.format == "anthropic_messages"
    assert log.messages == [{"role": "system", "content": "S"}, USER]


# --- plain shapes -----------------------------------------------------------------------------


def test_it_reads_a_fine_tuning_line_with_weights_and_tools():
    log = parse_log(load("finetuning_line"))

    assert (log.provider, log.format, log.model, log.status) == ("", "messages", "", "success")
    assert log.messages == [
        {"role": "system", "content": "You are an assistant that occasionally misspells words."},
        {"role": "user", "content": "Tell me a story."},
        {"role": "assistant", "content": "One day a student went to schoool.", "weight": 0},
        {"role": "user", "content": "Check the weather in Paris, then tell me the story again."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_id",
                    "type": "function",
                    "function": {
                        "name": "get_current_weather",
                        "arguments": '{"location": "Paris, France", "format": "celsius"}',
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_id", "content": "21.0"},
        {"role": "assistant", "content": "It is 21 °C in Paris. One day a student went to school.", "weight": 1},
    ]
    assert [tool["function"]["name"] for tool in log.tools] == ["get_current_weather"]
    assert log.created_at is None


def test_it_reads_a_prompt_completion_pair():
    log = parse_log(load("prompt_completion"))

    assert (log.provider, log.format, log.model) == ("", "prompt_completion", "my-translator-v2")
    assert log.messages == [
        {"role": "user", "content": "Translate to German: Good evening"},
        {"role": "assistant", "content": "Guten Abend"},
    ]
    assert log.created_at == datetime(2025, 9, 1, 10, 0, tzinfo=UTC)
    assert log.tags == ["translation"]
    assert log.search_text == "Translate to German: Good evening\nGuten Abend"


def test_it_marks_a_plain_log_with_an_error_status_code_as_an_error():
    log = parse_log({"prompt": "Hi", "completion": "", "status_code": 500})

    assert (log.status, log.error_message) == ("error", "HTTP 500")


# --- envelope fields --------------------------------------------------------------------------


def test_it_takes_naive_datetimes_as_utc():
    log = parse_log({"messages": [USER], "created_at": "2026-09-01T10:00:00"})

    assert log.created_at == datetime(2026, 9, 1, 10, 0, tzinfo=UTC)


def test_it_stringifies_an_integer_external_id():
    assert parse_log({"messages": [USER], "external_id": 12345}).external_id == "12345"


def test_it_accepts_a_literal_backslash_u0000_which_is_not_a_nul_character():
    log = parse_log({"messages": [{"role": "user", "content": "C escape: \\u0000"}]})

    assert log.messages == [{"role": "user", "content": "C escape: \\u0000"}]


def test_it_stores_nul_and_lone_surrogates_as_u_fffd_with_a_note():
    text = '{"messages": [{"role": "user", "content": "nul \\u0000 here"}], "metadata": {"note": "half \\ud83d"}}'

    log = parse_log(json.loads(text), text=text)

    assert log.messages == [{"role": "user", "content": "nul \ufffd here"}]
    assert log.metadata == {"note": "half \ufffd"}
    assert log.notes == [
        "messages.0.content: NUL character replaced by U+FFFD",
        "metadata.note: invalid Unicode (lone surrogate or bad UTF-8) replaced by U+FFFD",
    ]
    assert log.original_text == text  # the escapes are plain text: the original stays as it was sent


def test_it_writes_an_object_without_text_out_in_its_own_key_order():
    log = parse_log({"prompt": "p", "completion": "c", "metadata": {"z": 1, "a": 2}})

    assert log.original_text == '{"prompt":"p","completion":"c","metadata":{"z":1,"a":2}}'


# --- invalid input ----------------------------------------------------------------------------

ROLES = "system, developer, user, assistant, tool, function"


@pytest.mark.parametrize(
    ("obj", "error"),
    [
        (
            chat(USER, {"role": "assistant", "content": "Hello"}, {"role": "bot", "content": "?"}),
            f"request.messages.2.role: unknown role 'bot' (expected one of {ROLES})",
        ),
        (
            chat(USER, {"role": "user", "content": 42}),
            "request.messages.1.content: expected a string or a list of content parts, got a number",
        ),
        (
            chat({"role": "user", "content": [{"url": "x"}]}),
            "request.messages.0.content.0: expected a content part (an object with a string 'type'), got an object",
        ),
        (chat({"role": "tool", "content": "42"}), "request.messages.0.tool_call_id: missing required field"),
        (chat(), "request.messages: must not be empty"),
        ({"response": {"choices": []}}, "request: missing required field"),
        (
            {**chat(USER), "tag": ["prod"]},
            "tag: unknown field (expected one of request, response, provider, status_code, latency_ms, "
            "created_at, metadata, tags, external_id, scores)",
        ),
        (
            {"prompt": "a", "completion": "b", "tools": []},
            "tools: unknown field (expected one of prompt, completion, model, provider, status_code, latency_ms, "
            "created_at, metadata, tags, external_id, scores)",
        ),
        (
            {"messages": [USER], "created_at": "yesterday"},
            "created_at: expected an ISO-8601 date and time, got 'yesterday'",
        ),
        ({"messages": [USER], "latency_ms": -5}, "latency_ms: must be a non-negative number, got -5"),
        ({"messages": [USER], "tags": "prod"}, "tags: expected a list of strings, got a string"),
        ({"messages": [USER], "tags": ["prod", "  "]}, "tags.1: must not be empty"),
        ({"messages": [USER], "status_code": 200.0}, "status_code: expected an integer, got a number"),
        ({"messages": [USER], "external_id": ""}, "external_id: must not be empty"),
        ({"messages": [USER], "metadata": ["a"]}, "metadata: expected an object, got a list"),
        ({"prompt": "Hi"}, "completion: missing required field"),
        ([USER], ": expected a log object with 'request', 'messages' or 'prompt', got a list"),
        (
            {"input": "Hi", "output": "Hello"},
            ": expected a log object with 'request', 'messages' or 'prompt', "
            "got an object with keys 'input', 'output'",
        ),
        (
            {"provider": "anthropic", "request": {"messages": [{"role": "system", "content": "Be terse."}]}},
            "request.messages.0.role: unknown role 'system' (expected one of user, assistant)",
        ),
        (
            {
                "provider": "anthropic",
                "request": {
                    "messages": [
                        {"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}
                    ]
                },
            },
            "request.messages.0.content.0.type: a tool_use block cannot be in a user message",
        ),
        (
            {
                "provider": "anthropic",
                "request": {
                    "messages": [{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t"}]}]
                },
            },
            "request.messages.0.content.0.type: a tool_result block cannot be in an assistant message",
        ),
        (
            {
                **chat(USER),
                "response": {"choices": [{"message": {"content": "ok"}}], "usage": {"prompt_tokens": "12"}},
            },
            "response.usage.prompt_tokens: expected an integer, got a string",
        ),
        (
            chat({"role": "assistant", "content": "ok", "weight": 2}),
            "request.messages.0.weight: must be at most 1, got 2",
        ),
    ],
)
def test_it_rejects_invalid_logs_with_the_path_of_the_problem(obj, error):
    assert error_of(obj) == error
