"""The export and snapshot endpoints: who may call them, what they answer, what they record."""

import hashlib
import json

import pytest
from rest_framework.test import APIClient

from curation.datasets.export import snapshots
from curation.models import AuditEvent, Dataset, DatasetEntry, DatasetSnapshot, Split
from tests.factories import ApiKeyFactory, DatasetEntryFactory, DatasetFactory, DatasetSnapshotFactory
from tests.waiting import wait_until_finished

# The export URLs on top of the project's own, whether or not the root URLconf includes them yet.
pytestmark = pytest.mark.django_db

CHAT = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]


@pytest.fixture
def dataset_with_split(project) -> Dataset:
    """Math: one sum to train on, and an unanswered greeting held out for validation."""
    dataset = DatasetFactory(project=project, name="Math")
    DatasetEntryFactory(dataset=dataset, messages=CHAT)
    DatasetEntryFactory(dataset=dataset, messages=[{"role": "user", "content": "hi"}], split=Split.VALIDATION)
    return dataset


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_an_editor_downloads_an_export_and_it_is_audited(client_for, editor, dataset_with_split):
    response = client_for(editor).get(
        f"/api/v1/datasets/{dataset_with_split.pk}/export?project=acme&format=openai&split=train"
    )

    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"] == 'attachment; filename="math-train-openai.jsonl"'
    assert body(response) == b'{"messages":[{"role":"user","content":"2+2?"},{"role":"assistant","content":"4"}]}\n'
    event = AuditEvent.objects.get(action="dataset.export")
    assert (event.actor, event.count) == (editor, 1)
    assert (event.detail["format"], event.detail["split"]) == ("openai", "train")


@pytest.mark.parametrize("persona", ["viewer", "editor", "owner"])
def test_every_role_downloads_an_export_and_a_snapshot_recorded_in_the_audit_log(
    request, client_for, persona, dataset_with_split
):
    user = request.getfixturevalue(persona)
    frozen = snapshots.snapshot_create(dataset=dataset_with_split)
    client = client_for(user)

    export = client.get(f"/api/v1/datasets/{dataset_with_split.pk}/export?project=acme&split=train")
    snapshot = client.get(f"/api/v1/snapshots/{frozen.pk}/download?project=acme")

    assert (export.status_code, snapshot.status_code) == (200, 200)
    assert hashlib.sha256(body(snapshot)).hexdigest() == frozen.sha256
    assert AuditEvent.objects.get(action="dataset.export").actor == user
    assert AuditEvent.objects.get(action="snapshot.download").actor == user


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_a_key_of_any_role_downloads_an_export(project, role, dataset_with_split):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiKeyFactory(project=project, role=role).raw}")

    response = client.get(f"/api/v1/datasets/{dataset_with_split.pk}/export")

    assert response.status_code == 200 and body(response).count(b"\n") == 2


def test_an_outsider_downloads_no_export(client_for, outsider, dataset_with_split):
    response = client_for(outsider).get(f"/api/v1/datasets/{dataset_with_split.pk}/export?project=acme")

    assert response.status_code == 404
    assert not AuditEvent.objects.filter(action="dataset.export").exists()


def test_an_api_key_exports_every_split_as_openai_by_default(key_client, dataset_with_split):
    response = key_client.get(f"/api/v1/datasets/{dataset_with_split.pk}/export")

    assert response.status_code == 200
    assert len(body(response).splitlines()) == 2
    assert AuditEvent.objects.get(action="dataset.export").detail["split"] == "all"


def test_a_preference_export_reads_the_edited_entries_and_audits_their_count(key_client, dataset_with_split):
    DatasetEntry.objects.filter(split="train").update(edited=True)  # imported from a file: no original answer

    response = key_client.get(f"/api/v1/datasets/{dataset_with_split.pk}/export?format=preference")
    preview = key_client.get(
        f"/api/v1/datasets/{dataset_with_split.pk}/export/preview?format=openai_preference"
    ).json()

    assert response["Content-Disposition"] == 'attachment; filename="math-all-preference.jsonl"'
    assert body(response) == b""
    assert AuditEvent.objects.get(action="dataset.export").count == 1
    assert preview["rows_total"] == preview["rows_read"] == 1
    assert preview["rows_written"] == 0
    assert list(preview["losses"]) == ["no original answer (imported, source log deleted, or it had none): skipped"]


def test_a_parquet_export_is_named_and_typed_as_parquet(key_client, dataset_with_split):
    response = key_client.get(f"/api/v1/datasets/{dataset_with_split.pk}/export?format=parquet")

    assert response["Content-Type"] == "application/vnd.apache.parquet"
    assert body(response)[:4] == b"PAR1"


@pytest.mark.parametrize(
    ("query", "field"),
    [("format=csv", "format"), ("split=test", "split"), ("formt=alpaca", "formt")],
)
def test_a_bad_parameter_is_a_400_naming_it(key_client, dataset_with_split, query, field):
    response = key_client.get(f"/api/v1/datasets/{dataset_with_split.pk}/export?{query}")

    assert response.status_code == 400
    assert field in response.json()
    assert not AuditEvent.objects.filter(action="dataset.export").exists()


def test_an_outsider_gets_404_for_the_project_and_for_its_dataset(client_for, outsider, dataset_with_split):
    client = client_for(outsider)

    through_project = client.get(f"/api/v1/datasets/{dataset_with_split.pk}/export?project=acme")
    through_own_project = client.get(f"/api/v1/datasets/{dataset_with_split.pk}/export?project=other")
    snapshots = client.get(f"/api/v1/datasets/{dataset_with_split.pk}/snapshots?project=other")

    assert (through_project.status_code, through_own_project.status_code, snapshots.status_code) == (404, 404, 404)
    assert not AuditEvent.objects.filter(action="dataset.export").exists()


def test_the_preview_reports_what_alpaca_would_lose(client_for, viewer, dataset_with_split):
    response = client_for(viewer).get(
        f"/api/v1/datasets/{dataset_with_split.pk}/export/preview?project=acme&format=alpaca"
    )

    assert response.status_code == 200
    assert response.json() == {
        "format": "alpaca",
        "rows_read": 2,
        "rows_written": 1,
        "rows_skipped": 1,
        "lossless": False,
        "losses": {"no assistant reply: skipped": 1},
        "rows_total": 2,
    }


def test_a_viewer_cannot_snapshot_but_an_editor_can(client_for, viewer, editor, dataset_with_split):
    url = f"/api/v1/datasets/{dataset_with_split.pk}/snapshots?project=acme"

    refused = client_for(viewer).post(url)
    created = client_for(editor).post(url)

    assert refused.status_code == 403
    assert created.status_code == 201, created.content
    snapshot = DatasetSnapshot.objects.get()
    assert created.json()["id"] == snapshot.pk
    assert (created.json()["rows_total"], created.json()["rows_train"], created.json()["rows_validation"]) == (2, 1, 1)
    assert snapshot.created_by == editor


def test_a_snapshot_downloads_as_the_file_its_hash_was_computed_on(client_for, editor, viewer, dataset_with_split):
    created = client_for(editor).post(f"/api/v1/datasets/{dataset_with_split.pk}/snapshots?project=acme").json()

    listing = client_for(viewer).get(f"/api/v1/datasets/{dataset_with_split.pk}/snapshots?project=acme").json()
    download = client_for(editor).get(created["download_url"])

    content = body(download)
    assert hashlib.sha256(content).hexdigest() == created["sha256"]
    assert [json.loads(row)["split"] for row in content.splitlines()] == ["train", "validation"]
    assert [s["sha256"] for s in listing["results"]] == [created["sha256"]]
    assert "attachment" in download["Content-Disposition"]
    event = AuditEvent.objects.get(action="snapshot.download")
    assert (event.actor, event.count, event.detail["sha256"]) == (editor, 2, created["sha256"])


def test_an_outsider_cannot_download_a_snapshot_of_another_project(
    client_for, outsider, key_client, dataset_with_split
):
    created = key_client.post(f"/api/v1/datasets/{dataset_with_split.pk}/snapshots").json()

    response = client_for(outsider).get(f"/api/v1/snapshots/{created['id']}/download?project=other")

    assert response.status_code == 404


def test_a_large_dataset_is_frozen_by_a_worker_and_polled_until_it_succeeds(
    celery_worker, key_client, dataset_with_split, monkeypatch
):
    monkeypatch.setattr(snapshots, "INLINE_LIMIT", 1)

    queued = key_client.post(f"/api/v1/datasets/{dataset_with_split.pk}/snapshots")

    assert queued.status_code == 202, queued.content
    assert (queued.json()["status"], queued.json()["rows_total"], queued.json()["download_url"]) == ("queued", 2, None)
    snapshot = wait_until_finished(DatasetSnapshot.objects.get(pk=queued.json()["id"]))
    assert snapshot.status == "succeeded", snapshot.error
    polled = key_client.get(f"/api/v1/snapshots/{snapshot.pk}").json()
    assert (polled["status"], polled["progress"], polled["rows_done"]) == ("succeeded", 1.0, 2)
    content = body(key_client.get(polled["download_url"]))
    assert hashlib.sha256(content).hexdigest() == polled["sha256"]
    assert AuditEvent.objects.get(action="dataset.snapshot").api_key is not None


def test_a_snapshot_still_being_written_cannot_be_downloaded(key_client, dataset_with_split):
    snapshot = DatasetSnapshotFactory(dataset=dataset_with_split, status="running", rows_total=4, rows_done=1)

    response = key_client.get(f"/api/v1/snapshots/{snapshot.pk}/download")

    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"Snapshot {snapshot.pk} has no file: it is running. 25% written; try again when it has succeeded."
    )
