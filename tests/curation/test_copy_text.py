"""Rows built as COPY text ahead of time (curation.common.copy_text) and the duplicate check's lookup: what file
imports and the API store through."""

import gc
import json
import sys
import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection

from curation.common.copy_text import copy_field, copy_json, copy_row
from curation.common.interpreter import threads_overlapped
from curation.logs.services import _STORED_EXTERNAL_IDS, logs_ingest
from curation.models import LogEntry

TRICKY = [
    "plain",
    "tab\there",
    "line\nbreak and \r\n windows",
    "back\\slash and a literal \\N and \\t",
    "",
    "é ü 中文 🙂",
    "\\",
]


def test_each_reserved_character_is_written_as_its_backslash_sequence():
    assert copy_field("a\tb\nc\rd\\e") == b"a\\tb\\nc\\rd\\\\e"
    assert copy_field(None) == b"\\N"
    assert copy_field("\\N") == b"\\\\N"  # the text, not NULL
    assert (copy_field(True), copy_field(False), copy_field(0), copy_field(Decimal("0.00000120"))) == (
        b"t", b"f", b"0", b"0.00000120",
    )  # fmt: skip
    assert copy_json({"a": "x\ny\\z"}) == b'{"a":"x\\\\ny\\\\\\\\z"}'
    with pytest.raises(TypeError, match="list"):
        copy_field([1])


def test_rows_written_as_copy_text_come_back_from_postgresql_exactly(postgres):
    created = datetime(2026, 12, 7, 16, 1, 2, 345678, tzinfo=UTC)
    rows = [
        {"name": text, "doc": {"text": text, "list": [text, None, 1.5]}, "flag": i % 2 == 0, "n": i, "at": created}
        for i, text in enumerate(TRICKY)
    ] + [{"name": None, "doc": None, "flag": None, "n": None, "at": None}]
    data = b"".join(copy_row(row.items(), {"doc"}) + b"\n" for row in rows)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE copy_text_check (name text, doc jsonb, flag boolean, n int, at timestamptz)"
        )
        with cursor.cursor.copy("COPY copy_text_check (name, doc, flag, n, at) FROM STDIN") as copy:
            copy.write(data)
        cursor.execute("SELECT name, doc, flag, n, at FROM copy_text_check")
        stored = cursor.fetchall()
    assert [row[0] for row in stored] == [*TRICKY, None]
    docs = [json.loads(row[1]) for row in stored]  # Django's connection leaves JSON as its text
    assert docs == [*({"text": t, "list": [t, None, 1.5]} for t in TRICKY), None]
    assert stored[-1][1] == "null"  # a JSON column's None is JSON null, as Django writes it, not SQL NULL
    assert [row[2] for row in stored] == [True, False, True, False, True, False, True, None]
    assert stored[0][4] == created and stored[-1][4] is None


def test_logs_with_every_reserved_character_are_stored_as_sent(project):
    items = [
        {
            "external_id": f"copy-{i}\t{i}",
            "request": {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]},
            "response": {"choices": [{"message": {"role": "assistant", "content": text[::-1]}}]},
            "metadata": {"note": text},
            "tags": [f"tag\\{i}"],
        }
        for i, text in enumerate(TRICKY)
        if text
    ]
    result = logs_ingest(project=project, items=items)
    assert (result.accepted, result.rejected) == (len(items), [])
    logs = LogEntry.objects.filter(project=project).order_by("id")
    sent = [item["request"]["messages"][0]["content"] for item in items]  # type: ignore[index]
    assert [log.messages[0]["content"] for log in logs] == sent
    assert [log.metadata["note"] for log in logs] == [item["metadata"]["note"] for item in items]
    assert [log.external_id for log in logs] == [item["external_id"] for item in items]
    assert [[t.name for t in log.tags.all()] for log in logs] == [item["tags"] for item in items]
    again = logs_ingest(project=project, items=items)
    assert (again.accepted, again.duplicates) == (0, len(items))
    assert [stored.id for stored in again.ids] == [log.id for log in logs]


def test_the_duplicate_check_reads_the_unique_index_before_the_table_has_statistics(postgres, project):
    """A new project's import outgrows the planner's statistics long before autovacuum analyses the table again;
    the lookup must not fall back to reading all of the project's logs for every batch."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + _STORED_EXTERNAL_IDS, [[f"id-{i}" for i in range(1000)], project.pk])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "logentry_unique_external_id" in plan, plan
    assert "Seq Scan on curation_logentry" not in plan and "Bitmap" not in plan, plan


def test_overlapped_threads_get_a_short_switch_interval_and_everything_is_restored_after():
    before = sys.getswitchinterval()  # a test that loaded config.wsgi has set the short one for the whole process
    sys.setswitchinterval(0.005)  # the interpreter's default
    interval, frozen = sys.getswitchinterval(), gc.get_freeze_count()
    seen: list = []
    with threads_overlapped():
        seen.append((sys.getswitchinterval(), gc.get_freeze_count()))
        worker = threading.Thread(target=lambda: seen.append(sys.getswitchinterval()))
        worker.start()
        worker.join()
    assert seen[0][0] < interval and seen[0][1] > frozen
    assert seen[1] == seen[0][0]  # the interpreter's setting, every thread's
    assert (sys.getswitchinterval(), gc.get_freeze_count()) == (interval, frozen)
    sys.setswitchinterval(before)
