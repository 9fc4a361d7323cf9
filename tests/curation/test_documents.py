"""Documents read into blocks with their structure and positions, and cut into chunks along it
(curation/text/documents/)."""

import ast
import io
import itertools
import json
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import docx
import pytest
from pypdf import PdfWriter

from curation.text.documents import (
    DocumentError,
    chunk_document,
    combinations_capped,
    read_document,
)

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "curation" / "text" / "documents"


def pdf_bytes(pages: list[list[tuple[float, str]]]) -> bytes:
    """A PDF of Helvetica lines, each (font size, text), drawn down each page."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "", "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for lines in pages:
        stream, y = [], 760
        for size, text in lines:
            escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            stream.append(f"BT /F1 {size} Tf 72 {y} Td ({escaped}) Tj ET")
            y -= int(size * 1.6)
        content = "\n".join(stream)
        objects.append(f"<< /Length {len(content)} >>\nstream\n{content}\nendstream")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {len(objects)} 0 R >>"
        )
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


GUIDE_PDF = [
    [
        (20, "Billing"),
        (11, "Invoices are sent on the first day of each month."),
        (11, "They list every seat in use."),
        (11, "- Card payments are taken at once"),
        (11, "- Bank transfers take three days"),
    ],
    [(16, "Refunds"), (11, "A refund is paid back to the card within ten days.")],
]

MARKDOWN = """# Billing

Invoices are sent on the **first day** of each [month](https://example.com).

## Refunds

- Cards are refunded in ten days.
- Transfers:
  - take three days

| Plan | Price |
|------|-------|
| Team | 20 |

```python
refund(invoice)
```
"""

HTML = """<!doctype html><html><head><title>No</title><style>p {}</style></head><body>
<h1>Billing</h1><p>Invoices are sent <em>monthly</em>.</p>
<div>Loose text in a div<br>goes on.</div>
<h2>Refunds</h2><ul><li>Cards in ten days<ul><li>nested</li></ul></li><li>Transfers</li></ul>
<table><tr><th>Plan</th><th>Price</th></tr><tr><td>Team</td><td>20</td></tr></table>
<pre>refund(invoice)
  done()</pre><script>alert("no")</script></body></html>"""


def docx_bytes() -> bytes:
    document = docx.Document()
    document.add_heading("Billing", level=1)
    document.add_paragraph("Invoices are sent monthly.")
    document.add_heading("Refunds", level=2)
    document.add_paragraph("Cards in ten days", style="List Bullet")
    document.add_paragraph("Nested item", style="List Bullet 2")
    table = document.add_table(rows=2, cols=2)
    for row, cells in zip(table.rows, (("Plan", "Price"), ("Team", "20")), strict=True):
        for cell, text in zip(row.cells, cells, strict=True):
            cell.text = text
    document.add_paragraph("After the table.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def kinds(document) -> list[tuple[str, str, int]]:
    return [(block.kind.value, block.text, block.level) for block in document.blocks]


def test_markdown_headings_lists_tables_and_code_come_out_as_blocks_with_their_heading_paths():
    document = read_document("guide.md", MARKDOWN.encode())

    assert document.format == "markdown"
    assert kinds(document) == [
        ("heading", "Billing", 1),
        ("paragraph", "Invoices are sent on the first day of each month.", 0),
        ("heading", "Refunds", 2),
        ("list_item", "Cards are refunded in ten days.", 1),
        ("list_item", "Transfers:", 1),
        ("list_item", "take three days", 2),
        ("table_row", "Plan | Price", 0),
        ("table_row", "Team | 20", 0),
        ("code", "refund(invoice)", 0),
    ]
    assert document.blocks[1].heading_path == ("Billing",)
    assert document.blocks[-1].heading_path == ("Billing", "Refunds")


def test_markdown_front_matter_is_left_out():
    document = read_document("page.md", b"---\ntitle: Billing\nlayout: doc\n---\n# Billing\n\nText.\n")

    assert kinds(document) == [("heading", "Billing", 1), ("paragraph", "Text.", 0)]


def test_each_block_points_at_its_text_in_the_document():
    for name, data in (("guide.md", MARKDOWN.encode()), ("guide.html", HTML.encode()), ("guide.docx", docx_bytes())):
        document = read_document(name, data)
        for block in document.blocks:
            assert document.text[block.start : block.end] == block.text


def test_html_is_read_without_scripts_styles_or_the_head():
    document = read_document("guide.html", HTML.encode())

    assert document.format == "html"
    assert kinds(document) == [
        ("heading", "Billing", 1),
        ("paragraph", "Invoices are sent monthly.", 0),
        ("paragraph", "Loose text in a div goes on.", 0),
        ("heading", "Refunds", 2),
        ("list_item", "Cards in ten days", 1),
        ("list_item", "nested", 2),
        ("list_item", "Transfers", 1),
        ("table_row", "Plan | Price", 0),
        ("table_row", "Team | 20", 0),
        ("code", "refund(invoice)\n  done()", 0),
    ]


def test_html_paragraphs_inside_a_list_item_are_list_items():
    document = read_document("list.html", b"<ol><li><p>First step</p><ul><li>detail</li></ul></li></ol><p>After.</p>")

    assert kinds(document) == [("list_item", "First step", 1), ("list_item", "detail", 2), ("paragraph", "After.", 0)]


def test_html_is_recognised_by_its_opening_tag_whatever_the_name():
    assert read_document("page", b"  <!DOCTYPE html><h1>Hi</h1><p>there</p>").format == "html"


def test_a_word_document_gives_headings_list_items_and_table_rows_in_body_order():
    document = read_document("guide.docx", docx_bytes())

    assert document.format == "docx"
    assert kinds(document) == [
        ("heading", "Billing", 1),
        ("paragraph", "Invoices are sent monthly.", 0),
        ("heading", "Refunds", 2),
        ("list_item", "Cards in ten days", 1),
        ("list_item", "Nested item", 2),
        ("table_row", "Plan | Price", 0),
        ("table_row", "Team | 20", 0),
        ("paragraph", "After the table.", 0),
    ]
    assert document.blocks[-1].heading_path == ("Billing", "Refunds")


def test_a_pdf_gives_headings_by_size_list_items_paragraphs_and_page_numbers():
    document = read_document("guide.pdf", pdf_bytes(GUIDE_PDF))

    assert document.format == "pdf" and document.pages == 2
    assert [(block.kind.value, block.text, block.level, block.page) for block in document.blocks] == [
        ("heading", "Billing", 1, 1),
        ("paragraph", "Invoices are sent on the first day of each month. They list every seat in use.", 0, 1),
        ("list_item", "Card payments are taken at once", 1, 1),
        ("list_item", "Bank transfers take three days", 1, 1),
        ("heading", "Refunds", 2, 2),
        ("paragraph", "A refund is paid back to the card within ten days.", 0, 2),
    ]
    assert document.blocks[-1].heading_path == ("Billing", "Refunds")


def test_plain_text_is_cut_at_blank_lines_and_a_bom_is_dropped():
    document = read_document("notes.txt", "\ufeffFirst line\nsame paragraph.\r\n\r\n- one\n- two\n".encode())

    assert kinds(document) == [
        ("paragraph", "First line\nsame paragraph.", 0),
        ("list_item", "one", 1),
        ("list_item", "two", 1),
    ]


def test_utf16_with_a_byte_order_mark_is_read():
    document = read_document("notes.txt", "Café au lait.\n\nDeux.".encode("utf-16"))

    assert kinds(document) == [("paragraph", "Café au lait.", 0), ("paragraph", "Deux.", 0)]
    assert document.notes == ()


def test_text_that_is_not_utf8_is_decoded_by_a_guess_with_a_note():
    text = "Le café coûte trois euros, payé à la caisse de l'hôtel près de la gare. " * 3
    document = read_document("notes.txt", text.encode("cp1252"))

    assert "café coûte" in document.text and "hôtel" in document.text
    assert document.notes and document.notes[0].startswith("not UTF-8: decoded as ")


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("broken.pdf", b"%PDF-1.4\nthis is not a PDF at all", "is a broken PDF"),
        ("named.pdf", b"just text", "is not a PDF"),
        ("fake.docx", b"just text", "is not a Word document"),
        ("sheet.docx", "zip", "is a zip archive but not a Word document"),
        ("truncated.docx", "truncated", "is a broken zip archive"),
        ("garbage.bin", random.Random(0).randbytes(4096), "is binary data"),
        ("controls.txt", bytes(range(1, 32)) * 50, "is binary data"),
        ("empty.md", b"\n\n   \n", "holds no text"),
    ],
)
def test_what_cannot_be_read_raises_an_error_naming_the_file_and_the_reason(name, data, reason):
    if data == "zip":
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            archive.writestr("xl/workbook.xml", "<workbook/>")
        data = out.getvalue()
    elif data == "truncated":
        data = docx_bytes()[:300]

    with pytest.raises(DocumentError) as raised:
        read_document(name, data)

    assert str(raised.value).startswith(f"{name}: {reason}")


def encrypted(user_password: str) -> bytes:
    writer = PdfWriter(clone_from=io.BytesIO(pdf_bytes(GUIDE_PDF)))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_an_encrypted_pdf_is_refused_as_needing_a_password():
    with pytest.raises(DocumentError, match=r"^locked\.pdf: is an encrypted PDF that needs a password$"):
        read_document("locked.pdf", encrypted("secret"))


def test_a_pdf_encrypted_only_to_restrict_it_opens_with_the_empty_password():
    document = read_document("restricted.pdf", encrypted(""))

    assert document.blocks[0].text == "Billing" and document.pages == 2


def sections(count: int, paragraphs: int, words: int = 40) -> bytes:
    """Markdown of `count` sections, each of `paragraphs` paragraphs of sentences of eight words."""
    rng = random.Random(1)
    vocabulary = ["refund", "invoice", "seat", "plan", "card", "transfer", "team", "month", "price", "account"]
    parts = []
    for section in range(count):
        parts.append(f"## Section {section}")
        for _ in range(paragraphs):
            sentences = [
                " ".join(rng.choice(vocabulary) for _ in range(8)).capitalize() + "." for _ in range(words // 8)
            ]
            parts.append(" ".join(sentences))
    return ("# Guide\n\n" + "\n\n".join(parts)).encode()


def covered(document, chunks) -> bool:
    """Every character but the whitespace between blocks lies in some chunk."""
    inside = bytearray(len(document.text))
    for chunk in chunks:
        inside[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
    return all(inside[i] or document.text[i].isspace() for i in range(len(document.text)))


def test_chunks_are_slices_of_the_text_that_never_cut_a_block_that_fits():
    document = read_document("guide.md", sections(6, 5))
    chunks = chunk_document(document, max_chars=1000, overlap_chars=150)

    ends = {block.end for block in document.blocks}
    assert len(chunks) > 6
    for chunk in chunks:
        assert chunk.text == document.text[chunk.start : chunk.end]
        assert len(chunk.text) <= 1000
        assert chunk.end in ends
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    assert covered(document, chunks)


def test_a_section_starts_a_chunk_with_its_heading_path_and_small_sections_share_one():
    document = read_document("guide.md", sections(4, 2))  # sections of about 700 characters
    chunks = chunk_document(document, max_chars=1000, overlap_chars=100)

    assert [chunk.text.split("\n")[0] for chunk in chunks] == ["Guide", "Section 1", "Section 2", "Section 3"]
    assert [chunk.context for chunk in chunks] == [
        "Guide",
        "Guide › Section 1",
        "Guide › Section 2",
        "Guide › Section 3",
    ]
    small = chunk_document(read_document("guide.md", sections(4, 1, words=16)), max_chars=2000, overlap_chars=100)
    assert len(small) == 1 and small[0].heading_path == ("Guide",)


def test_chunks_inside_a_section_overlap_by_whole_blocks_or_sentences_never_mid_word():
    document = read_document("guide.md", sections(1, 30))
    chunks = chunk_document(document, max_chars=1200, overlap_chars=300)

    assert len(chunks) > 3
    for previous, chunk in itertools.pairwise(chunks):
        assert previous.start < chunk.start < previous.end
        assert 0 < previous.end - chunk.start <= 300
        assert document.text[chunk.start - 1].isspace() and chunk.text[0].isupper()
        assert chunk.heading_path == ("Guide", "Section 0")
    assert covered(document, chunks)


def test_a_paragraph_longer_than_a_chunk_is_cut_at_sentence_ends():
    document = read_document("long.txt", sections(1, 1, words=800).split(b"\n\n", 2)[2])
    chunks = chunk_document(document, max_chars=500, overlap_chars=0)

    assert len(document.blocks) == 1 and len(chunks) >= 8
    for chunk in chunks:
        assert len(chunk.text) <= 500 and chunk.text[0].isupper() and chunk.text.endswith(".")
    assert "".join(chunk.text + " " for chunk in chunks).strip() == document.text
    one_sentence = read_document("words.txt", ("word " * 300).encode())
    assert all(
        chunk.text.strip("word ") == "" for chunk in chunk_document(one_sentence, max_chars=100, overlap_chars=20)
    )


def test_pdf_chunks_carry_their_pages():
    chunks = chunk_document(read_document("guide.pdf", pdf_bytes(GUIDE_PDF)), max_chars=120, overlap_chars=30)

    assert (chunks[0].first_page, chunks[-1].last_page) == (1, 2)
    assert chunks[-1].heading_path == ("Billing", "Refunds") and chunks[-1].first_page == 2


def test_chunk_ids_are_stable_and_change_with_the_text():
    data = sections(3, 4)
    first = [chunk.id for chunk in chunk_document(read_document("guide.md", data), max_chars=800, overlap_chars=100)]
    again = [chunk.id for chunk in chunk_document(read_document("guide.md", data), max_chars=800, overlap_chars=100)]
    changed = chunk_document(
        read_document("guide.md", data.replace(b"Section 2", b"Part 2")), max_chars=800, overlap_chars=100
    )

    assert first == again and len(set(first)) == len(first)
    assert all(re.fullmatch(r"[0-9a-f]{64}", chunk_id) for chunk_id in first)
    assert not set(first) & {chunk.id for chunk in changed}


@pytest.mark.parametrize(("max_chars", "overlap_chars"), [(0, 0), (-5, 1), (100, 100), (100, 150), (100, -1)])
def test_chunk_sizes_are_checked(max_chars, overlap_chars):
    document = read_document("a.txt", b"Some text.")
    with pytest.raises(ValueError, match=r"max_chars|overlap_chars"):
        chunk_document(document, max_chars=max_chars, overlap_chars=overlap_chars)


def test_combinations_come_neighbours_first_then_same_heading_capped_with_the_uncapped_count():
    document = read_document("guide.md", sections(3, 4))
    chunks = chunk_document(document, max_chars=600, overlap_chars=100)
    n = len(chunks)

    groups, total = combinations_capped(chunks, 2, 5)
    assert total == n * (n - 1) // 2 and len(groups) == 5
    assert [tuple(chunk.index for chunk in group) for group in groups] == [(i, i + 1) for i in range(5)]
    everything, _ = combinations_capped(chunks, 2, 10_000)
    assert len(everything) == total == len({tuple(chunk.id for chunk in group) for group in everything})
    after_neighbours = everything[n - 1]
    assert after_neighbours[0].heading_path[:1] == after_neighbours[1].heading_path[:1]
    assert combinations_capped(chunks, n + 1, 5) == ([], 0)
    with pytest.raises(ValueError):
        combinations_capped(chunks, 0, 5)


def test_the_package_imports_no_django():
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [name for name in names if name.split(".")[0] in ("django", "rest_framework", "celery")]
    check = (
        "import json, sys, curation.text.documents as d\n"
        "d.read_document('a.md', b'# A')\n"
        "print(json.dumps(list(sys.modules)))\n"
    )
    run = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert not [name for name in json.loads(run.stdout) if name.split(".")[0] in ("django", "torch")]
