"""Anthropic Messages bodies (also as sent through Bedrock and Vertex), turned into canonical OpenAI messages.

The differences that matter: the system prompt sits outside the messages, tool calls and tool
results are content blocks, and one user turn may carry several tool results plus new text.
"""

import base64
from typing import Annotated, Any, Literal, NotRequired

import orjson
from pydantic import Field, TypeAdapter
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from curation.ingest.canonical import (
    Exchange,
    collapse,
    content,
    error_text,
    fail,
    function_tool,
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


class ImageBlock(TypedDict):
    type: Literal["image"]
    source: Annotated[Base64Source | URLSource, Field(discriminator="type")]


class DocumentBlock(TypedDict):
    type: Literal["document"]
    source: Annotated[Base64Source | PlainTextSource | URLSource, Field(discriminator="type")]
    title: NotRequired[str | None]


class ToolUseBlock(TypedDict):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


ResultBlock = Annotated[TextBlock | ImageBlock | DocumentBlock, Field(discriminator="type")]


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


Block = Annotated[
    TextBlock | ImageBlock | DocumentBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock,
    Field(discriminator="type"),
]
ResponseBlock = Annotated[
    TextBlock | ToolUseBlock | ThinkingBlock | RedactedThinkingBlock, Field(discriminator="type")
]


class Message(TypedDict):
    role: Literal["user", "assistant"]
    content: content(Block, parts="content blocks")


class Tool(TypedDict):
    # Server tools (web_search_..., bash_...) have no schema and no canonical form: their type is rejected first.
    type: NotRequired[Literal["custom"] | None]
    name: str
    description: NotRequired[str | None]
    input_schema: dict[str, Any]


class MessagesRequest(TypedDict):
    messages: Annotated[list[Message], Field(min_length=1)]
    model: NotRequired[str | None]
    system: NotRequired[content(TextBlock, nullable=True, parts="text blocks")]
    tools: NotRequired[list[Tool] | None]


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


def read_anthropic(request: dict, response: dict | None, status_code: int | None) -> Exchange:
    body = validate(REQUEST, request, "request")
    messages = _system(body.get("system"))
    for position, message in enumerate(body["messages"]):
        messages.extend(_turn(message, f"request.messages.{position}"))
    tools = [
        function_tool(tool["name"], tool.get("description"), tool["input_schema"]) for tool in body.get("tools") or ()
    ]
    exchange = Exchange(messages=messages, tools=tools, model=body.get("model") or "")
    exchange.error_message = error_text(response, status_code)
    if not exchange.error_message:
        _read_response(exchange, validate(RESPONSE, response, "response"))
    return exchange


def _read_response(exchange: Exchange, body: dict) -> None:
    answer = _assistant(body["content"], "response")
    messages = exchange.messages
    last = messages[-1] if messages else None
    if last and last["role"] == "assistant" and "tool_calls" not in last and isinstance(last["content"], str):
        # A prefilled answer: the response continues the request's last assistant text, so they are one turn.
        answer["content"] = last["content"] + (answer["content"] or "")
        messages[-1] = answer
    else:
        messages.append(answer)
    exchange.finish_reason = body.get("stop_reason") or ""
    exchange.model = exchange.model or body.get("model") or ""
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
    text = "\n".join(block["text"] for block in system) if isinstance(system, list) else system
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
        if block["type"] == "tool_result":
            messages.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": _result(block)})
        elif block["type"] in ("text", "image", "document"):
            parts.append(_part(block))
        else:
            raise fail(f"{path}.content.{index}.type", f"a {block['type']} block cannot be in a user message")
    if parts or not messages:
        messages.append({"role": "user", "content": collapse(parts)})
    return messages


def _assistant(blocks: list[dict], path: str) -> dict:
    texts: list[dict] = []
    calls: list[dict] = []
    for index, block in enumerate(blocks):
        kind = block["type"]
        if kind == "text":
            texts.append(block)
        elif kind == "tool_use":
            calls.append(tool_call(block["id"], block["name"], orjson.dumps(block["input"]).decode()))
        elif kind not in ("thinking", "redacted_thinking"):  # reasoning stays in `original` only
            raise fail(f"{path}.content.{index}.type", f"a {kind} block cannot be in an assistant message")
    # Citations split one answer into several text blocks that read as one; otherwise blocks are paragraphs.
    separator = "" if any(block.get("citations") for block in texts) else "\n"
    text = separator.join(block["text"] for block in texts)
    message: dict[str, Any] = {"role": "assistant", "content": text if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _result(block: dict) -> str | list[dict]:
    result = block.get("content")
    if result is None:
        return ""
    if isinstance(result, str):
        return result
    return collapse([_part(item) for item in result])


def _part(block: dict) -> dict:
    kind = block["type"]
    if kind == "text":
        return {"type": "text", "text": block["text"]}
    source = block["source"]
    if kind == "image":
        url = source["url"] if source["type"] == "url" else f"data:{source['media_type']};base64,{source['data']}"
        return {"type": "image_url", "image_url": {"url": url}}
    return {"type": "file", "file": _file(block)}


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
