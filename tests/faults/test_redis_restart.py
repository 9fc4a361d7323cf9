"""The broker (a private Redis, without persistence) stops and comes back while clients keep sending logs and
uploading files to a real web app with a real worker. Logs never need the broker; an upload made while it is
down is accepted and kept, and the reaper sends what the broker never got or forgot. Afterwards every log the
API accepted is stored once, every accepted upload is imported once, and nothing is left queued or running."""

import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import orjson
import pytest

from curation.logs.imports.services import import_jobs_reap
from curation.models import ImportJob, JobStatus, LogEntry
from curation.projects.services import api_key_create
from tests.faults.processes import (
    ROOT,
    free_port,
    post_file,
    post_json,
    service_env,
    wait_for,
    wait_until_serving,
    web_command,
    worker_command,
)
from tests.waiting import wait_until_finished

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

BATCH = 20
UPLOAD_LINES = 30


def log(external_id: str) -> dict:
    return {"prompt": f"Where does {external_id} go?", "completion": "Into the database, once.",
            "external_id": external_id}  # fmt: skip


@dataclass
class Sent:
    at: float
    status: int
    seconds: float
    ids: list[str]
    job_id: int | None = None


@dataclass
class Clients:
    """Threads that send logs and upload files until stopped, recording every answer."""

    base_url: str
    api_key: str
    ingests: list[Sent] = field(default_factory=list)
    uploads: list[Sent] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, ingest_threads: int = 2) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._ingest, args=(n,)) for n in range(ingest_threads)]
        threads.append(threading.Thread(target=self._upload))
        for thread in threads:
            thread.start()
        return threads

    def _ingest(self, n: int) -> None:
        seq = 0
        while not self.stop.is_set():
            ids = [f"ingest-{n}-{seq}-{i}" for i in range(BATCH)]
            at = time.monotonic()
            answer = post_json(f"{self.base_url}/api/v1/logs", {"logs": [log(i) for i in ids]}, self.api_key)
            self.ingests.append(Sent(at, answer.status, answer.seconds, ids))
            seq += 1
            time.sleep(0.02)

    def _upload(self) -> None:
        seq = 0
        while not self.stop.is_set():
            ids = [f"upload-{seq}-{i}" for i in range(UPLOAD_LINES)]
            content = b"".join(orjson.dumps(log(i)) + b"\n" for i in ids)
            at = time.monotonic()
            answer = post_file(f"{self.base_url}/api/v1/imports", f"part-{seq}.jsonl", content, self.api_key)
            job_id = answer.json()["id"] if answer.status == 202 else None
            self.uploads.append(Sent(at, answer.status, answer.seconds, ids, job_id))
            seq += 1
            time.sleep(0.1)


def reap(env: dict) -> None:
    """One run of the reaper in its own process, against the private broker (as beat would start it)."""
    code = "from curation.logs.imports.services import import_jobs_reap; print('reaped', import_jobs_reap())"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_logs_and_uploads_sent_while_redis_restarts_are_all_stored_once(project, private_redis, spawn, tmp_path):
    redis = private_redis
    # The documented topology: the rate limit's counters in a database of the same Redis, the limit on (high
    # enough for these clients): while Redis is down the limit cannot count, and lets logs in rather than fail.
    cache = redis.url.rsplit("/", 1)[0] + "/1"
    env = service_env(tmp_path / "var", broker=redis.url, CACHE_URL=cache, LOGTUNE_INGEST_RATE="100000/min")
    port = free_port()
    web = spawn("web", web_command(port), env)
    worker = spawn("worker", worker_command("worker"), env)
    base_url = f"http://127.0.0.1:{port}"
    wait_until_serving(base_url, web)
    wait_for(lambda: " ready." in worker.tail(), 60, "the worker to be ready")  # imports run when Redis dies
    clients = Clients(base_url, api_key_create(project=project, name="faults")[1])

    threads = clients.run()
    time.sleep(2)
    down = time.monotonic()
    redis.stop()
    time.sleep(3)
    restarting = time.monotonic()
    redis.start()  # the same port, empty: queued and unacknowledged tasks are gone
    up = time.monotonic()
    time.sleep(3)
    clients.stop.set()
    for thread in threads:
        thread.join(timeout=60)

    during = [sent for sent in clients.uploads if down < sent.at and sent.at + sent.seconds < restarting]
    assert {sent.status for sent in clients.ingests} == {200}, "logs need no broker"
    assert any(down < sent.at < up for sent in clients.ingests)
    assert {sent.status for sent in clients.uploads} == {202}
    assert during, "no upload was made while Redis was down"
    assert max(sent.seconds for sent in during) < 5, "an upload while the broker is down is answered at once"
    unsent = ImportJob.objects.filter(pk__in=[sent.job_id for sent in during])
    assert {(job.status, job.enqueued_at) for job in unsent} == {(JobStatus.QUEUED, None)}  # kept, marked unsent
    later = ImportJob.objects.filter(pk__in=[sent.job_id for sent in clients.uploads if sent.at > up + 1])
    assert later and not later.filter(enqueued_at=None).exists()  # the web process sends to Redis again

    queued = ImportJob.objects.filter(project=project, status=JobStatus.QUEUED)
    unsent_count = queued.filter(enqueued_at=None).count()
    print(f"sent {len(clients.ingests)} log batches, {len(clients.uploads)} uploads ({len(during)} with Redis down); "
          f"before the reaper: {queued.count()} uploads queued, {unsent_count} unsent")  # fmt: skip
    # The reaper sends what the broker never got; one that forgot tasks it had is found by their age (here 0 s).
    reap({**env, "LOGTUNE_IMPORT_RESEND_AFTER_S": "0"})

    jobs = ImportJob.objects.filter(project=project)
    finished = (JobStatus.SUCCEEDED, JobStatus.FAILED)
    wait_for(lambda: not jobs.exclude(status__in=finished).exists(), 120, "every upload to be imported", every=0.5)
    assert jobs.count() == len(clients.uploads)
    outcome = set(jobs.values_list("status", "attempts", "lines_done", "accepted", "duplicates", "rejected"))
    assert outcome == {(JobStatus.SUCCEEDED, 1, UPLOAD_LINES, UPLOAD_LINES, 0, 0)}  # each ran once, sent twice or not
    accepted = [i for sent in clients.ingests + clients.uploads for i in sent.ids]
    stored = list(LogEntry.objects.filter(project=project).values_list("external_id", flat=True))
    assert len(stored) == len(accepted) and set(stored) == set(accepted)


def test_an_upload_while_the_broker_is_down_is_accepted_and_started_by_the_reaper(
    celery_worker, project, spawn, tmp_path
):
    nothing_there = f"redis://127.0.0.1:{free_port()}/0"
    port = free_port()
    web = spawn("web", web_command(port), service_env(tmp_path / "var", broker=nothing_there))
    wait_until_serving(f"http://127.0.0.1:{port}", web)
    content = b"".join(orjson.dumps(log(f"x{i}")) + b"\n" for i in range(3))
    api_key = api_key_create(project=project)[1]

    answer = post_file(f"http://127.0.0.1:{port}/api/v1/imports", "x.jsonl", content, api_key)

    assert answer.status == 202, answer.body
    assert answer.seconds < 5
    job = ImportJob.objects.get(pk=answer.json()["id"])
    assert (job.status, job.enqueued_at, answer.json()["status"]) == (JobStatus.QUEUED, None, "queued")

    assert import_jobs_reap() == 1  # this process's broker is up: the job is sent to the worker

    job = wait_until_finished(job, 60)
    assert (job.status, job.accepted, job.attempts) == (JobStatus.SUCCEEDED, 3, 1)
    assert job.enqueued_at is not None
