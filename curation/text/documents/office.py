"""PDF (pypdf) and Word (python-docx) documents into blocks.

A PDF holds positioned text, not structure: a line drawn larger than the body text is a heading (the sizes ranked
give the levels), a line starting with a bullet is a list item, and the other lines of a page run into paragraphs
broken at blank lines."""

import math
import re
from collections import Counter
from io import BytesIO

from curation.text.documents.model import BlockKind, DocumentError, RawBlock

HEADING_RATIO = 1.15  # a line this much larger than the body text is a heading
BULLET = re.compile(r"^\s*(?:[-*•‣◦▪●]|\d{1,3}[.)])\s+")
HEADING_STYLE = re.compile(r"^Heading (\d)$")


def pdf_blocks(name: str, data: bytes) -> tuple[list[RawBlock], int]:
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(BytesIO(data))
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise DocumentError(name, "is an encrypted PDF that needs a password")
        pages = [_pdf_page(page) for page in reader.pages]
    except DocumentError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as error:
        raise DocumentError(name, f"is a broken PDF ({type(error).__name__}: {error})") from error
    sizes: Counter[float] = Counter()
    for _, segments in pages:
        for text, size in segments.items():
            sizes[size] += len(text)
    body = sizes.most_common(1)[0][0] if sizes else 0.0
    heading_sizes = sorted({size for size in sizes if size >= body * HEADING_RATIO}, reverse=True)
    levels = {size: min(index + 1, 6) for index, size in enumerate(heading_sizes)}
    blocks: list[RawBlock] = []
    for number, (text, segments) in enumerate(pages, start=1):
        blocks += _pdf_page_blocks(text, segments, levels, page=number)
    return blocks, len(pages)


def _pdf_page(page) -> tuple[str, dict[str, float]]:
    """The page's text and the size each piece of text is drawn at (the font size scaled by the matrices)."""
    segments: dict[str, float] = {}

    def visit(text: str, cm: list[float], tm: list[float], font: object, font_size: float) -> None:
        if text.strip():
            scale = math.sqrt(abs(tm[0] * tm[3] - tm[1] * tm[2]) * abs(cm[0] * cm[3] - cm[1] * cm[2]))
            size = round(font_size * scale * 2) / 2
            segments[text.strip()] = max(size, segments.get(text.strip(), 0.0))

    text = page.extract_text(visitor_text=visit) or ""
    return text, segments


def _pdf_page_blocks(text: str, segments: dict[str, float], levels: dict[float, int], *, page: int) -> list[RawBlock]:
    blocks: list[RawBlock] = []
    lines: list[str] = []

    def flush() -> None:
        if lines:
            blocks.append(RawBlock(BlockKind.PARAGRAPH, " ".join(lines), page=page))
            lines.clear()

    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped:
            flush()
        elif segments.get(stripped) in levels:
            flush()
            blocks.append(RawBlock(BlockKind.HEADING, stripped, level=levels[segments[stripped]], page=page))
        elif BULLET.match(stripped):
            flush()
            blocks.append(RawBlock(BlockKind.LIST_ITEM, BULLET.sub("", stripped), level=1, page=page))
        elif blocks and blocks[-1].kind == BlockKind.LIST_ITEM and not lines and line[:1].isspace():
            blocks[-1] = RawBlock(BlockKind.LIST_ITEM, f"{blocks[-1].text} {stripped}", level=1, page=page)
        else:
            lines.append(stripped)
    flush()
    return blocks


def docx_blocks(name: str, data: bytes) -> list[RawBlock]:
    """Paragraphs and tables in the body's order: "Heading n" and "Title" styles are headings, list styles or
    numbering make list items, code or preformatted styles code; each table row is one block, its cells joined."""
    import docx
    from docx.table import Table

    try:
        content = list(docx.Document(BytesIO(data)).iter_inner_content())
    except Exception as error:  # zipfile's, lxml's XMLSyntaxError and python-docx's own, for a damaged part
        raise DocumentError(name, f"is a broken Word document ({type(error).__name__}: {error})") from error
    blocks: list[RawBlock] = []
    for item in content:
        if isinstance(item, Table):
            for row in item.rows:
                cells: list[str] = []
                for cell in row.cells:  # a merged cell appears once per grid column it spans
                    if not cells or cell.text.strip() != cells[-1]:
                        cells.append(cell.text.strip())
                blocks.append(RawBlock(BlockKind.TABLE_ROW, " | ".join(cells)))
        else:
            blocks.append(_docx_paragraph(item))
    return blocks


def _docx_paragraph(paragraph) -> RawBlock:
    style = (paragraph.style.name if paragraph.style is not None else "") or ""
    text = paragraph.text
    if match := HEADING_STYLE.match(style):
        return RawBlock(BlockKind.HEADING, text, level=int(match[1]))
    if style == "Title":
        return RawBlock(BlockKind.HEADING, text, level=1)
    properties = paragraph._p.pPr
    numbered = properties is not None and properties.numPr is not None
    if "List" in style or numbered:
        depth = 1
        if numbered and properties.numPr.ilvl is not None and properties.numPr.ilvl.val is not None:
            depth = int(properties.numPr.ilvl.val) + 1
        elif match := re.search(r" (\d)$", style):
            depth = int(match[1])
        return RawBlock(BlockKind.LIST_ITEM, text, level=depth)
    if "Code" in style or "Preformatted" in style or "Macro" in style:
        return RawBlock(BlockKind.CODE, text)
    return RawBlock(BlockKind.PARAGRAPH, text)
