"""Reading OpenAI Responses API logs into the canonical conversation. The bodies are built from the installed
`openai` SDK's own types, so they have the shapes the API sends. Pure Python: no Django, no database."""

from datetime import UTC, datetime

import pytest
from openai.types.responses import Response, ResponseInputItemParam, ToolParam

from curation.logs.ingest import IngestError, parse_log

FUNCTION_TOOL: ToolParam = {
    "type": "function", "name": "get_weather", "description": "Weather of a city.", "strict": True,
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}  # fmt: skip


def response(*output: dict, **fields: object) -> dict:
    """A Responses API answer as the SDK would send it (every field, nulls included)."""
    body = {
        "id": "resp_1", "object": "response", "created_at": 1767225600, "model": "gpt-5-2025-08-07",
        "output": list(output), "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "status": "completed",
        "error": None, "incomplete_details": None, "instructions": None, "metadata": {},
        "usage": {"input_tokens": 40, "output_tokens": 25, "total_tokens": 65,
                  "input_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 0},
                  "output_tokens_details": {"reasoning_tokens": 12}},
    }  # fmt: skip
    body.update(fields)
    return Response.model_validate(body).model_dump(mode="json")


def text_message(text: str, **fields: object) -> dict:
    return {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}], **fields}  # fmt: skip


def error_of(obj: object) -> str:
    with pytest.raises(IngestError) as caught:
        parse_log(obj)
    return str(caught.value)


def test_it_reads_a_response_with_instructions_and_a_string_input():
    log = parse_log(
        {
            "request": {"model": "gpt-5", "instructions": "Be brief.", "input": "Hi"},
            "response": response(text_message("Hello!")),
        }
    )

    assert (log.provider, log.format, log.model, log.status) == ("openai", "openai_responses", "gpt-5", "success")
    assert log.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    assert (log.prompt_tokens, log.completion_tokens, log.total_tokens) == (40, 25, 65)
    assert log.finish_reason == "completed"
    assert log.created_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert log.metadata == {"response_id": "resp_1"}


def test_it_turns_input_items_into_messages_tool_calls_and_tool_results():
    items: list[ResponseInputItemParam] = [
        {"role": "developer", "content": "Use the tools."},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Weather in Paris? See the map."},
            {"type": "input_image", "image_url": "https://maps.example/paris.png", "detail": "high"},
            {"type": "input_file", "file_id": "file_1", "filename": "notes.pdf"},
        ]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": '{"temp": 21}'},
    ]  # fmt: skip
    log = parse_log(
        {
            "request": {"model": "gpt-5", "input": items, "tools": [FUNCTION_TOOL], "parallel_tool_calls": False},
            "response": response(text_message("21 °C in Paris.")),
        }
    )

    assert log.messages == [
        {"role": "system", "content": "Use the tools."},
        {"role": "user", "content": [
            {"type": "text", "text": "Weather in Paris? See the map."},
            {"type": "image_url", "image_url": {"url": "https://maps.example/paris.png", "detail": "high"}},
            {"type": "file", "file": {"file_id": "file_1", "filename": "notes.pdf"}},
        ]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        {"role": "assistant", "content": "21 °C in Paris."},
    ]  # fmt: skip
    assert log.tools == [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city.", "strict": True,
                                          "parameters": FUNCTION_TOOL["parameters"]}}  # type: ignore[typeddict-item]
    ]  # fmt: skip
    assert list(log.tools[0]["function"]) == ["name", "description", "strict", "parameters"]  # the order as sent
    assert log.options == {"parallel_tool_calls": False}


def test_it_gathers_reasoning_text_and_calls_of_the_answer_into_one_assistant_turn():
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Check weather."}]}
    call = {"type": "function_call", "id": "fc_1", "call_id": "call_9", "name": "get_weather",
            "arguments": '{"city":"Oslo"}', "status": "completed"}  # fmt: skip
    log = parse_log(
        {
            "request": {"input": "Oslo?", "tools": [FUNCTION_TOOL]},
            "response": response(reasoning, text_message("Let me check."), call),
        }
    )

    answer = log.messages[-1]
    assert answer["content"] == "Let me check."
    assert answer["tool_calls"] == [
        {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
    ]
    assert answer["reasoning"][0]["summary"] == [{"type": "summary_text", "text": "Check weather."}]
    assert log.model == "gpt-5-2025-08-07"  # the response's, when the request names none
    assert "Check weather." not in log.search_text and "Let me check." in log.search_text


def test_it_keeps_built_in_tools_and_their_calls_verbatim():
    web_search = {"type": "web_search_call", "id": "ws_1", "status": "completed",
                  "action": {"type": "search", "query": "tides brest"}}  # fmt: skip
    answer = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed", "content": [
        {"type": "output_text", "text": "High tide at 14:02.",
         "annotations": [{"type": "url_citation", "url": "https://tides.example", "title": "Tides",
                          "start_index": 0, "end_index": 9}]}
    ]}  # fmt: skip
    tools = [{"type": "web_search"}, {"type": "mcp", "server_label": "deepwiki", "server_url": "https://mcp.example"}]
    log = parse_log({"request": {"input": "Tides?", "tools": tools}, "response": response(web_search, answer)})

    assert log.tools == tools
    message = log.messages[-1]
    assert message["content"][0]["type"] == "web_search_call"
    assert message["content"][0]["action"]["query"] == "tides brest"
    assert message["content"][1] == {"type": "text", "text": "High tide at 14:02."}
    assert message["annotations"][0]["url"] == "https://tides.example"


def test_it_keeps_unknown_items_parts_and_tools_instead_of_refusing_them():
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "Hi"}, {"type": "input_hologram", "id": "h1"}]},
        {"type": "computer_call_output", "call_id": "c1", "output": {"type": "computer_screenshot"}},
    ]
    log = parse_log({"request": {"input": items, "tools": [{"type": "teleport", "range": 3}]}})

    assert log.messages[0]["content"][1] == {"type": "input_hologram", "id": "h1"}
    assert log.messages[1] == {"role": "assistant", "content": [items[1]]}
    assert log.tools == [{"type": "teleport", "range": 3}]
    assert log.status == "error" and log.error_message == "no response"


def test_it_reads_custom_tools_and_their_calls_in_chat_completions_shape():
    tool = {"type": "custom", "name": "code_exec", "description": "Runs Python."}
    call = {"type": "custom_tool_call", "call_id": "call_c1", "name": "code_exec", "input": "print(2 + 2)"}
    log = parse_log(
        {"request": {"input": [{"role": "user", "content": "2+2?"}, call,
                               {"type": "custom_tool_call_output", "call_id": "call_c1", "output": "4"}],
                     "tools": [tool]}}
    )  # fmt: skip

    assert log.tools == [{"type": "custom", "custom": {"name": "code_exec", "description": "Runs Python."}}]
    assert log.messages[1]["tool_calls"] == [
        {"id": "call_c1", "type": "custom", "custom": {"name": "code_exec", "input": "print(2 + 2)"}}
    ]
    assert log.messages[2] == {"role": "tool", "tool_call_id": "call_c1", "content": "4"}


def test_it_keeps_the_previous_response_id_in_metadata_under_the_logs_own():
    log = parse_log(
        {
            "request": {"input": "And tomorrow?", "previous_response_id": "resp_0"},
            "response": response(text_message("Rain.")),
            "metadata": {"response_id": "mine", "env": "prod"},
        }
    )

    assert log.metadata == {"previous_response_id": "resp_0", "response_id": "mine", "env": "prod"}


def test_a_failed_or_error_response_is_an_error_log():
    failed = response(status="failed", error={"code": "server_error", "message": "The server had an error."})
    log = parse_log({"request": {"input": "Hi"}, "response": failed})
    assert (log.status, log.error_message) == ("error", "The server had an error.")
    assert log.messages == [{"role": "user", "content": "Hi"}]

    http_error = {"error": {"message": "Invalid 'input'.", "type": "invalid_request_error", "code": None}}
    log = parse_log({"provider": "openai", "request": {"input": "Hi"}, "response": http_error, "status_code": 400})
    assert (log.status, log.status_code, log.error_message) == ("error", 400, "Invalid 'input'.")


def test_an_incomplete_response_keeps_its_reason_as_finish_reason():
    body = response(
        text_message("Once upon a"), status="incomplete", incomplete_details={"reason": "max_output_tokens"}
    )
    log = parse_log({"request": {"input": "A story."}, "response": body})

    assert (log.status, log.finish_reason, log.messages[-1]["content"]) == (
        "success",
        "max_output_tokens",
        "Once upon a",
    )


def test_a_refusal_becomes_the_assistant_messages_refusal():
    refused = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
               "content": [{"type": "refusal", "refusal": "I can't help with that."}]}  # fmt: skip
    log = parse_log({"request": {"input": "Something bad."}, "response": response(refused)})

    assert log.messages[-1] == {"role": "assistant", "content": None, "refusal": "I can't help with that."}


@pytest.mark.parametrize(
    ("request_body", "error"),
    [
        ({"input": 5}, "request.input: expected a string, a list of items or null, got a number"),
        ({"input": ["hi"]}, "request.input.0: expected an item (an object with a string 'type'), got a string"),
        ({"input": [{"role": "bot", "content": "x"}]}, "request.input.0.role: unknown role 'bot'"),
        ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "request.input.0.call_id: missing"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_text"}]}]},
            "request.input.0.content.0.text: missing",
        ),
        ({"input": "x", "tools": [{"type": "function"}]}, "request.tools.0.name: missing required field"),
        ({"input": []}, "request.input: must not be empty"),
        ({"instructions": None, "input": None}, "request.input: missing required field"),
    ],
)
def test_it_refuses_what_makes_a_log_unusable_naming_the_field(request_body: dict, error: str):
    assert error_of({"request": request_body}).startswith(error)


def test_a_response_with_a_wrong_output_names_the_field():
    assert error_of({"request": {"input": "Hi"}, "response": {"object": "response", "output": "none"}}) == (
        "response.output: expected a list, got a string"
    )


def test_chat_completions_and_anthropic_logs_are_not_taken_for_responses():
    chat = parse_log({"request": {"messages": [{"role": "user", "content": "Hi"}]}})
    anthropic = parse_log({"request": {"system": "x", "messages": [{"role": "user", "content": "Hi"}]}})

    assert (chat.format, anthropic.format) == ("openai_chat", "anthropic_messages")
