"""No click deletes a trained model without saying so: deleting a dataset keeps its fine-tunes, their weights and
the snapshots they trained on."""

import io
import zipfile
from pathlib import Path

import pytest
from django.utils import timezone

from curation.export import snapshot_create
from curation.models import DatasetSnapshot
from curation.services.datasets import dataset_delete
from training.models import ExampleLoss, FineTuneJob, FineTuneStatus, Generation, MetricPoint
from training.services.jobs import finetune_create

pytestmark = pytest.mark.django_db

WEIGHTS = {"adapter/adapter_model.safetensors": 3000, "adapter/adapter_config.json": 20,
           "merged/model.safetensors": 5000, "checkpoints/step-2/trainable.safetensors": 1000,
           "best.safetensors": 500}  # fmt: skip
WEIGHTS_BYTES = sum(WEIGHTS.values())
OTHERS = {"train.log": 5, "evaluation.json": 2, "events.jsonl": 10}
FOLDER_BYTES = WEIGHTS_BYTES + sum(OTHERS.values())


@pytest.fixture
def job(dataset, base_model, owner) -> FineTuneJob:
    return finetune_create(dataset=dataset, base_model=base_model, hyperparameters={"max_steps": 4}, created_by=owner)


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
    from training.services.runner import example_losses_load

    trained(job)
    (job.output_dir / "example_losses.jsonl").write_text('{"line": 1, "entry_id": 1, "loss": 0.1, "tokens": 2}\n')
    dataset_delete(dataset=dataset, actor=editor)
    job.refresh_from_db()

    assert example_losses_load(job=job) == 1
    assert ExampleLoss.objects.get(job=job).entry_id is None


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
