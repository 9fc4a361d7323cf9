"""`read_document`: which format a file is (its bytes first, then its name), decoding text, and plain text."""

import codecs
import re
import zipfile
from io import BytesIO
from pathlib import PurePosixPath

from curation.text.documents import markup, office
from curation.text.documents.model import BlockKind, Document, DocumentError, RawBlock, document_assemble

MAX_DOCUMENT_BYTES = 50 * 1024 * 1024
HTML_NAMES = {".html", ".htm", ".xhtml"}
MARKDOWN_NAMES = {".md", ".markdown", ".mdown"}
# Control characters other than tab, newlines and form feed: text holds almost none, binary data many.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
BULLET = re.compile(r"^\s*(?:[-*•‣◦]|\d{1,3}[.)])\s+")
HTML_START = re.compile(rb"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)\b", re.IGNORECASE | re.DOTALL)


def read_document(name: str, data: bytes) -> Document:
    """The document in `data`, its format found from its first bytes (`%PDF-`, a zip holding word/document.xml) and,
    for text, from `name`'s extension (.html, .md) or an opening HTML tag. Raises DocumentError, naming `name`, for
    what cannot be read: an encrypted or broken PDF, a zip that is not a Word document, binary data, no text."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise DocumentError(name, f"is {len(data):,} bytes, over the limit of {MAX_DOCUMENT_BYTES:,}")
    suffix = PurePosixPath(name).suffix.lower()
    if b"%PDF-" in data[:1024]:
        raw, pages = office.pdf_blocks(name, data)
        return document_assemble(name=name, format="pdf", data=data, raw=raw, pages=pages)
    if suffix == ".pdf":
        raise DocumentError(name, "is not a PDF (it does not start with %PDF-)")
    if data.startswith(b"PK\x03\x04"):
        _zip_check(name, data)
        return document_assemble(name=name, format="docx", data=data, raw=office.docx_blocks(name, data))
    if suffix == ".docx":
        raise DocumentError(name, "is not a Word document (it is not a zip archive)")
    text, notes = text_decode(name, data)
    if suffix in HTML_NAMES or (
        suffix not in MARKDOWN_NAMES and HTML_START.match(data[:4096].lstrip(codecs.BOM_UTF8))
    ):
        return document_assemble(name=name, format="html", data=data, raw=markup.html_blocks(text), notes=notes)
    if suffix in MARKDOWN_NAMES:
        return document_assemble(
            name=name, format="markdown", data=data, raw=markup.markdown_blocks(text), notes=notes
        )
    return document_assemble(name=name, format="text", data=data, raw=text_blocks(text), notes=notes)


def _zip_check(name: str, data: bytes) -> None:
    try:
        archive = zipfile.ZipFile(BytesIO(data))
        names = set(archive.namelist())
    except (zipfile.BadZipFile, ValueError) as error:
        raise DocumentError(name, f"is a broken zip archive ({error})") from error
    if "word/document.xml" not in names:
        raise DocumentError(name, "is a zip archive but not a Word document (no word/document.xml)")
    if sum(info.file_size for info in archive.infolist()) > 10 * MAX_DOCUMENT_BYTES:
        raise DocumentError(name, f"unpacks to more than {10 * MAX_DOCUMENT_BYTES:,} bytes")


def text_decode(name: str, data: bytes) -> tuple[str, tuple[str, ...]]:
    """UTF-8 (with or without a byte order mark), UTF-16 with one, or else charset-normalizer's guess, with a note."""
    notes: tuple[str, ...] = ()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = _decode(name, data, "utf-16")
    elif b"\x00" in data[:8192]:
        raise DocumentError(name, "is binary data, not text (it holds NUL bytes)")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text, notes = _guess(name, data)
    if len(CONTROL.findall(text[:100_000])) > max(8, len(text[:100_000]) // 100):
        raise DocumentError(name, "is binary data, not text (it holds many control characters)")
    return text.replace("\r\n", "\n").replace("\r", "\n"), notes


def _decode(name: str, data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise DocumentError(name, f"cannot be decoded as {encoding} ({error.reason} at byte {error.start})") from error


def _guess(name: str, data: bytes) -> tuple[str, tuple[str, ...]]:
    from charset_normalizer import from_bytes

    best = from_bytes(data[:1_000_000]).best()
    if best is None or best.encoding is None:
        raise DocumentError(name, "is neither UTF-8 nor text in an encoding that could be recognised")
    return _decode(name, data, best.encoding), (f"not UTF-8: decoded as {best.encoding} (a guess)",)


def text_blocks(text: str) -> list[RawBlock]:
    """Plain text: paragraphs between blank lines; a paragraph whose every line starts with a bullet or a number is
    a list, one item a line."""
    blocks = []
    for part in re.split(r"\n[ \t\f]*\n", text):
        lines = [line for line in part.split("\n") if line.strip()]
        if len(lines) > 1 and all(BULLET.match(line) for line in lines):
            blocks += [RawBlock(BlockKind.LIST_ITEM, BULLET.sub("", line), level=1) for line in lines]
        elif lines:
            blocks.append(RawBlock(BlockKind.PARAGRAPH, part))
    return blocks
