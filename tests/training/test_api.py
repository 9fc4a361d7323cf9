"""The fine-tune API: who may do what, the answers' shape, and errors that name the field."""

import io
import json
import subprocess
import sys
import zipfile

import pytest
from django.conf import settings as django_settings

from curation.models import AuditEvent, DatasetEntry, Role
from tests.factories import DatasetFactory, ProjectFactory, UserFactory
from training.finetunes.runner import finetune_claim
from training.models import ExampleLoss, FineTuneJob, FineTuneStatus, Generation, MetricPoint

pytestmark = pytest.mark.django_db


def succeed(job: FineTuneJob) -> FineTuneJob:
    job.adapter_dir.mkdir(parents=True)
    (job.adapter_dir / "adapter_config.json").write_text('{"r": 16}')
    (job.adapter_dir / "adapter_model.safetensors").write_bytes(bytes(3000))
    evaluation = {"base": {"eval_loss": 2.0}, "tuned": {"eval_loss": 1.0}}
    FineTuneJob.objects.filter(pk=job.pk).update(status=FineTuneStatus.SUCCEEDED, evaluation=evaluation)
    job.refresh_from_db()
    return job


# --- submitting -------------------------------------------------------------------------------------


def test_an_editor_starts_a_fine_tune_and_reads_it_back(client_for, editor, dataset, base_model):
    client = client_for(editor)
    body = {"dataset": dataset.pk, "base_model": "tiny", "method": "lora",
            "hyperparameters": {"epochs": 2, "lora_rank": 8}}  # fmt: skip

    created = client.post("/api/v1/finetunes?project=acme", body, format="json")

    assert created.status_code == 201, created.content
    job = created.json()
    assert (job["status"], job["base_model"], job["model"], job["method"]) == (
        "queued",
        "tiny",
        "/models/tiny",
        "lora",
    )
    assert job["hyperparameters"]["lora_alpha"] == 16 and job["snapshot"] is not None
    assert job["adapter_url"] is None
    detail = client.get(f"/api/v1/finetunes/{job['id']}?project=acme").json()
    assert (detail["id"], detail["progress"], detail["evaluation"]) == (job["id"], 0.0, {})
    listing = client.get(f"/api/v1/finetunes?project=acme&dataset={dataset.pk}").json()["results"]
    assert [row["id"] for row in listing] == [job["id"]] and "evaluation" not in listing[0]
    assert AuditEvent.objects.get(action="finetune.start").actor == editor


def test_an_api_key_acts_as_an_editor(key_client, dataset, base_model):
    created = key_client.post("/api/v1/finetunes", {"dataset": dataset.pk, "base_model": "tiny"}, format="json")

    assert created.status_code == 201, created.content
    assert AuditEvent.objects.get(action="finetune.start").api_key is not None


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"dataset": None, "base_model": "tiny"}, {"dataset": ["This field may not be null."]}),
        ({"dataset": 0, "base_model": "tiny"}, {"dataset": ["Ensure this value is greater than or equal to 1."]}),
        ({"dataset": 10**15, "base_model": "tiny"}, {"dataset": [f"Dataset {10**15} not found in project 'acme'."]}),
        ({"dataset": "5", "base_model": "tiny"}, {"dataset": ["Must be an integer."]}),
        ({"base_model": "gpt-5"}, "base_model"),
        ({"base_model": "tiny", "method": "dpo"}, {"method": ['"dpo" is not a valid choice.']}),
        ({"base_model": "tiny", "hyperparameters": {"learning_rate": 3}},
         {"hyperparameters": {"learning_rate": ["must be in (0, 1)"]}}),
        ({"base_model": "tiny", "hyperparameters": {"lora_rank": 0, "warmup_ratio": "a lot"}},
         {"hyperparameters": {"warmup_ratio": ["must be a number"]}}),
        ({"base_model": "tiny", "hyperparameters": {"data_path": "/etc/shadow"}},
         {"hyperparameters": {"data_path": ["set by Logtune for every job"]}}),
        ({"base_model": "tiny", "hyperparameters": [1]},
         {"hyperparameters": ["Must be an object."]}),
        ({"base_model": "tiny", "snapshot": 999}, {"snapshot": ["Snapshot 999 not found."]}),
    ],
)  # fmt: skip
def test_a_bad_request_is_a_400_naming_the_field(key_client, dataset, base_model, body, errors):
    response = key_client.post("/api/v1/finetunes", {"dataset": dataset.pk, **body}, format="json")

    assert response.status_code == 400
    if isinstance(errors, str):
        assert list(response.json()) == [errors]
    else:
        assert response.json() == errors
    assert not FineTuneJob.objects.exists()


def test_qlora_without_cuda_workers_is_refused_with_the_reason(key_client, dataset, base_model, settings):
    settings.LOGTUNE_GPU_CUDA = False

    response = key_client.post("/api/v1/finetunes", {"dataset": dataset.pk, "base_model": "tiny", "method": "qlora"},
                               format="json")  # fmt: skip

    assert response.status_code == 400
    assert "needs GPU workers with CUDA" in response.json()["method"][0]


def test_a_dpo_fine_tune_from_a_dataset_is_refused_until_datasets_hold_pairs(key_client, dataset, base_model):
    body = {"dataset": dataset.pk, "base_model": "tiny", "hyperparameters": {"objective": "dpo", "dpo_beta": 0.2}}

    response = key_client.post("/api/v1/finetunes", body, format="json")

    assert response.status_code == 400 and "preference pairs" in response.json()["hyperparameters"]["objective"][0]
    assert not FineTuneJob.objects.exists()


def test_the_estimate_answers_examples_tokens_and_steps(client_for, viewer, dataset):
    body = {"dataset": dataset.pk, "hyperparameters": {"batch_size": 3, "gradient_accumulation": 1, "epochs": 1}}

    response = client_for(viewer).post("/api/v1/finetunes/estimate?project=acme", body, format="json")
    bad_body = {"dataset": dataset.pk, "hyperparameters": {"epochs": -1}}
    bad = client_for(viewer).post("/api/v1/finetunes/estimate?project=acme", bad_body, format="json")

    assert response.status_code == 200, response.content
    assert (response.json()["examples"], response.json()["tokens"], response.json()["steps"]) == (3, 60, 1)
    assert bad.status_code == 400 and bad.json() == {"hyperparameters": {"epochs": ["must be positive"]}}


def test_a_fine_tune_of_too_few_train_entries_is_a_400_and_the_estimate_says_so(
    key_client, client_for, viewer, dataset, base_model, settings
):
    settings.LOGTUNE_FINETUNE_MIN_TRAIN_ENTRIES = 10
    base_model.default_hyperparameters = {"epochs": 10}
    base_model.save()

    refused = key_client.post("/api/v1/finetunes", {"dataset": dataset.pk, "base_model": "tiny"}, format="json")
    body = {"dataset": dataset.pk, "base_model": "tiny"}
    estimate = client_for(viewer).post("/api/v1/finetunes/estimate?project=acme", body, format="json").json()

    assert refused.status_code == 400
    assert "a fine-tune needs at least 10" in refused.json()["dataset"][0]
    assert (estimate["can_start"], estimate["minimum_examples"], estimate["steps"]) == (False, 10, 10)
    assert estimate["warning"].startswith("Fewer than 200 train entries")


# --- who may do what --------------------------------------------------------------------------------


def test_a_viewer_reads_fine_tunes_but_cannot_start_cancel_merge_or_ask(client_for, viewer, job):
    client = client_for(viewer)

    assert client.get(f"/api/v1/finetunes/{job.pk}?project=acme").status_code == 200
    assert client.get(f"/api/v1/finetunes/{job.pk}/metrics?project=acme").status_code == 200
    started = client.post("/api/v1/finetunes?project=acme", {"dataset": job.dataset_id, "base_model": "tiny"},
                          format="json")  # fmt: skip
    cancelled = client.post(f"/api/v1/finetunes/{job.pk}/cancel?project=acme")
    merged = client.post(f"/api/v1/finetunes/{job.pk}/merge?project=acme")
    asked = client.post(f"/api/v1/finetunes/{job.pk}/generate?project=acme", {"prompt": "hi"}, format="json")

    assert [r.status_code for r in (started, cancelled, merged, asked)] == [403, 403, 403, 403]
    job.refresh_from_db()
    assert job.status == FineTuneStatus.QUEUED and FineTuneJob.objects.count() == 1


def test_an_outsider_gets_404_for_the_project_and_for_its_jobs(client_for, outsider, job):
    client = client_for(outsider)

    through_project = client.get(f"/api/v1/finetunes/{job.pk}?project=acme")
    through_own = client.get(f"/api/v1/finetunes/{job.pk}?project=other")
    cancel = client.post(f"/api/v1/finetunes/{job.pk}/cancel?project=other")
    adapter = client.get(f"/api/v1/finetunes/{job.pk}/adapter?project=other")
    start = client.post("/api/v1/finetunes?project=other", {"dataset": job.dataset_id, "base_model": "tiny"},
                        format="json")  # fmt: skip

    assert [r.status_code for r in (through_project, through_own, cancel, adapter)] == [404, 404, 404, 404]
    assert start.status_code == 400 and "dataset" in start.json()  # the dataset is not one of theirs
    assert client.get("/api/v1/finetunes?project=other").json() == {"results": [], "next_cursor": None}
    assert FineTuneJob.objects.get(pk=job.pk).status == FineTuneStatus.QUEUED


def test_a_key_of_another_project_cannot_see_the_job(job, client_for):
    from rest_framework.test import APIClient

    from curation.projects.services import api_key_create

    other = ProjectFactory(slug="elsewhere")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(project=other, name='k')[1]}")

    assert client.get(f"/api/v1/finetunes/{job.pk}").status_code == 404


# --- watching, cancelling, artifacts ----------------------------------------------------------------


def test_metrics_come_after_a_step_and_re_read_the_last_one(key_client, job):
    finetune_claim(job_id=job.pk, worker="gpu@a")
    MetricPoint.objects.bulk_create([
        MetricPoint(job=job, step=0, eval_loss=2.0, time=job.created_at),
        MetricPoint(job=job, step=1, train_loss=1.9, learning_rate=1e-4, time=job.created_at),
        MetricPoint(job=job, step=2, train_loss=1.5, learning_rate=2e-4, tokens_per_second=99.0, time=job.created_at),
    ])  # fmt: skip

    first = key_client.get(f"/api/v1/finetunes/{job.pk}/metrics").json()
    later = key_client.get(f"/api/v1/finetunes/{job.pk}/metrics?after={first['next_after']}").json()
    bad = key_client.get(f"/api/v1/finetunes/{job.pk}/metrics?after=x")

    assert [p["step"] for p in first["points"]] == [0, 1, 2]
    assert (first["status"], first["attempt"], first["next_after"]) == ("running", 1, 1)
    assert later["points"] == [first["points"][-1]] and later["points"][0]["tokens_per_second"] == 99.0
    assert bad.status_code == 400 and "after" in bad.json()


def test_cancelling_a_queued_job_through_the_api(key_client, job):
    response = key_client.post(f"/api/v1/finetunes/{job.pk}/cancel")
    again = key_client.post(f"/api/v1/finetunes/{job.pk}/cancel")

    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert again.status_code == 200
    FineTuneJob.objects.filter(pk=job.pk).update(status=FineTuneStatus.SUCCEEDED)
    finished = key_client.post(f"/api/v1/finetunes/{job.pk}/cancel")
    assert finished.status_code == 409 and finished.json() == {
        "detail": "This fine-tune has already succeeded; there is nothing to cancel.",
        "status": "succeeded",
    }


def test_the_adapter_downloads_as_a_streamed_zip_once_the_job_succeeded(key_client, job):
    early = key_client.get(f"/api/v1/finetunes/{job.pk}/adapter")
    succeed(job)

    response = key_client.get(f"/api/v1/finetunes/{job.pk}/adapter")

    assert early.status_code == 409
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == f'attachment; filename="finetune-{job.pk}-adapter.zip"'
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    root = f"finetune-{job.pk}-adapter"
    assert sorted(archive.namelist()) == [f"{root}/adapter_config.json", f"{root}/adapter_model.safetensors"]
    assert archive.read(f"{root}/adapter_config.json") == b'{"r": 16}'
    assert archive.getinfo(f"{root}/adapter_model.safetensors").compress_type == zipfile.ZIP_STORED
    assert AuditEvent.objects.filter(action="finetune.download").count() == 1


def test_a_merge_is_queued_once_and_only_for_an_adapter(key_client, job, django_capture_on_commit_callbacks):
    too_early = key_client.post(f"/api/v1/finetunes/{job.pk}/merge")
    succeed(job)

    with django_capture_on_commit_callbacks() as queued:
        first = key_client.post(f"/api/v1/finetunes/{job.pk}/merge")
        second = key_client.post(f"/api/v1/finetunes/{job.pk}/merge")
    FineTuneJob.objects.filter(pk=job.pk).update(method="full", merge_status="")
    full = key_client.post(f"/api/v1/finetunes/{job.pk}/merge")

    assert too_early.status_code == 409 and too_early.json()["status"] == "queued"
    assert (first.status_code, first.json()["merge_status"], second.status_code) == (202, "queued", 202)
    assert len(queued) == 1
    assert full.status_code == 409 and "nothing to merge" in full.json()["detail"]
    assert key_client.get(f"/api/v1/finetunes/{job.pk}/merged").status_code == 409


def test_the_playground_queues_a_generation_to_poll(key_client, job, django_capture_on_commit_callbacks):
    refused = key_client.post(f"/api/v1/finetunes/{job.pk}/generate", {"prompt": "2+2?"}, format="json")
    succeed(job)

    with django_capture_on_commit_callbacks() as queued:
        asked = key_client.post(f"/api/v1/finetunes/{job.pk}/generate", {"prompt": "2+2?", "max_new_tokens": 8},
                                format="json")  # fmt: skip
    bad = key_client.post(f"/api/v1/finetunes/{job.pk}/generate",
                          {"messages": [{"role": "assistant", "content": "4"}]}, format="json")  # fmt: skip
    both = key_client.post(f"/api/v1/finetunes/{job.pk}/generate", {"prompt": "a", "messages": []}, format="json")

    assert refused.status_code == 409 and refused.json()["status"] == "queued"
    assert asked.status_code == 202, asked.content
    generation = asked.json()
    assert (generation["status"], generation["messages"]) == ("queued", [{"role": "user", "content": "2+2?"}])
    assert len(queued) == 1
    polled = key_client.get(f"/api/v1/finetunes/{job.pk}/generations/{generation['id']}").json()
    assert polled["id"] == generation["id"] and Generation.objects.get().max_new_tokens == 8
    assert bad.status_code == 400 and "end with a user turn" in bad.json()["messages"][0]
    assert both.status_code == 400 and "messages" in both.json()


def test_per_example_losses_come_highest_first(key_client, job, dataset):
    entries = list(DatasetEntry.objects.filter(dataset=dataset, split="train").order_by("id"))
    ExampleLoss.objects.bulk_create(
        [ExampleLoss(job=job, entry=entry, line=i + 1, loss=loss, tokens=3) for i, (entry, loss) in
         enumerate(zip(entries, [0.5, 4.0, 1.5], strict=True))]
    )  # fmt: skip

    losses = key_client.get(f"/api/v1/finetunes/{job.pk}/losses?limit=2").json()

    assert [(row["entry"], row["loss"]) for row in losses] == [(entries[1].pk, 4.0), (entries[2].pk, 1.5)]


def test_base_models_on_offer_are_listed(key_client, base_model, settings):
    settings.LOGTUNE_BASE_MODELS = ["org/model-1b"]
    base_model.default_hyperparameters = {"learning_rate": 0.01}
    base_model.save()

    listing = key_client.get("/api/v1/base-models").json()

    assert listing == [
        {"name": "tiny", "description": "for tests", "registered": True,
         "default_hyperparameters": {"learning_rate": 0.01}},
        {"name": "org/model-1b", "description": "", "registered": False, "default_hyperparameters": {}},
    ]  # fmt: skip


def test_the_schema_describes_the_fine_tune_endpoints(client_for, owner):
    response = client_for(owner).get("/api/v1/schema?format=json")

    paths = json.loads(response.content)["paths"]
    for path in ("finetunes", "finetunes/{job_id}/metrics", "finetunes/{job_id}/cancel", "finetunes/{job_id}/adapter",
                 "finetunes/estimate", "base-models"):  # fmt: skip
        assert f"/api/v1/{path}" in paths


def test_the_web_process_never_imports_torch_nor_the_evaluation_and_endpoint_libraries():
    # Each module a process holds is more for every garbage collection to walk: loading scipy, jsonschema, the
    # openai SDK and cryptography in every web process made logs come in 7% slower (docs/benchmarks.md).
    code = (
        "import os, sys, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.test_settings'; django.setup()\n"
        "from django.urls import resolve; import config.urls, training.views\n"
        "import training.finetunes.apis, training.playground.apis\n"
        "import training.finetunes.services, training.finetunes.runner, training.finetunes.tasks, training.forms\n"
        "import training.playground.services, training.playground.tasks\n"
        "import training.endpoints.views, training.endpoints.apis, training.evaluation.views\n"
        "import training.evaluation.apis, training.evaluation.services\n"
        "resolve('/api/v1/finetunes'); resolve('/p/acme/finetunes/1/')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'peft', 'accelerate',\n"
        "      'scipy', 'sklearn', 'jsonschema', 'openai', 'cryptography', 'sacrebleu', 'rouge_score'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=django_settings.BASE_DIR,
                            timeout=120)  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_a_teammate_with_the_editor_role_sees_the_jobs_of_the_project(client_for, project, job):
    teammate = UserFactory(username="dave", memberships=[(project, Role.EDITOR)])
    other = DatasetFactory(project=project)

    response = client_for(teammate).get(f"/api/v1/finetunes?project=acme&dataset={other.pk}")

    assert response.json()["results"] == []
    assert len(client_for(teammate).get("/api/v1/finetunes?project=acme").json()["results"]) == 1
