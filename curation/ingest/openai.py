"""OpenAI Chat Completions bodies, also spoken by Azure, OpenRouter, Together, Groq, vLLM, Mistral...

Request messages are already canonical in shape; reading them means validating, renaming the
legacy roles and dropping what providers add on top (`annotations`, `audio`, nulls).
"""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NotRequired

from pydantic import Field, TypeAdapter
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from curation.ingest.canonical import (
    Exchange,
    collapse,
    content,
    error_text,
    function_tool,
    tool_call,
    validate,
)

Weight = Annotated[int, Field(ge=0, le=1)]
Tokens = Annotated[int, Field(ge=0)]


class TextPart(TypedDict):
    type: Literal["text"]
    text: str


class ImageURL(TypedDict):
    url: str
    detail: NotRequired[Literal["auto", "low", "high"]]


class ImagePart(TypedDict):
    type: Literal["image_url"]
    image_url: ImageURL


class AudioPart(TypedDict):
    type: Literal["input_audio"]
    input_audio: dict[str, Any]


class FilePart(TypedDict):
    type: Literal["file"]
    file: dict[str, Any]


class RefusalPart(TypedDict):
    type: Literal["refusal"]
    refusal: str


UserPart = Annotated[TextPart | ImagePart | AudioPart | FilePart, Field(discriminator="type")]
AssistantPart = Annotated[TextPart | RefusalPart, Field(discriminator="type")]


class FunctionCall(TypedDict):
    name: str
    arguments: str  # kept as sent: a reply cut off by max_tokens has unparseable arguments and is still a log


class ToolCall(TypedDict):
    id: str
    type: NotRequired[Literal["function"]]
    function: FunctionCall


class SystemMessage(TypedDict):
    role: Literal["system", "developer"]
    content: content(TextPart)
    name: NotRequired[str | None]
    weight: NotRequired[Weight | None]


class UserMessage(TypedDict):
    role: Literal["user"]
    content: content(UserPart)
    name: NotRequired[str | None]
    weight: NotRequired[Weight | None]


class AssistantMessage(TypedDict):
    role: Literal["assistant"]
    content: NotRequired[content(AssistantPart, nullable=True)]
    tool_calls: NotRequired[list[ToolCall] | None]
    function_call: NotRequired[FunctionCall | None]
    refusal: NotRequired[str | None]
    name: NotRequired[str | None]
    weight: NotRequired[Weight | None]


class ToolMessage(TypedDict):
    role: Literal["tool"]
    tool_call_id: str
    content: content(TextPart)
    name: NotRequired[str | None]
    weight: NotRequired[Weight | None]


class FunctionMessage(TypedDict):
    role: Literal["function"]
    name: str
    content: str | None
    weight: NotRequired[Weight | None]


Message = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage | FunctionMessage, Field(discriminator="role")
]


class FunctionDef(TypedDict):
    name: str
    description: NotRequired[str | None]
    parameters: NotRequired[dict[str, Any] | None]


class ToolDef(TypedDict):
    type: Literal["function"]
    function: FunctionDef


class ChatRequest(TypedDict):
    messages: Annotated[list[Message], Field(min_length=1)]
    model: NotRequired[str | None]
    tools: NotRequired[list[ToolDef] | None]
    functions: NotRequired[list[FunctionDef] | None]


class ResponseMessage(TypedDict):
    content: NotRequired[content(AssistantPart, nullable=True)]
    tool_calls: NotRequired[list[ToolCall] | None]
    function_call: NotRequired[FunctionCall | None]
    refusal: NotRequired[str | None]


class Choice(TypedDict):
    message: ResponseMessage
    finish_reason: NotRequired[str | None]


class Usage(TypedDict):
    prompt_tokens: NotRequired[Tokens | None]
    completion_tokens: NotRequired[Tokens | None]
    total_tokens: NotRequired[Tokens | None]


class ChatResponse(TypedDict):
    choices: list[Choice]
    model: NotRequired[str | None]
    usage: NotRequired[Usage | None]
    created: NotRequired[Annotated[float, Field(ge=0, le=253_402_300_799)] | None]  # up to year 9999


REQUEST = TypeAdapter(ChatRequest)
RESPONSE = TypeAdapter(ChatResponse)


def read_openai(request: dict, response: dict | None, status_code: int | None) -> Exchange:
    body = validate(REQUEST, request, "request")
    exchange = Exchange(
        messages=messages_to_canonical(body["messages"]),
        tools=tools_to_canonical(body.get("tools"), body.get("functions")),
        model=body.get("model") or "",
    )
    exchange.error_message = error_text(response, status_code)
    if not exchange.error_message:
        _read_response(exchange, validate(RESPONSE, response, "response"))
    return exchange


def _read_response(exchange: Exchange, body: dict) -> None:
    if body["choices"]:  # n > 1 samples: the first one is the answer we keep
        choice = body["choices"][0]
        exchange.messages.append(_assistant(choice["message"], len(exchange.messages)))
        exchange.finish_reason = choice.get("finish_reason") or ""
    usage = body.get("usage") or {}
    exchange.prompt_tokens = usage.get("prompt_tokens")
    exchange.completion_tokens = usage.get("completion_tokens")
    exchange.total_tokens = usage.get("total_tokens")
    if exchange.total_tokens is None and exchange.prompt_tokens is not None and exchange.completion_tokens is not None:
        exchange.total_tokens = exchange.prompt_tokens + exchange.completion_tokens
    exchange.model = exchange.model or body.get("model") or ""
    if body.get("created") is not None:
        exchange.created_at = datetime.fromtimestamp(body["created"], UTC)


def messages_to_canonical(messages: list[dict]) -> list[dict]:
    """Messages validated against `Message` to canonical ones."""
    canonical: list[dict] = []
    legacy_call_id = ""
    for message in messages:
        role = message["role"]
        out: dict[str, Any]
        if role == "assistant":
            out = _assistant(message, len(canonical))
            if message.get("function_call") is not None:
                legacy_call_id = out["tool_calls"][-1]["id"]
        elif role == "function":
            # Legacy function results carry no call id; pair them with the call they answer.
            call_id = legacy_call_id or f"call_{len(canonical)}"
            out = {
                "role": "tool",
                "tool_call_id": call_id,
                "name": message["name"],
                "content": message["content"] or "",
            }
            legacy_call_id = ""
        else:
            out = {"role": "system" if role == "developer" else role}
            if role == "tool":
                out["tool_call_id"] = message["tool_call_id"]
            out["content"] = _content(message["content"])
            if message.get("name") is not None:
                out["name"] = message["name"]
        if message.get("weight") is not None:
            out["weight"] = message["weight"]
        canonical.append(out)
    return canonical


def _assistant(message: dict, position: int) -> dict:
    out: dict[str, Any] = {"role": "assistant", "content": _content(message.get("content"))}
    if message.get("name") is not None:
        out["name"] = message["name"]
    calls = [
        tool_call(call["id"], call["function"]["name"], call["function"]["arguments"])
        for call in message.get("tool_calls") or ()
    ]
    if (legacy := message.get("function_call")) is not None:
        # Legacy function calls have no id; derive a stable one from the message position.
        calls.append(tool_call(f"call_{position}", legacy["name"], legacy["arguments"]))
    if calls:
        out["tool_calls"] = calls
    if message.get("refusal") is not None:
        out["refusal"] = message["refusal"]
    return out


def _content(value: str | list[dict] | None) -> str | list[dict] | None:
    return collapse(value) if isinstance(value, list) else value


def tools_to_canonical(tools: list[dict] | None, functions: list[dict] | None = None) -> list[dict]:
    definitions = [tool["function"] for tool in tools or ()] + (functions or [])
    return [function_tool(f["name"], f.get("description"), f.get("parameters")) for f in definitions]
