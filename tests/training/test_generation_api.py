"""The generation API: documents, jobs and the review of their rows, with the roles and the 400s naming fields."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from curation.models import AuditEvent, DatasetEntry
from tests.chat_stand_in import start_chat_stand_in
from tests.factories import ModelEndpointFactory
from tests.generation_stand_in import generator_answer
from training.generation.services import generation_run
from training.models import GeneratedRow, GenerationJob, RowStatus, SourceDocument

GUIDE = b"""# Support guide

## Refunds

Refunds are paid back to the original card within five working days of approval. A refund above 500 euros needs
a second approval from the finance lead before it is paid. Partial refunds are allowed for annual plans only.
"""


@pytest.fixture
def writer(project, settings):
    settings.LOGTUNE_ENDPOINT_HOSTS = ["127.0.0.1:*"]
    server = start_chat_stand_in(answer=generator_answer)
    yield ModelEndpointFactory(project=project, name="writer", base_url=server.url, model="gen", api_key_encrypted="")
    server.close()


def upload(client, name: str, data: bytes, query: str = ""):
    return client.post(f"/api/v1/documents{query}", {"file": SimpleUploadedFile(name, data)}, format="multipart")


def test_a_document_is_uploaded_once_read_and_audited(key_client, project):
    first = upload(key_client, "guide.md", GUIDE)
    again = upload(key_client, "copy.md", GUIDE)
    assert (first.status_code, again.status_code) == (201, 200), first.content
    assert again.json()["id"] == first.json()["id"] and first.json()["kind"] == "markdown"
    detail = key_client.get(f"/api/v1/documents/{first.json()['id']}").json()
    assert detail["chunk_list"][0]["heading_path"][0] == "Support guide" and detail["chunks"] == 1
    assert AuditEvent.objects.filter(action="documents.upload").count() == 1
    listed = key_client.get("/api/v1/documents").json()["results"]
    assert [d["name"] for d in listed] == ["guide.md"]


def test_an_unreadable_document_is_kept_with_its_reason_and_an_empty_one_refused(key_client):
    broken = upload(key_client, "report.pdf", b"%PDF-1.7 this is not really a PDF")
    assert broken.status_code == 201 and broken.json()["error"] and broken.json()["chunks"] == 0
    assert SourceDocument.objects.get(pk=broken.json()["id"]).file.read().startswith(b"%PDF-1.7")  # byte for byte
    empty = upload(key_client, "empty.md", b"")
    assert empty.status_code == 400 and "file" in empty.json()


def test_viewers_read_and_editors_write(client_for, project, viewer, editor):
    as_viewer, as_editor, here = client_for(viewer), client_for(editor), f"?project={project.slug}"
    assert upload(as_viewer, "guide.md", GUIDE, here).status_code == 403
    made = upload(as_editor, "guide.md", GUIDE, here)
    assert made.status_code == 201
    assert as_viewer.get(f"/api/v1/documents/{made.json()['id']}{here}").status_code == 200
    assert as_viewer.delete(f"/api/v1/documents/{made.json()['id']}{here}").status_code == 403
    assert as_editor.delete(f"/api/v1/documents/{made.json()['id']}{here}").status_code == 204
    assert not SourceDocument.objects.exists()


def test_a_job_is_estimated_started_read_and_reviewed_through_the_api(key_client, project, dataset, writer):
    document = upload(key_client, "guide.md", GUIDE).json()
    body = {"kind": "documents", "endpoint_id": writer.pk, "dataset_id": dataset.pk, "document_ids": [document["id"]],
            "rows_per_call": 3, "min_answer_chars": 10}  # fmt: skip
    estimate = key_client.post("/api/v1/generation-jobs/estimate", body, format="json")
    assert estimate.status_code == 200 and estimate.json()["calls"] == 1 and estimate.json()["capped"] is False
    assert not GenerationJob.objects.exists()
    started = key_client.post("/api/v1/generation-jobs", body, format="json")
    assert started.status_code == 202, started.content
    generation_run(job_id=started.json()["id"])
    job = key_client.get(f"/api/v1/generation-jobs/{started.json()['id']}").json()
    assert job["status"] == "succeeded" and job["manifest"]["counts"]["generated"] == 3
    pending = key_client.get(f"/api/v1/generation-jobs/{job['id']}/rows", {"status": "pending"}).json()["results"]
    assert len(pending) == 3 and pending[0]["provenance"]["document"]["name"] == "guide.md"
    edited = [{"role": "user", "content": "How long do refunds take?"},
              {"role": "assistant", "content": "Five working days after approval."}]  # fmt: skip
    assert key_client.patch(f"/api/v1/generation-rows/{pending[0]['id']}", {"messages": edited},
                            format="json").json()["edited"]  # fmt: skip
    accepted = key_client.post(f"/api/v1/generation-rows/{pending[0]['id']}/accept", {}, format="json").json()
    assert accepted["status"] == "accepted" and DatasetEntry.objects.get(pk=accepted["entry"]).messages == edited
    assert key_client.post(f"/api/v1/generation-rows/{pending[1]['id']}/reject").json()["status"] == "rejected"
    wrong = key_client.post(f"/api/v1/generation-jobs/{job['id']}/accept", {"expected": 5}, format="json")
    assert wrong.status_code == 400 and "1 rows match now" in wrong.json()["expected"][0]
    right = key_client.post(f"/api/v1/generation-jobs/{job['id']}/accept", {"expected": 1}, format="json")
    assert right.json() == {"accepted": 1}
    assert DatasetEntry.objects.filter(dataset=dataset, synthetic=True).count() == 2
    cancelled = key_client.post(f"/api/v1/generation-jobs/{job['id']}/cancel")
    assert cancelled.status_code == 400 and "succeeded" in cancelled.json()["status"]


def test_bad_jobs_are_refused_naming_the_field_and_nothing_starts(key_client, dataset, writer):
    body = {"kind": "documents", "endpoint_id": writer.pk, "dataset_id": dataset.pk, "document_ids": []}
    answer = key_client.post("/api/v1/generation-jobs", body, format="json")
    assert answer.status_code == 400 and "document_ids" in answer.json()
    answer = key_client.post("/api/v1/generation-jobs", body | {"rows_per_call": 0}, format="json")
    assert answer.status_code == 400 and "rows_per_call" in answer.json()
    answer = key_client.post("/api/v1/generation-jobs", body | {"surprise": 1}, format="json")
    assert answer.status_code == 400
    assert not GenerationJob.objects.exists()


def test_rows_are_listed_by_reason_and_another_projects_are_not_found(key_client, project, dataset, writer):
    job = GenerationJob.objects.create(project=project, dataset=dataset, kind="documents", endpoint=writer)
    GeneratedRow.objects.create(job=job, status=RowStatus.DROPPED, drop_reason="refusal", messages=[])
    GeneratedRow.objects.create(job=job, status=RowStatus.DROPPED, drop_reason="judge", messages=[])
    found = key_client.get(f"/api/v1/generation-jobs/{job.pk}/rows", {"reason": "judge"}).json()["results"]
    assert [row["drop_reason"] for row in found] == ["judge"]
    assert key_client.get(f"/api/v1/generation-jobs/{job.pk}/rows", {"reason": "bogus"}).status_code == 400
    assert key_client.get(f"/api/v1/generation-jobs/{job.pk}").json()["drop_reasons"] == {"judge": 1, "refusal": 1}
    assert key_client.get(f"/api/v1/generation-jobs/{job.pk + 1}").status_code == 404
