"""Topics: the indexed logs of a project clustered by their embeddings, labelled by their words, measured, and the
explorer's `topic` filter, the page and the API.

Vectors are planted, not embedded: each topic of the tests has a centroid and distinct words, and its logs are
stored with vectors near that centroid, so the clusters to find and the words to label them with are known. The
job's tests run on PostgreSQL (vectors through a binary cursor, memberships by COPY) and on SQLite alike; one test
embeds a dozen logs with the bundled model."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from curation.logs.filters import logs_filter
from curation.logs.selectors import percentile_cont
from curation.logs.services import logs_delete
from curation.logs.similar.services import log_embedding_job_create, project_embed_logs
from curation.logs.topics.services import NothingIndexed, topic_job_create, topics_compute
from curation.models import Dataset, JobStatus, LogEmbedding, LogEntry, LogStatus, Topic, TopicJob, TopicMembership
from curation.text.embeddings import DIMENSION, text_hash, text_of_conversation, vector_bytes
from curation.text.topics import Sample, centroids_fit, nearest_centroid, topic_count, topic_label, topic_terms
from tests.factories import LogEntryFactory, openai_completion

WORDS = {
    "billing": ["invoice", "refund", "charge", "payment"],
    "sso": ["okta", "saml", "login", "identity"],
    "sql": ["query", "postgres", "index", "table"],
}
NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)


def planted_vectors(labels: np.ndarray, clusters: int, *, seed: int = 0, noise: float = 0.5) -> np.ndarray:
    """Unit vectors around `clusters` random centroids, one per label."""
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(clusters, DIMENSION))
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    vectors = centroids[labels] + rng.normal(scale=noise / np.sqrt(DIMENSION), size=(len(labels), DIMENSION))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def sentence(words: list[str], rng: np.random.Generator) -> str:
    first, second = rng.choice(words, size=2, replace=False)
    return f"Hello, could you help me with the {first} and the {second} today? Thanks a lot."


# --- the pure functions ----------------------------------------------------------------------------------


def test_planted_clusters_are_recovered_and_labelled_with_their_words():
    rng = np.random.default_rng(1)
    names = list(WORDS)
    labels = rng.integers(0, len(names), size=3_000)
    vectors = planted_vectors(labels, len(names))
    sample = Sample(size=1_000, seed=0)
    for start in range(0, len(vectors), 700):
        sample.add(vectors[start : start + 700])

    centroids = centroids_fit(sample.vectors, 3)
    found = nearest_centroid(vectors, centroids)

    # Each planted cluster is exactly one found cluster.
    assert len(set(zip(labels.tolist(), found.tolist(), strict=True))) == 3
    texts: list[list[str]] = [[] for _ in range(3)]
    for label, cluster in zip(labels[:300], found[:300], strict=True):
        texts[cluster].append(sentence(WORDS[names[label]], rng))
    terms = topic_terms(texts)
    for cluster in range(3):
        planted = names[np.bincount(labels[found == cluster]).argmax()]
        assert 3 <= len(terms[cluster]) <= 5
        assert set(terms[cluster]) <= set(WORDS[planted]), terms[cluster]


def test_the_terms_leave_out_stop_words_numbers_and_words_every_topic_shares():
    texts = [
        ["the invoice 4821 was charged twice, please help", "a refund for the invoice, please help"] * 5,
        ["okta login fails, please help", "saml login with okta, please help"] * 5,
    ]

    terms = topic_terms(texts)

    assert {"invoice", "refund"} <= set(terms[0])
    assert "okta" in terms[1] and "login" in terms[1]
    assert not {"the", "please", "help", "4821", "for", "with"} & {term for topic in terms for term in topic}
    assert topic_label(terms[1], 2).count(" · ") == min(len(terms[1]), 3) - 1
    assert topic_label([], 7) == "Topic 7"


def test_the_number_of_topics_grows_with_the_index_within_bounds():
    assert [topic_count(n) for n in (0, 3, 10, 5_000, 50_000, 10_000_000)] == [0, 3, 5, 50, 60, 60]


def test_a_sample_keeps_at_most_its_size_whatever_the_chunks():
    rows = np.arange(10_000, dtype=np.float32).reshape(-1, 1)
    one, many = Sample(size=500, seed=3), Sample(size=500, seed=3)
    one.add(rows)
    for start in range(0, len(rows), 999):
        many.add(rows[start : start + 999])

    assert one.vectors.shape == many.vectors.shape == (500, 1)
    assert len(np.unique(many.vectors)) == 500
    # Drawn from the whole range, not its start.
    assert many.vectors.max() > 9_000 and many.vectors.min() < 1_000


# --- the job ----------------------------------------------------------------------------------


def planted_logs(project, *, per_topic: int = 12, seed: int = 0) -> dict[str, list[int]]:
    """`per_topic` logs of each of WORDS' topics over the last 20 days, with varied latency, tokens and errors, each
    indexed with a vector near its topic's centroid. Returns the log ids of each topic."""
    rng = np.random.default_rng(seed)
    names = list(WORDS)
    items, topics = [], []
    for n in range(per_topic * len(names)):
        name = names[n % len(names)]
        question = sentence(WORDS[name], rng)
        items.append(
            openai_completion(
                model="gpt-4o-mini", messages=[{"role": "user", "content": question}],
                completion=f"About {WORDS[name][n % 4]}: here is how.", status_code=500 if n % 7 == 0 else 200,
                latency_ms=None if n % 11 == 0 else 100 + 37 * n,
                usage={"prompt_tokens": 10 + n, "completion_tokens": 5, "total_tokens": 15 + n},
                tags=[], metadata={}, created_at=NOW - timedelta(days=n % 20, hours=n % 5), external_id=None,
            )
        )  # fmt: skip
        topics.append(names.index(name))
    logs = LogEntryFactory.ingest(project=project, items=items)
    vectors = planted_vectors(np.array(topics), len(names), seed=seed)
    LogEmbedding.objects.bulk_create(
        LogEmbedding(
            project=project,
            log=log,
            vector=vector_bytes(vector),
            text_hash=text_hash(text_of_conversation(log.messages)),
        )
        for log, vector in zip(logs, vectors, strict=True)
    )
    return {
        name: [log.pk for log, t in zip(logs, topics, strict=True) if t == index] for index, name in enumerate(names)
    }


def computed(project, k: int | None = 3) -> TopicJob:
    return topics_compute(job_id=topic_job_create(project=project, k=k).pk)


def by_hand(ids: list[int]) -> dict:
    logs = list(LogEntry.objects.filter(pk__in=ids))
    latencies = sorted(log.latency_ms for log in logs if log.latency_ms is not None)
    costs = [log.cost_usd for log in logs if log.cost_usd is not None]
    end = max(log.created_at for log in LogEntry.objects.filter(embedding__isnull=False)).date()
    days = [log.created_at.astimezone(UTC).date() for log in logs]
    trend = [sum(day == end - timedelta(days=13 - n) for day in days) for n in range(14)]
    return {
        "size": len(logs),
        "tokens": sum(log.total_tokens or 0 for log in logs),
        "cost_usd": sum(costs, Decimal(0)) if costs else None,
        "latency_p50": percentile_cont(latencies, 0.5),
        "latency_p95": percentile_cont(latencies, 0.95),
        "errors": sum(log.status == LogStatus.ERROR for log in logs),
        "trend": trend,
        "trend_end": end,
    }


def test_topics_are_found_with_their_words_and_figures_that_match_their_logs(project):
    planted = planted_logs(project)
    seen: list[tuple[str, int]] = []

    job = topics_compute(
        job_id=topic_job_create(project=project, k=3).pk, on_progress=lambda job: seen.append((job.phase, job.done))
    )

    assert (job.status, job.k, job.logs, job.progress) == (JobStatus.SUCCEEDED, 3, 36, 1.0)
    assert [phase for phase, _ in seen] == ["read", "cluster", "label", "stats", "write", ""]
    topics = list(Topic.objects.filter(job=job))
    assert sorted(topic.size for topic in topics) == [12, 12, 12]
    for topic in topics:
        members = sorted(TopicMembership.objects.filter(topic=topic).values_list("log_id", flat=True))
        name = next(name for name, ids in planted.items() if sorted(ids) == members)
        assert set(topic.terms) <= set(WORDS[name]) and len(topic.terms) >= 3, topic.terms
        assert topic.label == " · ".join(topic.terms[:3])
        expected = by_hand(members)
        actual = {field: getattr(topic, field) for field in expected}
        for field in ("latency_p50", "latency_p95"):
            assert actual.pop(field) == pytest.approx(expected.pop(field))
        assert actual == expected
        assert topic.error_rate == expected["errors"] / 12
        last, before = sum(expected["trend"][7:]), sum(expected["trend"][:7])
        assert topic.trend_change == pytest.approx(last / before - 1)


def test_a_new_run_replaces_the_memberships_of_the_previous_one(project):
    planted_logs(project)
    first = computed(project, k=3)
    old = first.topics.first()

    second = computed(project, k=5)

    assert TopicMembership.objects.count() == 36
    assert set(TopicMembership.objects.values_list("topic__job", flat=True)) == {second.pk}
    assert Topic.objects.filter(job=first).count() == 3  # the old run's topics stay, without their logs
    with pytest.raises(ValidationError, match="older computation"):
        logs_filter(project=project, params={"topic": str(old.pk)}).count()
    current = second.topics.first()
    assert logs_filter(project=project, params={"topic": str(current.pk)}).count() == current.size


def test_one_computation_runs_per_project_and_it_needs_indexed_logs(project, outsider):
    with pytest.raises(NothingIndexed):
        topic_job_create(project=project)
    planted_logs(project)
    with pytest.raises(ValidationError, match="From 2 to 200"):
        topic_job_create(project=project, k=1)

    first = topic_job_create(project=project)

    assert topic_job_create(project=project, k=4) == first
    topics_compute(job_id=first.pk)
    first.refresh_from_db()
    assert (first.requested_k, first.k) == (None, 5)  # sqrt(36 / 2) is 4, raised to 5
    assert topic_job_create(project=project, k=4) != first


def test_deleting_logs_of_a_topic_takes_their_membership_with_them(project):
    planted = planted_logs(project)
    computed(project)

    deleted = logs_delete(logs=LogEntry.objects.filter(pk__in=planted["sql"][:4]))

    assert deleted == 4
    assert TopicMembership.objects.count() == 32


# --- the filter, the API and the page -------------------------------------------------------------------------


def test_the_topic_filter_in_the_api_and_the_explorer(project, key_client, editor):
    planted = planted_logs(project)
    job = computed(project)
    topic = Topic.objects.get(job=job, memberships__log_id=planted["sso"][0])

    listed = key_client.get("/api/v1/logs", {"topic": topic.pk, "limit": 100})
    unknown = key_client.get("/api/v1/logs", {"topic": 999_999})
    page = Client()
    page.force_login(editor)
    explorer = page.get(f"/p/acme/logs/?topic={topic.pk}")
    refused = page.get("/p/acme/logs/?topic=999999")

    assert listed.status_code == 200
    assert sorted(log["id"] for log in listed.json()["results"]) == sorted(planted["sso"])
    assert unknown.status_code == 400 and "Topic 999999 not found" in unknown.json()["topic"][0]
    assert explorer.status_code == 200
    assert f'name="topic" value="{topic.pk}"' in explorer.content.decode()  # kept when other filters change
    shown = {int(row) for row in re.findall(r'<tr data-id="(\d+)"', explorer.content.decode())}
    assert shown == set(planted["sso"])
    assert "Topic 999999 not found" in refused.content.decode()


def test_the_api_lists_the_topics_with_their_figures_and_starts_a_computation(project, key_client, client_for, viewer):
    planted_logs(project)
    job = computed(project)

    listed = key_client.get("/api/v1/topics", {"sort": "errors"})
    one = key_client.get(f"/api/v1/topics/{listed.json()['topics'][0]['id']}")
    started = key_client.post("/api/v1/topic-jobs", {"k": 4}, format="json")
    again = key_client.get(f"/api/v1/topic-jobs/{started.json()['id']}")
    by_viewer = client_for(viewer).post("/api/v1/topic-jobs?project=acme", {}, format="json")

    body = listed.json()
    assert listed.status_code == 200 and body["indexed"] == 36 and body["run"]["id"] == job.pk
    errors = [topic["errors"] for topic in body["topics"]]
    assert errors == sorted(errors, reverse=True) and len(errors) == 3
    assert sum(topic["share"] for topic in body["topics"]) == pytest.approx(1.0)
    assert body["topics"][0]["explorer_filter"] == f"topic={body['topics'][0]['id']}"
    assert one.status_code == 200 and one.json() == body["topics"][0]
    assert started.status_code == 202 and started.json()["requested_k"] == 4
    assert again.status_code == 200 and again.json()["status"] == "queued"
    assert by_viewer.status_code == 403


def test_an_editor_computes_topics_and_makes_a_dataset_of_one_on_the_page(project, editor, viewer):
    planted = planted_logs(project)
    page = Client()
    page.force_login(editor)
    asked = page.post("/p/acme/topics/compute", {"k": "3"})
    topics_compute(job_id=TopicJob.objects.get().pk)
    topic = Topic.objects.get(memberships__log_id=planted["billing"][0])

    shown = page.get("/p/acme/topics/?sort=cost")
    made = page.post(f"/p/acme/topics/{topic.pk}/dataset", {"name": ""})
    watcher = Client()
    watcher.force_login(viewer)
    seen_by_viewer = watcher.get("/p/acme/topics/")
    refused = watcher.post("/p/acme/topics/compute", {})

    assert asked.status_code == 302
    html = shown.content.decode()
    assert topic.label in html and f"/p/acme/logs/?topic={topic.pk}" in html and "Recompute" in html
    dataset = Dataset.objects.get()
    assert made.status_code == 302 and made["Location"] == f"/p/acme/datasets/{dataset.pk}/"
    assert dataset.name == f"Topic {topic.number}: {topic.label}"
    assert sorted(dataset.entries.values_list("log_id", flat=True)) == sorted(planted["billing"])
    assert seen_by_viewer.status_code == 200 and "Make a dataset" not in seen_by_viewer.content.decode()
    assert "Recompute" not in seen_by_viewer.content.decode() and topic.label in seen_by_viewer.content.decode()
    assert refused.status_code == 403


def test_the_page_points_to_indexing_when_no_log_is_indexed(project, editor):
    LogEntryFactory(project=project)
    page = Client()
    page.force_login(editor)

    html = page.get("/p/acme/topics/").content.decode()
    refused = page.post("/p/acme/topics/compute", {}, follow=True).content.decode()

    assert "No log of this project is indexed yet" in html and "More like this" in html
    assert 'id="compute-topics"' not in html
    assert "index its logs first" in refused


def test_logs_embedded_by_the_real_model_fall_into_their_subjects(project):
    """The one test with the bundled embedding model: a dozen logs indexed as the index job does, then clustered."""
    passwords = [
        "How do I reset my password?", "I forgot my password, how can I reset it?",
        "The password reset link never arrives.", "Can I change my password from the mobile app?",
    ]  # fmt: skip
    weather = [
        "Will it rain in Paris tomorrow?", "What is the weather for Berlin this weekend?",
        "Is it going to be sunny in Rome today?", "How cold will it be in Oslo tonight?",
    ]  # fmt: skip
    logs = LogEntryFactory.ingest(
        project=project,
        items=[{"prompt": q, "completion": "Open Settings, then Security: your password is there."} for q in passwords]
        + [{"prompt": q, "completion": "The forecast says clouds and a light breeze."} for q in weather],
    )
    project_embed_logs(job_id=log_embedding_job_create(project=project).pk)

    job = computed(project, k=2)

    groups = {frozenset(topic.memberships.values_list("log_id", flat=True)): topic for topic in job.topics.all()}
    ids = [log.pk for log in logs]
    assert set(groups) == {frozenset(ids[:4]), frozenset(ids[4:])}
    assert "password" in groups[frozenset(ids[:4])].terms
    assert "forecast" in groups[frozenset(ids[4:])].terms
