"""PostgreSQL refusing connections, hanging, or cutting them mid-batch, under a real web app: every request
answers 503 with Retry-After within seconds, a batch is stored whole or not at all, and once the database is
back the same app process serves again. The app reaches the database through a proxy the test controls."""

import time

import orjson
import psycopg
import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import InterfaceError
from django.http import HttpResponse
from django.test import Client

from config.middleware import DatabaseUnavailableMiddleware
from curation.logs.imports.services import import_job_create, import_jobs_reap
from curation.models import ImportJob, JobStatus, LogEntry
from curation.projects.services import api_key_create
from tests.faults.processes import (
    database_url,
    free_port,
    http,
    post_json,
    service_env,
    wait_for,
    wait_until_serving,
    web_command,
    worker_command,
)
from tests.faults.proxy import TcpProxy
from tests.waiting import wait_until_finished

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

CONNECT_TIMEOUT_S = 2


def batch(name: str, size: int = 10, filler: int = 0) -> dict:
    return {"logs": [{"prompt": f"{name} {i} " + "x" * filler, "completion": "ok", "external_id": f"{name}-{i}"}
                     for i in range(size)]}  # fmt: skip


def assert_unavailable(answer, *, within: float) -> None:
    print(f"{answer.status} after {answer.seconds:.3f}s")
    assert answer.status == 503, answer.body[:500]
    assert answer.headers["Retry-After"] == "5"
    assert answer.seconds < within, f"took {answer.seconds:.1f}s"


@pytest.fixture
def proxy():
    db = settings.DATABASES["default"]
    proxy = TcpProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)))
    proxy.forward()
    yield proxy
    proxy.close()


def test_a_database_that_refuses_hangs_or_cuts_off_gets_quick_503s_and_the_app_recovers_alone(
    project, owner, proxy, spawn, tmp_path
):
    env = service_env(
        tmp_path / "var", database=database_url(proxy.port), DATABASE_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT_S)
    )
    port = free_port()
    web = spawn("web", web_command(port), env)
    base = f"http://127.0.0.1:{port}"
    wait_until_serving(base, web)
    api_key = api_key_create(project=project)[1]
    key = {"Authorization": f"Bearer {api_key}"}
    browser = Client()
    browser.force_login(owner)
    session = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"}

    def send(payload: dict):
        return post_json(f"{base}/api/v1/logs", payload, api_key)

    assert send(batch("before")).status == 200
    assert http("GET", f"{base}/p/acme/", headers=session).status == 200

    proxy.refuse()  # no listener, and every live connection cut
    listing = http("GET", f"{base}/api/v1/logs", headers=key)
    assert_unavailable(listing, within=3)
    assert listing.headers["Content-Type"] == "application/json"
    assert "database is unavailable" in listing.json()["detail"]
    page = http("GET", f"{base}/p/acme/", headers=session)
    assert_unavailable(page, within=3)
    assert page.headers["Content-Type"].startswith("text/html") and b"not answering" in page.body
    assert_unavailable(send(batch("refused")), within=3)

    proxy.stall()  # accepts connections, never answers: the connect timeout ends the wait
    assert_unavailable(http("GET", f"{base}/api/v1/logs", headers=key), within=CONNECT_TIMEOUT_S + 3)
    assert_unavailable(send(batch("stalled")), within=CONNECT_TIMEOUT_S + 3)

    proxy.forward()
    assert http("GET", f"{base}/api/v1/logs", headers=key).status == 200  # the same process, no restart
    assert http("GET", f"{base}/p/acme/", headers=session).status == 200
    proxy.cut_after(100_000)  # in the middle of the batch's COPY
    assert_unavailable(send(batch("cut", size=400, filler=1000)), within=5)
    assert proxy.cuts == 1
    assert send(batch("after")).status == 200

    stored = set(LogEntry.objects.filter(project=project).values_list("external_id", flat=True))
    assert stored == {f"{name}-{i}" for name in ("before", "after") for i in range(10)}
    assert LogEntry.objects.filter(project=project).count() == 20


def test_only_database_errors_become_503s(rf):
    middleware = DatabaseUnavailableMiddleware(lambda request: HttpResponse())

    assert middleware.process_exception(rf.get("/api/v1/logs"), ValueError("a bug")) is None  # stays a 500
    page = middleware.process_exception(rf.get("/p/acme/"), InterfaceError("connection already closed"))
    assert page is not None and (page.status_code, page["Retry-After"]) == (503, "5")
    # COPY runs on psycopg's own cursor, whose errors Django does not wrap.
    api = middleware.process_exception(rf.post("/api/v1/logs"), psycopg.OperationalError("sending copy data failed"))
    assert api is not None and api.status_code == 503 and "detail" in orjson.loads(api.content)


def test_an_import_cut_off_from_the_database_mid_batch_resumes_once_it_is_back(
    celery_session_app, project, proxy, spawn, tmp_path, settings
):
    with celery_session_app.connection_for_write() as conn:
        conn.default_channel.queue_purge("default")
    env = service_env(tmp_path / "var", database=database_url(proxy.port), LOGTUNE_IMPORT_BATCH="100")
    worker = spawn("worker", worker_command("worker"), env)
    lines = [orjson.dumps(batch("file", size=1)["logs"][0] | {"external_id": f"file-{i}"}) for i in range(2000)]
    job = import_job_create(project=project, file=ContentFile(b"\n".join(lines) + b"\n", name="f.jsonl"),
                            source_name="f.jsonl")  # fmt: skip
    wait_for(lambda: ImportJob.objects.get(pk=job.pk).lines_done >= 300, 60, "some batches")

    proxy.cut_after(20_000)  # within the COPY of a batch of 100 logs
    wait_for(lambda: "curation.import_interrupted" in worker.tail(400), 30, "the worker to lose the database")

    job.refresh_from_db()
    assert proxy.cuts == 1
    assert (job.status, job.attempts) == (JobStatus.RUNNING, 1)  # not failed: the reaper will resume it
    assert 300 <= job.lines_done < 2000 and job.lines_done % 100 == 0
    assert LogEntry.objects.filter(project=project).count() == job.lines_done  # the cut batch left nothing

    settings.LOGTUNE_IMPORT_HEARTBEAT_TIMEOUT_S = 1
    time.sleep(1.5)
    assert import_jobs_reap() == 1
    job = wait_until_finished(job, 120)

    assert (job.status, job.attempts, job.accepted, job.duplicates) == (JobStatus.SUCCEEDED, 2, 2000, 0), job.error
    ids = list(LogEntry.objects.filter(project=project).values_list("external_id", flat=True))
    assert len(ids) == 2000 and set(ids) == {f"file-{i}" for i in range(2000)}
