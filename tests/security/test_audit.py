"""The audit log: deletions, exports, key changes and fine-tunes are recorded with who did them, and only
owners read them (the page, and `GET /api/v1/audit`)."""

import pytest
from rest_framework.test import APIClient

from curation.models import Dataset, DatasetEntry
from curation.services.projects import api_key_create, api_key_revoke
from training.models import BaseModel, FineTuneJob, FineTuneStatus

pytestmark = pytest.mark.django_db

CHAT = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def keyed(project, role: str) -> APIClient:
    return APIClient(HTTP_AUTHORIZATION=f"Bearer {api_key_create(project=project, name=role, role=role)[1]}")


def test_what_editors_do_is_recorded_and_owners_read_it(project, owner, editor, client_for):
    dataset = Dataset.objects.create(project=project, name="Math")
    entries = [DatasetEntry.objects.create(dataset=dataset, messages=CHAT) for _ in range(3)]
    BaseModel.objects.create(name="tiny", path="/models/tiny")
    by_editor, by_key = client_for(editor), keyed(project, "editor")

    by_editor.delete(f"/api/v1/datasets/{dataset.pk}/entries/{entries[0].pk}?project=acme")
    by_key.get(f"/api/v1/datasets/{dataset.pk}/export?format=alpaca")
    job = by_key.post("/api/v1/finetunes", {"dataset": dataset.pk, "base_model": "tiny"}, format="json").json()
    by_editor.post(f"/api/v1/finetunes/{job['id']}/cancel?project=acme")
    snapshot = by_editor.post(f"/api/v1/datasets/{dataset.pk}/snapshots?project=acme").json()
    by_editor.get(snapshot["download_url"])
    by_editor.delete(f"/api/v1/datasets/{dataset.pk}?project=acme")

    page = keyed(project, "owner").get("/api/v1/audit?limit=20").json()

    seen = [(e["action"], e["actor"], e["api_key"] is not None) for e in reversed(page["results"])]
    assert seen == [
        ("key.create", None, False),  # the editor's key, made outside a request
        ("entries.delete", "bob", False),
        ("dataset.export", None, True),
        ("dataset.snapshot", None, True),  # the fine-tune froze the dataset first
        ("finetune.start", None, True),
        ("finetune.cancel", "bob", False),
        ("dataset.snapshot", "bob", False),
        ("snapshot.download", "bob", False),
        ("dataset.delete", "bob", False),
        ("key.create", None, False),  # the owner's key reading this
    ]
    deleted = next(e for e in page["results"] if e["action"] == "dataset.delete")
    assert deleted["count"] == 2 and deleted["detail"]["name"] == "Math"


def test_the_audit_is_filtered_paged_and_refused_to_all_but_owners(project, owner, editor, client_for):
    for i in range(3):
        api_key_revoke(key=api_key_create(project=project, name=f"k{i}")[0], actor=owner)
    owner_key = keyed(project, "owner")

    first = owner_key.get("/api/v1/audit?action=key.revoke&limit=2").json()
    rest = owner_key.get(f"/api/v1/audit?action=key.revoke&limit=2&cursor={first['next_cursor']}").json()

    assert [e["detail"]["name"] for e in first["results"] + rest["results"]] == ["k2", "k1", "k0"]
    assert rest["next_cursor"] is None
    assert all(e["actor"] == "alice" for e in first["results"])
    assert owner_key.get("/api/v1/audit?limit=0").status_code == 400
    assert client_for(owner).get("/api/v1/audit?project=acme").status_code == 200
    assert client_for(editor).get("/api/v1/audit?project=acme").status_code == 403
    assert keyed(project, "editor").get("/api/v1/audit").status_code == 403


def test_deleting_a_dataset_a_fine_tunes_weights_and_the_fine_tune_is_recorded_with_what_went(
    project, owner, editor, client_for
):
    dataset = Dataset.objects.create(project=project, name="Math")
    DatasetEntry.objects.create(dataset=dataset, messages=CHAT)
    BaseModel.objects.create(name="tiny", path="/models/tiny")
    by_editor, by_key = client_for(editor), keyed(project, "editor")
    job = by_key.post("/api/v1/finetunes", {"dataset": dataset.pk, "base_model": "tiny"}, format="json").json()
    FineTuneJob.objects.filter(pk=job["id"]).update(status=FineTuneStatus.SUCCEEDED)

    by_editor.delete(f"/api/v1/datasets/{dataset.pk}?project=acme")
    by_key.delete(f"/api/v1/finetunes/{job['id']}/weights")
    by_editor.delete(f"/api/v1/finetunes/{job['id']}?project=acme")

    page = keyed(project, "owner").get("/api/v1/audit?limit=20")
    events = {e["action"]: e for e in page.json()["results"]}
    assert (events["dataset.delete"]["actor"], events["dataset.delete"]["detail"]["kept"]) == (
        "bob", {"finetunes": 1, "snapshots": 1}
    )  # fmt: skip
    assert events["finetune.weights_delete"]["api_key"] is not None
    assert events["finetune.weights_delete"]["detail"]["job_id"] == job["id"]
    deleted = events["finetune.delete"]
    assert (deleted["actor"], deleted["detail"]["dataset"], deleted["detail"]["dataset_id"]) == ("bob", "Math", None)
    assert deleted["detail"]["snapshot"] == job["snapshot"]  # its dataset was gone, and no other fine-tune used it
