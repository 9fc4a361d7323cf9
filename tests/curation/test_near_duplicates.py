"""Near-duplicates on a dataset: entries embedded by a worker in committed batches (resumable, stale
after an edit), clusters at a threshold the user sets, keep one per cluster, from the page and the API.
The real bundled model is used; it is loaded once per test process (`get_embedder`)."""

import numpy as np
import pytest

from curation.datasets.dedup import services
from curation.datasets.dedup.services import (
    dataset_embed,
    dataset_keep_one_per_cluster,
    dataset_near_duplicates,
    embedding_job_create,
)
from curation.datasets.dedup.tasks import dataset_embed_task
from curation.datasets.services import dataset_create, dataset_entries_ingest, entry_update
from curation.models import AuditEvent, Dataset, DatasetEntry, EmbeddingJob, EntryEmbedding, JobStatus
from curation.text.embeddings import DIMENSION, text_hash, text_of_conversation, vector_bytes, vector_from_bytes
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


def test_keep_one_only_drops_entries_close_to_the_one_it_keeps(project):
    """Three entries a ~ b ~ c with a far from c (vectors set by hand): b goes with a, c is kept."""
    dataset = make_dataset(project, chats=[(f"Question {number}", "An answer.") for number in range(3)])
    basis = np.linalg.qr(np.random.default_rng(0).standard_normal((DIMENSION, 2)))[0].T
    angle = np.arccos(0.95)
    for step, entry in enumerate(dataset.entries.order_by("id")):
        vector = np.cos(step * angle) * basis[0] + np.sin(step * angle) * basis[1]
        text = text_of_conversation(entry.messages)
        EntryEmbedding.objects.create(entry=entry, vector=vector_bytes(vector), text_hash=text_hash(text))
    ids = entry_ids(dataset)

    found, planned = dataset_keep_one_per_cluster(dataset=dataset, threshold=0.94, dry_run=True)

    assert [[entry.id for entry in cluster] for cluster in found.clusters] == [[ids[0], ids[1]]]
    assert planned == [ids[1]]


def test_entries_not_yet_embedded_are_left_out_of_clusters(project):
    dataset = make_dataset(project)
    embedded(dataset)
    dataset_entries_ingest(dataset=dataset, items=[chat("how do I reset my password?", ANSWER)])

    found = dataset_near_duplicates(dataset=dataset, threshold=0.95)

    assert (found.entries, found.embedded, found.missing) == (6, 5, 1)
    assert len(found.clusters[0]) == 3
    assert DatasetEntry.objects.filter(dataset=dataset).count() == 6


# --- the dataset page -------------------------------------------------------------------------------


def page_url(dataset: Dataset, tail: str = "") -> str:
    return f"/p/acme/datasets/{dataset.pk}/{tail}"


def test_the_dataset_page_loads_the_near_duplicates_card(client, project, viewer):
    dataset = make_dataset(project)
    client.force_login(viewer)

    page = client.get(page_url(dataset)).content.decode()

    assert f'hx-get="{page_url(dataset, "duplicates")}"' in page


def test_an_editor_computes_embeddings_then_sees_clusters_and_keeps_one(client, project, editor):
    dataset = make_dataset(project)
    ids = entry_ids(dataset)
    client.force_login(editor)
    card = client.get(page_url(dataset, "duplicates")).content.decode()
    assert "Compute embeddings" in card and "Keep one per cluster" not in card

    started = client.post(page_url(dataset, "embeddings"), HTTP_HX_REQUEST="true").content.decode()
    job = EmbeddingJob.objects.get(dataset=dataset)
    assert 'hx-trigger="every 2s"' in started and "0 of 5 entries" in started
    dataset_embed(job_id=job.pk)  # what the worker does once the request's transaction commits

    card = client.get(page_url(dataset, "duplicates") + "?threshold=0.95").content.decode()
    assert 'data-clusters="1"' in card and 'data-cluster-size="3"' in card
    assert f'href="{page_url(dataset, f"entries/{ids[3]}/")}"' in card
    assert "How do I reset my password? Thanks!" in card
    assert "data-confirm=" in card and "every 2s" not in card

    response = client.post(page_url(dataset, "duplicates/keep-one"), {"threshold": "0.95"})

    assert response.status_code == 302 and response["Location"].endswith("#near-duplicates")
    assert entry_ids(dataset) == [ids[0], ids[2], ids[4]]


def test_a_viewer_sees_clusters_but_no_buttons_and_may_not_post(client, project, viewer):
    dataset = make_dataset(project)
    embedded(dataset)
    client.force_login(viewer)

    card = client.get(page_url(dataset, "duplicates")).content.decode()

    assert 'data-cluster-size="3"' in card
    assert "Keep one per cluster" not in card and "embeddings</button>" not in card
    assert client.post(page_url(dataset, "duplicates/keep-one"), {"threshold": "0.95"}).status_code == 403
    assert client.post(page_url(dataset, "embeddings")).status_code == 403
    assert dataset.entries.count() == 5


def test_a_threshold_out_of_range_is_refused_on_the_page(client, project, editor):
    dataset = make_dataset(project)
    embedded(dataset)
    client.force_login(editor)

    response = client.get(page_url(dataset, "duplicates") + "?threshold=0.2")

    assert response.status_code == 400 and "from 0.5 to 1.0" in response.content.decode()
    client.post(page_url(dataset, "duplicates/keep-one"), {"threshold": "nan"})
    assert dataset.entries.count() == 5


# --- the API ----------------------------------------------------------------------------------------


def api_url(dataset: Dataset, tail: str) -> str:
    return f"/api/v1/datasets/{dataset.pk}/{tail}"


def test_the_api_starts_a_job_lists_clusters_and_keeps_one(key_client, project):
    dataset = make_dataset(project)
    ids = entry_ids(dataset)

    assert key_client.get(api_url(dataset, "embeddings")).json() == {"job": None}
    response = key_client.post(api_url(dataset, "embeddings"))

    assert response.status_code == 202, response.content
    assert (response.json()["status"], response.json()["total"]) == ("queued", 5)
    dataset_embed(job_id=response.json()["id"])
    assert key_client.get(api_url(dataset, "embeddings")).json()["job"]["progress"] == 1.0

    clusters = key_client.get(api_url(dataset, "near-duplicates") + "?threshold=0.95").json()
    assert (clusters["embedded"], clusters["missing"], clusters["duplicates"]) == (5, 0, 2)
    assert clusters["clusters"][0]["size"] == 3
    assert [entry["id"] for entry in clusters["clusters"][0]["entries"]] == [ids[0], ids[1], ids[3]]

    dry = key_client.post(api_url(dataset, "near-duplicates/keep-one"), {"threshold": 0.95}, format="json").json()
    assert (dry["dry_run"], dry["deleted"], dataset.entries.count()) == (True, [ids[1], ids[3]], 5)
    done = key_client.post(
        api_url(dataset, "near-duplicates/keep-one"), {"threshold": 0.95, "dry_run": False}, format="json"
    ).json()
    assert (done["dry_run"], done["deleted"]) == (False, [ids[1], ids[3]])
    assert entry_ids(dataset) == [ids[0], ids[2], ids[4]]
    assert AuditEvent.objects.get(action="entries.delete").api_key is not None


def test_the_api_refuses_a_threshold_out_of_range(key_client, project):
    dataset = make_dataset(project)

    assert key_client.get(api_url(dataset, "near-duplicates") + "?threshold=1.5").status_code == 400
    response = key_client.post(api_url(dataset, "near-duplicates/keep-one"), {"threshold": 0.1}, format="json")
    assert response.status_code == 400 and "threshold" in response.json()


def test_a_viewer_reads_clusters_but_may_not_start_or_delete(client_for, project, viewer):
    dataset = make_dataset(project)
    embedded(dataset)
    client = client_for(viewer)

    assert client.get(api_url(dataset, "near-duplicates") + "?project=acme").status_code == 200
    assert client.post(api_url(dataset, "embeddings") + "?project=acme").status_code == 403
    keep = client.post(api_url(dataset, "near-duplicates/keep-one") + "?project=acme", {"dry_run": False}, "json")
    assert keep.status_code == 403 and dataset.entries.count() == 5


def test_another_projects_dataset_is_not_found(client_for, project, outsider):
    dataset = make_dataset(project)
    client = client_for(outsider)

    assert client.get(api_url(dataset, "near-duplicates") + "?project=other").status_code == 404
    assert client.post(api_url(dataset, "embeddings") + "?project=other").status_code == 404
    keep = client.post(api_url(dataset, "near-duplicates/keep-one") + "?project=other", {"dry_run": False}, "json")
    assert keep.status_code == 404 and not EmbeddingJob.objects.exists()


def test_with_the_broker_down_the_job_fails_saying_so_and_can_be_asked_again(
    client, project, editor, broker_down, monkeypatch, django_capture_on_commit_callbacks
):

    dataset = make_dataset(project)
    client.force_login(editor)
    broker_down(dataset_embed_task)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(page_url(dataset, "embeddings"), HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    job = EmbeddingJob.objects.get(dataset=dataset)
    assert job.status == JobStatus.FAILED and "task queue is unreachable" in job.error
    card = client.get(page_url(dataset, "duplicates")).content.decode()
    assert "Computing embeddings failed: The task queue is unreachable" in card and "Update embeddings" in card
    monkeypatch.undo()
    assert embedding_job_create(dataset=dataset).pk != job.pk


@pytest.mark.parametrize(("keep", "kept"), [("oldest", 0), ("longest", 3), ("edited", 1)])
def test_keep_one_keeps_the_oldest_the_longest_answer_or_an_edited_entry(project, keep, kept):
    chats = [
        ("How do I reset my password?", ANSWER),
        ("How do I reset my password??", ANSWER),
        ("The weather in Paris is sunny today. What should I wear?", "A light jacket and sunglasses."),
        ("How do I reset my password? Thanks!", ANSWER + " It takes a minute."),
    ]
    dataset = make_dataset(project, chats=chats)
    ids = entry_ids(dataset)
    DatasetEntry.objects.filter(pk=ids[1]).update(edited=True)
    embedded(dataset)

    found, planned = dataset_keep_one_per_cluster(dataset=dataset, threshold=0.85, keep=keep, dry_run=True)

    cluster = [ids[0], ids[1], ids[3]]
    assert [[entry.id for entry in c] for c in found.clusters] == [cluster]
    assert planned == sorted(pk for pk in cluster if pk != ids[kept])
    entry = found.clusters[0][2]
    assert entry.answer.startswith("Open Settings") and entry.edited is False
    assert found.clusters[0][1].edited is True


def test_the_api_and_the_page_mark_the_entry_the_rule_keeps(client, key_client, project, editor):
    dataset = make_dataset(project)
    embedded(dataset)
    ids = entry_ids(dataset)
    DatasetEntry.objects.filter(pk=ids[3]).update(edited=True)

    body = key_client.get(api_url(dataset, "near-duplicates"), {"threshold": 0.95, "keep": "edited"}).json()

    assert [(e["id"], e["kept"]) for e in body["clusters"][0]["entries"]] == [
        (ids[0], False),
        (ids[1], False),
        (ids[3], True),
    ]
    assert body["clusters"][0]["entries"][0]["answer"] == ANSWER
    refused = key_client.post(api_url(dataset, "near-duplicates/keep-one"), {"keep": "newest"}, format="json")
    assert refused.status_code == 400 and "keep" in refused.json()
    client.force_login(editor)
    html = client.get(page_url(dataset, "duplicates") + "?threshold=0.95&keep=edited").content.decode()
    assert html.count('class="kept"') == 1 and f"#{ids[3]}</a>" in html.split('class="kept"')[1][:200]
    client.post(page_url(dataset, "duplicates/keep-one"), {"threshold": "0.95", "keep": "edited"})
    assert entry_ids(dataset) == [ids[2], ids[3], ids[4]]
