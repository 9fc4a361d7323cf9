"""Limits with clear answers: body size (413), batch size, upload size, gzip bodies and gzip bombs,
and the per-key ingest rate (429 with Retry-After). A refused request stores nothing; an import
stopped by a limit keeps what it had committed."""

import gzip
import io
import tracemalloc
import uuid
import zlib
from types import SimpleNamespace

import orjson
import pytest
import redis
from django.contrib.messages import get_messages
from django.core.cache import cache
from django.core.cache.backends.redis import RedisCache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings
from rest_framework.test import APIClient

from config.settings import _cache_settings
from curation.common.parsers import OrjsonParser, PayloadTooLarge
from curation.logs import throttling
from curation.logs.imports.files import ExpandedTooLarge
from curation.logs.imports.run import import_job_run
from curation.logs.throttling import IngestRateThrottle
from curation.models import ApiKey, ImportJob, JobStatus, LogEntry
from curation.projects.services import api_key_create
from tests.curation.samples import openai_log

pytestmark = pytest.mark.django_db

NOW = 1_800_000_030.0  # 30 s into a minute: a frozen clock keeps a test from straddling two windows


def post_logs(client: APIClient, body: bytes, **headers: str):
    return client.post("/api/v1/logs", data=body, content_type="application/json", **headers)


def logs_body(count: int) -> bytes:
    return orjson.dumps({"logs": [openai_log(external_id=f"r{i}") for i in range(count)]})


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    now = [NOW]
    monkeypatch.setattr(IngestRateThrottle, "timer", staticmethod(lambda: now[0]))
    return now


@pytest.fixture
def clean_cache():
    cache.clear()
    yield
    cache.clear()


# --- Body size and gzip bodies --------------------------------------------------------------------


def test_a_gzip_body_is_decompressed_and_stored(key_client, project):
    response = post_logs(key_client, gzip.compress(logs_body(3)), HTTP_CONTENT_ENCODING="gzip")

    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 3
    assert LogEntry.objects.filter(project=project).count() == 3


def test_gzip_members_one_after_the_other_are_one_body(key_client, project):
    body = logs_body(2)
    response = post_logs(key_client, gzip.compress(body[:40]) + gzip.compress(body[40:]), HTTP_CONTENT_ENCODING="gzip")

    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 2


def test_a_gzip_body_that_decompresses_past_the_limit_is_413_and_stores_nothing(key_client, settings):
    settings.LOGTUNE_MAX_BODY_BYTES = 2000
    compressed = gzip.compress(logs_body(20))
    assert len(compressed) < 2000  # it is the decompressed size that is over

    response = post_logs(key_client, compressed, HTTP_CONTENT_ENCODING="gzip")

    assert response.status_code == 413
    assert response.json()["detail"] == "Request body decompresses to more than 2000 bytes; the limit is 2000."
    assert not LogEntry.objects.exists()


def test_a_gzip_bomb_body_is_stopped_without_decompressing_it(key_client):
    bomb = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    compressed = b"".join(bomb.compress(b" " * (1 << 20)) for _ in range(128)) + bomb.flush()  # 128 MiB
    tracemalloc.start()
    try:
        response = post_logs(key_client, compressed, HTTP_CONTENT_ENCODING="gzip")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert response.status_code == 413
    assert "decompresses to more than 33554432 bytes" in response.json()["detail"]
    assert peak < 3 * 32 * 1024 * 1024  # the limit and its copy, not the bomb


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"this is not gzip", "Invalid gzip body: Error -3 while decompressing data: incorrect header check."),
        (gzip.compress(logs_body(2))[:-30], "Invalid gzip body: it ends before the compressed data does."),
    ],
)
def test_a_corrupt_gzip_body_is_400_and_stores_nothing(key_client, body, reason):
    response = post_logs(key_client, body, HTTP_CONTENT_ENCODING="gzip")

    assert response.status_code == 400
    assert response.json()["detail"] == reason
    assert not LogEntry.objects.exists()


def test_an_unknown_content_encoding_is_415(key_client):
    response = post_logs(key_client, logs_body(1), HTTP_CONTENT_ENCODING="br")

    assert response.status_code == 415
    assert "Content-Encoding 'br' is not supported" in response.json()["detail"]
    assert not LogEntry.objects.exists()


def test_more_logs_than_the_batch_limit_is_400_naming_it_and_stores_nothing(key_client, settings):
    settings.LOGTUNE_MAX_BATCH = 3

    response = post_logs(key_client, gzip.compress(logs_body(4)), HTTP_CONTENT_ENCODING="gzip")

    assert response.status_code == 400
    assert response.json() == {"logs": ["At most 3 logs per request (got 4)."]}
    assert not LogEntry.objects.exists()


def test_every_json_endpoint_answers_an_oversized_body_413(key_client, dataset, settings):
    settings.LOGTUNE_MAX_BODY_BYTES = 1000

    response = key_client.patch(
        f"/api/v1/datasets/{dataset.pk}", {"name": "Renamed", "description": "x" * 2000}, format="json"
    )

    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert "the limit is 1000" in response.json()["detail"]
    dataset.refresh_from_db()
    assert dataset.name == "Math"


def test_a_body_longer_than_it_said_is_cut_at_the_limit(settings):
    # Content-Length is not always there to check first (a chunked body behind a proxy): the parser reads
    # no more than the limit and one byte.
    settings.LOGTUNE_MAX_BODY_BYTES = 1000
    request = SimpleNamespace(META={"CONTENT_LENGTH": "10"})

    with pytest.raises(PayloadTooLarge, match="larger than 1000 bytes"):
        OrjsonParser().parse(io.BytesIO(b"[" + b"1," * 1000 + b"1]"), parser_context={"request": request})


def test_form_fields_over_data_upload_max_memory_size_are_413_on_the_api_too(key_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    upload = SimpleUploadedFile("logs.jsonl", orjson.dumps(openai_log()) + b"\n")

    response = key_client.post("/api/v1/imports", {"file": upload, "note": "x" * 2000}, format="multipart")

    assert response.status_code == 413
    assert response.json()["detail"] == "Request body is larger than 1000 bytes; the limit is 1000."
    assert not ImportJob.objects.exists()


def test_a_page_form_over_data_upload_max_memory_size_is_413_naming_the_limit(owner, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client = Client()
    client.force_login(owner)

    response = client.post("/p/acme/keys/new", {"name": "x" * 2000})

    assert response.status_code == 413
    assert "the limit is 1000" in response.content.decode()
    assert not ApiKey.objects.exists()


# --- Upload size ------------------------------------------------------------------------------------


def test_an_upload_over_the_import_limit_is_413_and_creates_no_job(key_client, settings):
    settings.LOGTUNE_MAX_IMPORT_BYTES = 500
    upload = SimpleUploadedFile("logs.jsonl", b"\n".join(orjson.dumps(openai_log()) for _ in range(3)))

    response = key_client.post("/api/v1/imports", {"file": upload}, format="multipart")

    assert response.status_code == 413
    assert "the limit is 500" in response.json()["detail"]
    assert not ImportJob.objects.exists()


def page_upload(user, content: bytes):
    client = Client()
    client.force_login(user)
    response = client.post("/p/acme/imports/upload", {"file": SimpleUploadedFile("logs.jsonl", content)})
    return response, [str(message) for message in get_messages(response.wsgi_request)]


def test_the_upload_form_names_the_limit_for_an_oversized_file(editor, settings):
    settings.LOGTUNE_MAX_IMPORT_BYTES = 2048

    response, messages = page_upload(editor, b"x" * 3000)

    assert response.status_code == 302
    assert messages == ["file: The file is 3,000 bytes; the limit is 2,048 bytes (2.0\xa0KB)."]
    assert not ImportJob.objects.exists()


def test_the_dataset_import_form_names_the_limit_too(editor, dataset, settings):
    settings.LOGTUNE_MAX_IMPORT_BYTES = 2048
    client = Client()
    client.force_login(editor)

    response = client.post(
        f"/p/acme/datasets/{dataset.pk}/imports/upload", {"file": SimpleUploadedFile("d.jsonl", b"x" * 3000)}
    )

    assert response.status_code == 302
    assert ["the limit is 2,048 bytes" in str(m) for m in get_messages(response.wsgi_request)] == [True]
    assert not ImportJob.objects.exists()


def test_the_upload_form_refuses_an_empty_file(editor):
    response, messages = page_upload(editor, b"")

    assert response.status_code == 302
    assert messages == ["file: The submitted file is empty."]
    assert not ImportJob.objects.exists()


# --- Gzip bombs in imports --------------------------------------------------------------------------


def bomb_file(good_lines: int, blank_mib: int) -> bytes:
    """`good_lines` logs, then `blank_mib` MiB of lines of spaces (skipped as blank): about 1 KB each once
    compressed."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    head = b"".join(orjson.dumps({"prompt": f"p{i}", "completion": "c"}) + b"\n" for i in range(good_lines))
    blank = (b" " * 65535 + b"\n") * 16
    parts = [compressor.compress(head), *(compressor.compress(blank) for _ in range(blank_mib))]
    return b"".join(parts) + compressor.flush()


def test_a_gzip_bomb_stops_the_import_and_keeps_the_lines_before_it(key_client, project, settings):
    settings.LOGTUNE_IMPORT_BATCH = 2
    settings.LOGTUNE_MAX_IMPORT_EXPANDED_BYTES = 1 << 20
    upload = SimpleUploadedFile("bomb.jsonl.gz", bomb_file(good_lines=5, blank_mib=64))
    response = key_client.post("/api/v1/imports", {"file": upload}, format="multipart")
    assert response.status_code == 202, response.content

    tracemalloc.start()
    try:
        with pytest.raises(ExpandedTooLarge):
            import_job_run(job_id=response.json()["id"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    job = ImportJob.objects.get(pk=response.json()["id"])
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("The file decompresses to more than 1048576 bytes (LOGTUNE_MAX_IMPORT_EXPANDED_BYTES)")
    assert job.accepted == 5
    prompts = sorted(log.messages[0]["content"] for log in LogEntry.objects.filter(project=project))
    assert prompts == ["p0", "p1", "p2", "p3", "p4"]  # both full batches and the part batch before the limit
    assert f"stopped after line {job.lines_done}" in job.error
    assert peak < 8 * 1024 * 1024  # 1 MiB read of the 64 MiB, through a 1 MiB buffer


def test_a_gzip_file_within_the_expanded_limit_imports_whole(tmp_path, project, settings):
    settings.LOGTUNE_MAX_IMPORT_EXPANDED_BYTES = 3 << 20
    path = tmp_path / "logs.jsonl.gz"
    path.write_bytes(bomb_file(good_lines=3, blank_mib=2))
    job = ImportJob.objects.create(project=project, source_name=str(path), bytes_total=path.stat().st_size)

    job = import_job_run(job_id=job.pk, path=path)

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.accepted == 3


# --- Ingest rate ------------------------------------------------------------------------------------


def test_ingest_is_limited_per_key_with_retry_after(key_client, project, settings, clock, clean_cache):
    settings.LOGTUNE_INGEST_RATE = "3/min"
    answers = [post_logs(key_client, orjson.dumps(openai_log(external_id=f"r{i}"))).status_code for i in range(3)]

    throttled = post_logs(key_client, orjson.dumps(openai_log(external_id="over")))

    assert answers == [200, 200, 200]
    assert throttled.status_code == 429
    assert throttled["Retry-After"] == "30"
    assert throttled.json() == {
        "detail": "Rate limit reached: 3 ingest requests per minute for this API key. Retry in 30 seconds."
    }
    assert not LogEntry.objects.filter(external_id="over").exists()
    assert key_client.get("/api/v1/logs").status_code == 200  # reading back is not ingest
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(project=project, name='other')[1]}")
    assert post_logs(other, orjson.dumps(openai_log())).status_code == 200

    clock[0] += 30
    assert post_logs(key_client, orjson.dumps(openai_log(external_id="over"))).status_code == 200


def test_imports_count_against_the_same_ingest_rate(key_client, settings, clock, clean_cache):
    settings.LOGTUNE_INGEST_RATE = "1/hour"
    assert post_logs(key_client, logs_body(1)).status_code == 200

    upload = SimpleUploadedFile("logs.jsonl", orjson.dumps(openai_log()) + b"\n")
    response = key_client.post("/api/v1/imports", {"file": upload}, format="multipart")

    assert response.status_code == 429
    assert int(response["Retry-After"]) == 3600 - NOW % 3600
    assert "1 ingest requests per hour" in response.json()["detail"]
    assert not ImportJob.objects.exists()


def test_session_callers_are_limited_per_user(client_for, editor, settings, clock, clean_cache):
    settings.LOGTUNE_INGEST_RATE = "1/s"
    client = client_for(editor)

    first = client.post("/api/v1/logs?project=acme", logs_body(1), content_type="application/json")
    second = client.post("/api/v1/logs?project=acme", logs_body(1), content_type="application/json")

    assert first.status_code == 200
    assert second.status_code == 429
    assert second["Retry-After"] == "1"
    assert "per second for this user" in second.json()["detail"]


def test_an_empty_rate_means_no_limit(key_client, settings, clock, clean_cache):
    settings.LOGTUNE_INGEST_RATE = ""

    answers = {post_logs(key_client, orjson.dumps(openai_log())).status_code for _ in range(5)}

    assert answers == {200}


def test_the_ingest_rate_is_counted_in_redis_for_every_web_process(key_client, settings, clock, redis_broker_url):
    prefix = f"test-limits-{uuid.uuid4().hex}"
    caches = {"default": {**_cache_settings(redis_broker_url), "KEY_PREFIX": prefix}}
    assert caches["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    settings.LOGTUNE_INGEST_RATE = "2/min"
    server = redis.Redis.from_url(redis_broker_url)
    try:
        with override_settings(CACHES=caches):
            answers = [post_logs(key_client, orjson.dumps(openai_log())).status_code for _ in range(2)]
            # What another web process sees: a client of its own, on the same Redis.
            keys = [key.decode() for key in server.scan_iter(match=f"{prefix}:*")]
            other_process = RedisCache(redis_broker_url, {"KEY_PREFIX": prefix})
            counted = [other_process.get(key.split(":", 2)[2]) for key in keys]
            throttled = post_logs(key_client, orjson.dumps(openai_log()))
    finally:
        for key in server.scan_iter(match=f"{prefix}:*"):
            server.delete(key)

    assert answers == [200, 200]
    assert len(keys) == 1 and "throttle_ingest_key" in keys[0]
    assert counted == [2]
    assert throttled.status_code == 429
    assert throttled["Retry-After"] == "30"


def test_with_the_rate_limits_cache_down_logs_are_let_in_and_a_warning_says_so(
    key_client, settings, caplog, monkeypatch
):
    monkeypatch.setattr(throttling, "_last_warning", 0.0)  # the warning is said once a minute per process
    nothing_there = f"redis://127.0.0.1:{_closed_port()}/1"
    settings.LOGTUNE_INGEST_RATE = "1/min"

    with override_settings(CACHES={"default": _cache_settings(nothing_there)}):
        answers = [post_logs(key_client, orjson.dumps(openai_log())).status_code for _ in range(3)]

    assert answers == [200, 200, 200]
    assert "curation.ingest_rate_unavailable" in caplog.text


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
