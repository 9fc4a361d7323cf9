"""Anthropic Messages bodies (also as sent through Bedrock and Vertex), turned into canonical OpenAI messages.

The differences that matter: the system prompt sits outside the messages, tool calls and tool
results are content blocks, and one user turn may carry several tool results plus new text.
"""

import base64
from typing import Annotated, Any, Literal, NotRequired

import orjson
from pydantic import Discriminator, Field, Tag, TypeAdapter
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from curation.logs.ingest.canonical import (
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

Tokens = Annotated[int, Field(ge=0)]


class TextBlock(TypedDict):
    type: Literal["text"]
    text: str
    citations: NotRequired[list[Any] | None]


class Base64Source(TypedDict):
    type: Literal["base64"]
    media_type: str
    data: str


class URLSource(TypedDict):
    type: Literal["url"]
    url: str


class PlainTextSource(TypedDict):
    type: Literal["text"]
    data: str
    media_type: NotRequired[str]


Source = tagged(("base64", Base64Source), ("url", URLSource), what="a source")
DocumentSource = tagged(("base64", Base64Source), ("text", PlainTextSource), ("url", URLSource), what="a source")


class ImageBlock(TypedDict):
    type: Literal["image"]
    source: Source


class DocumentBlock(TypedDict):
    type: Literal["document"]
    source: DocumentSource
    title: NotRequired[str | None]


class ToolUseBlock(TypedDict):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


# Block types we do not know yet (server tools' results, search results, containers...) are kept as they came.
ResultBlock = tagged(("text", TextBlock), ("image", ImageBlock), ("document", DocumentBlock), what="a content block")


class ToolResultBlock(TypedDict):
    type: Literal["tool_result"]
    tool_use_id: str
    content: NotRequired[content(ResultBlock, nullable=True, parts="content blocks")]
    is_error: NotRequired[bool | None]


class ThinkingBlock(TypedDict):
    type: Literal["thinking"]
    thinking: str


class RedactedThinkingBlock(TypedDict):
    type: Literal["redacted_thinking"]
    data: str


_BLOCKS = (
    ("text", TextBlock),
    ("image", ImageBlock),
    ("document", DocumentBlock),
    ("tool_use", ToolUseBlock),
    ("tool_result", ToolResultBlock),
    ("thinking", ThinkingBlock),
    ("redacted_thinking", RedactedThinkingBlock),
)
Block = tagged(*_BLOCKS, what="a content block")
ResponseBlock = tagged(*(block for block in _BLOCKS if block[0] not in ("image", "document", "tool_result")),
                       what="a content block")  # fmt: skip


class Message(TypedDict):
    role: Literal["user", "assistant"]
    content: content(Block, parts="content blocks")


class FunctionTool(TypedDict):
    type: NotRequired[Literal["custom"] | None]
    name: str
    description: NotRequired[str | None]
    input_schema: dict[str, Any]


def _tool_kind(value: object) -> str | None:
    if not isinstance(value, dict):
        return None
    return "custom" if value.get("type") in (None, "custom") else "server"


# Server tools (web_search_20250305, bash_..., code_execution_...) have a type and no schema: kept as they came.
Tool = Annotated[
    Annotated[FunctionTool, Tag("custom")] | Annotated[dict[str, Any], Tag("server")],
    Discriminator(_tool_kind, custom_error_type="tool_shape", custom_error_message="expected a tool (an object)"),
]


class ToolChoice(TypedDict):
    disable_parallel_tool_use: NotRequired[bool | None]


class MessagesRequest(TypedDict):
    messages: Annotated[list[Message], Field(min_length=1)]
    model: NotRequired[str | None]
    system: NotRequired[content(tagged(("text", TextBlock), what="a text block"), nullable=True, parts="text blocks")]
    tools: NotRequired[list[Tool] | None]
    tool_choice: NotRequired[ToolChoice | None]


class Usage(TypedDict):
    input_tokens: NotRequired[Tokens | None]
    output_tokens: NotRequired[Tokens | None]
    cache_creation_input_tokens: NotRequired[Tokens | None]
    cache_read_input_tokens: NotRequired[Tokens | None]


class MessagesResponse(TypedDict):
    type: Literal["message"]
    content: list[ResponseBlock]
    model: NotRequired[str | None]
    stop_reason: NotRequired[str | None]
    usage: NotRequired[Usage | None]


REQUEST = TypeAdapter(MessagesRequest)
RESPONSE = TypeAdapter(MessagesResponse)


# Tool fields with a place in the canonical function definition, and those that only steer Anthropic's servers.
_TOOL_FIELDS = frozenset({"type", "name", "description", "input_schema", "cache_control"})
_KNOWN_BLOCKS = frozenset(name for name, _ in _BLOCKS)


def read_anthropic(request: dict, response: dict | None, status_code: int | None) -> Exchange:
    """Read a validated request (and response) from the input itself, so that unknown blocks and tool types
    come through verbatim as opaque parts and tools."""
    validate(REQUEST, request, "request")
    messages = _system(request.get("system"))
    for position, message in enumerate(request["messages"]):
        messages.extend(_turn(message, f"request.messages.{position}"))
    exchange = Exchange(
        messages=messages, tools=[_tool(tool) for tool in request.get("tools") or ()], model=request.get("model") or ""
    )
    if (request.get("tool_choice") or {}).get("disable_parallel_tool_use"):
        exchange.options["parallel_tool_calls"] = False
    if (response_format := _response_format(request)) is not None:
        exchange.options["response_format"] = response_format
    exchange.error_message = provider_error_message(response, status_code)
    if not exchange.error_message:
        validate(RESPONSE, response, "response")
        _read_response(exchange, response)  # type: ignore[arg-type]
    return exchange


def _response_format(request: dict) -> dict | None:
    """Structured output (`output_config.format`, or the beta's `output_format`) in Chat Completions'
    `response_format` shape, the one the log's options keep; Anthropic's format has no name, so it is "output"."""
    config = request.get("output_config")
    format = config.get("format") if isinstance(config, dict) else None
    format = format if isinstance(format, dict) else request.get("output_format")
    if not isinstance(format, dict):
        return None
    if format.get("type") != "json_schema":
        return format
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": format.get("schema")}}


def _tool(tool: dict) -> dict:
    if tool.get("type") not in (None, "custom"):
        return tool  # a server tool (web search, code execution...), as it came
    function = {"name": tool["name"], "description": tool.get("description"), "parameters": tool["input_schema"]}
    return function_tool({**function, **extras(tool, _TOOL_FIELDS)})  # `strict` and what comes next, kept


def _read_response(exchange: Exchange, body: dict) -> None:
    answer = _assistant(body["content"], "response")
    messages = exchange.messages
    last = messages[-1] if messages else None
    if (
        last
        and last["role"] == "assistant"
        and "tool_calls" not in last
        and isinstance(last["content"], str)
        and isinstance(answer["content"], str | None)
    ):
        # A prefilled answer: the response continues the request's last assistant text, so they are one turn.
        answer["content"] = last["content"] + (answer["content"] or "")
        messages[-1] = answer
    else:
        messages.append(answer)
    exchange.finish_reason = body.get("stop_reason") or ""
    exchange.response_model = body.get("model") or ""
    exchange.model = exchange.model or exchange.response_model
    usage = body.get("usage") or {}
    if usage.get("input_tokens") is not None:
        # Cached prompt tokens are still prompt tokens; Anthropic counts them apart from input_tokens.
        exchange.prompt_tokens = (
            usage["input_tokens"]
            + (usage.get("cache_creation_input_tokens") or 0)
            + (usage.get("cache_read_input_tokens") or 0)
        )
    exchange.completion_tokens = usage.get("output_tokens")
    if exchange.prompt_tokens is not None and exchange.completion_tokens is not None:
        exchange.total_tokens = exchange.prompt_tokens + exchange.completion_tokens


def _system(system: str | list[dict] | None) -> list[dict]:
    if isinstance(system, list):
        parts = [_part(block) for block in system]
        text: str | list[dict] | None = collapse(parts) if parts else None
    else:
        text = system
    return [{"role": "system", "content": text}] if text else []


def _turn(message: dict, path: str) -> list[dict]:
    blocks = message["content"]
    if isinstance(blocks, str):
        return [{"role": message["role"], "content": blocks}]
    if message["role"] == "assistant":
        return [_assistant(blocks, path)]
    return _user(blocks, path)


def _user(blocks: list[dict], path: str) -> list[dict]:
    """Tool results become tool messages, in order, before whatever else the user said in that turn."""
    messages: list[dict] = []
    parts: list[dict] = []
    for index, block in enumerate(blocks):
        kind = block["type"]
        if kind == "tool_result":
            result: dict[str, Any] = {"role": "tool", "tool_call_id": block["tool_use_id"], "content": _result(block)}
            if block.get("is_error"):
                result["is_error"] = True
            messages.append(result)
        elif kind in ("tool_use", "thinking", "redacted_thinking"):
            raise fail(f"{path}.content.{index}.type", f"a {kind} block cannot be in a user message")
        else:
            parts.append(_part(block))
    if parts or not messages:
        messages.append({"role": "user", "content": collapse(parts)})
    return messages


def _assistant(blocks: list[dict], path: str) -> dict:
    """Text blocks, and blocks we do not model (server tool calls and their results) kept in order as opaque
    parts; tool_use blocks become tool calls. Thinking stays in the original only."""
    parts: list[dict] = []
    calls: list[dict] = []
    for index, block in enumerate(blocks):
        kind = block["type"]
        if kind == "text":
            parts.append(block)
        elif kind == "tool_use":
            calls.append(tool_call(block["id"], block["name"], orjson.dumps(block["input"]).decode()))
        elif kind in ("image", "document", "tool_result"):
            raise fail(f"{path}.content.{index}.type", f"a {kind} block cannot be in an assistant message")
        elif kind not in _KNOWN_BLOCKS:
            parts.append(block)  # server_tool_use, web_search_tool_result...: as they came
    message: dict[str, Any] = {"role": "assistant", "content": _answer_content(parts, bool(calls))}
    if calls:
        message["tool_calls"] = calls
    return message


def _answer_content(parts: list[dict], has_calls: bool) -> str | list[dict] | None:
    if any(part["type"] != "text" for part in parts):
        return [{"type": "text", "text": part["text"]} if part["type"] == "text" else part for part in parts]
    # Citations split one answer into several text blocks that read as one; otherwise blocks are paragraphs.
    separator = "" if any(part.get("citations") for part in parts) else "\n"
    text = separator.join(part["text"] for part in parts)
    return text if parts or not has_calls else None


def _result(block: dict) -> str | list[dict]:
    result = block.get("content")
    if result is None:
        return ""
    if isinstance(result, str):
        return result
    return collapse([_part(item) for item in result])


def _part(block: dict) -> dict:
    """A user-side block as an OpenAI content part; one we have no mapping for (a new source type, a search
    result) is kept as it came."""
    kind = block["type"]
    if kind == "text":
        return {"type": "text", "text": block["text"]}
    source = block.get("source") or {}
    if kind == "image" and source.get("type") in ("base64", "url"):
        url = source["url"] if source["type"] == "url" else f"data:{source['media_type']};base64,{source['data']}"
        return {"type": "image_url", "image_url": {"url": url}}
    if kind == "document" and source.get("type") in ("base64", "text", "url"):
        return {"type": "file", "file": _file(block)}
    return block


def _file(document: dict) -> dict:
    source = document["source"]
    file: dict[str, str] = {"filename": document["title"]} if document.get("title") else {}
    if source["type"] == "base64":
        file["file_data"] = f"data:{source['media_type']};base64,{source['data']}"
    elif source["type"] == "text":
        encoded = base64.b64encode(source["data"].encode()).decode()
        file["file_data"] = f"data:{source.get('media_type', 'text/plain')};base64,{encoded}"
    else:
        file["file_url"] = source["url"]  # no OpenAI equivalent; kept so the document is not lost
    return file
