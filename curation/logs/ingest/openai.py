"""OpenAI Chat Completions bodies, also spoken by Azure, OpenRouter, Together, Groq, vLLM, Mistral...

Request messages are already canonical in shape; reading them means validating, renaming the
legacy roles and dropping what providers add on top (`annotations`, `audio`, nulls).
"""

from typing import Annotated, Any, Literal, NotRequired

from pydantic import Field, TypeAdapter
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from curation.logs.ingest.canonical import (
    Exchange,
    collapse,
    content,
    extras,
    function_tool,
    provider_error_message,
    tagged,
    tool_call,
    validate,
)
from curation.logs.ingest.times import moment_from_unix

Weight = Annotated[int, Field(ge=0, le=1)]
Tokens = Annotated[int, Field(ge=0)]


class TextPart(TypedDict):
    type: Literal["text"]
    text: str


class ImageURL(TypedDict):
    url: str
    detail: NotRequired[str]  # "auto", "low", "high", and whatever comes next ("original")


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


# Part types we do not know yet are kept as they came (canonical.tagged).
UserPart = tagged(
    ("text", TextPart), ("image_url", ImagePart), ("input_audio", AudioPart), ("file", FilePart), what="a content part"
)
AssistantPart = tagged(("text", TextPart), ("refusal", RefusalPart), what="a content part")
TextOrOther = tagged(("text", TextPart), what="a content part")


class FunctionCall(TypedDict):
    name: str
    arguments: str  # kept as sent: a reply cut off by max_tokens has unparseable arguments and is still a log


class FunctionToolCall(TypedDict):
    id: str
    type: NotRequired[Literal["function"]]
    function: FunctionCall


class OtherToolCall(TypedDict):
    # A call of a tool type other than "function" (GPT-5's "custom" tools: {"custom": {"name", "input"}}).
    id: str
    type: str


ToolCall = tagged(("function", FunctionToolCall), what="a tool call", default="function")


class SystemMessage(TypedDict):
    role: Literal["system", "developer"]
    content: content(TextOrOther)
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
    content: content(TextOrOther)
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


class FunctionToolDef(TypedDict):
    type: Literal["function"]
    function: FunctionDef


# Tools of other types ("custom", built-in tools) are kept as they came.
ToolDef = tagged(("function", FunctionToolDef), what="a tool")


class ChatRequest(TypedDict):
    messages: Annotated[list[Message], Field(min_length=1)]
    model: NotRequired[str | None]
    tools: NotRequired[list[ToolDef] | None]
    functions: NotRequired[list[FunctionDef] | None]
    parallel_tool_calls: NotRequired[bool | None]


class ResponseMessage(TypedDict):
    content: NotRequired[content(AssistantPart, nullable=True)]
    tool_calls: NotRequired[list[ToolCall] | None]
    function_call: NotRequired[FunctionCall | None]
    refusal: NotRequired[str | None]


class Choice(TypedDict):
    index: NotRequired[int | None]
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
    created: NotRequired[float | None]  # unix seconds, within curation.logs.ingest.times' range


REQUEST = TypeAdapter(ChatRequest)
RESPONSE = TypeAdapter(ChatResponse)


# The message fields the canonical form has a place for; any other non-empty field is kept beside them.
_MESSAGE_FIELDS = frozenset(
    {"role", "content", "name", "weight", "tool_calls", "function_call", "refusal", "tool_call_id"}
)
_CALL_FIELDS = frozenset({"id", "type", "function", "index"})


def read_openai(request: dict, response: dict | None, status_code: int | None) -> Exchange:
    validate(REQUEST, request, "request")
    exchange = Exchange(
        messages=messages_to_canonical(request["messages"]),
        tools=tools_to_canonical(request.get("tools"), request.get("functions")),
        model=request.get("model") or "",
        options=options_of(request),
    )
    exchange.error_message = provider_error_message(response, status_code)
    if not exchange.error_message:
        validate(RESPONSE, response, "response")
        _read_response(exchange, response)  # type: ignore[arg-type]
    return exchange


def options_of(body: dict) -> dict:
    """The request settings a training line can carry: `parallel_tool_calls`, and `response_format` unless it is
    plain text (the default, which says nothing)."""
    options: dict = {}
    if body.get("parallel_tool_calls") is not None:
        options["parallel_tool_calls"] = body["parallel_tool_calls"]
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") != "text":
        options["response_format"] = response_format
    return options


def _read_response(exchange: Exchange, body: dict) -> None:
    # n > 1 samples: the choice of the lowest index is the conversation's answer, the others its alternatives.
    position = len(exchange.messages)
    for index, choice in sorted(_indexed(body["choices"]), key=lambda pair: pair[0]):
        message = _assistant(choice["message"], position)
        finish_reason = choice.get("finish_reason") or ""
        if len(exchange.messages) == position:
            exchange.messages.append(message)
            exchange.finish_reason = finish_reason
        else:
            exchange.alternatives.append({"index": index, "message": message, "finish_reason": finish_reason})
    usage = body.get("usage") or {}
    exchange.prompt_tokens = usage.get("prompt_tokens")
    exchange.completion_tokens = usage.get("completion_tokens")
    exchange.total_tokens = usage.get("total_tokens")
    if exchange.total_tokens is None and exchange.prompt_tokens is not None and exchange.completion_tokens is not None:
        exchange.total_tokens = exchange.prompt_tokens + exchange.completion_tokens
    exchange.response_model = body.get("model") or ""
    exchange.model = exchange.model or exchange.response_model
    if body.get("created") is not None:
        exchange.created_at = moment_from_unix(body["created"], "response.created")


def _indexed(choices: list[dict]) -> list[tuple[int, dict]]:
    """Each choice with its `index`, or its position where it has none."""
    return [
        (choice["index"] if type(choice.get("index")) is int else position, choice)
        for position, choice in enumerate(choices)
    ]


def messages_to_canonical(messages: list[dict]) -> list[dict]:
    """Messages validated against `Message` to canonical ones. They are read from the input itself, not from
    what validation returns, so that fields and part types no reader knows come through verbatim."""
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
        out.update(extras(message, _MESSAGE_FIELDS))
        canonical.append(out)
    return canonical


def _assistant(message: dict, position: int) -> dict:
    out: dict[str, Any] = {"role": "assistant", "content": _content(message.get("content"))}
    if message.get("name") is not None:
        out["name"] = message["name"]
    calls = [_call(call) for call in message.get("tool_calls") or ()]
    if (legacy := message.get("function_call")) is not None:
        # Legacy function calls have no id; derive a stable one from the message position.
        calls.append(tool_call(f"call_{position}", legacy["name"], legacy["arguments"]))
    if calls:
        out["tool_calls"] = calls
    if message.get("refusal") is not None:
        out["refusal"] = message["refusal"]
    out.update(extras(message, _MESSAGE_FIELDS))
    return out


def _call(call: dict) -> dict:
    if call.get("type", "function") != "function":
        return call  # a call of a tool type we do not model ("custom"), as it came
    function = call["function"]
    return {**tool_call(call["id"], function["name"], function["arguments"]), **extras(call, _CALL_FIELDS)}


def _content(value: str | list[dict] | None) -> str | list[dict] | None:
    return collapse(value) if isinstance(value, list) else value


def tools_to_canonical(tools: list[dict] | None, functions: list[dict] | None = None) -> list[dict]:
    """Function tools with their definitions as sent (`strict` and key order kept); other tool types as they came."""
    canonical = [function_tool(tool["function"]) if tool.get("type") == "function" else tool for tool in tools or ()]
    return canonical + [function_tool(function) for function in functions or ()]
