"""A log's time is kept within 1970-01-01 .. 2200-01-01 UTC: a time outside it is refused naming the field (or, for
a log kept as unreadable, left out), and a row stored with one before that rule existed is given its arrival time.

Stored in UTC, "9999-12-31T23:59:59-14:00" is in year 10000 and "0001-01-01T00:00:00+14:00" in year 0: PostgreSQL
holds both, Python reads neither back, and every page listing the log answered 500."""

import importlib
from datetime import UTC

import orjson
import pytest
from django.apps import apps as django_apps
from django.db import connection

from curation.logs.ingest import IngestError, parse_log
from curation.models import LogEntry, LogStatus
from tests.curation.samples import openai_log

pytestmark = pytest.mark.django_db

EDGE_TIMES = ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"]
USER = {"role": "user", "content": "Hi"}


def post_logs(client, body):
    return client.post("/api/v1/logs", data=orjson.dumps(body), content_type="application/json")


def pages_of(client, project, log_id: int) -> dict[str, int]:
    """What every member opens: the log list API, the explorer, the project page and the log's own page."""
    urls = {
        "api": f"/api/v1/logs?project={project.slug}",
        "explorer": f"/p/{project.slug}/logs/",
        "project": f"/p/{project.slug}/",
        "log": f"/p/{project.slug}/logs/{log_id}/",
    }
    return {name: client.get(url).status_code for name, url in urls.items()}


@pytest.mark.parametrize(
    ("log", "error"),
    [
        ({"messages": [USER], "created_at": EDGE_TIMES[0]}, "created_at: must be between 1970-01-01 and 2200-01-01"),
        ({"messages": [USER], "created_at": EDGE_TIMES[1]}, "created_at: must be between 1970-01-01 and 2200-01-01"),
        ({"messages": [USER], "created_at": "2200-01-01T00:00:01Z"}, "created_at: must be between 1970-01-01"),
        ({"messages": [USER], "created_at": "1969-12-31T23:59:59Z"}, "created_at: must be between 1970-01-01"),
        ({"messages": [USER], "created_at": -1}, "created_at: unix seconds must be between 1970-01-01"),
        ({"messages": [USER], "created_at": 1756720800000}, "created_at: unix seconds must be between 1970-01-01"),
        ({"messages": [USER], "created_at": 1e300}, "created_at: unix seconds must be between 1970-01-01"),
        (openai_log(created_at=None, response={**openai_log()["response"], "created": 253_402_300_799}),
         "response.created: unix seconds must be between 1970-01-01"),
    ],
)  # fmt: skip
def test_a_time_outside_the_range_is_refused_naming_its_field(log, error):
    with pytest.raises(IngestError) as refused:
        parse_log(log)

    assert str(refused.value).startswith(error), str(refused.value)


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("2026-09-01T12:00:00+02:00", "2026-09-01T10:00:00+00:00"),
        ("2026-09-01T10:00:00", "2026-09-01T10:00:00+00:00"),  # no zone: UTC
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00+00:00"),
        ("2200-01-01T00:00:00Z", "2200-01-01T00:00:00+00:00"),
        (1756720800, "2025-09-01T10:00:00+00:00"),
    ],
)
def test_a_time_in_the_range_is_read_in_utc(sent, stored):
    created_at = parse_log({"messages": [USER], "created_at": sent}).created_at

    assert created_at is not None and created_at.tzinfo is UTC
    assert created_at.isoformat() == stored


def test_the_api_refuses_logs_with_edge_times_and_every_page_still_answers(key_client, client, project, owner):
    post_logs(key_client, openai_log())
    answer = post_logs(key_client, {"logs": [{"messages": [USER], "created_at": t} for t in EDGE_TIMES]})

    assert answer.status_code == 400, answer.content
    errors = [item["error"] for item in answer.json()["rejected"]]
    assert all(error.startswith("created_at: must be between 1970-01-01 and 2200-01-01 UTC") for error in errors)
    client.force_login(owner)
    log = LogEntry.objects.get(project=project)
    assert pages_of(client, project, log.pk) == {"api": 200, "explorer": 200, "project": 200, "log": 200}


def test_an_unreadable_log_kept_with_an_edge_time_gets_its_arrival_time(key_client, client, project, owner):
    unreadable = [{"request": {"messages": "not a list"}, "created_at": t} for t in EDGE_TIMES]
    answer = post_logs(key_client, {"logs": unreadable, "keep_unreadable": True})

    assert answer.status_code == 200, answer.content
    assert answer.json()["accepted"] == 2
    logs = list(LogEntry.objects.filter(project=project))
    assert {log.status for log in logs} == {LogStatus.UNREADABLE}
    assert all(log.created_at == log.ingested_at for log in logs)
    client.force_login(owner)
    for log in logs:
        assert pages_of(client, project, log.pk) == {"api": 200, "explorer": 200, "project": 200, "log": 200}


def test_a_stored_row_from_year_10000_or_1_bc_gets_its_arrival_time(key_client, client, project, owner, postgres):
    post_logs(key_client, {"logs": [{"messages": [USER], "external_id": str(n)} for n in range(3)]})
    late, early, fine = LogEntry.objects.filter(project=project).order_by("external_id")
    with connection.cursor() as cursor:  # as an earlier version stored them
        cursor.execute("UPDATE curation_logentry SET created_at = %s WHERE id = %s", [EDGE_TIMES[0], late.pk])
        cursor.execute("UPDATE curation_logentry SET created_at = %s WHERE id = %s", [EDGE_TIMES[1], early.pk])
        cursor.execute("SELECT extract(year FROM created_at) FROM curation_logentry ORDER BY external_id")
        assert [row[0] for row in cursor.fetchall()] == [10000, -1, fine.created_at.year]  # -1: 1 BC
    fine_time = LogEntry.objects.get(pk=fine.pk).created_at

    migration = importlib.import_module("curation.migrations.0015_inputs_log_times")
    migration.log_times_into_range(django_apps, connection.schema_editor())

    client.force_login(owner)
    for log in (late, early):
        stored = LogEntry.objects.get(pk=log.pk)
        assert stored.created_at == stored.ingested_at
        assert pages_of(client, project, log.pk) == {"api": 200, "explorer": 200, "project": 200, "log": 200}
    assert LogEntry.objects.get(pk=fine.pk).created_at == fine_time
