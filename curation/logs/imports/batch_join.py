"""An OpenAI Batch API output file joined to its input file, so that each answer is imported with its request.

The output file holds the answers (`{"id", "custom_id", "response", "error"}`), the input file the requests
(`{"custom_id", "method", "url", "body"}`). Each output line is written out with its input line, by `custom_id`,
under `request`: `{"request": <input line>, <the output line's fields>}`, both lines' text byte for byte, which the
Batch reader (curation.logs.ingest.batch) reads as one call and stores as the log's original. Memory holds only
where each input line lies in its file, never the lines themselves.
"""

import json
import tempfile
from dataclasses import dataclass
from typing import BinaryIO

from django.core.files import File

from curation.common.views import plural
from curation.logs.imports.files import stream_open

# Joined files are written to disk past this size, kept in memory below it.
SPOOL_BYTES = 8 * 1024 * 1024


class BatchJoinError(Exception):
    """The input file cannot be joined: it is not a Batch input file (a line that is not a JSON object with a string
    `custom_id`) or it holds one `custom_id` twice. The message names the line."""


@dataclass(slots=True)
class BatchJoin:
    file: File  # the joined JSONL file, at its start
    joined: int  # output lines written with their input line
    unanswered: int  # input lines no output line answers (the batch failed or expired them, or they are elsewhere)
    without_request: int  # output lines with no input line, written as they are (the reader refuses them, naming why)


def batch_files_join(output: BinaryIO, input: BinaryIO) -> BatchJoin:
    """Join a Batch output file to its input file (each plain or gzip). Raises BatchJoinError."""
    input_stream = stream_open(input, seekable=True)
    places = _input_places(input_stream)
    joined = without_request = 0
    answered: set[str] = set()
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (handed over in the File)
    for line in stream_open(output):
        text = line.rstrip(b"\r\n")
        custom_id = _custom_id(text)
        place = places.get(custom_id) if custom_id is not None else None
        if place is None or not text.lstrip().startswith(b"{"):
            spool.write(text + b"\n")
            without_request += bool(text.strip())
            continue
        input_stream.seek(place[0])
        request = input_stream.read(place[1])
        rest = text.lstrip()[1:].lstrip()
        spool.write(b'{"request":' + request + (b"," if not rest.startswith(b"}") else b"") + rest + b"\n")
        answered.add(custom_id)  # type: ignore[arg-type]
        joined += 1
    spool.seek(0)
    return BatchJoin(
        file=File(spool), joined=joined, unanswered=len(places.keys() - answered), without_request=without_request
    )


def join_summary(join: BatchJoin) -> str:
    """What the join did, in words: "12 answers with their request; 1 request without an answer, not imported"."""
    parts = [f"{plural(join.joined, 'answer')} with their request"]
    if join.unanswered:
        parts.append(f"{plural(join.unanswered, 'request')} without an answer, not imported")
    if join.without_request:
        parts.append(f"{plural(join.without_request, 'answer')} without a request")
    return "; ".join(parts)


def _input_places(stream: BinaryIO) -> dict[str, tuple[int, int]]:
    """Where each input line lies: `custom_id` → (offset, length) of its JSON text."""
    places: dict[str, tuple[int, int]] = {}
    offset = 0
    for number, line in enumerate(iter(stream.readline, b""), start=1):
        text = line.rstrip(b"\r\n")
        if text.strip():
            custom_id = _custom_id(text)
            if custom_id is None:
                raise BatchJoinError(f"Input file, line {number}: not a Batch API input line (no string custom_id).")
            if custom_id in places:
                raise BatchJoinError(f"Input file, line {number}: custom_id {custom_id!r} is on an earlier line too.")
            start = len(text) - len(text.lstrip())
            places[custom_id] = (offset + start, len(text.strip()))
        offset += len(line)
    return places


def _custom_id(text: bytes) -> str | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    custom_id = value.get("custom_id") if isinstance(value, dict) else None
    return custom_id if isinstance(custom_id, str) else None
