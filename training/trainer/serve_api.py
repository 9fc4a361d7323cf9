"""The small server's API in plain Python: a chat completion request read and checked, and the bodies it answers,
in the shapes vLLM's OpenAI-compatible server gives them (`serve.py` speaks HTTP). No Django, no torch here."""

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from training.trainer.data import template_messages

ROLES = ("system", "developer", "user", "assistant", "tool")
TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
TOOL_CALL_START = "<tool_call>"


class ApiError(Exception):
    """An answer other than 200, in OpenAI's error shape; `code` is the HTTP status, as vLLM writes it."""

    def __init__(self, status: int, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param

    @property
    def kind(self) -> str:
        return {404: "NotFoundError", 500: "InternalServerError", 503: "ServiceUnavailableError"}.get(
            self.status, "BadRequestError"
        )

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.status}}


def model_not_found(name: str) -> ApiError:
    return ApiError(404, f"The model `{name}` does not exist.", param="model")


@dataclass
class ChatRequest:
    """What a chat completion asks for, checked; what generation does not read (response_format, user, ...) is
    accepted and dropped."""

    model: str | None
    messages: list[dict]  # as chat templates take them (data.template_messages)
    tools: list[dict] = field(default_factory=list)
    max_tokens: int | None = None
    min_tokens: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def read_json(raw: bytes) -> dict:
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:
        raise ApiError(400, f"The body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The body must be a JSON object.")
    return body


def chat_request(body: dict) -> ChatRequest:
    """The request of a chat completion body, or ApiError(400) naming the first field that is wrong."""
    model = _optional(body, "model", str)
    if body.get("n") not in (None, 1):
        raise ApiError(400, "Only n=1 is supported: this server gives one answer per request.", param="n")
    stream_options = _optional(body, "stream_options", dict) or {}
    max_tokens = _optional(body, "max_completion_tokens", int)
    max_tokens = _optional(body, "max_tokens", int) if max_tokens is None else max_tokens
    if max_tokens is not None and max_tokens < 1:
        raise ApiError(400, "max_tokens must be at least 1.", param="max_tokens")
    request = ChatRequest(
        model=model,
        messages=_messages(body.get("messages")),
        tools=_tools(body.get("tools")),
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 1.0, low=0.0, high=2.0),
        top_p=_number(body, "top_p", 1.0, low=0.0, high=1.0),
        seed=_optional(body, "seed", int),
        stop=_stop(body.get("stop")),
        stream=bool(_optional(body, "stream", bool)),
        include_usage=bool(stream_options.get("include_usage")),
    )
    request.min_tokens = max(0, _optional(body, "min_tokens", int) or 0)
    if _optional(body, "ignore_eos", bool):  # vLLM's sampling extra: answer until max_tokens
        request.min_tokens = max_tokens or 1 << 30
    if request.top_p == 0:
        raise ApiError(400, "top_p must be in (0, 1].", param="top_p")
    return request


def _optional(body: dict, name: str, kind: type) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ApiError(400, f"{name} must be {_KIND_NAMES[kind]}, not {json.dumps(value)[:80]}.", param=name)
    return value


_KIND_NAMES = {str: "a string", int: "an integer", bool: "true or false", dict: "an object", list: "a list"}


def _number(body: dict, name: str, default: float, *, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ApiError(400, f"{name} must be a number from {low:g} to {high:g}, not {json.dumps(value)[:80]}.",
                       param=name)  # fmt: skip
    return float(value)


def _stop(value: Any) -> list[str]:
    stops = [value] if isinstance(value, str) else value if value is not None else []
    if not isinstance(stops, list) or not all(isinstance(stop, str) for stop in stops):
        raise ApiError(400, "stop must be a string or a list of strings.", param="stop")
    return [stop for stop in stops if stop]


def _messages(value: Any) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise ApiError(400, "messages must be a non-empty list of messages.", param="messages")
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ApiError(400, f"{where} must be an object whose role is one of {', '.join(ROLES)}.",
                           param="messages")  # fmt: skip
        _check_content(message.get("content"), where)
        calls = message.get("tool_calls")
        if calls is not None and not (isinstance(calls, list) and all(isinstance(c, dict) for c in calls)):
            raise ApiError(400, f"{where}.tool_calls must be a list of objects.", param="messages")
    messages = template_messages(value)
    for message in messages:
        if message["role"] == "developer":  # OpenAI's newer name for the system turn, which templates know
            message["role"] = "system"
    return messages


def _check_content(content: Any, where: str) -> None:
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise ApiError(400, f"{where}.content must be a string or a list of content parts.", param="messages")
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("text", "refusal"):
            raise ApiError(400, f"{where}.content: only text parts are supported, not {json.dumps(kind)}.",
                           param="messages")  # fmt: skip


def _tools(value: Any) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(tool, dict) for tool in value):
        raise ApiError(400, "tools must be a list of objects.", param="tools")
    return value


# --- answers ----------------------------------------------------------------------------------------


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}  # fmt: skip


def split_tool_calls(text: str) -> tuple[str, list[dict]]:
    """The text outside `<tool_call>{"name", "arguments"}</tool_call>` blocks and the calls, in OpenAI's shape
    (arguments as a JSON string). A block that is not such an object stays in the text."""
    calls: list[dict] = []

    def take(match: re.Match) -> str:
        try:
            call = json.loads(match.group(1))
        except ValueError:
            return match.group(0)
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return match.group(0)
        arguments = call.get("arguments", call.get("parameters", {}))
        calls.append({"id": f"chatcmpl-tool-{uuid.uuid4().hex}", "type": "function",
                      "function": {"name": call["name"], "arguments": json.dumps(arguments)}})  # fmt: skip
        return ""

    rest = TOOL_CALL.sub(take, text)
    return rest, calls


def completion(*, ident: str, model: str, text: str, tools: bool, finish: str, counts: dict) -> dict:
    """A `chat.completion`: the answer's text, or its tool calls when the request offered tools."""
    content, calls = split_tool_calls(text) if tools else (text, [])
    message: dict[str, Any] = {"role": "assistant", "content": content if content.strip() or not calls else None,
                               "tool_calls": calls}  # fmt: skip
    choice = {"index": 0, "message": message, "logprobs": None,
              "finish_reason": "tool_calls" if calls else finish, "stop_reason": None}  # fmt: skip
    return {"id": ident, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [choice], "usage": counts}  # fmt: skip


def chunk(*, ident: str, model: str, delta: dict, finish: str | None = None, usage_field: bool = False) -> dict:
    """A `chat.completion.chunk` of a streamed answer (with `usage: null` when the last chunk carries it)."""
    body: dict[str, Any] = {
        "id": ident, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }  # fmt: skip
    if usage_field:
        body["usage"] = None
    return body


def usage_chunk(*, ident: str, model: str, counts: dict) -> dict:
    return {"id": ident, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [], "usage": counts}  # fmt: skip


class TextFilter:
    """Generated text as the client may see it, piece by piece: cut at the first stop string, and, when the request
    offered tools, held back from the first `<tool_call>` on (the calls are read from it at the end). Text that may
    be the start of a stop string or of `<tool_call>` waits for the next piece."""

    def __init__(self, stops: list[str], *, tools: bool) -> None:
        self.stops = stops
        self.markers = [*stops, TOOL_CALL_START] if tools else list(stops)
        self.text = ""  # everything generated so far, cut at a stop string
        self.sent = 0  # how much of it the client has had
        self.stopped = False  # a stop string was found
        self.held = False  # a tool call started: nothing more is sent before the end

    def feed(self, piece: str) -> str:
        """What of `piece` (and of what waited) can be sent now."""
        if self.stopped:
            return ""
        self.text += piece
        cut = min((i for i in (self.text.find(stop) for stop in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.text, self.stopped = self.text[:cut], True
        if self.held:
            return ""
        start = self.text.find(TOOL_CALL_START, self.sent) if TOOL_CALL_START in self.markers else -1
        if start >= 0:
            self.held = True
            return self._send(start)
        return self._send(len(self.text) - (0 if self.stopped else self._partial_marker()))

    def rest(self) -> str:
        """What was held back, once generation has ended."""
        return self._send(len(self.text))

    def _partial_marker(self) -> int:
        """The length of the longest end of the text that begins a marker."""
        longest = 0
        for marker in self.markers:
            for size in range(min(len(marker) - 1, len(self.text)), longest, -1):
                if self.text.endswith(marker[:size]):
                    longest = size
                    break
        return longest

    def _send(self, end: int) -> str:
        end = max(end, self.sent)
        out, self.sent = self.text[self.sent : end], end
        return out
