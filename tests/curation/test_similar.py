""" "More like this" for a log: the project's newest logs embedded by a worker (newest first, bounded,
resumable), the log asked about embedded on demand, the nearest logs within the explorer's filter, from
the log's page and the API. The real bundled model is used; it is loaded once per test process."""

import numpy as np
import pytest
from django.test import override_settings

from curation.logs.services import logs_ingest
from curation.logs.similar import matrix as similar_matrix
from curation.logs.similar import services
from curation.logs.similar.selectors import LogNotIndexed, logs_like_ids
from curation.logs.similar.services import log_embedding_job_create, logs_similar, project_embed_logs
from curation.logs.similar.tasks import project_embed_logs_task
from curation.models import JobStatus, LogEmbedding, LogEmbeddingJob, LogEntry
from curation.text.embeddings import vector_bytes, vector_from_bytes
from tests.factories import ProjectFactory
from tests.waiting import wait_until_finished

ANSWER = "Open Settings, then Security, and choose Reset password."
CHATS = [
    ("How do I reset my password?", ANSWER, "gpt-4o"),
    ("The weather in Paris is sunny today. What should I wear?", "A light jacket and sunglasses.", "gpt-4o"),
    ("How can I reset my password, please?", ANSWER, "gpt-4o-mini"),
    ("Write a SQL query for the top 10 customers by revenue last month.", "SELECT customer_id FROM orders;", "gpt-4o"),
    ("I forgot my password. How do I reset it?", ANSWER, "gpt-4o"),
]


def ingest(project, chats=CHATS) -> list[int]:
    items = [
        {"model": model, "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a, model in chats
    ]
    result = logs_ingest(project=project, items=items)
    assert result.accepted == len(chats), result.rejected
    return list(LogEntry.objects.filter(project=project).order_by("id").values_list("id", flat=True))


def indexed(project) -> LogEmbeddingJob:
    return project_embed_logs(job_id=log_embedding_job_create(project=project).pk)


# --- the index --------------------------------------------------------------------------------------


def test_a_job_embeds_the_newest_logs_first_with_progress(project, monkeypatch):
    ids = ingest(project)
    monkeypatch.setattr(services, "BATCH", 2)
    seen: list[tuple[int, int]] = []

    job = project_embed_logs(
        job_id=log_embedding_job_create(project=project).pk, on_progress=lambda job: seen.append((job.done, job.total))
    )

    assert (job.status, job.total, job.done, job.embedded, job.progress) == (JobStatus.SUCCEEDED, 5, 5, 5, 1.0)
    assert seen == [(2, 5), (4, 5), (5, 5)]
    rows = LogEmbedding.objects.filter(project=project).order_by("created_at", "log_id")
    assert sorted(row.log_id for row in rows) == ids
    vectors = np.vstack([vector_from_bytes(row.vector) for row in rows])
    assert vectors.shape == (5, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_only_the_newest_logs_up_to_the_limit_are_indexed(project):
    ids = ingest(project)

    with override_settings(LOGTUNE_SIMILAR_LOGS_MAX=3):
        job = indexed(project)

    assert (job.limit, job.total, job.done, job.embedded) == (3, 3, 3, 3)
    assert sorted(LogEmbedding.objects.values_list("log_id", flat=True)) == ids[-3:]


def test_a_rerun_embeds_only_new_and_changed_logs(project, monkeypatch):
    ids = ingest(project)
    monkeypatch.setattr(services, "BATCH", 2)

    def crash(job: LogEmbeddingJob) -> None:
        raise RuntimeError("worker killed")

    with pytest.raises(RuntimeError):
        project_embed_logs(job_id=log_embedding_job_create(project=project).pk, on_progress=crash)
    assert LogEmbedding.objects.count() == 2
    assert LogEmbeddingJob.objects.get().status == JobStatus.FAILED

    assert indexed(project).embedded == 3
    LogEntry.objects.filter(pk=ids[0]).update(messages=[{"role": "user", "content": "Something else entirely"}])
    ingest(project, CHATS[:1])

    job = indexed(project)
    assert (job.total, job.embedded) == (6, 2)  # the edited log and the new one
    assert LogEmbedding.objects.count() == 6


def test_a_second_request_while_a_job_is_queued_returns_the_same_job(project):
    first = log_embedding_job_create(project=project)

    assert log_embedding_job_create(project=project).pk == first.pk
    project_embed_logs(job_id=first.pk)
    assert log_embedding_job_create(project=project).pk != first.pk


def test_a_real_worker_runs_the_job(celery_worker, project):
    ingest(project)

    job = wait_until_finished(log_embedding_job_create(project=project), seconds=60)

    assert (job.status, job.embedded) == (JobStatus.SUCCEEDED, 5)


# --- the search -------------------------------------------------------------------------------------


def test_the_nearest_logs_come_first_and_the_log_itself_is_left_out(project):
    ids = ingest(project)
    indexed(project)

    found = logs_similar(project=project, log=LogEntry.objects.get(pk=ids[0]), k=4)

    assert found.searched == 4
    ranked = [entry.pk for entry, _ in found.results]
    assert ids[0] not in ranked
    assert set(ranked[:2]) == {ids[2], ids[4]}  # the other password questions
    scores = [score for _, score in found.results]
    assert scores == sorted(scores, reverse=True) and scores[1] > scores[2] + 0.2


def test_a_log_not_indexed_yet_is_embedded_on_demand(project):
    ids = ingest(project)
    indexed(project)
    newest = ingest(project, [("Where do I change my password?", ANSWER, "gpt-4o")])[-1]

    found = logs_similar(project=project, log=LogEntry.objects.get(pk=newest), k=2)

    assert {entry.pk for entry, _ in found.results} <= {ids[0], ids[2], ids[4]}
    assert LogEmbedding.objects.filter(log_id=newest).exists()


def test_the_search_stays_within_a_filter_and_the_project(project):
    ids = ingest(project)
    other = ProjectFactory(slug="other")
    ingest(other, CHATS[:1])
    indexed(project)
    indexed(other)

    within = LogEntry.objects.filter(project=project, model="gpt-4o")
    found = logs_similar(project=project, log=LogEntry.objects.get(pk=ids[0]), k=10, within=within)

    assert {entry.pk for entry, _ in found.results} == {ids[1], ids[3], ids[4]}
    assert found.searched == 3


def test_copies_tie_to_the_newest_first_and_k_is_bounded(project):
    ids = ingest(project, [CHATS[0]] * 4)
    indexed(project)

    found = logs_similar(project=project, log=LogEntry.objects.get(pk=ids[0]), k=2)

    assert [entry.pk for entry, _ in found.results] == [ids[3], ids[2]]
    assert all(score == pytest.approx(1.0, abs=1e-4) for _, score in found.results)
    with pytest.raises(ValueError):
        logs_similar(project=project, log=LogEntry.objects.get(pk=ids[0]), k=0)


def test_the_search_scans_in_chunks_and_keeps_the_best(project, monkeypatch):
    ids = ingest(project, [(f"question {n}", "answer", "m") for n in range(30)])
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(30, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for log_id, vector in zip(ids, vectors, strict=True):
        LogEmbedding.objects.create(project=project, log_id=log_id, vector=vector_bytes(vector), text_hash="x")
    query = vectors[0]
    monkeypatch.setattr(services, "log_vector", lambda log: query)
    monkeypatch.setattr(similar_matrix, "SCAN_CHUNK", 7)

    found = logs_similar(project=project, log=LogEntry.objects.get(pk=ids[0]), k=5)

    expected = [ids[row] for row in np.argsort(-(vectors[1:] @ query))[:5] + 1]
    assert [entry.pk for entry, _ in found.results] == expected
    assert found.searched == 29


# --- the page and the API ---------------------------------------------------------------------------


def panel(slug: str, log_id: int, query: str = "") -> str:
    return f"/p/{slug}/logs/{log_id}/similar" + (f"?{query}" if query else "")


def test_the_log_page_has_a_more_like_this_button(client, project, viewer):
    ids = ingest(project)
    client.force_login(viewer)

    page = client.get(f"/p/acme/logs/{ids[0]}/?model=gpt-4o").content.decode()

    assert 'id="more-like-this"' in page and f'hx-get="{panel("acme", ids[0], "model=gpt-4o")}"' in page


def test_an_editor_indexes_the_logs_then_sees_the_nearest(client, project, editor):
    ids = ingest(project)
    client.force_login(editor)
    empty = client.get(panel("acme", ids[0]), HTTP_HX_REQUEST="true").content.decode()
    assert "No log of this project is indexed yet" in empty and 'id="index-logs"' in empty

    started = client.post("/p/acme/logs/embeddings", {"log": ids[0]}, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="log-embedding-job"' in started and "waiting for a worker" in started
    project_embed_logs(job_id=LogEmbeddingJob.objects.get().pk)

    shown = client.get(panel("acme", ids[0]), HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in shown and "Update the index" in shown and "4 indexed logs compared" in shown
    assert shown.index(f'data-id="{ids[2]}"') < shown.index(f'data-id="{ids[1]}"')
    assert shown.index(f'data-id="{ids[4]}"') < shown.index(f'data-id="{ids[3]}"')

    filtered = client.get(panel("acme", ids[0], "model=gpt-4o-mini")).content.decode()
    assert "<html" in filtered and "1 indexed log compared, within the current filter" in filtered
    assert f'href="/p/acme/logs/{ids[2]}/?model=gpt-4o-mini"' in filtered


def test_indexing_from_a_filtered_panel_keeps_the_filter(client, project, editor):
    ids = ingest(project)
    client.force_login(editor)
    form = client.get(panel("acme", ids[0], "model=gpt-4o"), HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-post="/p/acme/logs/embeddings?model=gpt-4o"' in form

    started = client.post(
        "/p/acme/logs/embeddings?model=gpt-4o", {"log": ids[0]}, HTTP_HX_REQUEST="true"
    ).content.decode()

    assert f'hx-get="{panel("acme", ids[0], "model=gpt-4o")}"' in started  # the poll keeps the filter


def test_the_page_form_without_htmx_redirects_back(client, project, editor):
    ids = ingest(project)
    client.force_login(editor)

    response = client.post("/p/acme/logs/embeddings", {"log": ids[0], "next": panel("acme", ids[0])})

    assert response.status_code == 302 and response["Location"] == panel("acme", ids[0])
    assert LogEmbeddingJob.objects.filter(project=project, status=JobStatus.QUEUED).count() == 1


def test_a_viewer_sees_results_but_may_not_index(client, project, viewer):
    ids = ingest(project)
    client.force_login(viewer)
    assert "An editor of the project can index its logs" in client.get(panel("acme", ids[0])).content.decode()
    assert client.post("/p/acme/logs/embeddings", {"log": ids[0]}).status_code == 403

    indexed(project)
    shown = client.get(panel("acme", ids[0]), HTTP_HX_REQUEST="true").content.decode()
    assert f'data-id="{ids[2]}"' in shown and 'id="index-logs"' not in shown


def test_a_bad_filter_is_reported_on_the_panel(client, project, viewer):
    ids = ingest(project)
    indexed(project)
    client.force_login(viewer)

    shown = client.get(panel("acme", ids[0], "min_tokens=lots"), HTTP_HX_REQUEST="true").content.decode()

    assert "The filter has a problem" in shown and "data-score" not in shown


def test_another_projects_log_is_not_found(client, project, outsider):
    ids = ingest(project)
    client.force_login(outsider)

    assert client.get(panel("acme", ids[0])).status_code == 404
    assert client.get(panel("other", ids[0])).status_code == 404


def test_the_api_indexes_and_searches(key_client, project):
    ids = ingest(project)
    state = key_client.get("/api/v1/log-embeddings").json()
    assert (state["indexed"], state["logs"], state["job"]) == (0, 5, None)

    response = key_client.post("/api/v1/log-embeddings")
    assert response.status_code == 202 and response.json()["status"] == "queued"
    project_embed_logs(job_id=response.json()["id"])
    assert key_client.get("/api/v1/log-embeddings").json()["indexed"] == 5

    found = key_client.get(f"/api/v1/logs/{ids[0]}/similar?k=2").json()
    assert found["searched"] == 4
    assert {item["log"]["id"] for item in found["results"]} == {ids[2], ids[4]}
    assert all(0.5 < item["similarity"] <= 1.0 for item in found["results"])
    narrowed = key_client.get(f"/api/v1/logs/{ids[0]}/similar?model=gpt-4o-mini").json()
    assert [item["log"]["id"] for item in narrowed["results"]] == [ids[2]]


@pytest.mark.parametrize(
    ("query", "field"), [("k=0", "k"), ("k=101", "k"), ("k=two", "k"), ("colour=red", "colour"), ("min_tokens=x", "")]
)
def test_the_api_refuses_bad_parameters(key_client, project, query, field):
    ids = ingest(project, CHATS[:2])

    response = key_client.get(f"/api/v1/logs/{ids[0]}/similar?{query}")

    assert response.status_code == 400
    if field:
        assert field in response.json()


def test_the_api_keeps_to_the_callers_project_and_role(client_for, project, viewer, outsider):
    ids = ingest(project)
    assert client_for(viewer).post("/api/v1/log-embeddings?project=acme").status_code == 403
    assert client_for(viewer).get(f"/api/v1/logs/{ids[0]}/similar?project=acme").status_code == 200
    assert client_for(outsider).get(f"/api/v1/logs/{ids[0]}/similar?project=other").status_code == 404
    assert client_for(outsider).get(f"/api/v1/logs/{ids[0]}/similar?project=acme").status_code == 404


def test_the_command_indexes_in_this_process_and_refuses_while_a_job_runs(project):
    from io import StringIO

    from django.core.management import CommandError, call_command

    ingest(project)
    out = StringIO()
    call_command("embed_logs", "--project", "acme", "--limit", "3", "--no-progress", stdout=out)
    assert "Looked at 3 logs and embedded 3; 3 logs of 'acme' are indexed." in out.getvalue()

    log_embedding_job_create(project=project)  # queued for a worker
    with pytest.raises(CommandError, match="is queued"):
        call_command("embed_logs", "--project", "acme", "--no-progress")
    with pytest.raises(CommandError, match="not found"):
        call_command("embed_logs", "--project", "nope")


# --- the explorer's filter --------------------------------------------------------------------------


def test_the_explorer_filters_logs_like_one_and_acts_on_them_in_bulk(client, key_client, project, editor):
    ids = ingest(project)
    indexed(project)
    client.force_login(editor)

    page = client.get(f"/p/acme/logs/?similar_to={ids[0]}&min_similarity=0.8").content.decode()
    shown = {log_id for log_id in ids if f'data-id="{log_id}"' in page}
    assert shown == {ids[0], ids[2], ids[4]}  # the password questions, the log itself included
    assert f'name="similar_to" value="{ids[0]}"' in page
    facets = client.get(f"/p/acme/logs/facets/?similar_to={ids[0]}").content.decode()
    assert "gpt-4o-mini" in facets

    listed = key_client.get(f"/api/v1/logs?similar_to={ids[0]}&model=gpt-4o").json()["results"]
    assert {log["id"] for log in listed} == {ids[0], ids[4]}
    strict = key_client.get(f"/api/v1/logs?similar_to={ids[0]}&min_similarity=0.999").json()["results"]
    assert [log["id"] for log in strict] == [ids[0]]

    body = {"action": "tag_add", "tags": ["password"], "filter": f"similar_to={ids[0]}&min_similarity=0.8"}
    assert key_client.post("/api/v1/logs/bulk", body, format="json").status_code == 200
    tagged = LogEntry.objects.filter(project=project, tags__name="password").values_list("id", flat=True)
    assert sorted(tagged) == [ids[0], ids[2], ids[4]]


def test_the_panel_links_to_the_explorer_with_the_filter_kept(client, project, viewer):
    ids = ingest(project)
    indexed(project)
    client.force_login(viewer)

    shown = client.get(panel("acme", ids[0], "model=gpt-4o"), HTTP_HX_REQUEST="true").content.decode()

    assert 'id="like-in-explorer"' in shown and 'action="/p/acme/logs/"' in shown
    assert '<input type="hidden" name="model" value="gpt-4o">' in shown
    assert f'<input type="hidden" name="similar_to" value="{ids[0]}">' in shown


def test_a_new_index_gives_the_filter_a_new_answer(project):
    ids = ingest(project)
    with override_settings(LOGTUNE_SIMILAR_LOGS_MAX=2):
        indexed(project)  # the two newest: the SQL question and the last password question
    log = LogEntry.objects.get(pk=ids[4])
    assert logs_like_ids(project=project, log=log, min_similarity=0.8) == [ids[4]]

    indexed(project)

    assert logs_like_ids(project=project, log=log, min_similarity=0.8) == [ids[0], ids[2], ids[4]]


def test_the_filter_never_embeds_a_log_it_is_asked_about(key_client, project):
    ids = ingest(project)
    with override_settings(LOGTUNE_SIMILAR_LOGS_MAX=2):
        indexed(project)  # the two newest: the first password question is not indexed
    log = LogEntry.objects.get(pk=ids[0])

    with pytest.raises(LogNotIndexed):
        logs_like_ids(project=project, log=log, min_similarity=0.8)
    response = key_client.get(f"/api/v1/logs?similar_to={ids[0]}")

    assert response.status_code == 400
    assert "not in the index of similar logs yet" in response.json()["similar_to"][0]
    assert not LogEmbedding.objects.filter(log_id=ids[0]).exists()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("similar_to=999999999", "similar_to"),
        ("similar_to=1.5", "similar_to"),
        ("similar_to={log}&min_similarity=0.2", "min_similarity"),
        ("similar_to={log}&min_similarity=1.5", "min_similarity"),
        ("min_similarity=0.9", "min_similarity"),
    ],
)
def test_a_bad_similarity_filter_is_a_400_naming_it(client, key_client, project, viewer, query, field):
    ids = ingest(project, CHATS[:2])
    query = query.format(log=ids[0])

    response = key_client.get(f"/api/v1/logs?{query}")

    assert response.status_code == 400 and field in response.json(), response.content
    client.force_login(viewer)
    page = client.get(f"/p/acme/logs/?{query}").content.decode()
    assert "data-id=" not in page and ("Like log" in page or "Similarity at least" in page)


def test_another_projects_log_cannot_be_the_filters_log(key_client, project):
    other = ProjectFactory(slug="other")
    foreign = ingest(other, CHATS[:1])[0]
    ingest(project)

    response = key_client.get(f"/api/v1/logs?similar_to={foreign}")

    assert response.status_code == 400 and "similar_to" in response.json()


def test_with_the_broker_down_the_job_fails_saying_so_and_can_be_asked_again(
    client, project, editor, broker_down, monkeypatch, django_capture_on_commit_callbacks
):

    ids = ingest(project)
    client.force_login(editor)
    broker_down(project_embed_logs_task)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/p/acme/logs/embeddings", {"log": ids[0]}, HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    job = LogEmbeddingJob.objects.get()
    assert job.status == JobStatus.FAILED and "task queue is unreachable" in job.error
    shown = client.get(panel("acme", ids[0]), HTTP_HX_REQUEST="true").content.decode()
    assert "Indexing the logs failed: The task queue is unreachable" in shown and 'id="index-logs"' in shown
    monkeypatch.undo()
    assert log_embedding_job_create(project=project).pk != job.pk  # asking again queues a new job
