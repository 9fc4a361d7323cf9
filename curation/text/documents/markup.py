"""HTML (Beautiful Soup with the standard library's parser) and Markdown (markdown-it-py's tokens) into blocks."""

import re

from curation.text.documents.model import BlockKind, RawBlock

HEADINGS = {f"h{level}": level for level in range(1, 7)}
SKIPPED = {"script", "style", "noscript", "template", "head", "svg", "button", "select", "iframe"}
# Elements that start a block of their own; anything else (a, span, em, code, ...) is inline text.
BLOCK_TAGS = {
    *HEADINGS, "p", "pre", "ul", "ol", "li", "table", "tr", "div", "section", "article", "main", "header", "footer",
    "nav", "aside", "blockquote", "figure", "figcaption", "dl", "dt", "dd", "form", "fieldset", "address", "hr",
    "body", "html", "details", "summary", "caption", "thead", "tbody", "tfoot",
}  # fmt: skip
SPACES = re.compile(r"\s+")
# YAML front matter at the top of a Markdown file: settings for a site generator, not text.
FRONT_MATTER = re.compile(r"\A---[ \t]*\n.*?\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)


def _clean(text: str) -> str:
    return SPACES.sub(" ", text).strip()


def html_blocks(text: str) -> list[RawBlock]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    blocks: list[RawBlock] = []
    _html_walk(soup.body or soup, blocks, depth=0)
    return blocks


def _html_walk(node, blocks: list[RawBlock], *, depth: int, in_item: bool = False) -> None:
    """Block elements become blocks; runs of inline text between them become paragraphs (list items in a list
    item, its paragraphs included)."""
    from bs4 import NavigableString, Tag

    run: list[str] = []

    def flush(kind: BlockKind = BlockKind.PARAGRAPH) -> None:
        if _clean("".join(run)):
            blocks.append(RawBlock(kind, _clean("".join(run)), level=depth if kind == BlockKind.LIST_ITEM else 0))
        run.clear()

    in_item = in_item or getattr(node, "name", None) == "li"
    inline_kind = BlockKind.LIST_ITEM if in_item else BlockKind.PARAGRAPH
    for child in node.children:
        if isinstance(child, NavigableString):
            if type(child) is NavigableString:  # not a comment, doctype or CDATA
                run.append(str(child))
            continue
        if not isinstance(child, Tag) or child.name in SKIPPED:
            continue
        if child.name == "br":
            run.append(" ")
        elif child.name not in BLOCK_TAGS:
            run.append(child.get_text())
        else:
            flush(inline_kind)
            _html_block(child, blocks, depth=depth, in_item=in_item)
    flush(inline_kind)


def _html_block(tag, blocks: list[RawBlock], *, depth: int, in_item: bool) -> None:
    if tag.name in HEADINGS:
        blocks.append(RawBlock(BlockKind.HEADING, _clean(tag.get_text(" ")), level=HEADINGS[tag.name]))
    elif tag.name == "pre":
        blocks.append(RawBlock(BlockKind.CODE, tag.get_text()))
    elif tag.name == "tr":
        cells = [_clean(cell.get_text(" ")) for cell in tag.find_all(["td", "th"], recursive=False)]
        blocks.append(RawBlock(BlockKind.TABLE_ROW, " | ".join(cells)))
    elif tag.name in ("ul", "ol"):
        _html_walk(tag, blocks, depth=depth + 1)
    elif tag.name != "hr":
        _html_walk(tag, blocks, depth=depth, in_item=in_item)


def markdown_blocks(text: str) -> list[RawBlock]:
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(FRONT_MATTER.sub("", text, count=1))
    blocks: list[RawBlock] = []
    lists = 0  # depth of list nesting
    cells: list[str] | None = None
    heading = 0
    for token in tokens:
        if token.type in ("bullet_list_open", "ordered_list_open"):
            lists += 1
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            lists -= 1
        elif token.type == "heading_open":
            heading = int(token.tag[1:])
        elif token.type == "heading_close":
            heading = 0
        elif token.type == "tr_open":
            cells = []
        elif token.type == "tr_close" and cells is not None:
            blocks.append(RawBlock(BlockKind.TABLE_ROW, " | ".join(cells)))
            cells = None
        elif token.type in ("fence", "code_block"):
            blocks.append(RawBlock(BlockKind.CODE, token.content))
        elif token.type == "html_block":
            blocks += html_blocks(token.content)
        elif token.type == "inline":
            content = _inline_text(token)
            if cells is not None:
                cells.append(content)
            elif heading:
                blocks.append(RawBlock(BlockKind.HEADING, content, level=heading))
            elif lists:
                blocks.append(RawBlock(BlockKind.LIST_ITEM, content, level=lists))
            else:
                blocks.append(RawBlock(BlockKind.PARAGRAPH, content))
    return blocks


def _inline_text(token) -> str:
    """An inline token's words without the Markdown: links as their text, images as their alt text."""
    parts = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            parts.append(child.content)
    return _clean("".join(parts))
