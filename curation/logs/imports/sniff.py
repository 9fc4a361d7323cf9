"""What an uploaded file is, judged from its first bytes: imports read JSON Lines (or gzip-compressed JSON Lines)
and refuse anything else before a job is created, naming what the file looks like instead."""

import codecs
import zlib
from typing import Protocol

# How much of the file is read to judge it, and at most how much of a gzip file is decompressed for it.
HEAD_BYTES = 64 * 1024
GZIP_MAGIC = b"\x1f\x8b"
HINT = "An import reads JSONL or JSONL.gz: one JSON object per line."
ARRAY_HINT = (
    "Convert it to one object per line (for example `jq -c '.[]' FILE.json > FILE.jsonl`), "
    "or send the array as it is to POST /api/v1/logs (up to 1,000 logs a request)."
)
_ZIP = "a ZIP archive (XLSX and DOCX files are ZIP archives too)"
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", _ZIP),
    (b"PK\x05\x06", _ZIP),
    (b"PAR1", "a Parquet file"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"BZh", "a bzip2 file (only gzip is decompressed)"),
    (b"\xfd7zXZ\x00", "an xz file (only gzip is decompressed)"),
    (b"\x28\xb5\x2f\xfd", "a zstd file (only gzip is decompressed)"),
    (codecs.BOM_UTF16_LE, "UTF-16 text (save it as UTF-8)"),
    (codecs.BOM_UTF16_BE, "UTF-16 text (save it as UTF-8)"),
)
_CONTROL = frozenset(range(32)) - {9, 10, 12, 13}  # a text file holds none of these: tab, LF, FF and CR aside
SNIPPET_CHARS = 40


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...

    def seek(self, offset: int, whence: int = ..., /) -> int: ...


def import_file_problem(file: Readable) -> str | None:
    """`import_head_problem` of an open file's first bytes; the file is left at its start."""
    file.seek(0)
    head = file.read(HEAD_BYTES)
    file.seek(0)
    return import_head_problem(head)


def import_head_problem(head: bytes) -> str | None:
    """Why a file whose first bytes are `head` cannot be imported, or None when it looks like JSON Lines.

    `head` is the file's first HEAD_BYTES bytes, or the whole file when it is shorter. JSON Lines means: after
    a UTF-8 BOM and whitespace, the first character is `{`. A gzip file is judged by the start of its content
    (at most HEAD_BYTES of it decompressed, so a gzip bomb costs nothing here)."""
    if not head:
        return "The file is empty."
    if not head.startswith(GZIP_MAGIC):
        return _problem(head, whole=len(head) < HEAD_BYTES, subject="The file is not JSON Lines")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        content = inflater.decompress(head, HEAD_BYTES)
    except zlib.error as exc:
        return f"The file starts like a gzip file but is not valid gzip ({exc})."
    if not inflater.eof and len(head) < HEAD_BYTES and len(content) < HEAD_BYTES:
        return "The file is a gzip file cut short."
    whole = inflater.eof and not inflater.unused_data
    return _problem(content, whole=whole, subject="The file is gzip-compressed, but not JSON Lines inside")


def _problem(data: bytes, *, whole: bool, subject: str) -> str | None:
    for signature, name in SIGNATURES:
        if data.startswith(signature):
            return f"{subject}: it is {name}. {HINT}"
    text = data.removeprefix(codecs.BOM_UTF8).lstrip(b" \t\r\n")
    if not text:
        # Only blank lines so far: a whole file of them holds nothing; a longer one is judged by its import.
        return "The file holds no lines." if whole else None
    if text.startswith(b"{"):
        return None
    if text.startswith(b"["):
        return f"{subject}: it is a JSON array. {ARRAY_HINT}"
    kind = _not_text(text)
    if kind:
        return f"{subject}: it is {kind} (its first bytes are {text[:8].hex(' ')}). {HINT}"
    return f"{subject}: it starts with '{_snippet(text)}', not a JSON object. {HINT}"


def _not_text(data: bytes) -> str | None:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data)  # not final: a character cut at the end is fine
    except UnicodeDecodeError:
        return "not UTF-8 text"
    return "binary data" if any(byte in _CONTROL for byte in data[:1024]) else None


def _snippet(text: bytes) -> str:
    line = text.split(b"\n", 1)[0].decode("utf-8", errors="replace").rstrip()
    return line if len(line) <= SNIPPET_CHARS else line[:SNIPPET_CHARS] + "…"
