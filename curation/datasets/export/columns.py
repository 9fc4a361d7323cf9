"""The Parquet format's columns: the OpenAI line's messages as a list of structs and its tools as a list, which
Hugging Face `datasets` loads as chat data and TRL trains on without a conversion step. Pure Python; Arrow's types
are built only by `arrow_schemas`, when a Parquet file is written.

A struct has one type for every row, and a conversation does not always fit one: content is a string or a list
of parts, a tool call may be of a type other than `function`, a provider may add fields of its own. So each
message has a column per field OpenAI defines, holding the value when it has that column's type, and two JSON
columns for the rest: `parts` (the content, when it is a list of parts; `content` then holds the text of its text
parts, what a text-only trainer reads) and `extra` (every other field, and a known field whose value has another
type or is null). `message_from_columns` puts a message back together, key for key and in the OpenAI line's order,
so the file carries everything (tests/curation/test_export.py proves the round trip).

A tool's `parameters` is any JSON Schema, which has no one Arrow type, so `tools` is a list of JSON values, one
per tool. JSON columns have Arrow's JSON type (text underneath, what pyarrow, pandas and polars read) and the file
says, in the metadata `datasets` writes itself, that they are `Json` features: `load_dataset` gives them decoded,
the tools as dicts in the order they were sent.
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
    """A Parquet row: the OpenAI line's messages as structs, its tools as JSON, one per tool, and its
    `parallel_tool_calls` and `response_format` (JSON; each null when the request did not set it). Nothing is lost."""
    line = to_openai(messages, tools, lost, options)
    response_format = line.get("response_format")
    return {
        "messages": [message_columns(message) for message in line["messages"]],
        "tools": [orjson.dumps(tool).decode() for tool in line.get("tools", ())],
        "parallel_tool_calls": line.get("parallel_tool_calls"),
        "response_format": None if response_format is None else orjson.dumps(response_format).decode(),
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


def _json(value: object) -> object:
    """A JSON column's value: text as pyarrow reads it, or already decoded as `datasets` loads it."""
    return orjson.loads(value) if isinstance(value, str) else value


def message_from_columns(row: dict) -> dict:
    """The OpenAI message a row of the `messages` column was written from (read by pyarrow or by `datasets`)."""
    extra: dict = _json(row["extra"]) if row.get("extra") is not None else {}  # type: ignore[assignment]
    out: dict = {}
    for key in _MESSAGE_ORDER:
        if key == "content" and row.get("parts") is not None:
            out[key] = _json(row["parts"])
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
        return _json(row["extra"])  # type: ignore[return-value]
    return {"id": row["id"], "type": row["type"], "function": row["function"]}


def arrow_schemas() -> tuple["pa.Schema", "pa.Schema"]:
    """The schema a batch is built with (JSON as plain strings: Arrow builds no extension type from Python) and the
    file's, which it is cast to: JSON columns as Arrow's JSON type, and the features Hugging Face `datasets` reads
    them with (`Json`, decoded to Python values on load)."""
    import pyarrow as pa  # only exports to Parquet pay for loading Arrow

    def columns(json: pa.DataType) -> list[tuple[str, pa.DataType]]:
        function = pa.struct([("name", pa.string()), ("arguments", pa.string())])
        call = pa.struct([("id", pa.string()), ("type", pa.string()), ("function", function), ("extra", json)])
        message = pa.struct(
            [
                ("role", pa.string()), ("tool_call_id", pa.string()), ("name", pa.string()),
                ("content", pa.string()), ("refusal", pa.string()), ("tool_calls", pa.list_(call)),
                ("weight", pa.int64()), ("parts", json), ("extra", json),
            ]
        )  # fmt: skip
        return [
            ("id", pa.int64()), ("split", pa.string()), ("messages", pa.list_(message)), ("tools", pa.list_(json)),
            ("parallel_tool_calls", pa.bool_()), ("response_format", json),
        ]  # fmt: skip

    metadata = {"huggingface": orjson.dumps({"info": {"features": HF_FEATURES}}).decode()}
    return pa.schema(columns(pa.string())), pa.schema(columns(pa.json_()), metadata=metadata)


def _value(dtype: str) -> dict:
    return {"dtype": dtype, "_type": "Value"}


_JSON = {"_type": "Json"}
_STRING = _value("string")
# The `datasets` features of the file (what `datasets.Features.to_dict()` writes for arrow_schemas' columns).
HF_FEATURES = {
    "id": _value("int64"),
    "split": _STRING,
    "messages": {
        "feature": {
            "role": _STRING, "tool_call_id": _STRING, "name": _STRING, "content": _STRING, "refusal": _STRING,
            "tool_calls": {
                "feature": {
                    "id": _STRING, "type": _STRING, "function": {"name": _STRING, "arguments": _STRING},
                    "extra": _JSON,
                },
                "_type": "List",
            },
            "weight": _value("int64"), "parts": _JSON, "extra": _JSON,
        },
        "_type": "List",
    },
    "tools": {"feature": _JSON, "_type": "List"},
    "parallel_tool_calls": _value("bool"),
    "response_format": _JSON,
}  # fmt: skip
