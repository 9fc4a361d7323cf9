"""The Parquet format's columns: the OpenAI line's messages as a list of structs, which Hugging Face `datasets`
loads as chat data and TRL trains on without a conversion step. Pure Python; Arrow's types are built only by
`arrow_schema`, when a Parquet file is written.

A struct has one type for every row, and a conversation does not always fit one: content is a string or a list
of parts, a tool call may be of a type other than `function`, a provider may add fields of its own. So each
message has a column per field OpenAI defines, holding the value when it has that column's type, and two JSON
text columns for the rest: `parts` (the content, when it is a list of parts; `content` then holds the text of its
text parts, what a text-only trainer reads) and `extra` (every other field, and a known field whose value has
another type or is null). `message_from_columns` puts a message back together, key for key and in the OpenAI
line's order, so the file carries everything (tests/curation/test_export.py proves the round trip).

`tools` stays JSON text: a tool's `parameters` is any JSON Schema, which has no one Arrow type, and TRL's
SFTTrainer and DPOTrainer parse a `tools` column given as a string.
"""

from typing import TYPE_CHECKING

import orjson

from curation.datasets.export.formats import to_openai

if TYPE_CHECKING:
    import pyarrow as pa

MESSAGE_FIELDS = ("role", "tool_call_id", "name", "content", "refusal", "tool_calls", "weight", "parts", "extra")
_STRING_FIELDS = frozenset({"role", "tool_call_id", "name", "content", "refusal"})
# The fields of the OpenAI line's messages, in the order it writes them (formats._MESSAGE_KEYS).
_MESSAGE_ORDER = ("role", "tool_call_id", "name", "content", "refusal", "tool_calls", "weight")


def to_parquet_row(messages: list[dict], tools: list[dict], lost: set[str], options: dict | None = None) -> dict:
    """A Parquet row: the OpenAI line's messages as structs, its tools as JSON text and its `parallel_tool_calls`
    (null when the request did not set it). Nothing is lost."""
    line = to_openai(messages, tools, lost, options)
    return {
        "messages": [message_columns(message) for message in line["messages"]],
        "tools": orjson.dumps(line.get("tools", [])).decode(),
        "parallel_tool_calls": line.get("parallel_tool_calls"),
    }


def message_columns(message: dict) -> dict:
    out: dict = dict.fromkeys(MESSAGE_FIELDS)
    extra = {}
    for key, value in message.items():
        if key == "content" and isinstance(value, list):
            out["parts"] = orjson.dumps(value).decode()
            out["content"] = "\n".join(
                part["text"] for part in value if part.get("type") == "text" and isinstance(part.get("text"), str)
            )
        elif key == "tool_calls" and isinstance(value, list) and value:
            out["tool_calls"] = [_call_columns(call) for call in value]
        elif (key in _STRING_FIELDS and isinstance(value, str)) or (key == "weight" and type(value) is int):
            out[key] = value
        else:
            extra[key] = value
    out["extra"] = orjson.dumps(extra).decode() if extra else None
    return out


def _call_columns(call: dict) -> dict:
    function = call.get("function")
    fits = (
        call.keys() == {"id", "type", "function"}
        and isinstance(call["id"], str)
        and isinstance(call["type"], str)
        and isinstance(function, dict)
        and function.keys() == {"name", "arguments"}
        and all(isinstance(value, str) for value in function.values())
    )
    if fits:
        return {"id": call["id"], "type": call["type"], "function": function, "extra": None}
    # A custom tool's call, or one with fields of its own: whole, as JSON text.
    return {"id": None, "type": None, "function": None, "extra": orjson.dumps(call).decode()}


def message_from_columns(row: dict) -> dict:
    """The OpenAI message a row of the `messages` column was written from."""
    extra = orjson.loads(row["extra"]) if row.get("extra") else {}
    out: dict = {}
    for key in _MESSAGE_ORDER:
        if key == "content" and row.get("parts") is not None:
            out[key] = orjson.loads(row["parts"])
        elif key == "tool_calls" and row.get("tool_calls") is not None:
            out[key] = [_call_from_columns(call) for call in row["tool_calls"]]
        elif row.get(key) is not None:
            out[key] = row[key]
        elif key in extra:
            out[key] = extra.pop(key)
    out.update(extra)
    return out


def _call_from_columns(row: dict) -> dict:
    if row.get("extra") is not None:
        return orjson.loads(row["extra"])
    return {"id": row["id"], "type": row["type"], "function": row["function"]}


def arrow_schema() -> "pa.Schema":
    import pyarrow as pa  # only exports to Parquet pay for loading Arrow

    call = pa.struct(
        [
            ("id", pa.string()), ("type", pa.string()),
            ("function", pa.struct([("name", pa.string()), ("arguments", pa.string())])), ("extra", pa.string()),
        ]
    )  # fmt: skip
    message = pa.struct(
        [
            ("role", pa.string()), ("tool_call_id", pa.string()), ("name", pa.string()), ("content", pa.string()),
            ("refusal", pa.string()), ("tool_calls", pa.list_(call)), ("weight", pa.int64()),
            ("parts", pa.string()), ("extra", pa.string()),
        ]
    )  # fmt: skip
    return pa.schema(
        [
            ("id", pa.int64()), ("split", pa.string()), ("messages", pa.list_(message)), ("tools", pa.string()),
            ("parallel_tool_calls", pa.bool_()),
        ]
    )  # fmt: skip
