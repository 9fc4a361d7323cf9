"""JSON text in, each log's exact text out: what lets Logtune keep an original byte for byte.

A batch body, `{"logs": [...]}` or a bare array of logs (what LiteLLM's generic logger posts), is read value by
value with the standard library's C scanner, which reports where each value ends; each log keeps the exact slice
of the body it was sent as (key order, number formatting, escapes, unknown fields), and one bad item never takes
the others down with it:

- Invalid UTF-8 bytes and lone surrogate escapes (`"\\ud800"`, common in logs cut by JavaScript clients) are
  read, not refused: the item that holds them is stored with U+FFFD in their place, and a note says where.
- NUL characters (`"\\u0000"`), which PostgreSQL refuses in text, are replaced the same way in what is
  stored as text; the original's escape is plain ASCII and stays as sent.

Pure Python, no Django.
"""

import json
import re
from dataclasses import dataclass, field

import orjson

from curation.logs.ingest.canonical import check_storable, fail, join

REPLACEMENT = "\ufffd"
_SURROGATES = re.compile("[\ud800-\udfff]")
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_PASSTHROUGH = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


class BodyError(ValueError):
    """The body is not JSON at all; str(err) says where."""


@dataclass(slots=True)
class RawItem:
    """One log as received: its decoded value and its exact JSON text (the original that is stored)."""

    value: object
    text: str | None  # None: a value built in Python, written out as JSON when stored
    notes: list[str] = field(default_factory=list)  # what had to be replaced to store it, with paths
    error: str = ""  # why it could not even be read as JSON (an import's line): only an unreadable log can keep it


@dataclass(slots=True)
class Body:
    """A request body: its top-level value, and when it is a batch (`{"logs": [...]}`, or a bare array) each item's
    exact text."""

    value: object
    text: str
    items: list[RawItem] | None = None  # the `logs` items of an object with a `logs` list, or a bare array's items


def decode_text(data: bytes) -> str:
    """Bytes as text; invalid UTF-8 bytes survive as lone surrogates, to be replaced item by item later."""
    return data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")


def body_read(data: bytes) -> Body:
    """Parse a request body, keeping the exact text of each log of a batch. Raises BodyError when it is not JSON."""
    return body_read_text(decode_text(data), batch=True)


def line_read(line: str) -> RawItem:
    """One line of a JSONL file: its value and exact text. Raises BodyError when it is not one JSON value."""
    body = body_read_text(line, batch=False)
    return RawItem(value=body.value, text=body.text)


def body_read_text(text: str, *, batch: bool) -> Body:
    start = _skip(text, 0)
    value: object
    items = None
    try:
        if batch and text.startswith("{", start):
            value, items, end = _object_with_items(text, start)
        elif batch and text.startswith("[", start):
            value, items, end = _array_with_items(text, start)
        else:
            value, end = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        raise BodyError(f"{exc.msg}: line {exc.lineno} column {exc.colno} (char {exc.pos})") from None
    except RecursionError:
        raise BodyError("nested too deeply") from None
    except ValueError as exc:
        raise BodyError(str(exc)) from None
    if _skip(text, end) != len(text):
        raise BodyError(f"extra data after the JSON value: char {_skip(text, end)}")
    return Body(value=value, text=text[start:end], items=items)


def _skip(text: str, index: int) -> int:
    match = _WHITESPACE.match(text, index)
    return match.end() if match else index


def _object_with_items(text: str, index: int) -> tuple[dict, list[RawItem] | None, int]:
    """The top-level object, walked key by key so the values of a `logs` array keep their spans."""
    value: dict = {}
    items: list[RawItem] | None = None
    index = _skip(text, index + 1)
    if text.startswith("}", index):
        return value, None, index + 1
    while True:
        if not text.startswith('"', index):
            raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, index)
        key, index = json.decoder.scanstring(text, index + 1)  # type: ignore[attr-defined]
        index = _skip(text, index)
        if not text.startswith(":", index):
            raise json.JSONDecodeError("Expecting ':' delimiter", text, index)
        index = _skip(text, index + 1)
        if key == "logs" and text.startswith("[", index):
            value[key], items, index = _array_with_items(text, index)
        else:
            value[key], index = _DECODER.raw_decode(text, index)
        index = _skip(text, index)
        if text.startswith("}", index):
            return value, items, index + 1
        if not text.startswith(",", index):
            raise json.JSONDecodeError("Expecting ',' delimiter", text, index)
        index = _skip(text, index + 1)


def _array_with_items(text: str, index: int) -> tuple[list, list[RawItem], int]:
    values: list = []
    items: list[RawItem] = []
    index = _skip(text, index + 1)
    if text.startswith("]", index):
        return values, items, index + 1
    while True:
        start = index
        item, index = _DECODER.raw_decode(text, index)
        values.append(item)
        items.append(RawItem(value=item, text=text[start:index]))
        index = _skip(text, index)
        if text.startswith("]", index):
            return values, items, index + 1
        if not text.startswith(",", index):
            raise json.JSONDecodeError("Expecting ',' delimiter", text, index)
        index = _skip(text, index + 1)


# --- what PostgreSQL cannot store, replaced item by item -------------------------------------------------


def item_make_storable(item: RawItem) -> RawItem:
    """The item with every lone surrogate and NUL character of its value replaced by U+FFFD, and a note for each
    string that changed; its text loses only what text cannot hold (raw surrogates from invalid UTF-8).

    One orjson pass finds both cheaply (it refuses surrogates and writes NUL as the escape "\\u0000"); the walk
    that replaces them only runs when something is there. What cannot be stored even then (numbers beyond 64
    bits, values that are not JSON) raises IngestError, the item made storable as far as it goes."""
    if item.text is not None and _SURROGATES.search(item.text):
        item.text = _SURROGATES.sub(REPLACEMENT, item.text)
    try:
        dumped = orjson.dumps(item.value, option=_PASSTHROUGH)
    except orjson.JSONEncodeError as exc:
        if "Recursion limit" in str(exc):
            raise fail("", "nested too deeply (more than 254 levels)") from None
        dumped = None
    if dumped is None or b"\\u0000" in dumped:
        item.value = _replace(item.value, "", item.notes)
    if dumped is None:
        check_storable(item.value)  # what orjson refused besides surrogates
    return item


def value_text(value: object) -> str:
    """The JSON text of a value built in Python (not received as text): compact, keys in the order they are in."""
    return orjson.dumps(value, option=_PASSTHROUGH).decode()


def _replace(value: object, path: str, notes: list[str]) -> object:
    if isinstance(value, str):
        return _clean(value, path, notes)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = _clean(key, "", []) if isinstance(key, str) else key
            child = join(path, name)
            if name != key:
                notes.append(f"{child}: the field name had invalid characters, replaced by U+FFFD")
            out[name] = _replace(item, child, notes)
        return out
    if isinstance(value, list):
        return [_replace(item, join(path, index), notes) for index, item in enumerate(value)]
    return value


def _clean(text: str, path: str, notes: list[str]) -> str:
    what = []
    if "\x00" in text:
        text = text.replace("\x00", REPLACEMENT)
        what.append("NUL character")
    if _SURROGATES.search(text):
        text = _SURROGATES.sub(REPLACEMENT, text)
        what.append("invalid Unicode (lone surrogate or bad UTF-8)")
    if what and path:
        notes.append(f"{path}: {' and '.join(what)} replaced by U+FFFD")
    elif what:
        notes.append(f"the value: {' and '.join(what)} replaced by U+FFFD")
    return text
