"""What changed between a dataset entry and the log it was copied from.

Each conversation is rendered as readable lines (a header per message, its text, its tool calls),
and the two renderings are compared line by line with difflib: a unified diff with a few lines of
context, the form reviewers know from code review.
"""

import difflib
from dataclasses import dataclass

import orjson

from curation.models import DatasetEntry

CONTEXT_LINES = 3


def render_message(index: int, message: object) -> list[str]:
    """One message as lines: `── #1 user` then its text; tool calls and other fields follow."""
    if not isinstance(message, dict):
        return [f"── #{index + 1} (not a message)", _json(message)]
    header = f"── #{index + 1} {message.get('role', '?')}"
    if message.get("name"):
        header += f" ({message['name']})"
    if message.get("tool_call_id"):
        header += f" → answers {message['tool_call_id']}"
    lines = [header]
    content = message.get("content")
    if isinstance(content, str):
        lines.extend(content.splitlines() or [""])
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                lines.extend(str(part.get("text", "")).splitlines() or [""])
            else:
                lines.append(f"[{part.get('type', 'part') if isinstance(part, dict) else 'part'}] {_json(part)}")
    for call in message.get("tool_calls") or ():
        function = call.get("function", {}) if isinstance(call, dict) else {}
        call_id = call.get("id", "") if isinstance(call, dict) else ""
        lines.append(f"⚙ call {function.get('name', '?')} [{call_id}] {function.get('arguments', '')}")
    if message.get("refusal"):
        lines.append(f"refusal: {message['refusal']}")
    if message.get("weight") is not None:
        lines.append(f"weight: {message['weight']}")
    return lines


def render_conversation(messages: object, tools: object = None) -> list[str]:
    lines: list[str] = []
    for index, message in enumerate(messages if isinstance(messages, list) else [messages]):
        lines.extend(render_message(index, message))
    for tool in tools if isinstance(tools, list) else ():
        function = tool.get("function", {}) if isinstance(tool, dict) else {}
        lines.append(f"── tool {function.get('name', '?')}: {_json(function.get('parameters'))}")
    return lines


def _json(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


@dataclass(frozen=True, slots=True)
class DiffLine:
    kind: str  # "same", "added", "removed", "gap" (lines left out between hunks)
    text: str


@dataclass(frozen=True, slots=True)
class Diff:
    lines: list[DiffLine]
    added: int
    removed: int

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


def diff_conversations(before: list[str], after: list[str], context: int = CONTEXT_LINES) -> Diff:
    lines: list[DiffLine] = []
    added = removed = 0
    # The first two lines are the "---" / "+++" file headers; a removed line may itself start with "--".
    for raw in list(difflib.unified_diff(before, after, lineterm="", n=context))[2:]:
        if raw.startswith("@@"):
            lines.append(DiffLine("gap", raw))
        elif raw.startswith("+"):
            added += 1
            lines.append(DiffLine("added", raw[1:]))
        elif raw.startswith("-"):
            removed += 1
            lines.append(DiffLine("removed", raw[1:]))
        else:
            lines.append(DiffLine("same", raw[1:]))
    return Diff(lines=lines, added=added, removed=removed)


def entry_diff(entry: DatasetEntry) -> Diff | None:
    """The entry against its source log's canonical conversation; None when it has no source
    (imported from a training file, or the log was deleted since)."""
    if entry.log is None:
        return None
    return diff_conversations(
        render_conversation(entry.log.messages, entry.log.tools),
        render_conversation(entry.messages, entry.tools),
    )
