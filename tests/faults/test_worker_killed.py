"""A worker killed in the middle of an import: the batch it was writing vanishes with it, the reaper re-queues
the job once its heartbeat is stale, another worker resumes after the last committed line, and every line is
stored exactly once. Two deliveries of one import never run at once.

(The same for a fine-tune, trainer and all: tests/training/test_jobs_e2e.py, where a SIGKILLed GPU worker's
job is re-queued and resumes from its checkpoint with every step recorded once.)"""

import time

import orjson
import pytest
from django.core.files.base import ContentFile

from curation.logs.imports import run
from curation.logs.imports.run import ImportLost, import_job_claim, import_job_run
from curation.logs.imports.services import import_job_create, import_job_create_local, import_jobs_reap
from curation.models import ImportJob, JobStatus, LogEntry
from tests.curation.samples import openai_log
from tests.faults.processes import (
    backend_alive,
    backends_waiting_on_a_lock,
    forget_unacknowledged,
    purge,
    raw_connection,
    service_env,
    wait_for,
    worker_command,
)
from tests.waiting import wait_until_finished

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

LINES = 3000
BATCH = 100


def log_line(i: int) -> bytes:
    log = openai_log(external_id=f"line-{i}")
    log["request"]["messages"][1]["content"] = f"Question {i}: what is {i} + {i}?"
    return orjson.dumps(log) + b"\n"


def stored_ids(project) -> list[str]:
    return list(LogEntry.objects.filter(project=project).values_list("external_id", flat=True))


def backends_waiting_on_the_job_row() -> list[int]:
    return backends_waiting_on_a_lock('UPDATE "curation_importjob"')


def test_a_worker_killed_mid_import_loses_only_its_uncommitted_batch_and_another_resumes_the_job(
    celery_session_app, project, spawn, tmp_path, settings
):
    purge(celery_session_app)
    env = service_env(tmp_path / "var", LOGTUNE_IMPORT_BATCH=str(BATCH))
    doomed = spawn("doomed", worker_command("doomed"), env)
    job = import_job_create(
        project=project, file=ContentFile(b"".join(log_line(i) for i in range(LINES)), name="big.jsonl"),
        source_name="big.jsonl",
    )  # fmt: skip
    wait_for(lambda: ImportJob.objects.get(pk=job.pk).lines_done >= 5 * BATCH, 60, "some batches")

    # Hold the job's row: the worker's next batch is written, then waits for the row inside its transaction.
    with raw_connection() as lock:
        status, committed = lock.execute(
            "SELECT status, lines_done FROM curation_importjob WHERE id = %s FOR UPDATE", [job.pk]
        ).fetchone()
        assert status == JobStatus.RUNNING and 0 < committed < LINES, (status, committed)
        waiting: list[int] = []

        def worker_waits() -> bool:
            waiting[:] = backends_waiting_on_the_job_row()
            return bool(waiting)

        wait_for(worker_waits, 30, "the worker to wait on the job's row in the middle of a batch")
        doomed.kill()  # SIGKILL to its process group: no cleanup of any kind
        lock.rollback()
    forget_unacknowledged(celery_session_app)
    wait_for(lambda: not backend_alive(waiting[0]), 30, "the dead worker's transaction to be rolled back")

    job.refresh_from_db()
    assert (job.status, job.attempts, job.lines_done) == (JobStatus.RUNNING, 1, committed)
    assert job.worker.startswith("doomed@")
    assert len(stored_ids(project)) == committed  # the batch in flight left nothing behind

    rescue = spawn("rescue", worker_command("rescue"), env)
    settings.LOGTUNE_IMPORT_HEARTBEAT_TIMEOUT_S = 1
    time.sleep(1.5)
    assert import_jobs_reap() == 1  # re-queued, and its task sent to the broker
    job.refresh_from_db()
    assert job.status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED)

    job = wait_until_finished(job, 120)

    assert job.status == JobStatus.SUCCEEDED, f"{job.error}\n{rescue.tail()}"
    assert (job.attempts, job.worker.split("@")[0]) == (2, "rescue")
    assert (job.lines_done, job.accepted, job.duplicates, job.rejected) == (LINES, LINES, 0, 0)
    ids = stored_ids(project)
    assert len(ids) == LINES and set(ids) == {f"line-{i}" for i in range(LINES)}  # each line once, none lost
    contents = LogEntry.objects.filter(project=project).values_list("messages__1__content", flat=True)
    assert len(set(contents)) == LINES


def small_file(tmp_path, lines: int = 5):
    path = tmp_path / "small.jsonl"
    path.write_bytes(b"".join(log_line(i) for i in range(lines)))
    return path


def test_a_second_delivery_of_a_running_import_does_nothing(project, tmp_path):
    path = small_file(tmp_path)
    job = import_job_create_local(project=project, path=path)
    assert import_job_claim(job_id=job.pk, worker="first@host")

    again = import_job_run(job_id=job.pk, path=path, worker="second@host")

    assert (again.status, again.attempts, again.worker, again.lines_done) == (JobStatus.RUNNING, 1, "first@host", 0)
    assert stored_ids(project) == []


def test_a_run_that_lost_its_job_to_another_stores_nothing_more(project, tmp_path, settings):
    path = small_file(tmp_path)
    job = import_job_create_local(project=project, path=path)
    assert import_job_claim(job_id=job.pk, worker="slow@host")
    slow = ImportJob.objects.get(pk=job.pk)
    settings.LOGTUNE_IMPORT_HEARTBEAT_TIMEOUT_S = 0
    assert import_job_claim(job_id=job.pk, worker="fresh@host")  # the slow run looked dead: taken over

    batch = run._Batch(lines=[(1, log_line(0))], last_line=1, bytes_done=100)
    with pytest.raises(ImportLost):
        run._commit_batch(slow, run._batch_read(slow, batch))

    assert stored_ids(project) == []  # the batch was rolled back with the refused progress
    job.refresh_from_db()
    assert (job.attempts, job.worker, job.lines_done) == (2, "fresh@host", 0)


def test_the_reaper_fails_an_import_past_its_attempts_and_one_run_by_a_dead_command(
    celery_session_app, project, tmp_path, settings
):
    settings.LOGTUNE_IMPORT_HEARTBEAT_TIMEOUT_S = 0
    settings.LOGTUNE_IMPORT_MAX_ATTEMPTS = 1
    uploaded = import_job_create(project=project, file=ContentFile(log_line(0), name="a.jsonl"), source_name="a")
    inline = import_job_create_local(project=project, path=small_file(tmp_path))
    assert import_job_claim(job_id=uploaded.pk, worker="gone@host")
    assert import_job_claim(job_id=inline.pk, worker="laptop")

    assert import_jobs_reap() == 2

    uploaded.refresh_from_db()
    inline.refresh_from_db()
    assert uploaded.status == inline.status == JobStatus.FAILED
    assert "gone@host stopped sending heartbeats" in uploaded.error and "at most 1" in uploaded.error
    assert "import_logs --inline" in inline.error and "run the command again" in inline.error
    purge(celery_session_app)  # the upload's task, which no worker of this test runs
