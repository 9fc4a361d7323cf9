"""Speed and memory of "more like this" (curation/logs/similar/services.py) over an index of 50,000 logs.

    .venv/bin/python bench/similar.py [--logs 50000] [--embed 1000] [--queries 20] [--reuse]

Seeds --logs realistic logs (bench/common.py) into a PostgreSQL database of its own, and gives each an
embedding: random unit vectors, since the cost of a search does not depend on the values, stored under
each log's real text hash so that the searches read them as fresh. Then times, in this process:
  - a search of the whole index (k = 20), and one narrowed by an explorer filter (one model);
  - the panel of a log's page through Django's test client (view, queries and template);
  - the peak of Python memory (tracemalloc, numpy included) during one search;
  - with --embed N, the indexing job on N fresh logs, embedded with the real model: logs/s.
Each search is run --queries times on different logs; p50 and p95 are printed.
"""

import argparse
import statistics
import time
import tracemalloc

from common import (
    DEFAULT_DATABASE_URL,
    LogMaker,
    bench_django,
    bench_project_and_user,
    code_version,
    percentile,
    print_table,
    warn_if_busy,
)

SEED_BATCH = 2_000


def main() -> None:
    args = _parse_args()
    warn_if_busy()
    bench_django(name="similar", database_url=args.database_url, reuse=args.reuse)
    print(f"Logtune {code_version()}: more like this, database {args.database_url}")
    project, user = bench_project_and_user()
    if not args.reuse:
        _seed(project, args.logs)
    rows = _measure(project, user, queries=args.queries)
    if args.embed:
        rows += _measure_indexing(project, args.embed)
    print_table(rows)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", type=int, default=50_000)
    parser.add_argument("--embed", type=int, default=0, help="Also time the indexing job on this many new logs.")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--reuse", action="store_true", help="Skip seeding: reuse the database of the last run.")
    parser.add_argument(
        "--database-url", default=DEFAULT_DATABASE_URL.replace("logtune_bench", "logtune_bench_similar")
    )
    return parser.parse_args()


def _seed(project, count: int) -> None:
    import numpy as np

    from curation.logs.services import logs_ingest
    from curation.models import LogEmbedding, LogEntry
    from curation.text.embeddings import DIMENSION, text_hash, text_of_conversation, vector_bytes

    maker = LogMaker(seed=13)
    rng = np.random.default_rng(13)
    started = time.perf_counter()
    for start in range(0, count, SEED_BATCH):
        batch = [maker.log(index) for index in range(start, min(count, start + SEED_BATCH))]
        result = logs_ingest(project=project, items=batch)
        assert result.accepted == len(batch), result.rejected[:3]
    last_id = 0
    while True:
        logs = list(
            LogEntry.objects.filter(project=project, id__gt=last_id).order_by("id").only("id", "messages")[:SEED_BATCH]
        )
        if not logs:
            break
        last_id = logs[-1].pk
        vectors = rng.normal(size=(len(logs), DIMENSION)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        LogEmbedding.objects.bulk_create(
            LogEmbedding(
                project=project,
                log_id=log.pk,
                vector=vector_bytes(vector),
                text_hash=text_hash(text_of_conversation(log.messages)),
            )
            for log, vector in zip(logs, vectors, strict=True)
        )
    print(f"  seeded {count:,} logs and their embeddings in {time.perf_counter() - started:,.0f} s")


def _query_logs(project, count: int) -> list:
    from curation.models import LogEntry

    ids = list(LogEntry.objects.filter(project=project).order_by("id").values_list("id", flat=True))
    step = max(1, len(ids) // count)
    return [LogEntry.objects.get(pk=log_id) for log_id in ids[::step][:count]]


def _ms(times: list[float]) -> str:
    return f"{statistics.median(times):,.0f} / {percentile(times, 0.95):,.0f}"


def _measure(project, user, *, queries: int) -> list[tuple[str, str]]:
    from django.test import Client

    from curation.logs.similar.selectors import log_index_size
    from curation.logs.similar.services import logs_similar
    from curation.models import LogEntry

    logs = _query_logs(project, queries)
    model = LogEntry.objects.filter(project=project).values_list("model", flat=True).first()
    within = LogEntry.objects.filter(project=project, model=model)
    logs_similar(project=project, log=logs[0])  # warm: imports, connection, caches
    whole, narrowed, pages = [], [], []
    searched = narrowed_searched = 0
    for log in logs:
        started = time.perf_counter()
        searched = logs_similar(project=project, log=log).searched
        whole.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        narrowed_searched = logs_similar(project=project, log=log, within=within).searched
        narrowed.append((time.perf_counter() - started) * 1000)
    client = Client()
    client.force_login(user)
    for log in logs:
        started = time.perf_counter()
        response = client.get(f"/p/{project.slug}/logs/{log.pk}/similar", HTTP_HX_REQUEST="true")
        pages.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200 and b"data-score" in response.content, response.content[:300]
    tracemalloc.start()
    logs_similar(project=project, log=logs[-1])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return [
        ("logs indexed", f"{log_index_size(project=project):,}"),
        ("search, whole index: ms p50 / p95", _ms(whole)),
        ("  logs compared", f"{searched:,}"),
        (f"search, model={model}: ms p50 / p95", _ms(narrowed)),
        ("  logs compared", f"{narrowed_searched:,}"),
        ("panel (view + template): ms p50 / p95", _ms(pages)),
        ("peak Python memory of a search", f"{peak / 2**20:,.1f} MiB"),
    ]


def _measure_indexing(project, count: int) -> list[tuple[str, str]]:
    from curation.logs.services import logs_ingest
    from curation.logs.similar.services import project_embed_logs
    from curation.models import LogEmbedding, LogEmbeddingJob, LogEntry
    from curation.text.embeddings import get_embedder

    maker = LogMaker(seed=17)
    for start in range(0, count, SEED_BATCH):
        logs_ingest(
            project=project, items=[maker.log(10**7 + i) for i in range(start, min(count, start + SEED_BATCH))]
        )
    newest = LogEntry.objects.filter(project=project).order_by("-id").values_list("id", flat=True)[:count]
    LogEmbedding.objects.filter(log_id__in=list(newest)).delete()
    get_embedder()  # the model's load is not part of the rate
    # The job row without its Celery task: it runs here, in this process.
    job = LogEmbeddingJob.objects.create(project=project, limit=count)
    started = time.perf_counter()
    job = project_embed_logs(job_id=job.pk)
    seconds = time.perf_counter() - started
    return [
        (f"indexing {count:,} new logs (real model)", f"{seconds:,.1f} s"),
        ("  logs/s", f"{job.embedded / seconds:,.1f}"),
    ]


if __name__ == "__main__":
    main()
