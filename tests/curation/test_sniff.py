import gzip
import io

import pytest

from curation.logs.imports.sniff import HEAD_BYTES, import_file_problem, import_head_problem

CSV = b"id,prompt,completion\n1,What is 2+2?,4\n"


@pytest.mark.parametrize(
    "head",
    [
        b'{"prompt": "p", "completion": "c"}\n',
        b'\xef\xbb\xbf\n  \r\n\t{"prompt": "p", "completion": "c"}\n',  # a BOM and blank lines first
        gzip.compress(b'{"prompt": "p", "completion": "c"}\n'),
        gzip.compress(b'\xef\xbb\xbf {"a": 1}\n' * 10_000)[:HEAD_BYTES],  # the head of a large gzip file
        b"\n" * HEAD_BYTES,  # blank as far as it was read: its import judges the rest
    ],
    ids=["jsonl", "bom-and-blank-lines", "jsonl.gz", "head-of-jsonl.gz", "blank-head-of-a-long-file"],
)
def test_json_lines_are_accepted(head):
    assert import_head_problem(head) is None


@pytest.mark.parametrize(
    "head, problem",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "The file is not JSON Lines: it is a PNG image."),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "The file is not JSON Lines: it is a JPEG image."),
        (b"GIF89a\x01\x00", "The file is not JSON Lines: it is a GIF image."),
        (b"%PDF-1.7\n", "The file is not JSON Lines: it is a PDF document."),
        (b"PK\x03\x04\x14\x00", "The file is not JSON Lines: it is a ZIP archive (XLSX and DOCX files are ZIP"),
        (b"PAR1\x15\x04", "The file is not JSON Lines: it is a Parquet file."),
        (CSV, "The file is not JSON Lines: it starts with 'id,prompt,completion', not a JSON object."),
        (b"x" * 100, f"The file is not JSON Lines: it starts with '{'x' * 40}…', not a JSON object."),
        (b"\x00\x01\x02\x03", "The file is not JSON Lines: it is binary data (its first bytes are 00 01 02 03)."),
        (b"caf\xe9\n", "The file is not JSON Lines: it is not UTF-8 text"),
        (b'[{"prompt": "p"}]', "The file is not JSON Lines: it is a JSON array. Convert it to one object per line"),
        (gzip.compress(CSV), "The file is gzip-compressed, but not JSON Lines inside: it starts with 'id,prompt,"),
        (gzip.compress(b"%PDF-1.7\n"), "The file is gzip-compressed, but not JSON Lines inside: it is a PDF"),
        (gzip.compress(CSV)[:12], "The file is a gzip file cut short."),
        (b"\x1f\x8b\x00\x00garbage", "The file starts like a gzip file but is not valid gzip"),
        (b"", "The file is empty."),
        (b"\n \r\n", "The file holds no lines."),
        (gzip.compress(b"\n\n"), "The file holds no lines."),
    ],
    ids=[
        "png", "jpeg", "gif", "pdf", "zip", "parquet", "csv", "long-first-line", "binary", "latin-1", "json-array",
        "gzip-of-csv", "gzip-of-pdf", "gzip-cut-short", "not-gzip", "empty", "blank", "gzip-of-blank",
    ],
)  # fmt: skip
def test_other_files_are_refused_naming_what_they_look_like(head, problem):
    assert import_head_problem(head).startswith(problem)


def test_a_json_array_is_pointed_to_the_api_and_to_one_object_per_line():
    problem = import_head_problem(b'  [{"request": {}}]')

    assert "send the array as it is to POST /api/v1/logs" in problem
    assert "jq -c '.[]'" in problem


def test_a_refusal_tells_what_an_import_reads():
    assert import_head_problem(CSV).endswith("An import reads JSONL or JSONL.gz: one JSON object per line.")


def test_a_file_is_judged_by_its_first_bytes_and_left_at_its_start():
    file = io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"\x00" * (3 * HEAD_BYTES))
    file.seek(100)

    assert "PNG image" in import_file_problem(file)
    assert file.tell() == 0


def test_a_gzip_bomb_is_judged_without_decompressing_it_whole():
    bomb = gzip.compress(b"{}\n" + b" " * (32 << 20))

    assert import_file_problem(io.BytesIO(bomb)) is None
