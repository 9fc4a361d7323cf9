"""Streamed provider answers folded into the one response the provider would have sent unstreamed.

The logging proxy (curation/proxy/logs.py) logs a streamed call this way, and a log posted with its `response` as
the stream the client read (a list of chunks or events, or the server-sent events' text) is read this way too
(`stream_read`), so a streamed and an unstreamed call leave the same conversation. Plain functions on decoded
events: no Django, no I/O.
"""

from dataclasses import dataclass
from typing import TypeGuard

import orjson

from curation.logs.ingest.canonical import describe, fail

CHAT = "openai_chat"
ANTHROPIC = "anthropic_messages"
RESPONSES = "openai_responses"

# The event types of an Anthropic Messages stream (the SDK's RawMessageStreamEvent, and the pings between them).
_ANTHROPIC_EVENTS = frozenset(
    {
        "message_start",
        "message_delta",
        "message_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "ping",
    }
)
_NOT_A_STREAM = (
    "not a stream event: expected a Chat Completions chunk (object 'chat.completion.chunk'), an Anthropic Messages "
    "event (type 'message_start', 'content_block_delta', ...) or a Responses API event (type 'response.created', ...)"
)


@dataclass(frozen=True, slots=True)
class Stream:
    api: str | None  # CHAT, ANTHROPIC or RESPONSES; None for a stream that holds only an error event
    response: dict | None  # the one response it stands for; None when nothing of it arrived
    complete: bool  # whether the stream reached its end (or its error), false for one cut off


def is_stream(value: object) -> TypeGuard[list | str]:
    """Whether a log's `response` is a stream as the client read it: a list of chunks or events, or the text of
    the server-sent events (`data: ...` lines)."""
    if isinstance(value, list):
        return True
    return isinstance(value, str) and value.lstrip().startswith(("data:", "event:"))


def stream_read(value: list | str) -> Stream:
    """A `response` given as a stream (is_stream), assembled as the provider's SDK would have assembled it.

    Raises IngestError naming `response` and the event's index for anything that is not a stream event."""
    if isinstance(value, str):
        events = [data for _, data in sse_events(value)]
        path = "response (server-sent event {})"
    else:
        events, path = value, "response.{}"
    for index, event in enumerate(events):
        if not isinstance(event, dict) and event != "[DONE]":
            raise fail(path.format(index), f"expected a stream event (an object), got {describe(event)}")
    api = _api(events)
    if api is None and events and not any(_is_error(event) for event in events):
        raise fail(path.format(0), _NOT_A_STREAM)
    pairs: list[tuple[str, dict | str]] = [("", event) for event in events]
    if api == ANTHROPIC:
        response = assemble_anthropic(pairs)
    elif api == RESPONSES or (api is None and any(_is_responses_error(event) for event in events)):
        response = assemble_responses(pairs)
    else:  # Chat Completions, or an error event alone in OpenAI's or Anthropic's shape: it is the response
        response = assemble_openai(pairs)
    return Stream(api=api, response=response, complete=_ended(api, events, response))


def _api(events: list) -> str | None:
    for event in events:
        if not isinstance(event, dict):
            continue
        kind = event.get("type")
        if event.get("object") == "chat.completion.chunk" or _has_deltas(event.get("choices")):
            return CHAT
        if isinstance(kind, str) and kind.startswith("response."):
            return RESPONSES
        if kind in _ANTHROPIC_EVENTS:
            return ANTHROPIC
    return None


def _has_deltas(choices: object) -> bool:
    """Chunks of a server that leaves out `object`: their choices hold deltas (a whole completion's hold messages)."""
    return isinstance(choices, list) and any(isinstance(choice, dict) and "delta" in choice for choice in choices)


def _is_error(event: object) -> bool:
    return isinstance(event, dict) and ("error" in event or event.get("type") == "error")


def _is_responses_error(event: object) -> bool:
    """The Responses API's error event: its message and code beside `type`, where Anthropic's nest them in `error`."""
    return isinstance(event, dict) and event.get("type") == "error" and "error" not in event


def _ended(api: str | None, events: list, response: dict | None) -> bool:
    if any(_is_error(event) for event in events):
        return True
    if api == ANTHROPIC:
        return any(isinstance(event, dict) and event.get("type") == "message_stop" for event in events)
    if api == RESPONSES:
        return any(isinstance(event, dict) and event.get("type") in _RESPONSE_DONE for event in events)
    if "[DONE]" in events:
        return True
    choices = (response or {}).get("choices") or ()
    return bool(choices) and all(choice["finish_reason"] for choice in choices)


def json_object(text: str) -> dict | None:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def sse_events(text: str) -> list[tuple[str, dict | str]]:
    """The (event, data) pairs of a server-sent event stream; data is decoded JSON where it is JSON."""
    events: list[tuple[str, dict | str]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = "", []
        for line in block.split("\n"):
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)
        if data:
            joined = "\n".join(data)
            decoded = json_object(joined)
            events.append((name, joined if decoded is None else decoded))
    return events


def assemble(provider: str, events: list[tuple[str, dict | str]]) -> dict | None:
    """The one response a stream stands for, by the API that sent it: Anthropic Messages, the OpenAI Responses API
    (its events' types start with "response."), else OpenAI Chat Completions."""
    if provider == "anthropic":
        return assemble_anthropic(events)
    if any(isinstance(event, dict) and str(event.get("type", "")).startswith("response.") for _, event in events):
        return assemble_responses(events)
    return assemble_openai(events)


def assemble_openai(events: list[tuple[str, dict | str]]) -> dict | None:
    """`chat.completion.chunk` deltas folded into one `chat.completion`: content, refusals, tool calls,
    finish reasons and the usage chunk (`stream_options.include_usage`). An error event is the response."""
    response: dict | None = None
    choices: dict[int, dict] = {}
    for _, chunk in events:
        if not isinstance(chunk, dict):
            continue  # "[DONE]"
        if "error" in chunk:
            return chunk
        if response is None:
            response = {key: chunk[key] for key in ("id", "created", "model", "system_fingerprint") if key in chunk}
            response["object"] = "chat.completion"
        if chunk.get("usage"):
            response["usage"] = chunk["usage"]
        for part in chunk.get("choices") or ():
            index = part.get("index", 0)
            choice = choices.setdefault(
                index, {"index": index, "message": {"role": "assistant", "content": None}, "finish_reason": None}
            )
            _fold_openai_delta(choice["message"], part.get("delta") or {})
            if part.get("finish_reason"):
                choice["finish_reason"] = part["finish_reason"]
    if response is not None:
        response["choices"] = [choices[index] for index in sorted(choices)]
    return response


def _fold_openai_delta(message: dict, delta: dict) -> None:
    if delta.get("role"):
        message["role"] = delta["role"]
    for key in ("content", "refusal"):
        if delta.get(key) is not None:
            message[key] = (message.get(key) or "") + delta[key]
    for call_delta in delta.get("tool_calls") or ():
        calls = message.setdefault("tool_calls", [])
        index = call_delta.get("index", len(calls))
        while len(calls) <= index:
            calls.append({"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
        call = calls[index]
        if call_delta.get("id"):
            call["id"] = call_delta["id"]
        function = call_delta.get("function") or {}
        for key in ("name", "arguments"):
            if function.get(key):
                call["function"][key] += function[key]
    if delta.get("function_call"):  # the deprecated single-function form
        function_call = message.setdefault("function_call", {"name": "", "arguments": ""})
        for key in ("name", "arguments"):
            function_call[key] += delta["function_call"].get(key) or ""


def assemble_anthropic(events: list[tuple[str, dict | str]]) -> dict | None:
    """Messages stream events folded into one `message`: `message_start`, the content blocks and their deltas
    (text, tool input JSON, thinking), `message_delta`'s stop reason and usage. An error event is the response."""
    message: dict | None = None
    blocks: dict[int, dict] = {}
    partial_json: dict[int, str] = {}
    for _, event in events:
        if not isinstance(event, dict):
            continue
        kind = event.get("type")
        if kind == "error":
            return event
        if kind == "message_start":
            message = dict(event.get("message") or {})
        elif kind == "content_block_start":
            blocks[event.get("index", len(blocks))] = dict(event.get("content_block") or {})
        elif kind == "content_block_delta":
            index = event.get("index", 0)
            _fold_anthropic_delta(blocks.setdefault(index, {}), partial_json, index, event.get("delta") or {})
        elif kind == "message_delta" and message is not None:
            message.update(
                {k: v for k, v in (event.get("delta") or {}).items() if k in ("stop_reason", "stop_sequence")}
            )
            # A null is a count the event does not carry (the SDK's types write every field): the start's stands.
            usage = {key: value for key, value in (event.get("usage") or {}).items() if value is not None}
            message["usage"] = {**(message.get("usage") or {}), **usage}
    for index, text in partial_json.items():
        blocks[index]["input"] = json_object(text) or {}
    if message is not None:
        message["content"] = [blocks[index] for index in sorted(blocks)]
    return message


def _fold_anthropic_delta(block: dict, partial_json: dict[int, str], index: int, delta: dict) -> None:
    kind = delta.get("type")
    if kind == "text_delta":
        block["text"] = block.get("text", "") + delta.get("text", "")
    elif kind == "input_json_delta":
        partial_json[index] = partial_json.get(index, "") + delta.get("partial_json", "")
    elif kind == "thinking_delta":
        block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
    elif kind == "signature_delta":
        block["signature"] = block.get("signature", "") + delta.get("signature", "")
    elif kind == "citations_delta":
        block.setdefault("citations", []).append(delta.get("citation"))


# The events that end a Responses API stream; each carries the whole response, as the SDK's stream helper reads it.
_RESPONSE_DONE = frozenset({"response.completed", "response.incomplete", "response.failed"})


def assemble_responses(events: list[tuple[str, dict | str]]) -> dict | None:
    """Responses API stream events as one `response`: the final event's own copy of the whole response when the
    stream ended; else (the caller went away, the upstream broke off) the last snapshot of it (`response.created`,
    `response.in_progress`) with the output items and text deltas that had arrived. An error event is the response."""
    response: dict | None = None
    items: dict[int, dict] = {}
    for _, event in events:
        if not isinstance(event, dict):
            continue
        kind = event.get("type")
        if kind == "error":
            error = {key: value for key, value in event.items() if key not in ("type", "sequence_number")}
            return {"error": error}
        if kind in _RESPONSE_DONE and isinstance(event.get("response"), dict):
            return event["response"]
        if isinstance(event.get("response"), dict):
            response = dict(event["response"])
        elif kind in ("response.output_item.added", "response.output_item.done") and isinstance(
            event.get("item"), dict
        ):
            items[event.get("output_index", len(items))] = dict(event["item"])
        else:
            _fold_responses_delta(items, event)
    if response is not None:
        response["output"] = [items[index] for index in sorted(items)]
    return response


def _fold_responses_delta(items: dict[int, dict], event: dict) -> None:
    item = items.get(event.get("output_index", -1))
    if item is None:
        return
    kind = event.get("type")
    if kind == "response.function_call_arguments.delta":
        item["arguments"] = (item.get("arguments") or "") + (event.get("delta") or "")
    elif kind in ("response.content_part.added", "response.content_part.done") and isinstance(event.get("part"), dict):
        parts = item.setdefault("content", [])
        index = event.get("content_index", len(parts))
        while len(parts) <= index:
            parts.append({})
        parts[index] = dict(event["part"])
    elif kind in ("response.output_text.delta", "response.refusal.delta"):
        parts = item.setdefault("content", [])
        index = event.get("content_index", 0)
        while len(parts) <= index:
            parts.append({"type": "output_text", "text": ""} if kind.endswith("text.delta") else {"type": "refusal"})
        key = "text" if kind == "response.output_text.delta" else "refusal"
        parts[index][key] = (parts[index].get(key) or "") + (event.get("delta") or "")
