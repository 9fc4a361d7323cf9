"""What the readers of other tools' exports share: the call an export line records, as a log envelope around an
OpenAI chat request and response, and the small field readers they all need."""

from dataclasses import dataclass, field
from datetime import datetime

import orjson

from curation.logs.ingest.canonical import IngestError, describe, fail, join
from curation.logs.ingest.times import moment_from_iso, moment_from_unix


@dataclass(slots=True)
class ExportedCall:
    """One model call another tool exported: OpenAI-shaped request and response, and the fields beside them."""

    request: dict
    response: dict | None
    external_id: str | None
    status_code: int | None = None
    provider: str = ""
    latency_ms: float | None = None
    created_at: datetime | None = None
    metadata: dict = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    # Where the request's and response's fields are in the line, for errors: "request.messages" -> "inputs.messages"
    # (longest prefix first wins); a path no prefix matches is named as the reader saw it.
    paths: dict[str, str] = field(default_factory=dict)

    def relocate(self, error: IngestError) -> IngestError:
        """The error of the OpenAI reader, naming the field where it is in the exported line."""
        path, _, reason = str(error).partition(": ")
        for prefix in sorted(self.paths, key=len, reverse=True):
            if path == prefix or path.startswith(prefix + "."):
                path = self.paths[prefix] + path[len(prefix) :]
                return fail(path.lstrip("."), reason)
        return error


def string(obj: dict, name: str, path: str = "") -> str | None:
    """A string field, null or missing as None; anything else an IngestError naming it."""
    value = obj.get(name)
    if value is None or isinstance(value, str):
        return value
    raise fail(join(path, name), f"expected a string, got {describe(value)}")


def an_object(obj: dict, name: str, path: str = "") -> dict | None:
    value = obj.get(name)
    if value is None or isinstance(value, dict):
        return value
    raise fail(join(path, name), f"expected an object, got {describe(value)}")


def inner(obj: dict, name: str) -> dict:
    """An object field the reader can do without: {} when it is missing or not an object."""
    value = obj.get(name)
    return value if isinstance(value, dict) else {}


def moment(obj: dict, name: str, path: str = "") -> datetime | None:
    """An ISO-8601 string or unix seconds (what the tools write their times as); null or missing as None."""
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        return moment_from_iso(value, join(path, name))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return moment_from_unix(value, join(path, name))
    raise fail(join(path, name), f"expected an ISO-8601 string or unix seconds, got {describe(value)}")


def duration_ms(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() * 1000 if start and end and end >= start else None


def count(value: object) -> int | None:
    """A token count as the tools write it: an integer, anything else unknown."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def compact(value: object) -> str:
    return orjson.dumps(value).decode()


# --- LangChain messages (LangSmith runs, Langfuse's LangChain integration) ----------------------------------------

_LANGCHAIN_ROLES = {
    "human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "function",
    "developer": "system", "HumanMessage": "user", "AIMessage": "assistant", "SystemMessage": "system",
    "ToolMessage": "tool", "FunctionMessage": "function", "HumanMessageChunk": "user",
    "AIMessageChunk": "assistant", "SystemMessageChunk": "system", "ToolMessageChunk": "tool",
}  # fmt: skip


def openai_message(message: object) -> object:
    """A message in OpenAI chat form. A LangChain message, serialized in any of its three forms (`{"lc": 1, "id":
    [..., "AIMessage"], "kwargs": {...}}`, `{"type": "ai", "data": {...}}` or `{"type": "ai", "content": ...}`), is
    turned into one; anything else (an OpenAI message already, or not a message at all) is left for the OpenAI reader
    to read or refuse."""
    if not isinstance(message, dict) or "role" in message:
        return message
    fields, kind = _langchain_fields(message)
    role = fields.get("role") if kind in ("chat", "ChatMessage", "ChatMessageChunk") else _LANGCHAIN_ROLES.get(kind)
    if not isinstance(role, str):
        return message
    converted: dict = {"role": role, "content": fields.get("content")}
    if isinstance(fields.get("name"), str):
        converted["name"] = fields["name"]
    extra = inner(fields, "additional_kwargs")
    if role == "assistant":
        calls = [_langchain_call(call) for call in fields.get("tool_calls") or []] or extra.get("tool_calls")
        if calls:
            converted["tool_calls"] = calls
        if extra.get("function_call"):
            converted["function_call"] = extra["function_call"]
    if role == "tool":
        converted["tool_call_id"] = fields.get("tool_call_id")
    return converted


def _langchain_fields(message: dict) -> tuple[dict, str]:
    if message.get("lc") is not None and isinstance(message.get("kwargs"), dict):
        class_path = message.get("id")
        kind = class_path[-1] if isinstance(class_path, list) and class_path else message["kwargs"].get("type")
        return message["kwargs"], kind if isinstance(kind, str) else ""
    kind = message.get("type")
    data = message.get("data")
    return (data if isinstance(data, dict) else message), kind if isinstance(kind, str) else ""


def _langchain_call(call: object) -> object:
    """LangChain's `{"name", "args", "id", "type": "tool_call"}` as an OpenAI tool call (arguments as compact JSON)."""
    if not isinstance(call, dict) or "function" in call:
        return call
    return {"id": call.get("id"), "type": "function", "function": {"name": call.get("name"), "arguments": compact(
        call.get("args") if call.get("args") is not None else {})}}  # fmt: skip
