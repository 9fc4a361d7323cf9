"""No click deletes a trained model without saying so: deleting a dataset keeps its fine-tunes, their weights and
the snapshots they trained on; deleting a fine-tune, or only its weights, is its own confirmed, audited action."""

import io
import zipfile
from pathlib import Path

import pytest
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from rest_framework.test import APIClient

from curation.datasets.export import snapshot_create
from curation.datasets.services import dataset_delete
from curation.models import AuditEvent, DatasetSnapshot
from curation.projects.services import api_key_create
from tests.factories import ProjectFactory
from training.finetunes.deletion import finetune_delete, finetune_deletion_plan
from training.finetunes.services import finetune_create
from training.models import ExampleLoss, FineTuneJob, FineTuneStatus, Generation, MetricPoint

pytestmark = pytest.mark.django_db

WEIGHTS = {"adapter/adapter_model.safetensors": 3000, "adapter/adapter_config.json": 20,
           "merged/model.safetensors": 5000, "checkpoints/step-2/trainable.safetensors": 1000,
           "best.safetensors": 500}  # fmt: skip
WEIGHTS_BYTES = sum(WEIGHTS.values())
OTHERS = {"train.log": 5, "evaluation.json": 2, "events.jsonl": 10}
FOLDER_BYTES = WEIGHTS_BYTES + sum(OTHERS.values())


def trained(job: FineTuneJob) -> FineTuneJob:
    """As a GPU worker leaves a succeeded LoRA job that was merged: weights, checkpoints, logs, metrics, losses,
    a playground answer."""
    for name, size in {**WEIGHTS, **OTHERS}.items():
        path = job.output_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
    now = timezone.now()
    MetricPoint.objects.bulk_create(
        [MetricPoint(job=job, step=step, train_loss=1.0 / (step + 1), time=now) for step in range(3)]
    )
    entries = list(job.dataset.entries.filter(split="train").order_by("id")[:2])
    ExampleLoss.objects.bulk_create(
        [ExampleLoss(job=job, entry=e, line=i, loss=0.5) for i, e in enumerate(entries, 1)]
    )
    Generation.objects.create(job=job, messages=[{"role": "user", "content": "hi"}], status=FineTuneStatus.SUCCEEDED)
    FineTuneJob.objects.filter(pk=job.pk).update(
        status=FineTuneStatus.SUCCEEDED, merge_status=FineTuneStatus.SUCCEEDED, finished_at=now,
        evaluation={"base": {"eval_loss": 2.0}, "tuned": {"eval_loss": 1.0}},
    )  # fmt: skip
    job.refresh_from_db()
    return job


def key_client_of(project) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(project=project, name='other')[1]}")
    return client


def weights_on_disk(job: FineTuneJob) -> list[str]:
    return [
        name for name in ("adapter", "merged", "checkpoints", "best.safetensors") if (job.output_dir / name).exists()
    ]


# --- deleting the dataset keeps what was trained on it ---------------------------------------------


def test_deleting_its_dataset_keeps_a_fine_tune_its_weights_and_the_snapshot_it_trained_on(
    client, client_for, project, editor, dataset, job, django_capture_on_commit_callbacks
):
    trained(job)
    unused = snapshot_create(dataset=dataset)  # frozen by hand; no fine-tune trained on it
    used_file, unused_file = Path(job.snapshot.file.path), Path(unused.file.path)

    with django_capture_on_commit_callbacks(execute=True):
        plan = dataset_delete(dataset=dataset, actor=editor)

    assert plan.summary(done=True) == (
        "Deleted 4 entries and 1 snapshot. Kept 1 fine-tune (its weights, metrics and the snapshot it trained on) "
        "and the logs."
    )
    job.refresh_from_db()
    snapshot = job.snapshot
    assert (job.dataset_id, snapshot.dataset_id, snapshot.dataset_name, snapshot.project) == (
        None,
        None,
        "Math",
        project,
    )
    assert used_file.exists() and not unused_file.exists()
    assert not DatasetSnapshot.objects.filter(pk=unused.pk).exists()
    assert weights_on_disk(job) == ["adapter", "merged", "checkpoints", "best.safetensors"]
    assert MetricPoint.objects.filter(job=job).count() == 3
    assert ExampleLoss.objects.filter(job=job, entry__isnull=True).count() == 2  # the entries went with the dataset

    api = client_for(editor)
    shown = api.get(f"/api/v1/finetunes/{job.pk}?project=acme").json()
    assert (shown["dataset"], shown["dataset_name"], shown["dataset_deleted"]) == (None, "Math", True)
    assert shown["adapter_url"] == f"/api/v1/finetunes/{job.pk}/adapter"
    adapter = api.get(f"/api/v1/finetunes/{job.pk}/adapter?project=acme")
    assert adapter.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(b"".join(adapter.streaming_content))).namelist()
    assert f"finetune-{job.pk}-adapter/adapter_model.safetensors" in names
    described = api.get(f"/api/v1/snapshots/{snapshot.pk}?project=acme").json()
    assert (described["dataset"], described["dataset_name"], described["dataset_deleted"]) == (None, "Math", True)
    download = api.get(f"/api/v1/snapshots/{snapshot.pk}/download?project=acme")
    assert download.status_code == 200 and b"".join(download.streaming_content) == used_file.read_bytes()

    client.force_login(editor)
    page = client.get(f"/p/acme/finetunes/{job.pk}/").content.decode()
    assert 'Math <span class="badge dataset-deleted"' in page and "dataset deleted</span>" in page
    assert f"/api/v1/snapshots/{snapshot.pk}/download?project=acme" in page
    assert "Sort the dataset by this job" not in page
    listing = client.get("/p/acme/finetunes/").content.decode()
    assert 'Math <span class="badge dataset-deleted">dataset deleted</span>' in listing


def test_the_dataset_confirmation_lists_the_fine_tunes_that_stay_and_refuses_while_one_runs(
    client, editor, dataset, base_model, job
):
    trained(job)
    snapshot_create(dataset=dataset)
    client.force_login(editor)

    page = client.get(f"/p/acme/datasets/{dataset.pk}/delete").content.decode()
    running = finetune_create(dataset=dataset, base_model=base_model, snapshot=job.snapshot)
    busy = client.get(f"/p/acme/datasets/{dataset.pk}/delete").content.decode()
    refused = client.post(f"/p/acme/datasets/{dataset.pk}/delete", follow=True).content.decode()

    assert (
        "Deletes 4 entries and 1 snapshot. Keeps 1 fine-tune (its weights, metrics and the snapshot it trained on) "
        "and the logs." in page
    )
    assert f'href="/p/acme/finetunes/{job.pk}/"' in page and ">Delete dataset</button>" in page
    message = "1 fine-tune of this dataset is queued or running: cancel it first, then delete the dataset."
    assert message in busy and ">Delete dataset</button>" not in busy
    assert message in refused
    assert FineTuneJob.objects.filter(pk=running.pk, dataset=dataset).exists()


def test_a_deleted_dataset_answers_a_fine_tune_trained_on_it_with_no_dataset_to_link_entries_to(job, dataset, editor):
    from training.finetunes.events import example_losses_load

    trained(job)
    (job.output_dir / "example_losses.jsonl").write_text('{"line": 1, "entry_id": 1, "loss": 0.1, "tokens": 2}\n')
    dataset_delete(dataset=dataset, actor=editor)
    job.refresh_from_db()

    assert example_losses_load(job=job) == 1
    assert ExampleLoss.objects.get(job=job).entry_id is None


# --- deleting a fine-tune ---------------------------------------------------------------------------


def test_the_confirmation_says_exactly_what_deleting_the_fine_tune_or_its_weights_removes(client, editor, job):
    trained(job)
    client.force_login(editor)

    job_page = client.get(f"/p/acme/finetunes/{job.pk}/").content.decode()
    page = client.get(f"/p/acme/finetunes/{job.pk}/delete").content.decode()

    assert f'href="/p/acme/finetunes/{job.pk}/delete"' in job_page
    assert f"<code>finetunes/{job.pk}</code>" in page  # its place in the data folder, not a server path
    assert f'data-size="folder">{filesizeformat(FOLDER_BYTES)}</strong> on disk' in page
    assert f"the adapter ({filesizeformat(3020)}), the merged weights ({filesizeformat(5000)})" in page
    assert "3 training and evaluation points, 2 per-example losses and 1 playground answer" in page
    assert "it belongs to the dataset Math" in page and "data-snapshot-goes" not in page
    assert f'data-size="weights">{filesizeformat(WEIGHTS_BYTES)}</strong>' in page
    assert f">Delete fine-tune {job.pk}</button>" in page and ">Delete weights only</button>" in page


def test_deleting_a_fine_tune_removes_its_folder_metrics_and_row_and_is_audited(
    client, editor, dataset, job, django_capture_on_commit_callbacks
):
    trained(job)
    client.force_login(editor)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/p/acme/finetunes/{job.pk}/delete", follow=True)

    assert response.redirect_chain[-1][0] == f"/p/acme/datasets/{dataset.pk}/"
    assert f"Deleted fine-tune {job.pk} and its folder ({filesizeformat(FOLDER_BYTES)})." in response.content.decode()
    assert not FineTuneJob.objects.exists() and not job.output_dir.exists()
    assert not MetricPoint.objects.exists() and not ExampleLoss.objects.exists() and not Generation.objects.exists()
    assert DatasetSnapshot.objects.filter(pk=job.snapshot_id).exists()  # its dataset still holds it
    assert dataset.entries.count() == 4
    event = AuditEvent.objects.get(action="finetune.delete")
    assert (event.actor, event.detail["job_id"], event.detail["bytes"], event.detail["snapshot"]) == (
        editor, job.pk, FOLDER_BYTES, None
    )  # fmt: skip


def test_a_fine_tune_whose_dataset_is_gone_takes_its_snapshot_along_once_no_other_fine_tune_trained_on_it(
    client, editor, dataset, base_model, job, django_capture_on_commit_callbacks
):
    trained(job)
    second = finetune_create(dataset=dataset, base_model=base_model, snapshot=job.snapshot)
    FineTuneJob.objects.filter(pk=second.pk).update(status=FineTuneStatus.SUCCEEDED)
    snapshot_file = Path(job.snapshot.file.path)
    with django_capture_on_commit_callbacks(execute=True):
        dataset_delete(dataset=dataset, actor=editor)

    with django_capture_on_commit_callbacks(execute=True):
        first = finetune_delete(job=job, actor=editor)
    assert first.snapshot is None and snapshot_file.exists()  # the second fine-tune still trained on it
    client.force_login(editor)
    page = client.get(f"/p/acme/finetunes/{second.pk}/delete").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/p/acme/finetunes/{second.pk}/delete", follow=True)

    assert "data-snapshot-goes" in page and "its dataset Math was deleted and no other fine-tune trained on it" in page
    assert response.redirect_chain[-1][0] == "/p/acme/finetunes/"
    assert "Its snapshot" in response.content.decode() and "went with it" in response.content.decode()
    assert not DatasetSnapshot.objects.exists() and not snapshot_file.exists()
    assert AuditEvent.objects.filter(action="finetune.delete").latest("id").detail["snapshot"] == job.snapshot_id


# --- deleting only the weights ----------------------------------------------------------------------


def test_deleting_only_the_weights_keeps_the_row_metrics_and_evaluation_and_says_when_and_by_whom(
    client, editor, job, django_capture_on_commit_callbacks
):
    trained(job)
    client.force_login(editor)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/p/acme/finetunes/{job.pk}/weights/delete", follow=True)
    again = client.post(f"/p/acme/finetunes/{job.pk}/weights/delete")

    page = response.content.decode()
    assert f"Deleted the weights of fine-tune {job.pk} ({filesizeformat(WEIGHTS_BYTES)} freed)" in page
    assert weights_on_disk(job) == []
    assert all((job.output_dir / name).exists() for name in OTHERS)
    job.refresh_from_db()
    assert (job.status, job.weights_deleted_by, job.evaluation["tuned"]["eval_loss"]) == ("succeeded", editor, 1.0)
    assert MetricPoint.objects.filter(job=job).count() == 3 and ExampleLoss.objects.filter(job=job).count() == 2
    when = job.weights_deleted_at.strftime("%Y-%m-%d %H:%M")
    assert f"The weights were deleted on {when} by bob." in page
    assert f"/api/v1/finetunes/{job.pk}/adapter" not in page and 'id="playground"' not in page
    assert again.status_code == 302
    event = AuditEvent.objects.get(action="finetune.weights_delete")  # once: asking again changes nothing
    assert (event.actor, event.detail["bytes"], event.detail["weights"]) == (
        editor, WEIGHTS_BYTES, ["adapter", "merged", "checkpoints", "best.safetensors"]
    )  # fmt: skip
    confirm = client.get(f"/p/acme/finetunes/{job.pk}/delete").content.decode()
    assert f"The weights were deleted on {when} by bob." in confirm and "Delete weights only</button>" not in confirm


def test_through_the_api_the_weights_then_the_fine_tune_are_deleted(
    key_client, job, django_capture_on_commit_callbacks
):
    trained(job)

    before = key_client.get(f"/api/v1/finetunes/{job.pk}/weights").json()
    with django_capture_on_commit_callbacks(execute=True):
        deleted = key_client.delete(f"/api/v1/finetunes/{job.pk}/weights")
    shown = key_client.get(f"/api/v1/finetunes/{job.pk}").json()
    adapter = key_client.get(f"/api/v1/finetunes/{job.pk}/adapter")
    merge = key_client.post(f"/api/v1/finetunes/{job.pk}/merge")
    ask = key_client.post(f"/api/v1/finetunes/{job.pk}/generate", {"prompt": "hi"}, format="json")
    with django_capture_on_commit_callbacks(execute=True):
        gone = key_client.delete(f"/api/v1/finetunes/{job.pk}")

    assert (before["bytes"], before["deleted_at"], before["deleted_by"]) == (WEIGHTS_BYTES, None, None)
    assert [w["name"] for w in before["weights"]] == ["adapter", "merged", "checkpoints", "best.safetensors"]
    assert deleted.status_code == 200 and deleted.json()["bytes"] == WEIGHTS_BYTES
    assert deleted.json()["deleted_by"].startswith("API key lt_") and deleted.json()["deleted_at"]
    assert shown["weights_deleted_at"] and shown["weights_deleted_by"].startswith("API key lt_")
    assert shown["adapter_url"] is None and shown["status"] == "succeeded"
    assert adapter.status_code == 409 and "were deleted on" in adapter.json()["detail"]
    assert merge.status_code == 409 and ask.status_code == 409 and "were deleted" in merge.json()["detail"]
    assert gone.status_code == 200
    assert gone.json() == {
        "id": job.pk, "folder": f"finetunes/{job.pk}", "bytes": sum(OTHERS.values()), "weights": [],
        "metric_points": 3, "example_losses": 2, "generations": 1, "snapshot": None,
    }  # fmt: skip
    assert key_client.get(f"/api/v1/finetunes/{job.pk}").status_code == 404 and not job.output_dir.exists()
    events = AuditEvent.objects.filter(action__in=["finetune.weights_delete", "finetune.delete"]).order_by("id")
    assert [(e.action, e.api_key is not None) for e in events] == [
        ("finetune.weights_delete", True), ("finetune.delete", True)
    ]  # fmt: skip


@pytest.mark.parametrize("state", ["queued", "running", "merging", "answering"])
def test_nothing_is_deleted_while_the_job_a_merge_or_a_playground_answer_is_under_way(
    client, key_client, editor, job, state, django_capture_on_commit_callbacks
):
    trained(job)
    if state in ("queued", "running"):
        FineTuneJob.objects.filter(pk=job.pk).update(status=state)
    elif state == "merging":
        FineTuneJob.objects.filter(pk=job.pk).update(merge_status=FineTuneStatus.RUNNING)
    else:
        Generation.objects.filter(job=job).update(status=FineTuneStatus.QUEUED)
    client.force_login(editor)

    with django_capture_on_commit_callbacks(execute=True):
        by_api = key_client.delete(f"/api/v1/finetunes/{job.pk}")
        weights_by_api = key_client.delete(f"/api/v1/finetunes/{job.pk}/weights")
        by_page = client.post(f"/p/acme/finetunes/{job.pk}/delete", follow=True).content.decode()
        weights_by_page = client.post(f"/p/acme/finetunes/{job.pk}/weights/delete", follow=True).content.decode()
    confirm = client.get(f"/p/acme/finetunes/{job.pk}/delete").content.decode()

    job.refresh_from_db()
    reason = finetune_deletion_plan(job=job).busy
    assert reason and ("cancel it first" in reason or "wait until" in reason)
    assert (by_api.status_code, weights_by_api.status_code) == (409, 409)
    assert by_api.json()["detail"] == reason == weights_by_api.json()["detail"]
    assert reason in by_page and reason in weights_by_page and reason in confirm
    assert "</button>" not in confirm.split("<main>")[1]
    assert FineTuneJob.objects.filter(pk=job.pk, weights_deleted_at__isnull=True).exists()
    assert weights_on_disk(job) == ["adapter", "merged", "checkpoints", "best.safetensors"]
    assert not AuditEvent.objects.filter(action__in=["finetune.delete", "finetune.weights_delete"]).exists()


# --- who may ----------------------------------------------------------------------------------------


def test_a_viewer_reads_what_a_deletion_would_remove_but_cannot_delete(client, client_for, viewer, job):
    trained(job)
    client.force_login(viewer)
    api = client_for(viewer)

    page = client.get(f"/p/acme/finetunes/{job.pk}/delete").content.decode()
    job_page = client.get(f"/p/acme/finetunes/{job.pk}/").content.decode()
    answers = [
        client.post(f"/p/acme/finetunes/{job.pk}/delete").status_code,
        client.post(f"/p/acme/finetunes/{job.pk}/weights/delete").status_code,
        api.delete(f"/api/v1/finetunes/{job.pk}?project=acme").status_code,
        api.delete(f"/api/v1/finetunes/{job.pk}/weights?project=acme").status_code,
    ]

    assert "needs the editor role" in page and "</button>" not in page.split("<main>")[1]
    assert f"/p/acme/finetunes/{job.pk}/delete" not in job_page
    assert answers == [403, 403, 403, 403]
    assert api.get(f"/api/v1/finetunes/{job.pk}/weights?project=acme").json()["bytes"] == WEIGHTS_BYTES
    assert weights_on_disk(job) and FineTuneJob.objects.filter(pk=job.pk, weights_deleted_at__isnull=True).exists()


def test_another_project_gets_404_for_the_deletions(client, client_for, outsider, job):
    trained(job)
    client.force_login(outsider)
    api = client_for(outsider)
    keyed = key_client_of(ProjectFactory(slug="elsewhere"))

    answers = [
        client.get(f"/p/acme/finetunes/{job.pk}/delete").status_code,
        client.get(f"/p/other/finetunes/{job.pk}/delete").status_code,
        client.post(f"/p/other/finetunes/{job.pk}/delete").status_code,
        client.post(f"/p/other/finetunes/{job.pk}/weights/delete").status_code,
        api.delete(f"/api/v1/finetunes/{job.pk}?project=other").status_code,
        api.delete(f"/api/v1/finetunes/{job.pk}/weights?project=other").status_code,
        api.get(f"/api/v1/finetunes/{job.pk}/weights?project=other").status_code,
        api.delete(f"/api/v1/finetunes/{job.pk}?project=acme").status_code,
        keyed.delete(f"/api/v1/finetunes/{job.pk}").status_code,
        keyed.delete(f"/api/v1/finetunes/{job.pk}/weights").status_code,
    ]

    assert answers == [404] * len(answers)
    assert weights_on_disk(job) and FineTuneJob.objects.filter(pk=job.pk, weights_deleted_at__isnull=True).exists()


def test_the_api_answers_what_deleting_a_dataset_removed_and_kept(key_client, dataset, job):
    trained(job)
    snapshot_create(dataset=dataset)

    response = key_client.delete(f"/api/v1/datasets/{dataset.pk}")

    assert response.status_code == 200
    assert response.json() == {
        "deleted": {"entries": 4, "snapshots": 1},
        "kept": {"finetunes": 1, "snapshots": 1},
        "summary": "Deleted 4 entries and 1 snapshot. Kept 1 fine-tune (its weights, metrics and the snapshot it "
        "trained on) and the logs.",
    }
    assert key_client.get(f"/api/v1/finetunes/{job.pk}").json()["dataset_deleted"] is True


def test_a_project_is_still_deleted_whole_with_its_fine_tunes_and_the_snapshots_they_trained_on(
    project, dataset, editor, job
):
    trained(job)
    dataset_delete(dataset=dataset, actor=editor)  # the snapshot outlives the dataset, not the project

    project.delete()

    assert not FineTuneJob.objects.exists() and not DatasetSnapshot.objects.exists()
