"""The canonical conversation every reader produces, and the error they all raise.

Canonical means OpenAI Chat Completions messages and function tools: the shape most fine-tuning
formats already speak, so exporters only ever handle one shape.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Union

import orjson
from pydantic import Discriminator, Tag, TypeAdapter, ValidationError

NUL_REASON = "contains a NUL character (\\u0000), which cannot be stored"
SURROGATE_REASON = "invalid Unicode (lone surrogate)"
MISSING_REASON = "missing required field"
OPAQUE = "opaque"  # the tag of a part, block or tool whose type no reader knows yet: kept as it came


class IngestError(ValueError):
    """An invalid log. str(err) is "field.path: reason", the path dotted from the root of the log
    object with list indexes as numbers; a problem with the object as a whole has an empty path."""


def fail(path: str, reason: str) -> IngestError:
    return IngestError(f"{path}: {reason}")


def join(path: str, step: str | int) -> str:
    return f"{path}.{step}" if path else str(step)


def describe(value: object) -> str:
    """The JSON type of a value, for "expected X, got Y" messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def short(value: object, limit: int = 60) -> str:
    """A value quoted for a message: strings as 'text', anything else as JSON (null, not None)."""
    try:
        text = repr(value) if isinstance(value, str) else orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(slots=True)
class Exchange:
    """What a reader gets out of one request/response pair; the envelope adds its own fields."""

    messages: list[dict]
    tools: list[dict]
    model: str = ""  # the model asked for (an alias such as "gpt-4o"), else the one that answered
    response_model: str = ""  # the model that answered, as the response names it (a dated snapshot); "" unknown
    error_message: str = ""  # non-empty: the call failed
    finish_reason: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    created_at: datetime | None = None
    # Request settings that training formats can carry beside the conversation (parallel_tool_calls,
    # response_format).
    options: dict = field(default_factory=dict)
    # The other answers of a call that asked for several (`n` > 1): `{"index", "message", "finish_reason"}` each,
    # the message canonical like the conversation's own answer (which is the first choice).
    alternatives: list[dict] = field(default_factory=list)
    # What the call says about itself beside the conversation (a Responses API call's response id and the one it
    # continues); stored in the log's metadata, under what the envelope's own metadata says.
    metadata: dict = field(default_factory=dict)


# --- schema helpers ---------------------------------------------------------------------------


def _shape(value: object) -> str | None:
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    return "none" if value is None else None


def tagged(*known: tuple[str, Any], what: str, default: str | None = None) -> Any:
    """A union of TypedDicts told apart by their "type", where a type we do not know yet is accepted as an
    opaque object (kept verbatim by the readers) instead of refused: providers add part and tool types every
    month. Only something that is not an object with a string "type" is an error. `default`: the type of an
    object without one (OpenAI tool calls may leave out "type": "function")."""
    names = {name for name, _ in known}

    def tag(value: object) -> str | None:
        if not isinstance(value, dict):
            return None
        kind = value.get("type", default)
        if not isinstance(kind, str):
            return None
        return kind if kind in names else OPAQUE

    choices = tuple(Annotated[schema, Tag(name)] for name, schema in known)
    union: Any = Union[(*choices, Annotated[dict[str, Any], Tag(OPAQUE)])]
    message = f"expected {what} (an object with a string 'type')"
    return Annotated[union, Discriminator(tag, custom_error_type="type_shape", custom_error_message=message)]


def is_opaque(value: dict, known: frozenset[str] | set[str], default: str | None = None) -> bool:
    return value.get("type", default) not in known


def content(part: Any, *, nullable: bool = False, parts: str = "content parts") -> Any:
    """A string or a list of `part`, validated as exactly one of the two so a wrong type gives one
    clear error ("expected a string or a list of content parts, got a number") instead of one per branch."""
    expected = f"a string, a list of {parts} or null" if nullable else f"a string or a list of {parts}"
    choices: Any = Annotated[str, Tag("str")] | Annotated[list[part], Tag("list")]
    if nullable:
        choices = choices | Annotated[None, Tag("none")]
    return Annotated[
        choices, Discriminator(_shape, custom_error_type="content_shape", custom_error_message=f"expected {expected}")
    ]


# --- validation -------------------------------------------------------------------------------


def validate(adapter: TypeAdapter, value: object, path: str) -> Any:
    """Validate strictly (no "5" for 5); the first error becomes an IngestError at its path."""
    try:
        return adapter.validate_python(value, strict=True)
    except ValidationError as exc:
        raise _to_ingest_error(exc, value, path) from None


def _to_ingest_error(exc: ValidationError, value: object, path: str) -> IngestError:
    error = exc.errors(include_url=False)[0]
    kind = error["type"]
    steps = _real_steps(error["loc"], value, missing=kind == "missing")
    for step in steps:
        path = join(path, step)
    culprit = error["input"]
    ctx = error.get("ctx", {})
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        # The discriminated unions tag on "role" / "type": blame that field, not the whole object.
        name = ctx["discriminator"].strip("'")
        path = join(path, name)
        if kind == "union_tag_not_found" or name not in culprit:
            return fail(path, MISSING_REASON)
        expected = _plain(ctx["expected_tags"])
        return fail(path, f"unknown {name} {short(culprit[name])} (expected one of {expected})")
    if kind == "literal_error":
        expected = _plain(ctx["expected"])
        if isinstance(culprit, str):
            name = steps[-1] if steps else "value"
            return fail(path, f"unknown {name} {short(culprit)} (expected one of {expected})")
        return fail(path, f"expected one of {expected}, got {describe(culprit)}")
    return fail(path, _reason(kind, culprit, ctx, error["msg"]))


_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "bool_type": "a boolean",
    "float_type": "a number",
    "list_type": "a list",
    "dict_type": "an object",
    "model_attributes_type": "an object",
}


def _reason(kind: str, culprit: object, ctx: dict, message: str) -> str:
    if kind == "missing":
        return MISSING_REASON
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {describe(culprit)}"
    if kind == "too_short":
        return "must not be empty"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}, got {short(culprit)}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}, got {short(culprit)}"
    if kind.endswith("_shape"):  # our own callable discriminators: the message says what was expected
        return f"{message}, got {describe(culprit)}"
    return message[:1].lower() + message[1:]


def _plain(expected: str) -> str:
    """Pydantic's "'a', 'b' or 'c'" as "a, b, c"."""
    return expected.replace(" or ", ", ").replace("'", "")


def _real_steps(loc: tuple[str | int, ...], value: object, *, missing: bool) -> list[str | int]:
    """Drop the union labels pydantic puts in `loc` ("user", "list", "text"): keep a step only when the
    input really has it, so the path points into the log as sent."""
    steps: list[str | int] = []
    last = len(loc) - 1
    for position, step in enumerate(loc):
        if _has(value, step):
            value = value[step]
            steps.append(step)
        elif missing and position == last:
            steps.append(step)
    return steps


def _has(value: object, step: str | int) -> bool:
    if isinstance(value, dict):
        return step in value
    return isinstance(value, list) and isinstance(step, int) and 0 <= step < len(value)


# --- strings PostgreSQL cannot store ----------------------------------------------------------


_PASSTHROUGH = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS
_JSON_SCALARS = (str, int, float, bool, type(None))


def check_storable(obj: object) -> None:
    """Reject NUL characters and lone surrogates, which PostgreSQL text and jsonb refuse, and non-JSON values.

    One orjson pass finds both cheaply (it refuses surrogates and writes NUL as the escape "\\u0000");
    the walk that finds the path only runs when something is wrong.
    """
    try:
        # Without the passthrough options orjson would quietly turn a datetime into a string, and the
        # original is stored as JSON as received.
        dumped = orjson.dumps(obj, option=_PASSTHROUGH)
    except orjson.JSONEncodeError as exc:
        if "Recursion limit" in str(exc):  # also what a cyclic object gives; walking it would never end
            raise fail("", "nested too deeply (more than 254 levels)") from None
        found = _find_unstorable(obj, "")
        raise fail(*(found or ("", f"not JSON data ({exc})"))) from None
    if b"\\u0000" in dumped:
        # Usually a real NUL; a literal backslash followed by "u0000" also matches and is fine.
        found = _find_unstorable(obj, "")
        if found is not None:
            raise fail(*found)


def _find_unstorable(value: object, path: str) -> tuple[str, str] | None:
    if isinstance(value, str):
        return _string_problem(value, path)
    if isinstance(value, dict):
        for key, item in value.items():
            child = join(path, _printable(key))
            found = (_string_problem(key, child) if isinstance(key, str) else None) or _find_unstorable(item, child)
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _find_unstorable(item, join(path, index))
            if found is not None:
                return found
    elif type(value) not in _JSON_SCALARS:
        return path, f"not JSON data ({type(value).__name__})"
    elif type(value) is int and not -(2**63) <= value < 2**64:
        return path, "number out of range (beyond 64 bits)"
    return None


def _string_problem(text: str, path: str) -> tuple[str, str] | None:
    if "\x00" in text:
        return path, NUL_REASON
    try:
        text.encode()
    except UnicodeEncodeError:
        return path, SURROGATE_REASON
    return None


def _printable(key: object) -> str:
    # A bad key ends up in the error message, which must itself be storable.
    return str(key).encode("utf-8", "backslashreplace").decode().replace("\x00", "\\u0000")


# --- canonical messages -----------------------------------------------------------------------


def collapse(parts: list[dict]) -> str | list[dict]:
    """Text-only content becomes one string: what most trainers and chat templates expect."""
    if all(part["type"] == "text" for part in parts):
        return "\n".join(part["text"] for part in parts)
    return parts


def search_text(messages: list[dict]) -> str:
    """Every human-readable string of the conversation, one per line, for substring search."""
    lines: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            lines.append(content)
        elif isinstance(content, list):
            lines.extend(_part_text(part) for part in content if isinstance(part, dict))
        if refusal := message.get("refusal"):
            lines.append(refusal)
        for call in message.get("tool_calls", ()):
            name, arguments = call_name_arguments(call)
            lines.append(name)
            lines.append(arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode())
    return "\n".join(line for line in lines if line and isinstance(line, str))


_MEDIA_PARTS = frozenset({"image_url", "file", "input_audio"})


def _part_text(part: dict) -> str:
    kind = part.get("type")
    if kind in ("text", "refusal"):
        text = part.get(kind)
        return text if isinstance(text, str) else ""
    if kind in _MEDIA_PARTS:
        return ""
    return "\n".join(_strings(part))  # kept verbatim (a search result): its text is searchable too


def _strings(value: object) -> list[str]:
    if isinstance(value, str):  # not blobs: base64 data and encrypted content are long words no one searches for
        return [] if len(value) > 200 and not any(char.isspace() for char in value[:200]) else [value]
    if isinstance(value, dict):
        return [text for key, item in value.items() if key != "type" for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


def call_name_arguments(call: dict) -> tuple[str, object]:
    """A tool call's name and arguments, whatever its type: a function call's JSON-string arguments, or the
    input of a call of another type (a GPT-5 custom tool's free text) as it came."""
    kind = call.get("type") or "function"
    body = call.get(kind)
    if not isinstance(body, dict):
        body = {}
    name = body.get("name")
    arguments = body.get("arguments", body.get("input", ""))
    return (name if isinstance(name, str) else ""), arguments


def function_tool(function: dict) -> dict:
    """A canonical function tool: the definition as sent (key order, `strict` and unknown fields kept), no nulls."""
    return {"type": "function", "function": {key: value for key, value in function.items() if value is not None}}


def extras(obj: dict, known: frozenset[str]) -> dict:
    """The fields of `obj` no reader knows, kept verbatim beside the canonical ones; empty values (null, [], {},
    "") say nothing and are left out, as most providers send `"audio": null`, `"annotations": []`."""
    return {key: value for key, value in obj.items() if key not in known and value not in (None, [], {}, "")}


def tool_call(call_id: str, name: str, arguments: str) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def provider_error_message(response: dict | None, status_code: int | None) -> str:
    """Why the call failed, or "" when the response is an answer to keep."""
    if response is None:
        return f"HTTP {status_code}" if status_code is not None and status_code >= 400 else "no response"
    error = response.get("error")
    failed = error is not None or response.get("type") == "error" or (status_code is not None and status_code >= 400)
    if not failed:
        return ""
    if isinstance(error, dict):  # OpenAI {"message", "type", "code"}, Anthropic {"type", "message"}
        error = error.get("message") or error.get("type") or error.get("code")
    if not (isinstance(error, str) and error):  # gateways that answer {"message": ...} or {"detail": ...}
        error = response.get("message") or response.get("detail")
    if isinstance(error, str) and error:
        return error
    return f"HTTP {status_code}" if status_code is not None else "unknown error"
