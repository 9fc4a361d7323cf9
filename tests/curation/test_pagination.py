"""Keyset pages and the guard that keeps a rare text match from reading the whole table."""

import pytest
from django.db import connection

from curation.common import pagination
from curation.common.pagination import rare_match_safe

pytestmark = pytest.mark.django_db


def setting(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting(%s)", [name])
        return cursor.fetchone()[0]


def test_a_read_that_outlasts_the_walk_runs_again_through_bitmap_scans(postgres, monkeypatch):
    monkeypatch.setattr(pagination, "WALK_MS", 20)
    before = (setting("statement_timeout"), setting("enable_indexscan"))
    runs: list[tuple[str, str]] = []

    def read() -> str:
        runs.append((setting("statement_timeout"), setting("enable_indexscan")))
        if len(runs) == 1:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_sleep(1)")  # a walk of the whole table
        return "page"

    assert rare_match_safe(read) == "page"
    assert runs == [("20ms", "on"), (before[0], "off")]
    assert (setting("statement_timeout"), setting("enable_indexscan")) == before  # nothing outlives the read


def test_a_quick_read_runs_once_and_leaves_the_settings_as_they_were(postgres):
    before = (setting("statement_timeout"), setting("enable_indexscan"))
    runs = []

    assert rare_match_safe(lambda: runs.append(setting("enable_indexscan")) or len(runs)) == 1
    assert runs == ["on"]
    assert (setting("statement_timeout"), setting("enable_indexscan")) == before


def test_other_errors_are_not_taken_for_a_slow_walk(postgres):
    def read() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0")

    with pytest.raises(Exception, match="division by zero"):
        rare_match_safe(read)
