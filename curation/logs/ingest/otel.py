"""OpenTelemetry GenAI spans, in OTLP JSON, read as the call they record.

A span of the GenAI semantic conventions says which model was asked what, and what it answered, in one of three
encodings, read in this order:

- the newer JSON attributes `gen_ai.system_instructions`, `gen_ai.input.messages`, `gen_ai.output.messages`
  (messages made of typed parts: `text`, `tool_call`, `tool_call_response`, ...);
- the older span events, one per message (`gen_ai.system.message`, `gen_ai.user.message`,
  `gen_ai.assistant.message`, `gen_ai.tool.message`, `gen_ai.choice`), their body in the event's attributes
  (`content`, `tool_calls`, `id`, `message`, `finish_reason`) or as JSON in `gen_ai.event.content`;
- OpenLLMetry's indexed attributes `gen_ai.prompt.{i}.role/content` and `gen_ai.completion.{i}.role/content`.

The call is written as an OpenAI Chat Completions request and response (`SpanCall`), which the OpenAI reader turns
into the canonical conversation. A stored span is a one-span OTLP JSON export (`{"resourceSpans": [...]}` with its
resource and scope), so that it is read again from its original like any other log.

Pure Python, no Django, no protobuf: the OTLP endpoint turns a protobuf body into this JSON first.
"""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from curation.logs.ingest.canonical import describe, fail, join

OTLP_KEY = "resourceSpans"
SPAN_PATH = "resourceSpans.0.scopeSpans.0.spans.0"  # where the one span of a stored export is
# The operations that are a call to a model; agents, tools and embeddings are other spans of the same trace.
MODEL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "completion"})
_STATUS_ERROR = 2  # Status.StatusCode.STATUS_CODE_ERROR
_INDEXED = re.compile(r"^gen_ai\.(prompt|completion)\.(\d+)\.(.+)$")
_INDEXED_CALL = re.compile(r"^tool_calls\.(\d+)\.(\w+)$")
_INDEXED_FUNCTION = re.compile(r"^llm\.request\.functions\.(\d+)\.(\w+)$")
_EVENT_ROLES = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}


@dataclass(slots=True)
class SpanCall:
    """What a GenAI span records, as a log envelope: OpenAI-shaped request and response, and the fields beside."""

    provider: str
    request: dict
    response: dict | None
    status_code: int | None
    latency_ms: float | None
    created_at: float | None  # unix seconds of the span's start
    external_id: str
    metadata: dict = field(default_factory=dict)


def spans_split(export: dict) -> Iterator[dict]:
    """Each span of an OTLP JSON export, as an export of its own holding it with its resource and scope."""
    for resource_spans in export.get(OTLP_KEY) or []:
        resource = {key: value for key, value in resource_spans.items() if key != "scopeSpans"}
        for scope_spans in resource_spans.get("scopeSpans") or []:
            scope = {key: value for key, value in scope_spans.items() if key != "spans"}
            for span in scope_spans.get("spans") or []:
                yield {OTLP_KEY: [{**resource, "scopeSpans": [{**scope, "spans": [span]}]}]}


def the_span(export: dict) -> tuple[dict, dict, dict]:
    """The one span of a one-span export, with its resource's and scope's attributes. Raises IngestError."""
    path = OTLP_KEY
    resource_spans = _one(export.get(OTLP_KEY), path)
    path = join(join(path, 0), "scopeSpans")
    scope_spans = _one(resource_spans.get("scopeSpans"), path)
    span = _one(scope_spans.get("spans"), join(join(path, 0), "spans"))
    resource = resource_spans.get("resource") or {}
    scope = scope_spans.get("scope") or {}
    return span, attributes(resource.get("attributes")), {"name": scope.get("name", "")} if scope else {}


def _one(items: object, path: str) -> dict:
    if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
        raise fail(path, f"expected a list of one object (a log is one span), got {describe(items)}")
    return items[0]


def is_model_call(span: dict) -> bool:
    """Whether a span records a call to a model (GenAI semantic conventions, or OpenLLMetry's)."""
    attrs = attributes(span.get("attributes"))
    operation = attrs.get("gen_ai.operation.name") or attrs.get("llm.request.type")
    if operation is not None:
        return operation in MODEL_OPERATIONS
    return any(key in attrs for key in ("gen_ai.system", "gen_ai.provider.name", "gen_ai.request.model"))


def span_call(export: dict) -> SpanCall:
    """The call a one-span export records. Raises IngestError naming the span's field."""
    span, resource, scope = the_span(export)
    attrs = attributes(span.get("attributes"))
    trace_id, span_id = _id(span, "traceId"), _id(span, "spanId")
    request: dict[str, Any] = {"messages": []}
    if isinstance(attrs.get("gen_ai.request.model"), str):
        request["model"] = attrs["gen_ai.request.model"]
    tools = _tools(attrs)
    if tools:
        request["tools"] = tools
    choice = _read_messages(span, attrs, request["messages"])
    start, end = _nanos(span.get("startTimeUnixNano")), _nanos(span.get("endTimeUnixNano"))
    metadata = {"trace_id": trace_id, "span_id": span_id, "span_name": span.get("name") or ""}
    if span.get("parentSpanId"):
        metadata["parent_span_id"] = span["parentSpanId"]
    if isinstance(resource.get("service.name"), str):
        metadata["service_name"] = resource["service.name"]
    if scope.get("name"):
        metadata["scope_name"] = scope["name"]
    if isinstance(attrs.get("gen_ai.conversation.id"), str):
        metadata["conversation_id"] = attrs["gen_ai.conversation.id"]
    status_code = attrs.get("http.response.status_code")
    provider = attrs.get("gen_ai.provider.name") or attrs.get("gen_ai.system") or ""
    return SpanCall(
        provider=provider if isinstance(provider, str) else "",
        request=request,
        response=_response(span, attrs, choice),
        status_code=status_code if isinstance(status_code, int) and 100 <= status_code <= 599 else None,
        latency_ms=(end - start) / 1e6 if start and end and end >= start else None,
        created_at=start / 1e9 if start else None,
        external_id=f"{trace_id}:{span_id}",
        metadata=metadata,
    )


def _id(span: dict, name: str) -> str:
    value = span.get(name)
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-fA-F]+", value) or not value.strip("0"):
        raise fail(join(SPAN_PATH, name), f"expected a hex id that is not all zeros, got {describe(value)}")
    return value.lower()


def _nanos(value: object) -> int:
    """OTLP JSON writes 64-bit integers as strings, or numbers."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


# --- attribute values ---------------------------------------------------------------------------


def attributes(items: object) -> dict[str, Any]:
    """OTLP key-values as a dict of plain values."""
    found: dict[str, Any] = {}
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            found[item["key"]] = any_value(item.get("value"))
    return found


def any_value(value: object) -> Any:
    """An OTLP AnyValue as a plain value: `{"stringValue": "x"}` is "x", an `intValue` (a string in JSON) an int."""
    if not isinstance(value, dict) or not value:
        return None
    kind, inner = next(iter(value.items()))
    if kind == "intValue":
        return int(inner) if isinstance(inner, str) and re.fullmatch(r"-?\d+", inner) else inner
    if kind == "arrayValue":
        return [any_value(item) for item in (inner or {}).get("values") or []]
    if kind == "kvlistValue":
        return attributes((inner or {}).get("values"))
    return inner  # stringValue, boolValue, doubleValue, bytesValue (base64)


def _json(value: object) -> Any:
    """A structured attribute: sent as a JSON string by most instrumentations, as OTLP arrays and maps by some."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _arguments(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value if value is not None else {}, ensure_ascii=False, separators=(",", ":"))


# --- messages -----------------------------------------------------------------------------------


def _read_messages(span: dict, attrs: dict, messages: list[dict]) -> dict | None:
    """Fill `messages` with the request's conversation; return the answer's choice (message and finish_reason)."""
    if any(key in attrs for key in ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions")):
        return _from_parts(attrs, messages)
    events = [event for event in span.get("events") or [] if isinstance(event, dict)]
    if any(str(event.get("name", "")).startswith("gen_ai.") for event in events):
        return _from_events(events, messages)
    return _from_indexed(attrs, messages)


def _from_parts(attrs: dict, messages: list[dict]) -> dict | None:
    instructions = _json(attrs.get("gen_ai.system_instructions"))
    if isinstance(instructions, str):
        messages.append({"role": "system", "content": instructions})
    elif isinstance(instructions, list) and instructions:
        messages.append({"role": "system", "content": _content(instructions)})
    for message in _list(_json(attrs.get("gen_ai.input.messages")), "gen_ai.input.messages"):
        messages.extend(_parts_message(message))
    outputs = _list(_json(attrs.get("gen_ai.output.messages")), "gen_ai.output.messages")
    if not outputs:
        return None
    answer = _parts_message(outputs[0])
    return {"message": answer[0] if answer else {"content": None}, "finish_reason": outputs[0].get("finish_reason")}


def _list(value: object, name: str) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise fail(join(SPAN_PATH, f"attributes.{name}"), f"expected a JSON list of messages, got {describe(value)}")
    return value


def _parts_message(message: dict) -> list[dict]:
    """A message of parts as OpenAI messages: tool results become `tool` messages, tool calls `tool_calls`."""
    role = message.get("role")
    parts = [part for part in message.get("parts") or [] if isinstance(part, dict)]
    results = [part for part in parts if part.get("type") == "tool_call_response"]
    calls = [part for part in parts if part.get("type") == "tool_call"]
    rest = [part for part in parts if part.get("type") not in ("tool_call_response", "tool_call", "reasoning")]
    out = [
        {"role": "tool", "tool_call_id": str(part.get("id") or ""), "content": _result_text(part.get("response"))}
        for part in results
    ]
    if rest or calls or not results:
        turn: dict[str, Any] = {"role": role, "content": _content(rest) if rest else None}
        if calls:
            turn["tool_calls"] = [
                {"id": str(call.get("id") or ""), "type": "function",
                 "function": {"name": call.get("name") or "", "arguments": _arguments(call.get("arguments"))}}
                for call in calls
            ]  # fmt: skip
        if message.get("name"):
            turn["name"] = message["name"]
        out.append(turn)
    return out


def _content(parts: list[dict]) -> str | list[dict]:
    """Text parts as one string; with other parts, a list of OpenAI parts (images as `image_url`, the rest as sent)."""
    converted = [_part(part) for part in parts]
    if all(part.get("type") == "text" for part in converted):
        return "".join(str(part.get("text", "")) for part in converted)
    return converted


def _part(part: dict) -> dict:
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "text": part.get("content", "")}
    if part.get("modality") == "image" and kind == "uri" and isinstance(part.get("uri"), str):
        return {"type": "image_url", "image_url": {"url": part["uri"]}}
    if part.get("modality") == "image" and kind == "blob" and isinstance(part.get("content"), str):
        mime = part.get("mime_type") or "image/png"
        return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{part['content']}"}}
    return part  # kept as sent: the OpenAI reader keeps part types it does not know


def _result_text(response: object) -> str:
    return response if isinstance(response, str) else json.dumps(response, ensure_ascii=False, separators=(",", ":"))


def _from_events(events: list[dict], messages: list[dict]) -> dict | None:
    choice = None
    for event in events:
        name, body = event.get("name"), _event_body(event)
        if name in _EVENT_ROLES:
            messages.append(_event_message(_EVENT_ROLES[name], body))
        elif name == "gen_ai.choice" and choice is None and body.get("index", 0) in (0, None):
            message = _json(body.get("message"))
            message = message if isinstance(message, dict) else {}
            choice = {"message": _event_message("assistant", message), "finish_reason": body.get("finish_reason")}
        elif name == "gen_ai.content.prompt":  # semantic conventions 1.27: the whole prompt as JSON
            prompt = _json(event_attributes(event).get("gen_ai.prompt"))
            messages.extend(prompt if isinstance(prompt, list) else [])
        elif name == "gen_ai.content.completion" and choice is None:
            completion = _json(event_attributes(event).get("gen_ai.completion"))
            if isinstance(completion, list) and completion and isinstance(completion[0], dict):
                choice = {"message": _event_message("assistant", completion[0])}
    return choice


def event_attributes(event: dict) -> dict:
    return attributes(event.get("attributes"))


def _event_body(event: dict) -> dict:
    attrs = event_attributes(event)
    body = _json(attrs.pop("gen_ai.event.content", None))
    if isinstance(body, dict):
        return body
    return {key: value for key, value in attrs.items() if not key.startswith("gen_ai.")}


def _event_message(role: str, body: dict) -> dict:
    message: dict[str, Any] = {"role": body.get("role") or role, "content": _json_content(body.get("content"))}
    calls = _json(body.get("tool_calls"))
    if isinstance(calls, list) and calls:
        message["tool_calls"] = [_event_call(call) for call in calls if isinstance(call, dict)]
    if message["role"] == "tool":
        message["tool_call_id"] = str(body.get("id") or body.get("tool_call_id") or "")
    return message


def _json_content(content: object) -> object:
    """Event content is a string, or (some instrumentations) a list of OpenAI parts written as JSON."""
    decoded = _json(content) if isinstance(content, str) and content[:1] == "[" else content
    return decoded if isinstance(decoded, list) and all(isinstance(part, dict) for part in decoded) else content


def _event_call(call: dict) -> dict:
    function = _json(call.get("function"))
    function = function if isinstance(function, dict) else {}
    return {
        "id": str(call.get("id") or ""),
        "type": call.get("type") or "function",
        "function": {"name": function.get("name") or "", "arguments": _arguments(function.get("arguments"))},
    }


def _from_indexed(attrs: dict, messages: list[dict]) -> dict | None:
    """OpenLLMetry: `gen_ai.prompt.0.role`, `gen_ai.prompt.0.content`, `gen_ai.completion.0.tool_calls.0.name`..."""
    found: dict[str, dict[int, dict]] = {"prompt": {}, "completion": {}}
    for key, value in attrs.items():
        match = _INDEXED.match(key)
        if match:
            found[match[1]].setdefault(int(match[2]), {})[match[3]] = value
    messages.extend(_indexed_message(fields, "user") for _, fields in sorted(found["prompt"].items()))
    if not found["completion"]:
        return None
    first = found["completion"][min(found["completion"])]
    return {"message": _indexed_message(first, "assistant"), "finish_reason": first.get("finish_reason")}


def _indexed_message(fields: dict, role: str) -> dict:
    message: dict[str, Any] = {"role": fields.get("role") or role, "content": _json_content(fields.get("content"))}
    calls: dict[int, dict] = {}
    for key, value in fields.items():
        match = _INDEXED_CALL.match(key)
        if match:
            calls.setdefault(int(match[1]), {})[match[2]] = value
    if calls:
        message["tool_calls"] = [
            {"id": str(call.get("id") or ""), "type": "function",
             "function": {"name": call.get("name") or "", "arguments": _arguments(call.get("arguments"))}}
            for _, call in sorted(calls.items())
        ]  # fmt: skip
    if fields.get("tool_call_id"):
        message["tool_call_id"] = str(fields["tool_call_id"])
    return message


# --- tools, answer, usage -----------------------------------------------------------------------


def _tools(attrs: dict) -> list[dict]:
    definitions = _json(attrs.get("gen_ai.tool.definitions"))
    tools = []
    for tool in definitions if isinstance(definitions, list) else ():
        if isinstance(tool, dict) and "function" not in tool and tool.get("type", "function") == "function":
            function = {key: value for key, value in tool.items() if key != "type"}
            tool = {"type": "function", "function": function}
        tools.append(tool)
    indexed: dict[int, dict] = {}  # OpenLLMetry: llm.request.functions.0.name / description / parameters
    for key, value in attrs.items():
        match = _INDEXED_FUNCTION.match(key) if key.startswith("llm.request.functions.") else None
        if match:
            indexed.setdefault(int(match[1]), {})[match[2]] = _json(value) if match[2] == "parameters" else value
    tools.extend({"type": "function", "function": function} for _, function in sorted(indexed.items()))
    return tools


def _response(span: dict, attrs: dict, choice: dict | None) -> dict | None:
    status = span.get("status") or {}
    if isinstance(status, dict) and status.get("code") in (_STATUS_ERROR, "STATUS_CODE_ERROR"):
        reason = status.get("message") or attrs.get("error.type") or "the span's status is ERROR"
        return {"error": {"message": str(reason)}}
    response: dict[str, Any] = {"choices": [_choice(choice, attrs)] if choice else []}
    if isinstance(attrs.get("gen_ai.response.model"), str):
        response["model"] = attrs["gen_ai.response.model"]
    usage = _usage(attrs)
    if usage:
        response["usage"] = usage
    return response


def _choice(choice: dict, attrs: dict) -> dict:
    finish_reason = choice.get("finish_reason")
    if finish_reason is None:  # the span's list of reasons, one per choice
        reasons = attrs.get("gen_ai.response.finish_reasons")
        finish_reason = reasons[0] if isinstance(reasons, list) and reasons else None
    message = {key: value for key, value in choice["message"].items() if key != "role"}
    return {"message": message, "finish_reason": finish_reason if isinstance(finish_reason, str) else None}


def _usage(attrs: dict) -> dict:
    names = {
        "prompt_tokens": ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.usage.prompt_tokens"),
        "completion_tokens": (
            "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.usage.completion_tokens",
        ),
        "total_tokens": ("llm.usage.total_tokens", "gen_ai.usage.total_tokens"),
    }  # fmt: skip
    usage = {}
    for field_name, keys in names.items():
        value = next((attrs[key] for key in keys if key in attrs), None)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            usage[field_name] = value
    return usage
