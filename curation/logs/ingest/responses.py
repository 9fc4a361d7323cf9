"""OpenAI Responses API bodies (`POST /v1/responses`), turned into canonical OpenAI chat messages.

The differences that matter: the conversation is a list of items rather than messages (a function call, its
output and the model's reasoning are items of their own beside the messages), `instructions` sits outside it,
function tools are flat (`{"type": "function", "name", "parameters"}`), and the answer is the response's `output`
items. Consecutive assistant-side items (an assistant message, function calls, reasoning, built-in tool calls)
make one assistant turn, as Chat Completions would have sent it.
"""

from typing import Annotated, Any, Literal, NotRequired

from pydantic import Field, TypeAdapter
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from curation.logs.ingest.canonical import (
    MISSING_REASON,
    Exchange,
    collapse,
    content,
    extras,
    fail,
    function_tool,
    provider_error_message,
    tagged,
    tool_call,
    validate,
)
from curation.logs.ingest.times import moment_from_unix

Tokens = Annotated[int, Field(ge=0)]


class TextPart(TypedDict):
    type: Literal["input_text", "output_text"]
    text: str


class RefusalPart(TypedDict):
    type: Literal["refusal"]
    refusal: str


class ImagePart(TypedDict):
    type: Literal["input_image"]
    image_url: NotRequired[str | None]
    file_id: NotRequired[str | None]
    detail: NotRequired[str | None]


class FilePart(TypedDict):
    type: Literal["input_file"]
    file_data: NotRequired[str | None]
    file_id: NotRequired[str | None]
    file_url: NotRequired[str | None]
    filename: NotRequired[str | None]


# Part types we do not know yet (input_audio, whatever comes next) are kept as they came (canonical.tagged).
Part = tagged(
    ("input_text", TextPart),
    ("output_text", TextPart),
    ("refusal", RefusalPart),
    ("input_image", ImagePart),
    ("input_file", FilePart),
    what="a content part",
)


class MessageItem(TypedDict):
    type: NotRequired[Literal["message"]]
    role: Literal["system", "developer", "user", "assistant"]
    content: content(Part)


class FunctionCallItem(TypedDict):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str  # kept as sent: a reply cut off by max_output_tokens has unparseable arguments


class CustomToolCallItem(TypedDict):
    type: Literal["custom_tool_call"]
    call_id: str
    name: str
    input: str


class CallOutputItem(TypedDict):
    type: Literal["function_call_output", "custom_tool_call_output"]
    call_id: str
    output: content(Part)


class ReasoningItem(TypedDict):
    type: Literal["reasoning"]
    summary: NotRequired[list[dict[str, Any]] | None]


# Built-in tool calls (web_search_call, file_search_call, code_interpreter_call, computer_call, mcp_call...), their
# outputs and item types we do not know yet are kept as they came. An item without a type is a message.
Item = tagged(
    ("message", MessageItem),
    ("function_call", FunctionCallItem),
    ("custom_tool_call", CustomToolCallItem),
    ("function_call_output", CallOutputItem),
    ("custom_tool_call_output", CallOutputItem),
    ("reasoning", ReasoningItem),
    what="an item",
    default="message",
)
Items = content(Item, nullable=True, parts="items")


class FunctionToolDef(TypedDict):
    type: Literal["function"]
    name: str
    description: NotRequired[str | None]
    parameters: NotRequired[dict[str, Any] | None]
    strict: NotRequired[bool | None]


class CustomToolDef(TypedDict):
    type: Literal["custom"]
    name: str


# Built-in tools (web_search, file_search, code_interpreter, computer_use_preview, mcp...) are kept as they came.
ToolDef = tagged(("function", FunctionToolDef), ("custom", CustomToolDef), what="a tool")


class ResponsesRequest(TypedDict):
    input: NotRequired[Items]
    instructions: NotRequired[Items]
    model: NotRequired[str | None]
    tools: NotRequired[list[ToolDef] | None]
    parallel_tool_calls: NotRequired[bool | None]
    previous_response_id: NotRequired[str | None]


class Usage(TypedDict):
    input_tokens: NotRequired[Tokens | None]
    output_tokens: NotRequired[Tokens | None]
    total_tokens: NotRequired[Tokens | None]


class IncompleteDetails(TypedDict):
    reason: NotRequired[str | None]


class ResponsesResponse(TypedDict):
    output: list[Item]
    id: NotRequired[str | None]
    model: NotRequired[str | None]
    status: NotRequired[str | None]
    usage: NotRequired[Usage | None]
    incomplete_details: NotRequired[IncompleteDetails | None]
    created_at: NotRequired[float | None]  # unix seconds, within curation.logs.ingest.times' range


REQUEST = TypeAdapter(ResponsesRequest)
RESPONSE = TypeAdapter(ResponsesResponse)

# Item fields that are bookkeeping of the Responses API (item ids, progress), not part of the conversation.
_MESSAGE_FIELDS = frozenset({"type", "role", "content", "id", "status"})
_CALL_FIELDS = frozenset({"type", "call_id", "name", "arguments", "input", "id", "status"})
_OUTPUT_FIELDS = frozenset({"type", "call_id", "output", "id", "status"})
# Response statuses that mean the call gave no answer (an error body says more when there is one).
_FAILED = frozenset({"failed", "cancelled"})


def is_responses(request: dict, response: dict | None) -> bool:
    """Whether a log is a Responses API call: its response says so, or its request has `input` and no `messages`."""
    if response is not None and (response.get("object") == "response" or "output" in response):
        return "choices" not in response
    return ("input" in request or "instructions" in request) and "messages" not in request


def read_responses(request: dict, response: dict | None, status_code: int | None) -> Exchange:
    """Read a validated request (and response) from the input itself, so that unknown items, parts and tool
    types come through verbatim."""
    validate(REQUEST, request, "request")
    turns = _Turns()
    turns.add_items(request.get("instructions"), role="system")
    turns.add_items(request.get("input"), role="user")
    turns.close()
    exchange = Exchange(
        messages=turns.messages,
        tools=[_tool(tool) for tool in request.get("tools") or ()],
        model=request.get("model") or "",
    )
    if request.get("parallel_tool_calls") is not None:
        exchange.options["parallel_tool_calls"] = request["parallel_tool_calls"]
    if (response_format := _response_format(request.get("text"))) is not None:
        exchange.options["response_format"] = response_format
    if request.get("previous_response_id"):
        # The turns before it are on OpenAI's side: the log holds only this call's part of the conversation.
        exchange.metadata["previous_response_id"] = request["previous_response_id"]
    exchange.error_message = provider_error_message(response, status_code)
    if not exchange.error_message:
        validate(RESPONSE, response, "response")
        _read_response(exchange, response, turns)  # type: ignore[arg-type]
    if not exchange.messages:
        raise fail("request.input", MISSING_REASON if request.get("input") is None else "must not be empty")
    return exchange


def _read_response(exchange: Exchange, body: dict, turns: "_Turns") -> None:
    status = body.get("status") or ""
    if status in _FAILED:
        exchange.error_message = f"response {status}"
        return
    turns.add_items(body["output"], role="assistant")
    turns.close()
    exchange.finish_reason = ((body.get("incomplete_details") or {}).get("reason") or status) if status else ""
    usage = body.get("usage") or {}
    exchange.prompt_tokens = usage.get("input_tokens")  # cached tokens included; the details stay in the original
    exchange.completion_tokens = usage.get("output_tokens")  # reasoning tokens included
    exchange.total_tokens = usage.get("total_tokens")
    if exchange.total_tokens is None and exchange.prompt_tokens is not None and exchange.completion_tokens is not None:
        exchange.total_tokens = exchange.prompt_tokens + exchange.completion_tokens
    exchange.response_model = body.get("model") or ""
    exchange.model = exchange.model or exchange.response_model
    if body.get("id"):
        exchange.metadata["response_id"] = body["id"]
    if body.get("created_at") is not None:
        exchange.created_at = moment_from_unix(body["created_at"], "response.created_at")


def _response_format(text: object) -> dict | None:
    """`text.format` in Chat Completions' `response_format` shape, the one the log's options keep: a JSON schema's
    name, schema, description and strictness go under `json_schema`. Plain text (the default) is None."""
    format = text.get("format") if isinstance(text, dict) else None
    if not isinstance(format, dict) or format.get("type") == "text":
        return None
    if format.get("type") != "json_schema":
        return format  # "json_object", and what comes next, as it came
    return {"type": "json_schema", "json_schema": {key: value for key, value in format.items() if key != "type"}}


def _tool(tool: dict) -> dict:
    kind = tool.get("type")
    if kind == "function":
        return function_tool({key: value for key, value in tool.items() if key != "type"})
    if kind == "custom":  # GPT-5 custom tools, in Chat Completions' shape
        return {"type": "custom", "custom": {key: value for key, value in tool.items() if key != "type"}}
    return tool  # a built-in tool (web_search, file_search, code_interpreter, mcp...), as it came


class _Turns:
    """Canonical messages built item by item; assistant-side items gather into one open assistant turn."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self._reset()

    def _reset(self) -> None:
        self._parts: list[dict] | None = None  # the open assistant turn's content parts; None: no open turn
        self._calls: list[dict] = []
        self._refusals: list[str] = []
        self._reasoning: list[dict] = []
        self._annotations: list[Any] = []
        self._extras: dict[str, Any] = {}

    def add_items(self, items: str | list[dict] | None, *, role: str) -> None:
        if isinstance(items, str):
            self._message(role, items)
            return
        for item in items or ():
            self._item(item)

    def _item(self, item: dict) -> None:
        kind = item.get("type", "message")
        if kind == "message":
            self._message(item["role"], item["content"], extras(item, _MESSAGE_FIELDS))
        elif kind == "function_call":
            self._open()
            call = {**tool_call(item["call_id"], item["name"], item["arguments"]), **extras(item, _CALL_FIELDS)}
            self._calls.append(call)
        elif kind == "custom_tool_call":
            self._open()
            custom = {"name": item["name"], "input": item["input"]}
            self._calls.append(
                {"id": item["call_id"], "type": "custom", "custom": custom, **extras(item, _CALL_FIELDS)}
            )
        elif kind in ("function_call_output", "custom_tool_call_output"):
            self.close()
            output = item["output"]
            tool = {"role": "tool", "tool_call_id": item["call_id"], "content": _content(output)}
            self.messages.append({**tool, **extras(item, _OUTPUT_FIELDS)})
        elif kind == "reasoning":
            self._open()
            self._reasoning.append(item)  # summaries (and encrypted content) kept verbatim on the assistant turn
        else:
            self._open()
            self._parts.append(item)  # type: ignore[union-attr]  # a built-in tool call or unknown item, as it came

    def _message(self, role: str, value: str | list[dict], more: dict | None = None) -> None:
        if role == "assistant":
            self._open()
            for part in [{"type": "output_text", "text": value}] if isinstance(value, str) else value:
                self._assistant_part(part)
            self._extras.update(more or {})
            return
        self.close()
        message = {"role": "system" if role == "developer" else role, "content": _content(value)}
        self.messages.append({**message, **(more or {})})

    def _assistant_part(self, part: dict) -> None:
        if part.get("type") == "refusal":
            self._refusals.append(part["refusal"])
            return
        if part.get("type") in ("output_text", "input_text"):
            self._annotations.extend(part.get("annotations") or ())
        self._parts.append(_part(part))  # type: ignore[union-attr]

    def _open(self) -> None:
        if self._parts is None:
            self._parts = []

    def close(self) -> None:
        """End the open assistant turn, if any, as one canonical assistant message."""
        if self._parts is None:
            return
        message: dict[str, Any] = {"role": "assistant", "content": collapse(self._parts) if self._parts else None}
        if self._calls:
            message["tool_calls"] = self._calls
        if self._refusals:
            message["refusal"] = "\n".join(self._refusals)
        if self._annotations:
            message["annotations"] = self._annotations
        if self._reasoning:
            message["reasoning"] = self._reasoning
        message.update(self._extras)
        self.messages.append(message)
        self._reset()


def _content(value: str | list[dict]) -> str | list[dict]:
    return value if isinstance(value, str) else collapse([_part(part) for part in value])


def _part(part: dict) -> dict:
    """A Responses content part as a Chat Completions one; a part without a chat equivalent as it came."""
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": part["text"]}
    if kind == "refusal":
        return part
    if kind == "input_image" and part.get("image_url"):
        image = {"url": part["image_url"]}
        if part.get("detail") is not None:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        fields = ("file_data", "file_id", "filename", "file_url")
        return {"type": "file", "file": {key: part[key] for key in fields if part.get(key) is not None}}
    return part  # an image known only by its file_id, or a part type we do not know yet
