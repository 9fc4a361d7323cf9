"""Rows in PostgreSQL's `COPY … FROM STDIN` text format, built without a connection.

psycopg's `Copy.write_row` formats each value as it is written, on the connection's thread. Building the text
beforehand lets a batch be prepared anywhere (a file import's reading thread, `curation/logs/imports/run.py`) and
sent in one write. The format (PostgreSQL's documentation, "COPY", "Text Format"): columns separated by a tab,
rows ended by a newline, NULL as `\\N`, and a backslash, newline, carriage return or tab inside a value written
as a backslash sequence.
"""

from collections.abc import Collection, Iterable
from datetime import date, datetime
from decimal import Decimal

import orjson

NULL = b"\\N"


def copy_escape(data: bytes) -> bytes:
    """A value's bytes with the four characters COPY's text format reserves escaped."""
    if b"\\" in data:
        data = data.replace(b"\\", b"\\\\")
    if b"\n" in data:
        data = data.replace(b"\n", b"\\n")
    if b"\r" in data:
        data = data.replace(b"\r", b"\\r")
    if b"\t" in data:
        data = data.replace(b"\t", b"\\t")
    return data


def copy_field(value: object) -> bytes:
    """One column's value as COPY text: text, numbers, booleans, dates. JSON columns go through `copy_json`."""
    if value is None:
        return NULL
    if isinstance(value, str):
        return copy_escape(value.encode())
    if isinstance(value, bool):  # before int: a bool is an int
        return b"t" if value else b"f"
    if isinstance(value, int | Decimal | float):
        return str(value).encode()
    if isinstance(value, datetime | date):
        return value.isoformat().encode()
    raise TypeError(f"no COPY text for a value of type {type(value).__name__}")


def copy_json(value: object) -> bytes:
    """A JSON column's value as COPY text (JSON null for None, as Django writes it). orjson escapes newlines, tabs
    and carriage returns inside strings, so only its backslashes need doubling."""
    return orjson.dumps(value).replace(b"\\", b"\\\\")


def copy_row(values: Iterable[tuple[str, object]], json_columns: Collection[str]) -> bytes:
    """The (column, value) pairs of a row as one line of COPY text, without its end of line."""
    return b"\t".join(copy_json(value) if column in json_columns else copy_field(value) for column, value in values)
