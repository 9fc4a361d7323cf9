"""Near-duplicates on a dataset: entries embedded by a worker in committed batches (resumable, stale
after an edit), clusters at a threshold the user sets, keep one per cluster, from the page and the API.
The real bundled model is used; it is loaded once per test process (`get_embedder`)."""

import numpy as np
import pytest

from curation.models import AuditEvent, Dataset, DatasetEntry, EmbeddingJob, EntryEmbedding, JobStatus
from curation.services import embeddings as services
from curation.services.datasets import dataset_create, dataset_entries_ingest, entry_update
from curation.services.embeddings import (
    dataset_embed,
    dataset_keep_one_per_cluster,
    dataset_near_duplicates,
    embedding_job_create,
    vector_from_bytes,
)
from tests.waiting import wait_until_finished

ANSWER = "Open Settings, then Security, and choose Reset password."
CHATS = [
    ("How do I reset my password?", ANSWER),
    ("How do I reset my password??", ANSWER),
    ("The weather in Paris is sunny today. What should I wear?", "A light jacket and sunglasses."),
    ("How do I reset my password? Thanks!", ANSWER),
    ("Write a SQL query for the top 10 customers by revenue last month.", "SELECT customer_id FROM orders;"),
]


def chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def make_dataset(project, chats=CHATS, name: str = "support") -> Dataset:
    dataset = dataset_create(project=project, name=name)
    result = dataset_entries_ingest(dataset=dataset, items=[chat(*pair) for pair in chats])
    assert result.accepted == len(chats)
    return dataset


def entry_ids(dataset: Dataset) -> list[int]:
    return list(dataset.entries.order_by("id").values_list("id", flat=True))


def embedded(dataset: Dataset) -> EmbeddingJob:
    job = embedding_job_create(dataset=dataset)
    return dataset_embed(job_id=job.pk)


# --- storage and the job ----------------------------------------------------------------------------


def test_a_job_embeds_every_entry_as_unit_float32_vectors_with_progress(project):
    dataset = make_dataset(project)
    job = embedding_job_create(dataset=dataset)
    seen: list[tuple[int, int]] = []

    job = dataset_embed(job_id=job.pk, on_progress=lambda job: seen.append((job.done, job.total)))

    assert (job.status, job.total, job.done, job.embedded, job.progress) == (JobStatus.SUCCEEDED, 5, 5, 5, 1.0)
    assert seen == [(5, 5)]
    rows = EntryEmbedding.objects.filter(entry__dataset=dataset)
    assert rows.count() == 5
    vectors = np.vstack([vector_from_bytes(row.vector) for row in rows])
    assert vectors.dtype == np.float32 and vectors.shape == (5, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_batches_are_committed_one_by_one_and_a_rerun_embeds_only_what_is_left(project, monkeypatch):
    dataset = make_dataset(project)
    monkeypatch.setattr(services, "BATCH", 2)
    job = embedding_job_create(dataset=dataset)

    def crash_after_first_batch(job: EmbeddingJob) -> None:
        raise RuntimeError("worker killed")

    with pytest.raises(RuntimeError):
        dataset_embed(job_id=job.pk, on_progress=crash_after_first_batch)

    job.refresh_from_db()
    assert (job.status, job.done, job.embedded) == (JobStatus.FAILED, 2, 2)
    assert "worker killed" in job.error
    assert EntryEmbedding.objects.filter(entry__dataset=dataset).count() == 2

    again = dataset_embed(job_id=embedding_job_create(dataset=dataset).pk)

    assert (again.status, again.done, again.embedded) == (JobStatus.SUCCEEDED, 5, 3)
    assert EntryEmbedding.objects.filter(entry__dataset=dataset).count() == 5


def test_an_edited_entry_is_stale_until_it_is_embedded_again(project):
    dataset = make_dataset(project)
    embedded(dataset)
    entry = dataset.entries.order_by("id")[2]
    before = bytes(entry.embedding.vector)

    entry_update(entry=entry, messages=chat("How do I reset my password, please?", ANSWER)["messages"])

    assert dataset_near_duplicates(dataset=dataset, threshold=0.95).embedded == 4
    job = embedded(dataset)
    assert job.embedded == 1
    entry.embedding.refresh_from_db()
    assert bytes(entry.embedding.vector) != before
    assert dataset_near_duplicates(dataset=dataset, threshold=0.95).embedded == 5


def test_a_second_request_while_a_job_is_queued_returns_the_same_job(project):
    dataset = make_dataset(project)
    first = embedding_job_create(dataset=dataset)

    assert embedding_job_create(dataset=dataset).pk == first.pk
    dataset_embed(job_id=first.pk)
    assert embedding_job_create(dataset=dataset).pk != first.pk


def test_a_real_worker_runs_the_job(celery_worker, project):
    dataset = make_dataset(project)

    job = wait_until_finished(embedding_job_create(dataset=dataset), seconds=60)

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert EntryEmbedding.objects.filter(entry__dataset=dataset).count() == 5


# --- clusters and keep one --------------------------------------------------------------------------


def test_copies_with_small_edits_are_one_cluster_oldest_first(project):
    dataset = make_dataset(project)
    embedded(dataset)
    ids = entry_ids(dataset)

    found = dataset_near_duplicates(dataset=dataset, threshold=0.95)

    assert [[entry.id for entry in cluster] for cluster in found.clusters] == [[ids[0], ids[1], ids[3]]]
    assert found.clusters[0][0].first_user_turn == "How do I reset my password?"
    assert (found.entries, found.embedded, found.missing, found.duplicates) == (5, 5, 0, 2)


def test_keep_one_deletes_all_but_the_oldest_of_each_cluster_and_is_audited(project, owner):
    dataset = make_dataset(project)
    embedded(dataset)
    ids = entry_ids(dataset)

    _, planned = dataset_keep_one_per_cluster(dataset=dataset, threshold=0.95, dry_run=True)
    assert planned == [ids[1], ids[3]] and dataset.entries.count() == 5

    _, dropped = dataset_keep_one_per_cluster(dataset=dataset, threshold=0.95, actor=owner)

    assert dropped == [ids[1], ids[3]]
    assert entry_ids(dataset) == [ids[0], ids[2], ids[4]]
    event = AuditEvent.objects.get(action="entries.delete")
    assert (event.count, event.actor) == (2, owner)
    assert dataset_keep_one_per_cluster(dataset=dataset, threshold=0.95)[1] == []
    assert not EntryEmbedding.objects.filter(entry_id__in=dropped).exists()


def test_entries_not_yet_embedded_are_left_out_of_clusters(project):
    dataset = make_dataset(project)
    embedded(dataset)
    dataset_entries_ingest(dataset=dataset, items=[chat("how do I reset my password?", ANSWER)])

    found = dataset_near_duplicates(dataset=dataset, threshold=0.95)

    assert (found.entries, found.embedded, found.missing) == (6, 5, 1)
    assert len(found.clusters[0]) == 3
    assert DatasetEntry.objects.filter(dataset=dataset).count() == 6
