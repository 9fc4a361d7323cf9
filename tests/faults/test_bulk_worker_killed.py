"""A worker killed in the middle of a bulk job: the chunk it was changing vanishes with it, the reaper re-queues the
job once its heartbeat is stale, another worker resumes below the last committed chunk, and every log is changed
exactly once, under the key that asked, with one audit event."""

import time

import pytest

from curation.datasets.services import dataset_add_logs, dataset_create
from curation.logs.bulk.services import bulk_job_create, bulk_jobs_reap
from curation.logs.services import logs_ingest
from curation.models import ApiKey, AuditEvent, DatasetEntry, JobStatus, LogEntry, LogTag
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

LOGS = 3000
CHUNK = 500


def seed(project) -> list[int]:
    """LOGS logs tagged `spam`, every tenth of them also in a dataset; their ids, newest first (the job's order)."""
    for start in range(0, LOGS, 1000):
        items = [{"prompt": f"q{i}", "completion": "a", "tags": ["spam"]} for i in range(start, start + 1000)]
        assert logs_ingest(project=project, items=items).accepted == 1000
    ids = list(LogEntry.objects.filter(project=project).order_by("-id").values_list("id", flat=True))
    dataset_add_logs(
        dataset=dataset_create(project=project, name="kept"), logs=LogEntry.objects.filter(id__in=ids[::10])
    )
    return ids


def test_a_worker_killed_mid_bulk_job_loses_only_its_uncommitted_chunk_and_the_reaper_has_it_finished(
    celery_session_app, project, api_key, spawn, tmp_path, settings
):
    purge(celery_session_app)
    ids = seed(project)
    key = ApiKey.objects.get(project=project)
    env = service_env(tmp_path / "var", LOGTUNE_BULK_CHUNK=str(CHUNK))
    doomed = spawn("doomed", worker_command("doomed"), env)

    # Hold one log of the third chunk: the worker commits two chunks, then waits for it inside the third's transaction.
    with raw_connection() as lock:
        lock.execute("SELECT id FROM curation_logentry WHERE id = %s FOR UPDATE", [ids[2 * CHUNK + 200]])
        job = bulk_job_create(project=project, action="delete", params={}, query="tag=spam", api_key=key)
        waiting: list[int] = []

        def worker_waits() -> bool:
            waiting[:] = backends_waiting_on_a_lock('DELETE FROM "curation_logentry"')
            return bool(waiting)

        wait_for(worker_waits, 60, "the worker to wait on a log in the middle of its third chunk")
        doomed.kill()  # SIGKILL to its process group: no cleanup of any kind
        lock.rollback()
    forget_unacknowledged(celery_session_app)
    wait_for(lambda: not backend_alive(waiting[0]), 30, "the dead worker's transaction to be rolled back")

    job.refresh_from_db()
    assert (job.status, job.attempts, job.done, job.changed) == (JobStatus.RUNNING, 1, 2 * CHUNK, 2 * CHUNK)
    assert job.worker.startswith("doomed@") and job.last_id == ids[2 * CHUNK - 1]
    # The chunk in flight left nothing behind: its logs, their tags and their entries' links are all there.
    assert (
        list(LogEntry.objects.filter(project=project).order_by("-id").values_list("id", flat=True)) == ids[2 * CHUNK :]
    )
    assert LogTag.objects.filter(log__project=project).count() == LOGS - 2 * CHUNK
    assert DatasetEntry.objects.filter(log__isnull=True).count() == 2 * CHUNK // 10

    rescue = spawn("rescue", worker_command("rescue"), env)
    settings.LOGTUNE_BULK_HEARTBEAT_TIMEOUT_S = 1
    time.sleep(1.5)
    assert bulk_jobs_reap() == 1  # re-queued, and its task sent to the broker

    job = wait_until_finished(job, 120)

    assert job.status == JobStatus.SUCCEEDED, f"{job.error}\n{rescue.tail()}"
    assert (job.attempts, job.worker.split("@")[0]) == (2, "rescue")
    assert (job.done, job.changed, job.total) == (LOGS, LOGS, LOGS)  # each log visited and deleted once
    assert not LogEntry.objects.filter(project=project).exists()
    entries = DatasetEntry.objects.all()
    assert sorted(entries.values_list("source_log_id", flat=True)) == sorted(ids[::10])
    assert {(entry.log_id, entry.source_deleted_by_key_id) for entry in entries} == {(None, key.pk)}
    event = AuditEvent.objects.get(project=project, action="logs.delete")
    assert (event.count, event.actor, event.api_key, event.query) == (LOGS, None, key, "tag=spam")
