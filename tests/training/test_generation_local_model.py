"""A generation job whose endpoint is a local model: the small model server (training/trainer/serve.py) on the tiny
model built here, as `make run` serves its demo model. Its weights are random, so its answers are never the JSON asked
for: the job must finish, count the tokens the server reports, and keep every unreadable answer as a dropped row
with its text. A teacher's re-answers need no JSON, and wait for review."""

import os
import subprocess
import sys

import pytest

from tests.factories import DatasetEntryFactory, DatasetFactory, LogEntryFactory, ModelEndpointFactory
from training.generation import filters
from training.generation.documents import document_upload
from training.generation.services import GenerationRequest, generation_create, generation_run
from training.models import FineTuneStatus, GeneratedRow, GenerationJob, RowStatus

from .test_serve import REPO, free_port, wait_healthy
from .tiny import build_tiny_model


@pytest.fixture(scope="module")
def local_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("local-model")
    base = build_tiny_model(root / "base")
    port, log = free_port(), root / "server.log"
    command = [sys.executable, "-m", "training.trainer.serve", "--model", str(base), "--port", str(port),
               "--served-model-name", "logtune-demo"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log)
        yield f"{url}/v1"
    finally:
        process.kill()
        process.wait(timeout=30)


@pytest.fixture
def endpoint(project, local_model, settings):
    settings.LOGTUNE_ENDPOINT_HOSTS = ["127.0.0.1:*"]
    return ModelEndpointFactory(project=project, name="local", base_url=local_model, model="logtune-demo",
                                api_key_encrypted="", max_concurrency=2)  # fmt: skip


def finished(project, request: GenerationRequest) -> GenerationJob:
    job = generation_create(project=project, request=request)
    generation_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == FineTuneStatus.SUCCEEDED, job.error
    return job


def test_a_documents_job_on_a_local_model_keeps_its_unreadable_answers(project, dataset, endpoint):
    document, _ = document_upload(project=project, name="notes.md",
                                  data=b"# Notes\n\nInvoices go out on the first day of the month.")  # fmt: skip
    job = finished(project, GenerationRequest(kind="documents", endpoint_id=endpoint.pk, dataset_id=dataset.pk,
                                              document_ids=[document.pk], max_tokens=24))  # fmt: skip
    [row] = GeneratedRow.objects.filter(job=job)
    assert (row.status, row.drop_reason) == (RowStatus.DROPPED, filters.MALFORMED)
    assert row.messages[0]["role"] == "assistant" and row.provenance["raw"]
    assert job.failed_calls == 0 and 0 < job.completion_tokens <= 24 and job.prompt_tokens > 0
    assert job.manifest["model"] == "logtune-demo" and job.manifest["counts"]["dropped"] == {filters.MALFORMED: 1}


def test_a_teachers_re_answers_from_a_local_model_wait_for_review(project, endpoint):
    dataset = DatasetFactory(project=project)
    for question in ("How do refunds work?", "When are invoices sent?"):
        DatasetEntryFactory(dataset=dataset, log=LogEntryFactory(project=project, prompt=question))
    job = finished(project, GenerationRequest(kind="teacher", endpoint_id=endpoint.pk, dataset_id=dataset.pk,
                                              seed_dataset_id=dataset.pk, max_tokens=16, min_answer_chars=1,
                                              drop_personal_data=False))  # fmt: skip
    rows = list(GeneratedRow.objects.filter(job=job))
    assert len(rows) == 2 and job.completion_tokens > 0
    for row in rows:
        assert row.messages[:-1] == row.original[:-1] and row.messages[-1]["role"] == "assistant"
        assert row.status in (RowStatus.PENDING, RowStatus.DROPPED), row.status
        if row.status == RowStatus.DROPPED:  # random weights may write an empty answer or stray data
            assert row.drop_reason in (filters.EMPTY, filters.REFUSAL, filters.PREFLIGHT), row.drop_detail
