"""Speed and memory of computing a project's topics (curation/logs/topics/services.py) over 50,000 indexed logs.

    .venv/bin/python bench/topics.py [--logs 50000] [--reuse]

Seeds --logs realistic logs (bench/common.py) into a PostgreSQL database of its own and gives each an embedding
near one of 12 planted centroids: the centroid of the support subject its question is about (bench/common.py's
TOPICS), so that the clusters are there to find and their texts have real words to be labelled with. Then runs
the computation in this process, as the worker does (k chosen from the index's size), and prints:
  - the time of each phase (read the vectors and sample them, cluster: fit and assign, label, stats, write) and
    the whole;
  - the peak of Python memory (tracemalloc, numpy included) of a second run;
  - the Topics page through Django's test client, and the explorer's `topic` filter counted;
  - the five largest topics' labels, to see that they name the planted subjects.
"""

import argparse
import itertools
import statistics
import time
import tracemalloc

from common import (
    DEFAULT_DATABASE_URL,
    TOPICS,
    LogMaker,
    bench_django,
    bench_project_and_user,
    code_version,
    print_table,
    warn_if_busy,
)

SEED_BATCH = 2_000
NOISE = 0.6  # the spread of a log's vector around its subject's centroid (unit vectors; 0: on it)


def main() -> None:
    args = _parse_args()
    warn_if_busy()
    bench_django(name="topics", database_url=args.database_url, reuse=args.reuse)
    print(f"Logtune {code_version()}: topics, database {args.database_url}")
    project, user = bench_project_and_user()
    if not args.reuse:
        _seed(project, args.logs)
    print_table(_measure(project, user))


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", type=int, default=50_000)
    parser.add_argument("--reuse", action="store_true", help="Skip seeding: reuse the database of the last run.")
    default = DEFAULT_DATABASE_URL.replace("logtune_bench", "logtune_bench_topics")
    parser.add_argument("--database-url", default=default)
    return parser.parse_args()


def _seed(project, count: int) -> None:
    import numpy as np

    from curation.logs.services import logs_ingest
    from curation.models import LogEmbedding, LogEntry
    from curation.text.embeddings import DIMENSION, text_hash, text_of_conversation, vector_bytes

    maker = LogMaker(seed=13)
    rng = np.random.default_rng(13)
    centroids = rng.normal(size=(len(TOPICS) + 1, DIMENSION))  # the last: logs about none of the subjects
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    started = time.perf_counter()
    for start in range(0, count, SEED_BATCH):
        batch = [maker.log(index) for index in range(start, min(count, start + SEED_BATCH))]
        result = logs_ingest(project=project, items=batch)
        assert result.accepted == len(batch), result.rejected[:3]
    last_id = 0
    while logs := list(
        LogEntry.objects.filter(project=project, id__gt=last_id).order_by("id").only("id", "messages")[:SEED_BATCH]
    ):
        last_id = logs[-1].pk
        texts = [text_of_conversation(log.messages) for log in logs]
        subjects = [next((n for n, topic in enumerate(TOPICS) if topic in text), len(TOPICS)) for text in texts]
        noise = rng.normal(scale=NOISE / np.sqrt(DIMENSION), size=(len(logs), DIMENSION))
        vectors = (centroids[subjects] + noise).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        LogEmbedding.objects.bulk_create(
            LogEmbedding(project=project, log_id=log.pk, vector=vector_bytes(vector), text_hash=text_hash(text))
            for log, vector, text in zip(logs, vectors, texts, strict=True)
        )
    print(f"  seeded {count:,} logs and their embeddings in {time.perf_counter() - started:,.0f} s")


def _run(project) -> tuple[object, list[tuple[str, float]]]:
    """One computation, in this process; the moments each phase began."""
    from curation.logs.topics.services import topic_job_create, topics_compute

    marks: list[tuple[str, float]] = []
    job = topic_job_create(project=project, send=False)
    marks.append(("start", time.perf_counter()))
    job = topics_compute(job_id=job.pk, on_progress=lambda job: marks.append((job.phase, time.perf_counter())))
    return job, marks


def _measure(project, user) -> list[tuple[str, str]]:
    from django.conf import settings
    from django.test import Client, override_settings

    from curation.logs.filters import logs_filter
    from curation.logs.similar.selectors import log_index_size
    from curation.logs.topics.selectors import topics_of_run

    job, marks = _run(project)
    phases = {"read": "read vectors, sample", "cluster": "cluster (fit, assign)", "label": "label (c-TF-IDF)",
              "stats": "stats", "write": "write"}  # fmt: skip
    rows = [("logs indexed", f"{log_index_size(project=project):,}"), ("topics (k from the index's size)", str(job.k))]
    for (phase, began), (_, ended) in itertools.pairwise(marks[1:]):
        rows.append((f"  {phases.get(phase, phase)}", f"{ended - began:,.2f} s"))
    rows.append(("computation, whole", f"{marks[-1][1] - marks[0][1]:,.2f} s"))
    tracemalloc.start()
    _run(project)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rows.append(("peak Python memory of a computation", f"{peak / 2**20:,.1f} MiB"))
    client = Client()
    client.force_login(user)
    # Production settings name the hashed files `collectstatic` writes, which this database's run has not.
    plain = {**settings.STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    times = []
    with override_settings(STORAGES=plain):
        for _ in range(6):  # the first compiles the templates
            started = time.perf_counter()
            response = client.get(f"/p/{project.slug}/topics/")
            times.append((time.perf_counter() - started) * 1000)
    assert response.status_code == 200 and b"data-topic" in response.content, response.content[:300]
    rows.append(("Topics page (view + template), median of 5", f"{statistics.median(times[1:]):,.0f} ms"))
    topics = list(topics_of_run(run=job.__class__.objects.filter(project=project).first()))
    started = time.perf_counter()
    counted = logs_filter(project=project, params={"topic": str(topics[0].pk)}).count()
    rows.append(("explorer filter topic=ID, counted", f"{(time.perf_counter() - started) * 1000:,.0f} ms"))
    assert counted == topics[0].size, (counted, topics[0].size)
    for topic in topics[:5]:
        rows.append((f"  #{topic.number} ({topic.size:,} logs)", topic.label))
    return rows


if __name__ == "__main__":
    main()
