"""No answer says where the server keeps its files: fine-tunes, snapshots and imports name their files relative to
the data folder (`finetunes/7/adapter`), in the API and on the pages, whatever the trainer or an error wrote.

The trainer reports absolute paths (its `checkpoint` and `done` events), errors quote the file they failed on, and
a base model built by `create_demo_model` lives in the var folder: none of it may reach a member."""

from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile

from curation.datasets.export.snapshots import snapshot_build, snapshot_request
from curation.logs.imports.run import import_job_run
from curation.logs.imports.services import import_job_create
from curation.models import DatasetSnapshot, ImportJob, JobStatus
from training.finetunes.runner import finetune_run
from training.finetunes.services import finetune_create
from training.models import BaseModel, FineTuneStatus
from training.playground import services as playground
from training.playground.services import finetune_merge, finetune_merge_request

pytestmark = pytest.mark.django_db


def server_roots() -> list[str]:
    roots = {django_settings.MEDIA_ROOT, django_settings.VAR_DIR}
    return sorted({str(Path(root)) for root in roots} | {str(Path(root).resolve()) for root in roots})


def leaks(answers: dict[str, str]) -> list[str]:
    return [f"{name} shows {root}" for name, body in answers.items() for root in server_roots() if root in body]


def bodies(client, urls: list[str]) -> dict[str, str]:
    answers = {}
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        answers[url] = response.content.decode()
    return answers


@pytest.fixture
def demo_model(db) -> BaseModel:
    """A base model in the var folder, as `manage.py create_demo_model` registers it."""
    return BaseModel.objects.create(name="demo", path=str(django_settings.VAR_DIR / "models" / "demo"))


def test_a_fine_tune_names_its_files_relative_to_the_data_folder(
    client, key_client, owner, dataset, demo_model, fake_trainer, monkeypatch
):
    job = finetune_create(dataset=dataset, base_model=demo_model, hyperparameters={"max_steps": 3})
    finetune_run(job_id=job.pk, worker="gpu@test")  # its `done` event holds the adapter's absolute path
    job.refresh_from_db()
    assert job.status == FineTuneStatus.SUCCEEDED, job.error
    with job.log_path.open("a") as log:
        log.write(f"Model weights saved in {job.adapter_dir}/adapter_model.safetensors\n")

    def no_room(**call: object) -> None:
        raise OSError(28, "No space left on device", str(job.merged_dir / "model.safetensors"))

    monkeypatch.setattr(playground, "call_in_child", no_room)
    finetune_merge_request(job=job)
    with pytest.raises(OSError):
        finetune_merge(job_id=job.pk)
    client.force_login(owner)

    api = [f"/api/v1/finetunes/{job.pk}", "/api/v1/finetunes", f"/api/v1/finetunes/{job.pk}/weights"]
    answers = bodies(key_client, api)
    answers |= bodies(client, [f"/p/acme/finetunes/{job.pk}/", f"/p/acme/finetunes/{job.pk}/status",
                               f"/p/acme/finetunes/{job.pk}/delete", f"/p/acme/datasets/{dataset.pk}/"])  # fmt: skip
    deleted = key_client.delete(f"/api/v1/finetunes/{job.pk}")
    answers["DELETE"] = deleted.content.decode()

    assert deleted.status_code == 200
    assert leaks(answers) == []
    detail = answers[f"/api/v1/finetunes/{job.pk}"]
    assert f'"adapter_dir":"finetunes/{job.pk}/adapter"' in detail
    assert f"finetunes/{job.pk}/merged/model.safetensors" in detail and '"model":"models/demo"' in detail
    assert f'"folder":"finetunes/{job.pk}"' in answers["DELETE"]
    assert f"finetunes/{job.pk}/adapter/adapter_model.safetensors" in answers[f"/p/acme/finetunes/{job.pk}/status"]


def test_a_trainer_crash_quotes_its_log_without_server_paths(dataset, base_model, fake_trainer):
    job = finetune_create(dataset=dataset, base_model=base_model,
                          hyperparameters={"max_steps": 3, "extra": {"fake": "crash"}})  # fmt: skip

    finetune_run(job_id=job.pk, worker="gpu@test")

    job.refresh_from_db()
    assert job.status == FineTuneStatus.FAILED
    assert f"finetunes/{job.pk}/checkpoints/step-1" in job.error
    assert leaks({"error": job.error}) == []


def test_a_snapshot_that_could_not_be_written_says_why_without_server_paths(key_client, dataset, monkeypatch):
    snapshot = snapshot_request(dataset=dataset)
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(status=JobStatus.QUEUED, file="")
    target = Path(django_settings.MEDIA_ROOT) / "snapshots" / "x.jsonl"

    def no_room(*args: object) -> None:
        raise OSError(28, "No space left on device", str(target))

    monkeypatch.setattr("curation.datasets.export.snapshots._write", no_room)
    with pytest.raises(OSError):
        snapshot_build(snapshot_id=snapshot.pk)

    answer = key_client.get(f"/api/v1/snapshots/{snapshot.pk}").content.decode()
    assert "snapshots/x.jsonl" in answer and leaks({"snapshot": answer}) == []


def test_an_import_whose_file_is_gone_says_which_without_server_paths(key_client, project):
    upload = SimpleUploadedFile("logs.jsonl", b'{"messages": [{"role": "user", "content": "hi"}]}\n')
    job = import_job_create(project=project, file=upload, source_name="logs.jsonl")
    Path(job.file.path).unlink()  # a worker that does not share the media folder

    with pytest.raises(FileNotFoundError):
        import_job_run(job_id=job.pk)

    assert ImportJob.objects.get(pk=job.pk).status == JobStatus.FAILED
    answer = key_client.get(f"/api/v1/imports/{job.pk}").content.decode()
    assert f"{job.file.name}" in answer and leaks({"import": answer}) == []
