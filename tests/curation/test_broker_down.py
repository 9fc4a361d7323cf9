"""Jobs that only compute from stored rows (snapshots) asked for while the broker is down: the request answers as
usual, and the job is failed at once with the reason instead of staying queued forever; asking again once the broker
is back queues a new one. Bulk jobs, like imports and fine-tunes, are kept and sent by a reaper instead (here, and
tests/faults)."""

import pytest

from curation.datasets.export import snapshots
from curation.datasets.export.tasks import snapshot_build_task
from curation.logs.bulk import services as bulk
from curation.logs.bulk.tasks import bulk_job_run_task
from curation.logs.services import logs_ingest
from curation.models import BulkJob, DatasetSnapshot, JobStatus, LogTag

pytestmark = pytest.mark.django_db

UNREACHABLE = "The task queue is unreachable (Error 111 connecting to 127.0.0.1:6379. Connection refused.)"


def test_a_bulk_job_is_kept_queued_and_sent_by_the_reaper_once_the_broker_is_back(
    key_client, project, broker_down, monkeypatch, django_capture_on_commit_callbacks
):
    items = [{"prompt": f"q{n}", "completion": "a", "tags": ["math"]} for n in range(3)]
    assert logs_ingest(project=project, items=items).accepted == 3
    monkeypatch.setattr(bulk, "INLINE_LIMIT", 1)
    broker_down(bulk_job_run_task)
    body = {"action": "tag_add", "tags": ["seen"], "filter": "tag=math"}

    with django_capture_on_commit_callbacks(execute=True):
        response = key_client.post("/api/v1/logs/bulk", body, format="json")

    assert response.status_code == 202, response.content
    state = key_client.get(f"/api/v1/bulk-jobs/{response.json()['id']}").json()
    assert (state["status"], state["error"]) == ("queued", "")
    assert BulkJob.objects.get().enqueued_at is None  # unsent: the reaper sends it

    monkeypatch.undo()  # the broker is back
    sent: list[int] = []
    monkeypatch.setattr(bulk_job_run_task, "delay", sent.append)
    assert bulk.bulk_jobs_reap() == 1
    assert sent == [response.json()["id"]]
    bulk.bulk_job_run(job_id=sent[0])
    assert BulkJob.objects.get().status == JobStatus.SUCCEEDED
    assert LogTag.objects.filter(tag__name="seen").count() == 3


def test_a_snapshot_fails_saying_so(key_client, dataset, broker_down, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(snapshots, "INLINE_LIMIT", 0)
    broker_down(snapshot_build_task)

    with django_capture_on_commit_callbacks(execute=True):
        response = key_client.post(f"/api/v1/datasets/{dataset.pk}/snapshots")

    assert response.status_code in (201, 202), response.content
    snapshot = DatasetSnapshot.objects.get()
    assert snapshot.status == JobStatus.FAILED and snapshot.error.startswith(UNREACHABLE)
    monkeypatch.undo()
    assert key_client.post(f"/api/v1/datasets/{dataset.pk}/snapshots").status_code == 201  # asked again
