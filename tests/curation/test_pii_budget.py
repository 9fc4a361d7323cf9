"""Finding personal data never holds a web thread for long: a request spends at most LOGTUNE_PII_INLINE_SECONDS
on it; the logs after that are stored at once and scanned by a worker, or, when the project redacts at
ingestion (nothing may be stored before it is redacted), refused by index to be sent again."""

import time

import orjson
import pytest

from curation.logs.pii.services import logs_pii_pending_fill, logs_pii_pending_reap
from curation.logs.pii.tasks import logs_pii_pending_task
from curation.models import LogEntry

# Digits in phone-number groups: the slowest text there is for the phone detector (libphonenumber).
HEAVY = "Call me on +33 6 12 34 56 78, not 1234 5678 9012 3456 7890 1234. " * 400


def heavy_logs(count: int) -> bytes:
    logs = [{"prompt": HEAVY, "completion": "Noted.", "external_id": f"h{n}"} for n in range(count)]
    return orjson.dumps({"logs": logs})


def post(client, body: bytes):
    return client.post("/api/v1/logs", data=body, content_type="application/json")


@pytest.fixture
def budget(settings):
    settings.LOGTUNE_PII_INLINE_SECONDS = 0.3


def test_a_batch_full_of_personal_data_is_answered_quickly_and_scanned_by_a_worker_later(
    budget, key_client, project, celery_worker
):
    started = time.monotonic()
    response = post(key_client, heavy_logs(60))
    seconds = time.monotonic() - started

    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 60
    assert seconds < 10  # scanning all of it in the request takes minutes on two cores
    logs = LogEntry.objects.filter(project=project)
    assert logs.filter(pii_pending=True).exists()
    assert logs.filter(pii_pending=False, pii=["PHONE"]).exists()  # the first ones, in the request

    deadline = time.monotonic() + 120
    while logs.filter(pii_pending=True).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not logs.filter(pii_pending=True).exists(), "the worker scanned the rest"
    assert {tuple(kinds) for kinds in logs.values_list("pii", flat=True)} == {("PHONE",)}


def test_a_log_too_large_to_scan_in_the_request_is_stored_and_left_to_a_worker(settings, key_client, project):
    settings.LOGTUNE_PII_INLINE_LOG_CHARS = 10_000

    response = post(key_client, orjson.dumps({"prompt": HEAVY, "completion": "ok"}))

    assert response.status_code == 200
    log = LogEntry.objects.get()
    assert (log.pii_pending, log.pii) == (True, [])
    assert logs_pii_pending_fill(project_id=project.pk) == 1
    log.refresh_from_db()
    assert (log.pii_pending, log.pii) == (False, ["PHONE"])


def test_with_redaction_at_ingestion_the_logs_past_the_budget_are_refused_by_index(budget, key_client, project):
    project.redact_pii_on_ingest = True
    project.save()

    response = post(key_client, heavy_logs(60))

    body = response.json()
    assert response.status_code == 200
    refused = {rejection["index"] for rejection in body["rejected"]}
    assert refused and body["accepted"] == 60 - len(refused)
    assert "LOGTUNE_PII_INLINE_SECONDS" in body["rejected"][0]["error"]
    assert not LogEntry.objects.filter(pii_pending=True).exists()
    assert all("+33 6 12 34 56 78" not in log.original for log in LogEntry.objects.all())


def test_the_reaper_sends_the_scan_of_pending_logs_whatever_the_broker_did(settings, key_client, project, monkeypatch):
    settings.LOGTUNE_PII_INLINE_LOG_CHARS = 10_000
    sent = []

    monkeypatch.setattr(logs_pii_pending_task, "delay", lambda project_id: sent.append(project_id))
    post(key_client, orjson.dumps({"prompt": HEAVY, "completion": "ok"}))

    assert logs_pii_pending_reap() == 1
    assert sent[-1] == project.pk


def test_the_log_page_says_a_log_is_not_scanned_yet(settings, key_client, client, viewer, project):
    settings.LOGTUNE_PII_INLINE_LOG_CHARS = 10
    post(key_client, orjson.dumps({"prompt": "write to jane@example.com", "completion": "ok"}))
    client.force_login(viewer)

    page = client.get(f"/p/{project.slug}/logs/{LogEntry.objects.get().pk}/").content.decode()

    assert "Not scanned for personal data yet" in page
