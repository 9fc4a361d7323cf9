"""The writers: one canonical conversation (OpenAI chat messages + tools, and the request's options) in, one row
of a training file out. Pure Python, no Django, like the readers in `curation/logs/ingest/`.

A writer returns the row, or None when the conversation cannot be written at all, and adds to `lost`
the reason for everything it could not carry. The caller counts reasons per row (`ExportReport`), so
a format that cannot hold a tool call, an image or a turn says so instead of dropping it silently.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from curation.logs.ingest.canonical import call_name_arguments

# Reasons, as the report shows them. A reason ending in ": skipped" means the row was not written.
SKIPPED_NO_REPLY = "no assistant reply: skipped"
SKIPPED_NO_USER = "no user turn before the reply: skipped"
TOOL_CALLS_AS_TEXT = "tool calls written as text"
TOOL_DEFINITIONS_DROPPED = "tool definitions dropped"
TEXT_BESIDE_CALLS_DROPPED = "assistant text beside tool calls dropped"
ARGUMENTS_NOT_JSON = "tool call arguments that are not JSON kept as a string"
TOOL_RESULTS_MERGED = "parallel tool results merged into one turn"
CONSECUTIVE_TURNS_MERGED = "consecutive turns of one side merged"
EXTRA_TURNS_MERGED = "extra turns merged into input"
EARLIER_REPLIES_IN_PROMPT = "earlier assistant turns moved into the prompt"
TURNS_AFTER_REPLY_DROPPED = "turns after the last reply dropped"
TURNS_BEFORE_USER_DROPPED = "turns before the first user turn dropped"
SYSTEM_MOVED = "system messages moved to the start"
IMAGES_DROPPED = "images dropped"
FILES_DROPPED = "files dropped"
AUDIO_DROPPED = "audio dropped"
WEIGHTS_DROPPED = "message weights dropped"
NAMES_DROPPED = "message names dropped"
TOOL_ERRORS_DROPPED = "tool-result error flags dropped"
OTHER_FIELDS_DROPPED = "other message fields dropped"
OTHER_TOOLS_DROPPED = "tools other than functions dropped"
PARALLEL_TOOL_CALLS_DROPPED = "parallel_tool_calls setting dropped"
RESPONSE_FORMAT_DROPPED = "response_format (structured output schema) dropped"

_MEDIA_LOSS = {"image_url": IMAGES_DROPPED, "file": FILES_DROPPED, "input_audio": AUDIO_DROPPED}
LABELS = {"system": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}


@dataclass
class ExportReport:
    """What an export wrote and what it could not carry: rows affected, per reason."""

    format: str
    rows_read: int = 0
    rows_written: int = 0
    losses: Counter[str] = field(default_factory=Counter)
    rows_total: int | None = None  # set by a preview, which may read only the first rows

    @property
    def rows_skipped(self) -> int:
        return self.rows_read - self.rows_written

    @property
    def is_lossless(self) -> bool:
        return not self.losses

    def add(self, written: bool, lost: set[str]) -> None:
        self.rows_read += 1
        self.rows_written += written
        self.losses.update(lost)

    def as_dict(self) -> dict:
        out = {
            "format": self.format,
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "rows_skipped": self.rows_skipped,
            "lossless": self.is_lossless,
            "losses": dict(sorted(self.losses.items(), key=lambda item: (-item[1], item[0]))),
        }
        if self.rows_total is not None:
            out["rows_total"] = self.rows_total
        return out

    def summary(self) -> list[str]:
        lines = [f"{self.rows_written} of {self.rows_read} rows written as {self.format}."]
        lines += [f"  {count} rows: {reason}" for reason, count in self.as_dict()["losses"].items()]
        return lines


# --- key order ------------------------------------------------------------------------------------
# The keys we know are written in a fixed order ("role" first, for people reading the file); every other key
# follows in the order it was stored, which is the order it was sent (the JSON columns keep it), so a tool's
# parameter schema and the parts no reader knows come out as production sent them, and equal content gives equal
# lines and snapshot hashes.

_MESSAGE_KEYS = ("role", "tool_call_id", "name", "content", "refusal", "tool_calls", "weight")


def _ordered(obj: dict, keys: tuple[str, ...]) -> dict:
    out = {key: obj[key] for key in keys if key in obj}
    if len(out) < len(obj):
        out.update((key, value) for key, value in obj.items() if key not in out)
    return out


def _call(call: dict) -> dict:
    out = _ordered(call, ("id", "type", "function"))
    if isinstance(out.get("function"), dict):  # a call of another type ("custom") is written as it came
        out["function"] = _ordered(call["function"], ("name", "arguments"))
    return out


def openai_message(message: dict) -> dict:
    # _ordered, inlined: this runs for every message of every export.
    out = {key: message[key] for key in _MESSAGE_KEYS if key in message}
    if len(out) < len(message):
        out.update((key, value) for key, value in message.items() if key not in out)
    if isinstance(out.get("content"), list):
        out["content"] = [_ordered(part, ("type",)) for part in out["content"]]
    if out.get("tool_calls"):
        out["tool_calls"] = [_call(call) for call in out["tool_calls"]]
    return out


def openai_tool(tool: dict) -> dict:
    out = _ordered(tool, ("type", "function"))
    if isinstance(out.get("function"), dict):
        out["function"] = _ordered(out["function"], ("name", "description", "parameters", "strict"))
    return out


# --- reading a message ----------------------------------------------------------------------------


def _text(message: dict, lost: set[str]) -> str:
    """The readable text of a message; parts that are not text are counted as dropped."""
    content = message.get("content")
    if isinstance(content, str):
        text = content
    elif content:
        texts = []
        for part in content:
            if part.get("type") == "text" or "refusal" in part:
                texts.append(part.get("text") or part.get("refusal") or "")
            else:
                kind = part.get("type") or "unknown"
                lost.add(_MEDIA_LOSS.get(kind, f"{kind} parts dropped"))
        text = "\n".join(texts)
    else:
        text = ""
    return text or message.get("refusal") or ""


_TEXT_FORMAT_KEYS = frozenset(
    {"role", "content", "refusal", "tool_calls", "tool_call_id", "name", "weight", "is_error"}
)


def _note_extras(message: dict, lost: set[str]) -> None:
    """Per-message fields only the OpenAI format can carry."""
    if message.get("weight") == 0:
        lost.add(WEIGHTS_DROPPED)
    if message.get("name") and message["role"] != "tool":  # a tool result's name is its call's
        lost.add(NAMES_DROPPED)
    if message.get("is_error"):
        lost.add(TOOL_ERRORS_DROPPED)
    if not message.keys() <= _TEXT_FORMAT_KEYS:  # fields kept verbatim from the provider ("annotations"...)
        lost.add(OTHER_FIELDS_DROPPED)


_OPTION_LOSSES = {"parallel_tool_calls": PARALLEL_TOOL_CALLS_DROPPED, "response_format": RESPONSE_FORMAT_DROPPED}


def note_options(options: dict | None, lost: set[str], *, keeps: tuple[str, ...] = ()) -> None:
    """Count the request settings a format has no place for; `keeps`: the ones it writes."""
    for name, loss in _OPTION_LOSSES.items():
        if options and name in options and name not in keeps:
            lost.add(loss)


def _arguments(call: dict, lost: set[str] | None = None) -> object:
    """A call's arguments as a JSON value (they are stored as a JSON string)."""
    arguments = call["function"].get("arguments", "")
    try:
        return orjson.loads(arguments)
    except orjson.JSONDecodeError:
        if lost is not None:
            lost.add(ARGUMENTS_NOT_JSON)
        return arguments


def _call_json(call: dict, lost: set[str] | None = None) -> dict:
    if isinstance(call.get("function"), dict):
        return {"name": call["function"].get("name", ""), "arguments": _arguments(call, lost)}
    name, arguments = call_name_arguments(call)  # a custom tool's free-text input, as it came
    return {"name": name, "arguments": arguments}


def _system_first(messages: list[dict], lost: set[str]) -> tuple[str, list[dict]]:
    """The system prompt (every system message, joined) and the other messages."""
    system: list[str] = []
    rest: list[dict] = []
    for message in messages:
        if message["role"] == "system":
            if rest:
                lost.add(SYSTEM_MOVED)
            _note_extras(message, lost)
            system.append(_text(message, lost))
        else:
            rest.append(message)
    return "\n\n".join(text for text in system if text), rest


# --- plain text, for the formats that only hold strings -------------------------------------------


def _body(message: dict, lost: set[str]) -> str:
    """A message as plain text: its text, then each tool call as a Hermes-style <tool_call> line."""
    _note_extras(message, lost)
    lines = [_text(message, lost)]
    for call in message.get("tool_calls") or ():
        lost.add(TOOL_CALLS_AS_TEXT)
        lines.append(f"<tool_call>{orjson.dumps(_call_json(call)).decode()}</tool_call>")
    return "\n".join(line for line in lines if line)


def _transcript(messages: list[dict], lost: set[str]) -> str:
    return "\n\n".join(f"{LABELS[m['role']]}: {_body(m, lost)}".rstrip() for m in messages)


def last_reply(messages: list[dict], lost: set[str]) -> int | None:
    """Index of the last assistant turn; later turns are dropped and counted."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index]["role"] == "assistant":
            if index < len(messages) - 1:
                lost.add(TURNS_AFTER_REPLY_DROPPED)
            return index
    return None


# --- the formats ----------------------------------------------------------------------------------

# (messages, tools, lost, options): options are the request settings an entry keeps (`parallel_tool_calls`,
# `response_format`).
Writer = Callable[..., dict | None]


def to_openai(messages: list[dict], tools: list[dict], lost: set[str], options: dict | None = None) -> dict:
    """OpenAI chat fine-tuning line: everything kept (tool calls, content parts, weights, tool schemas in the
    order sent with `strict`, `parallel_tool_calls`, the request's `response_format`, and what the readers keep
    verbatim: `is_error`, parts and tools of types no reader knows)."""
    row: dict = {"messages": [openai_message(m) for m in messages]}
    if tools:
        row["tools"] = [openai_tool(t) for t in tools]
    for name in ("parallel_tool_calls", "response_format"):
        if options and name in options:
            row[name] = options[name]
    return row


def to_sharegpt(messages: list[dict], tools: list[dict], lost: set[str], options: dict | None = None) -> dict | None:
    """ShareGPT as LLaMA-Factory reads it: after an optional system turn, human/observation and
    gpt/function_call turns alternate, ending on the model's side. Tool calls become function_call
    turns (`{"name", "arguments"}`, a list when parallel), tool results observation turns."""
    system, rest = _system_first(messages, lost)
    groups = _sides(rest)
    if groups and groups[0][0] == "model":
        lost.add(TURNS_BEFORE_USER_DROPPED)
        groups = groups[1:]
    if groups and groups[-1][0] == "user":
        groups = groups[:-1]
        if groups:
            lost.add(TURNS_AFTER_REPLY_DROPPED)
    if not groups:
        lost.add(SKIPPED_NO_USER if any(m["role"] == "assistant" for m in rest) else SKIPPED_NO_REPLY)
        return None
    turns = [{"from": "system", "value": system}] if system else []
    for side, group in groups:
        turns.append(_user_turn(group, lost) if side == "user" else _model_turn(group, lost))
    row: dict = {"conversations": turns}
    functions = [openai_tool(t) for t in tools if t.get("type") == "function"]
    if len(functions) < len(tools):  # LLaMA-Factory formats function definitions only
        lost.add(OTHER_TOOLS_DROPPED)
    if functions:
        row["tools"] = orjson.dumps(functions).decode()
    note_options(options, lost)
    return row


def _sides(messages: list[dict]) -> list[tuple[str, list[dict]]]:
    """Runs of consecutive messages from one side: "user" (user, tool) or "model" (assistant)."""
    groups: list[tuple[str, list[dict]]] = []
    for message in messages:
        side = "model" if message["role"] == "assistant" else "user"
        if groups and groups[-1][0] == side:
            groups[-1][1].append(message)
        else:
            groups.append((side, [message]))
    return groups


def _user_turn(group: list[dict], lost: set[str]) -> dict:
    for message in group:
        _note_extras(message, lost)
    texts = [_text(m, lost) for m in group]
    if all(m["role"] == "tool" for m in group):
        if len(group) > 1:
            lost.add(TOOL_RESULTS_MERGED)
        return {"from": "observation", "value": "\n".join(texts)}
    if len(group) > 1:
        lost.add(CONSECUTIVE_TURNS_MERGED)
    return {"from": "human", "value": "\n\n".join(texts)}


def _model_turn(group: list[dict], lost: set[str]) -> dict:
    for message in group:
        _note_extras(message, lost)
    texts = [text for m in group if (text := _text(m, lost))]
    calls = [_call_json(call, lost) for m in group for call in m.get("tool_calls") or ()]
    if len(group) > 1:
        lost.add(CONSECUTIVE_TURNS_MERGED)
    if not calls:
        return {"from": "gpt", "value": "\n\n".join(texts)}
    if texts:
        lost.add(TEXT_BESIDE_CALLS_DROPPED)
    value = calls[0] if len(calls) == 1 else calls
    return {"from": "function_call", "value": orjson.dumps(value).decode()}


def to_alpaca(messages: list[dict], tools: list[dict], lost: set[str], options: dict | None = None) -> dict | None:
    """Alpaca: the first user turn is the instruction, the last assistant turn the output. Turns in
    between go into `input` as a labelled transcript (tool calls as <tool_call> text)."""
    system, rest = _system_first(messages, lost)
    last = last_reply(rest, lost)
    if last is None:
        lost.add(SKIPPED_NO_REPLY)
        return None
    first = next((i for i, m in enumerate(rest[:last]) if m["role"] == "user"), None)
    if first is None:
        lost.add(SKIPPED_NO_USER)
        return None
    if tools:
        lost.add(TOOL_DEFINITIONS_DROPPED)
    note_options(options, lost)
    middle = rest[:first] + rest[first + 1 : last]
    if middle:
        lost.add(EXTRA_TURNS_MERGED)
    _note_extras(rest[first], lost)
    row = {
        "instruction": _text(rest[first], lost),
        "input": _transcript(middle, lost),
        "output": _body(rest[last], lost),
    }
    if system:
        row["system"] = system
    return row


def to_prompt_completion(
    messages: list[dict], tools: list[dict], lost: set[str], options: dict | None = None
) -> dict | None:
    """Prompt / completion: the conversation before the last assistant turn as labelled plain text
    ending in "Assistant:", and that turn, after a space, as the completion."""
    last = last_reply(messages, lost)
    if last is None:
        lost.add(SKIPPED_NO_REPLY)
        return None
    if tools:
        lost.add(TOOL_DEFINITIONS_DROPPED)
    note_options(options, lost)
    before = messages[:last]
    if any(m["role"] == "assistant" for m in before):
        lost.add(EARLIER_REPLIES_IN_PROMPT)
    transcript = _transcript(before, lost)
    prompt = f"{transcript}\n\nAssistant:" if transcript else "Assistant:"
    return {"prompt": prompt, "completion": " " + _body(messages[last], lost)}


WRITERS: dict[str, Writer] = {
    "openai": to_openai,
    "sharegpt": to_sharegpt,
    "alpaca": to_alpaca,
    "prompt_completion": to_prompt_completion,
}
# Parquet's columns are written by `columns`, the preference pairs of edited entries by `preference`.
PREFERENCE_FORMATS = ("preference", "openai_preference")
FORMATS = (*WRITERS, "parquet", *PREFERENCE_FORMATS)
LOSSLESS_FORMATS = frozenset({"openai", "parquet"})
