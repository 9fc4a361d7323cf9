"""Personal data in conversations: every human-readable string of canonical (OpenAI chat) messages is scanned
(scan.find), and redacted in a copy (scan.redact), JSON tool arguments value by value."""

import copy
import json
from collections.abc import Iterable, Iterator
from typing import Any

from curation.text.pii.findings import Finding, MessageFinding
from curation.text.pii.scan import find, redact


def conversation_find(
    messages: list[dict], *, kinds: Iterable[str] | None = None, phone_region: str | None = None
) -> list[MessageFinding]:
    """The findings in every human-readable string of canonical (OpenAI chat) messages.

    Scanned: string contents, the text and refusal of content parts, every string of a part no reader knows
    (kept verbatim: a search result), a message's refusal, tool call arguments and a custom tool call's input.
    Arguments that are JSON are scanned value by value (the field path goes on into the JSON, offsets are into
    the decoded value), so a finding never straddles an escape sequence;
    arguments that are not JSON are scanned as they are.
    """
    found: list[MessageFinding] = []
    for index, message in enumerate(messages):
        for field, value in _message_strings(message):
            for sub_field, string in _argument_strings(field, value):
                found += (
                    MessageFinding(index, sub_field, f) for f in find(string, kinds=kinds, phone_region=phone_region)
                )
    return found


def conversation_redact(
    messages: list[dict], *, kinds: Iterable[str] | None = None, phone_region: str | None = None
) -> tuple[list[dict], list[MessageFinding]]:
    """A redacted copy of `messages` (the input is left as it was) and what was replaced.

    JSON tool arguments with a finding are decoded, redacted value by value and encoded again, so
    they stay valid JSON; arguments without one keep their exact original text.
    """
    redacted = copy.deepcopy(messages)
    found: list[MessageFinding] = []
    for index, message in enumerate(redacted):
        for field, value in _message_strings(message):
            if field.endswith("function.arguments"):
                new_value, findings = _arguments_redact(field, value, kinds=kinds, phone_region=phone_region)
                found += (MessageFinding(index, sub_field, f) for sub_field, f in findings)
            else:
                new_value, plain = redact(value, kinds=kinds, phone_region=phone_region)
                found += (MessageFinding(index, field, f) for f in plain)
            if new_value != value:
                _set(message, field, new_value)
    return redacted, found


_KNOWN_PARTS = frozenset({"text", "refusal", "image_url", "file", "input_audio"})


def _message_strings(message: dict) -> Iterator[tuple[str, str]]:
    """(field path, string) for each human-readable string of a canonical message."""
    content = message.get("content")
    if isinstance(content, str):
        yield "content", content
    elif isinstance(content, list):
        for index, part in enumerate(content):
            if not isinstance(part, dict):
                continue
            if part.get("type") not in _KNOWN_PARTS:  # kept verbatim by a reader (a search result): every string
                yield from _json_strings({k: v for k, v in part.items() if k != "type"}, f"content.{index}")
                continue
            for key in ("text", "refusal"):
                if isinstance(part.get(key), str):
                    yield f"content.{index}.{key}", part[key]
    if isinstance(message.get("refusal"), str):
        yield "refusal", message["refusal"]
    for index, call in enumerate(message.get("tool_calls") or ()):
        kind = (call.get("type") or "function") if isinstance(call, dict) else "function"
        if kind != "function":  # a custom tool's call: its free-text input
            yield from _json_strings((call.get(kind) or {}).get("input"), f"tool_calls.{index}.{kind}.input")
            continue
        arguments = (call.get("function") or {}).get("arguments") if isinstance(call, dict) else None
        if isinstance(arguments, str):
            yield f"tool_calls.{index}.function.arguments", arguments


def _argument_strings(field: str, value: str) -> Iterator[tuple[str, str]]:
    if not field.endswith("function.arguments"):
        yield field, value
        return
    try:
        decoded = json.loads(value)
    except ValueError:
        yield field, value
        return
    yield from _json_strings(decoded, field)


def _json_strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _json_strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _json_strings(item, f"{path}.{index}")


def _arguments_redact(
    field: str, value: str, *, kinds: Iterable[str] | None, phone_region: str | None
) -> tuple[str, list[tuple[str, Finding]]]:
    try:
        decoded = json.loads(value)
    except ValueError:
        text, findings = redact(value, kinds=kinds, phone_region=phone_region)
        return text, [(field, f) for f in findings]
    found: list[tuple[str, Finding]] = []

    def walk(item: Any, path: str) -> Any:
        if isinstance(item, str):
            text, findings = redact(item, kinds=kinds, phone_region=phone_region)
            found.extend((path, f) for f in findings)
            return text
        if isinstance(item, dict):
            return {key: walk(child, f"{path}.{key}") for key, child in item.items()}
        if isinstance(item, list):
            return [walk(child, f"{path}.{index}") for index, child in enumerate(item)]
        return item

    redacted = walk(decoded, field)
    return (json.dumps(redacted, ensure_ascii=False) if found else value), found


def _set(message: dict, field: str, value: str) -> None:
    """Store `value` at a field path of _message_strings (never one inside the JSON of arguments)."""
    steps = field.split(".")
    target: Any = message
    for step in steps[:-1]:
        target = target[int(step)] if isinstance(target, list) else target[step]
    target[int(steps[-1]) if isinstance(target, list) else steps[-1]] = value
