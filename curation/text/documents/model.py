"""What a read document is: its blocks in reading order, their text joined into one string they point into."""

import enum
import hashlib
from dataclasses import dataclass

SEPARATOR = "\n\n"  # between blocks in `Document.text`
PATH_SEPARATOR = " › "


class DocumentError(ValueError):
    """A document that cannot be read; the message names the file and the reason."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


class BlockKind(enum.StrEnum):
    HEADING = "heading"
    PARAGRAPH = "paragraph"
    LIST_ITEM = "list_item"
    TABLE_ROW = "table_row"
    CODE = "code"


@dataclass(frozen=True)
class RawBlock:
    """A block as a format's reader finds it, before offsets and heading paths are known."""

    kind: BlockKind
    text: str
    level: int = 0
    page: int | None = None


@dataclass(frozen=True)
class Block:
    kind: BlockKind
    text: str
    # A heading's level (1 is the top); a list item's depth (1 is the outer list); 0 for the others.
    level: int
    # The headings this block sits under, outermost first; a heading's path ends with itself.
    heading_path: tuple[str, ...]
    # Offsets of the block's text in `Document.text`: document.text[start:end] == block.text.
    start: int
    end: int
    # The page the block is on, from 1 (PDF only).
    page: int | None = None


@dataclass(frozen=True)
class Document:
    name: str
    format: str  # "pdf", "docx", "html", "markdown" or "text"
    sha256: str  # of the bytes read
    text: str  # the blocks' text joined by a blank line
    blocks: tuple[Block, ...]
    pages: int | None = None  # PDF only
    notes: tuple[str, ...] = ()  # what the reader guessed (an encoding) or left out

    @property
    def headings(self) -> list[Block]:
        return [block for block in self.blocks if block.kind == BlockKind.HEADING]


def document_assemble(
    *, name: str, format: str, data: bytes, raw: list[RawBlock], pages: int | None = None, notes: tuple[str, ...] = ()
) -> Document:
    """The document of `raw` blocks: empty ones dropped, each given its offsets and the path of headings above it."""
    blocks: list[Block] = []
    path: list[tuple[int, str]] = []  # (level, heading text) from the outermost
    offset = 0
    for item in raw:
        text = item.text.strip("\n") if item.kind == BlockKind.CODE else item.text.strip()
        if not text.strip():
            continue
        if item.kind == BlockKind.HEADING:
            path = [(level, heading) for level, heading in path if level < item.level] + [(item.level, text)]
        if blocks:
            offset += len(SEPARATOR)
        heading_path = tuple(heading for _, heading in path)
        blocks.append(Block(item.kind, text, item.level, heading_path, offset, offset + len(text), item.page))
        offset += len(text)
    if not blocks:
        raise DocumentError(
            name, "holds no text" + (" (a scanned PDF needs OCR, which is not done here)" if format == "pdf" else "")
        )
    return Document(
        name=name,
        format=format,
        sha256=hashlib.sha256(data).hexdigest(),
        text=SEPARATOR.join(block.text for block in blocks),
        blocks=tuple(blocks),
        pages=pages,
        notes=notes,
    )
