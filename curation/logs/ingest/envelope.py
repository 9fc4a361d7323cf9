"""The log object around a conversation: which of the accepted shapes it is, and the fields stored beside it."""

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from curation.logs.ingest.anthropic import read_anthropic
from curation.logs.ingest.batch import batch_call, is_batch_line
from curation.logs.ingest.canonical import (
    MISSING_REASON,
    Exchange,
    IngestError,
    check_storable,
    describe,
    fail,
    join,
    search_text,
    short,
)
from curation.logs.ingest.exported import ExportedCall
from curation.logs.ingest.langfuse import is_langfuse_observation, langfuse_call
from curation.logs.ingest.langsmith import is_langsmith_run, langsmith_call
from curation.logs.ingest.litellm import is_litellm_payload, litellm_call
from curation.logs.ingest.openai import read_openai
from curation.logs.ingest.otel import OTLP_KEY, SPAN_PATH, span_call
from curation.logs.ingest.plain import read_messages, read_openpipe, read_prompt_completion
from curation.logs.ingest.raw import RawItem, item_make_storable, value_text
from curation.logs.ingest.responses import is_responses, read_responses
from curation.logs.ingest.scores import ScoreIn, scores_read
from curation.logs.ingest.streams import ANTHROPIC, RESPONSES, is_stream, stream_read
from curation.logs.ingest.times import moment_from_iso, moment_from_unix

ANTHROPIC_PROVIDERS = frozenset({"anthropic", "bedrock-anthropic", "vertex-anthropic"})

# Unknown fields are errors: a typo such as "tag" must not silently drop the tags.
_COMMON_FIELDS = (
    "provider", "status_code", "latency_ms", "created_at", "metadata", "tags", "external_id", "scores",
)  # fmt: skip
ENVELOPE_FIELDS = ("request", "response", *_COMMON_FIELDS)
MESSAGES_FIELDS = ("messages", "tools", "functions", "parallel_tool_calls", "model", *_COMMON_FIELDS)
PROMPT_COMPLETION_FIELDS = ("prompt", "completion", "model", *_COMMON_FIELDS)

_SHAPES = "expected a log object with 'request', 'messages' or 'prompt'"
_MAX_TAG_LENGTH = 100
_MAX_EXTERNAL_ID_LENGTH = 255


@dataclass(slots=True)
class ParsedLog:
    provider: str  # lowercased as given; else detected "openai" / "anthropic", "" for plain shapes
    # "openai_chat" | "openai_responses" | "anthropic_messages" | "messages" | "prompt_completion" | "otel_genai" |
    # "openai_batch" | "openpipe" | "litellm" | "langfuse" | "langsmith"
    format: str
    model: str  # "" when unknown
    messages: list[dict]  # canonical (OpenAI chat) conversation, including the response's assistant turn
    tools: list[dict]  # canonical function tools
    status: str  # "success" | "error"
    status_code: int | None
    error_message: str  # "" on success
    finish_reason: str  # "" when unknown
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    latency_ms: int | None
    created_at: datetime | None  # timezone-aware; None lets the caller decide ("now")
    metadata: dict
    tags: list[str]  # stripped, de-duplicated, order kept
    external_id: str | None
    original: object  # the input value itself (U+FFFD in place of what text cannot hold)
    search_text: str  # the conversation's readable text, one string per line
    original_text: str = ""  # the input's exact JSON text: what is stored, byte for byte
    notes: list[str] = field(default_factory=list)  # what had to change to store it ("path: ... replaced")
    options: dict = field(default_factory=dict)  # request settings the exports carry (parallel_tool_calls...)
    response_model: str = ""  # the model that answered (a dated snapshot), "" when the response does not say
    alternatives: list[dict] = field(default_factory=list)  # the other choices of an `n` > 1 call
    scores: list[ScoreIn] = field(default_factory=list)  # feedback sent with the log (`scores`)


# The shapes a caller may name for its logs (an import's `format`): each line is then read with that reader alone,
# and one in another shape is refused saying what it is. Without a format, each log's shape is detected.
FORMATS = {
    "openai_chat": "OpenAI Chat Completions call", "openai_responses": "OpenAI Responses API call",
    "anthropic_messages": "Anthropic Messages call", "messages": "OpenAI fine-tuning line",
    "prompt_completion": "prompt / completion line", "otel_genai": "OpenTelemetry GenAI span",
    "openai_batch": "OpenAI Batch API line", "openpipe": "OpenPipe export line",
    "litellm": "LiteLLM StandardLoggingPayload", "langfuse": "Langfuse observation", "langsmith": "LangSmith run",
}  # fmt: skip


def parse_log(obj: object, *, text: str | None = None, format: str | None = None) -> ParsedLog:
    """Validate one log object in any accepted shape and read it into canonical form.

    `text` is the object's JSON text as received, stored as the original; without it, the object is written
    out compactly in its own key order. A lone surrogate or NUL character is replaced by U+FFFD where it
    cannot be stored, with a note. Raises IngestError ("field.path: reason") for anything invalid. A provider
    error response is not invalid: it gives status "error" and no assistant turn. `format` (one of FORMATS): read it
    as that shape only.
    """
    return log_read(item_make_storable(RawItem(value=obj, text=text)), format=format)


def log_read(item: RawItem, *, format: str | None = None) -> ParsedLog:
    """parse_log for an item made storable already (raw.item_make_storable)."""
    parsed = _read(item.value) if not format else _read_as(item.value, format)
    parsed.original_text = item.text if item.text is not None else value_text(item.value)
    parsed.notes = item.notes
    return parsed


def unreadable_log(item: RawItem, reason: str) -> ParsedLog:
    """A log no reader can turn into a conversation, kept all the same: its original, status "unreadable" and
    the reason. The envelope fields it holds in a usable form (external_id, tags, created_at...) are kept too, so
    duplicates are still found and the log still sorts and filters; any that are unusable are left out."""
    obj = item.value if isinstance(item.value, dict) else {}
    if OTLP_KEY in obj:
        obj = _span_fields(obj)
    elif (shape := _exported_shape(obj)) is not None:
        obj = _exported_fields(obj, *shape)
    fields = {name: _lenient(reader, obj.get(name)) for name, reader in _ENVELOPE_READERS.items()}
    try:
        check_storable(fields["metadata"])
    except IngestError:
        fields["metadata"] = None  # numbers beyond 64 bits: they stay in the original
    request = obj.get("request")
    if not isinstance(request, dict):
        request = obj
    model = fields["model"] or _lenient(_model, request.get("model")) or ""
    return ParsedLog(
        provider=fields["provider"] or "", format="unreadable", model=model, messages=[], tools=[],
        status="unreadable", status_code=fields["status_code"], error_message=reason, finish_reason="",
        prompt_tokens=None, completion_tokens=None, total_tokens=None, latency_ms=fields["latency_ms"],
        created_at=fields["created_at"], metadata=fields["metadata"] or {}, tags=fields["tags"] or [],
        external_id=fields["external_id"], original=item.value, search_text="",
        original_text=item.text if item.text is not None else value_text(item.value), notes=item.notes,
        scores=fields["scores"] or [],
    )  # fmt: skip


def _span_fields(export: dict) -> dict:
    """The envelope fields of an unreadable span (its ids, times, model), so that a span sent again is a duplicate."""
    try:
        call = span_call(export)
    except IngestError:
        return {}
    return {
        "provider": call.provider, "latency_ms": call.latency_ms, "created_at": call.created_at,
        "metadata": call.metadata, "external_id": call.external_id, "request": call.request,
    }  # fmt: skip


def _exported_fields(obj: dict, format: str, reader: Callable[[dict], ExportedCall]) -> dict:
    """The envelope fields of an unreadable line of another tool's export (its id above all: a line sent again is a
    duplicate, a Batch output line without its request among them)."""
    try:
        call = reader(obj)
    except IngestError:
        identifier = obj.get(_EXPORTED_IDS[format])
        return {"external_id": identifier, "provider": "openai" if format == "openai_batch" else None}
    return _call_envelope(call) | {"provider": call.provider, "request": call.request}


def _lenient(reader: Callable[[object], object], value: object) -> Any:
    try:
        return reader(value)
    except IngestError:
        return None


def _read_as(obj: object, format: str) -> ParsedLog:
    """`obj` read as the shape `format` names. A log recognisably of another shape is refused saying which; one of
    no recognisable shape is read by the chosen tool's reader, so the refusal names the field it lacks."""
    if format not in FORMATS:
        raise ValueError(f"unknown log format {format!r}")
    recognised = _shape_of(obj) if isinstance(obj, dict) else None
    if recognised is None and isinstance(obj, dict) and format in _EXPORTED_READERS:
        return _read_exported(obj, format, _EXPORTED_READERS[format])
    if recognised == "messages" and format == "openpipe":  # an OpenPipe line without its split
        return _read_plain(obj, "openpipe", read_openpipe(obj, known=frozenset(MESSAGES_FIELDS)))  # type: ignore[arg-type]
    parsed = _read(obj)
    if parsed.format != format:
        raise fail("", f"the format chosen is {format} ({FORMATS[format]}), but this log is {parsed.format} "
                   f"({FORMATS[parsed.format]})")  # fmt: skip
    return parsed


def _shape_of(obj: dict) -> str | None:
    """The shape `_read` takes `obj` for, by its fields alone ("envelope" for a provider call of any API)."""
    shape = _exported_shape(obj)
    if shape is not None:
        return shape[0]
    if "request" in obj or "response" in obj:
        return "envelope"
    if OTLP_KEY in obj:
        return "otel_genai"
    if "messages" in obj:
        return "openpipe" if "split" in obj else "messages"
    if "prompt" in obj or "completion" in obj:
        return "prompt_completion"
    return None


def _read(obj: object) -> ParsedLog:
    if not isinstance(obj, dict):
        raise fail("", f"{_SHAPES}, got {describe(obj)}")
    shape = _exported_shape(obj)
    if shape is not None:
        return _read_exported(obj, *shape)
    if "request" in obj or "response" in obj:
        return _read_envelope(obj)
    if OTLP_KEY in obj:
        return _read_span(obj)
    if "messages" in obj and "split" in obj:
        # An OpenPipe export line: its fields are OpenPipe's to add, so the ones we do not know are kept, not refused.
        return _read_plain(obj, "openpipe", read_openpipe(obj, known=frozenset(MESSAGES_FIELDS)))
    if "messages" in obj:
        _check_fields(obj, MESSAGES_FIELDS)
        return _read_plain(obj, "messages", read_messages(obj))
    if "prompt" in obj or "completion" in obj:
        _check_fields(obj, PROMPT_COMPLETION_FIELDS)
        return _read_plain(obj, "prompt_completion", read_prompt_completion(obj))
    keys = ", ".join(short(key, 30) for key in list(obj)[:5])
    raise fail("", f"{_SHAPES}, got an object with keys {keys}" if obj else f"{_SHAPES}, got an empty object")


def _read_envelope(obj: dict) -> ParsedLog:
    _check_fields(obj, ENVELOPE_FIELDS)
    if "request" not in obj:
        raise fail("request", MISSING_REASON)
    request, response = obj["request"], obj.get("response")
    if not isinstance(request, dict):
        raise fail("request", f"expected an object, got {describe(request)}")
    stream = stream_read(response) if is_stream(response) else None
    if stream is not None:
        response = stream.response
    elif response is not None and not isinstance(response, dict):
        raise fail(
            "response",
            f"expected an object, a stream (a list of its events, or their text) or null, got {describe(response)}",
        )
    status_code = _status_code(obj.get("status_code"))
    provider = _provider(obj.get("provider")) or (
        "anthropic" if stream is not None and stream.api == ANTHROPIC else detect_provider(request, response)
    )
    if provider in ANTHROPIC_PROVIDERS or (stream is not None and stream.api == ANTHROPIC):
        format, exchange = "anthropic_messages", read_anthropic(request, response, status_code)
    elif is_responses(request, response) or (stream is not None and stream.api == RESPONSES):
        format, exchange = "openai_responses", read_responses(request, response, status_code)
    else:
        format, exchange = "openai_chat", read_openai(request, response, status_code)
    if stream is not None:
        # As the logging proxy records a streamed call (metadata.proxy.stream and .complete); the caller's own
        # metadata wins a clash.
        exchange.metadata.update(stream=True, complete=stream.complete)
    return _parsed(obj, provider, format, exchange, status_code)


def _read_span(obj: dict) -> ParsedLog:
    """A one-span OTLP JSON export (what the OTLP endpoint stores): the GenAI call it records, read as OpenAI chat."""
    call = span_call(obj)
    if not call.request["messages"]:
        raise fail(
            SPAN_PATH,
            "no input messages in the span (gen_ai.input.messages, gen_ai.*.message events or gen_ai.prompt.*): "
            "is the instrumentation capturing message content?",
        )
    try:
        exchange = read_openai(call.request, call.response, call.status_code)
    except IngestError as exc:
        raise fail(SPAN_PATH, f"read as an OpenAI chat call, {exc}") from None
    envelope = {
        "latency_ms": call.latency_ms, "created_at": call.created_at, "metadata": call.metadata,
        "external_id": call.external_id,
    }  # fmt: skip
    parsed = _parsed(envelope, _provider(call.provider), "otel_genai", exchange, call.status_code)
    parsed.original = obj
    return parsed


# Other tools' export lines, told apart by a field no other accepted shape has; checked before the envelope, as a
# Batch line and a LiteLLM payload both hold a `response`.
_EXPORTED: tuple[tuple[str, Callable[[dict], bool], Callable[[dict], ExportedCall]], ...] = (
    ("openai_batch", is_batch_line, batch_call),
    ("litellm", is_litellm_payload, litellm_call),
    ("langfuse", is_langfuse_observation, langfuse_call),
    ("langsmith", is_langsmith_run, langsmith_call),
)
_EXPORTED_IDS = {"openai_batch": "custom_id", "litellm": "id", "langfuse": "id", "langsmith": "id"}
_EXPORTED_READERS = {format: reader for format, _, reader in _EXPORTED}


def _exported_shape(obj: dict) -> tuple[str, Callable[[dict], ExportedCall]] | None:
    for format, detect, reader in _EXPORTED:
        if detect(obj):
            return format, reader
    return None


def _read_exported(obj: dict, format: str, reader: Callable[[dict], ExportedCall]) -> ParsedLog:
    """A line of another tool's export: the call it records, read as OpenAI chat (or Responses, for a Batch of
    Responses calls), with the tool's ids, times and tags as the envelope's fields."""
    call = reader(obj)
    try:
        if is_responses(call.request, call.response):
            exchange = read_responses(call.request, call.response, call.status_code)
        else:
            exchange = read_openai(call.request, call.response, call.status_code)
        parsed = _parsed(_call_envelope(call), _provider(call.provider), format, exchange, call.status_code)
    except IngestError as exc:
        raise call.relocate(exc) from None
    parsed.original = obj
    return parsed


def _call_envelope(call: ExportedCall) -> dict:
    return {
        "latency_ms": call.latency_ms, "created_at": call.created_at.isoformat() if call.created_at else None,
        "metadata": call.metadata, "tags": call.tags, "external_id": call.external_id,
    }  # fmt: skip


def _read_plain(obj: dict, format: str, exchange: Exchange) -> ParsedLog:
    status_code = _status_code(obj.get("status_code"))
    if status_code is not None and status_code >= 400:
        exchange.error_message = f"HTTP {status_code}"
    exchange.model = _model(obj.get("model"))
    return _parsed(obj, _provider(obj.get("provider")), format, exchange, status_code)


def _parsed(obj: dict, provider: str, format: str, exchange: Exchange, status_code: int | None) -> ParsedLog:
    created_at = _created_at(obj.get("created_at"))
    return ParsedLog(
        provider=provider,
        format=format,
        model=exchange.model,
        messages=exchange.messages,
        tools=exchange.tools,
        status="error" if exchange.error_message else "success",
        status_code=status_code,
        error_message=exchange.error_message,
        finish_reason=exchange.finish_reason,
        prompt_tokens=exchange.prompt_tokens,
        completion_tokens=exchange.completion_tokens,
        total_tokens=exchange.total_tokens,
        latency_ms=_latency_ms(obj.get("latency_ms")),
        created_at=created_at if created_at is not None else exchange.created_at,
        metadata={**exchange.metadata, **_metadata(obj.get("metadata"))},
        tags=_tags(obj.get("tags")),
        external_id=_external_id(obj.get("external_id")),
        original=obj,
        search_text=search_text(exchange.messages),
        options=exchange.options,
        response_model=exchange.response_model,
        alternatives=exchange.alternatives,
        scores=scores_read(obj.get("scores")),
    )


def detect_provider(request: dict, response: dict | None) -> str:
    """Which API a log without a `provider` came from, judged by shapes only Anthropic uses."""
    if response is not None:
        if "choices" in response or response.get("object") == "chat.completion":
            return "openai"
        kind = response.get("type")
        if kind == "message" or (kind == "error" and isinstance(response.get("error"), dict)):
            return "anthropic"
    if "system" in request:
        return "anthropic"
    messages = request.get("messages")
    for message in messages if isinstance(messages, list) else ():
        blocks = message.get("content") if isinstance(message, dict) else None
        for block in blocks if isinstance(blocks, list) else ():
            if isinstance(block, dict) and (
                block.get("type") in ("tool_use", "tool_result")
                or (block.get("type") == "image" and "source" in block)
            ):
                return "anthropic"
    return "openai"


def _check_fields(obj: dict, allowed: tuple[str, ...]) -> None:
    for key in obj:
        if key not in allowed:
            raise fail(key, f"unknown field (expected one of {', '.join(allowed)})")


# --- envelope fields: null means absent ---------------------------------------------------------


def _provider(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise fail("provider", f"expected a string, got {describe(value)}")
    return value.strip().lower()


def _model(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise fail("model", f"expected a string, got {describe(value)}")
    return value


def _status_code(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail("status_code", f"expected an integer, got {describe(value)}")
    if not 100 <= value <= 599:
        raise fail("status_code", f"must be an HTTP status between 100 and 599, got {value}")
    return value


def _latency_ms(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail("latency_ms", f"expected a number, got {describe(value)}")
    if not (math.isfinite(value) and value >= 0):
        raise fail("latency_ms", f"must be a non-negative number, got {value}")
    return round(value)


def _created_at(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        return moment_from_iso(value, "created_at")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail("created_at", f"expected an ISO-8601 string or unix seconds, got {describe(value)}")
    return moment_from_unix(value, "created_at")


def _metadata(value: object) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail("metadata", f"expected an object, got {describe(value)}")
    return value


def _tags(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail("tags", f"expected a list of strings, got {describe(value)}")
    tags: dict[str, None] = {}  # a dict keeps first-seen order while dropping repeats
    for index, tag in enumerate(value):
        if not isinstance(tag, str):
            raise fail(join("tags", index), f"expected a string, got {describe(tag)}")
        tag = tag.strip()
        if not tag:
            raise fail(join("tags", index), "must not be empty")
        if len(tag) > _MAX_TAG_LENGTH:
            raise fail(join("tags", index), f"longer than {_MAX_TAG_LENGTH} characters")
        tags[tag] = None
    return list(tags)


def _external_id(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise fail("external_id", f"expected a string, got {describe(value)}")
    if not value:
        raise fail("external_id", "must not be empty")
    if len(value) > _MAX_EXTERNAL_ID_LENGTH:
        raise fail("external_id", f"longer than {_MAX_EXTERNAL_ID_LENGTH} characters")
    return value


_ENVELOPE_READERS: dict[str, Callable[[object], Any]] = {
    "provider": _provider,
    "model": _model,
    "status_code": _status_code,
    "latency_ms": _latency_ms,
    "created_at": _created_at,
    "metadata": _metadata,
    "tags": _tags,
    "external_id": _external_id,
    "scores": scores_read,
}
