"""Explorer benchmark: seed realistic logs into PostgreSQL, then time what an analyst does.

    .venv/bin/python bench/explore.py                   # 100,000 logs: a short run
    .venv/bin/python bench/explore.py --logs 1000000    # the size the targets are set at (seeding takes minutes)
    .venv/bin/python bench/explore.py --reuse           # time again on the database seeded last time
    .venv/bin/python bench/explore.py --overview        # only the pages: lists, sorts, dashboard, searches

Server time is measured in-process with Django's test client (view + queries + template, no network):
  - the list page with common filters, on the first page and deep in the table (keyset cursor);
  - facet counts for the same filters;
  - each sort (time, tokens, latency, cost, both ways), on the first page and half-way down;
  - the dashboard over the filters above (logs, tokens, cost, latency, errors over time);
  - text search with a selective term (present in 1 log of 2,000), and one that names a tag or a metadata value;
  - search by meaning (`about=`) over the newest `--index` logs indexed (LOGTUNE_SIMILAR_LOGS_MAX, 50,000 by
    default): a new query each time (its words embedded, every indexed vector scored), the same query again (the
    ranking cached), and within a filter. The index's vectors are placed around the real embeddings of the
    bench's twelve support topics (a search's cost follows how many logs pass the threshold, not their text);
  - tagging 100,000 matching logs as a bulk job;
  - exporting a 100k- and a 1M-entry dataset (OpenAI chat JSONL) in a child process: rows/s, peak RSS.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    DEFAULT_DATABASE_URL,
    REPO_ROOT,
    AutoAnalyze,
    LogMaker,
    bench_project_and_user,
    child_env,
    code_version,
    django_setup,
    manage,
    percentile,
    print_table,
    warn_if_busy,
)

RARE_TERM = "zebracorn7731"
RARE_EVERY = 2_000
SEED_BATCH = 2_000
REPEATS = 15
TAG_TARGET = 100_000
# Peak RSS of a child process, printed on stderr as it exits.
RSS_WRAPPER = (
    "import resource, runpy, sys; sys.argv = sys.argv[1:]\n"
    "try:\n    runpy.run_path('manage.py', run_name='__main__')\n"
    "finally:\n    print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)


def main() -> None:
    args = _parse_args()
    warn_if_busy()
    var_dir = Path(tempfile.mkdtemp(prefix="logtune-bench-explore-"))
    env = child_env(database_url=args.database_url, var_dir=var_dir)
    env["ALLOWED_HOSTS"] = "testserver,127.0.0.1"
    if not args.reuse:
        from common import database_recreate

        database_recreate(url=args.database_url)
    manage("migrate", "--no-input", env=env)
    manage("collectstatic", "--no-input", env=env)
    django_setup(env=env)
    print(f"Logtune {code_version()}: explorer benchmark, database {args.database_url}")
    project, user = bench_project_and_user()
    if not args.reuse:
        _seed(project, args.logs, args.database_url)
    rows = _measure(project, user, env, overview=args.overview, index=args.index)
    print_table(rows)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", type=int, default=100_000, help="logs to seed (the targets: 1,000,000)")
    parser.add_argument("--overview", action="store_true", help="time the pages only: no bulk tagging, no exports")
    parser.add_argument(
        "--database-url", default=DEFAULT_DATABASE_URL.replace("logtune_bench", "logtune_bench_explore")
    )
    parser.add_argument("--reuse", action="store_true", help="Skip seeding: reuse the database of the last run.")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--index", type=int, default=50_000, help="logs in the index of a search by meaning")
    return parser.parse_args()


def _with_rare_term(log: dict) -> dict:
    for message in log["request"]["messages"]:
        if message["role"] == "user" and isinstance(message["content"], str):
            message["content"] += f" (ref {RARE_TERM})"
            return log
    return log


def _seed(project, count: int, url: str) -> None:
    from curation.logs.services import logs_ingest

    maker = LogMaker(seed=11)
    started = time.perf_counter()
    with AutoAnalyze(url=url):
        for start in range(0, count, SEED_BATCH):
            batch = []
            for index in range(start, min(count, start + SEED_BATCH)):
                log = maker.log(index)
                batch.append(_with_rare_term(log) if index % RARE_EVERY == 0 else log)
            result = logs_ingest(project=project, items=batch)
            assert result.accepted == len(batch), result.rejected[:3]
            if (start // SEED_BATCH) % 50 == 0:
                done = start + len(batch)
                print(f"  seeded {done:,} logs, {done / (time.perf_counter() - started):,.0f} logs/s", flush=True)
    seconds = time.perf_counter() - started
    print(f"  seeded {count:,} logs in {seconds:,.0f} s ({count / seconds:,.0f} logs/s, search indexes included)")
    _analyze(url)


def _analyze(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE curation_logentry")
        conn.execute("VACUUM ANALYZE curation_logtag")


def _timed(client, url: str) -> list[float]:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code, response.content[:500])
    return times


def _ms(times: list[float]) -> str:
    return f"{percentile(times, 0.5):,.0f} / {percentile(times, 0.95):,.0f} ms"


def _measure(project, user, env: dict[str, str], *, overview: bool, index: int) -> list[tuple[str, str]]:
    from django.test import Client

    from curation.common.pagination import encode_cursor
    from curation.models import LogEntry

    client = Client()
    client.force_login(user)
    base = f"/p/{project.slug}/logs/"
    total = LogEntry.objects.filter(project=project).count()
    middle = LogEntry.objects.filter(project=project).order_by("-created_at", "-id")[total // 2]
    deep = encode_cursor(middle.created_at, middle.pk)
    filters = {
        "no filter": "",
        "model": "model=gpt-4o-mini",
        "tag": "tag=billing",
        "status=error": "status=error",
        "one day": "created_after=2026-03-01T00:00:00Z&created_before=2026-03-02T00:00:00Z",
        "metadata": "metadata=feature:sql-helper",
        "tag + model": "tag=refunds&model=claude-3-5-haiku-20241022",
    }
    rows: list[tuple[str, str]] = [("logs in the project", f"{total:,}"), ("", "p50 / p95")]
    list_times, facet_times = [], []
    for name, query in filters.items():
        times = _timed(client, f"{base}?{query}")
        list_times += times
        rows.append((f"list page, {name}", _ms(times)))
    rows.append(("list page, half-way down (cursor)", _ms(_timed(client, f"{base}?cursor={deep}"))))
    rows.append(("list page, all filters above", _ms(list_times)))
    for name, query in filters.items():
        times = _timed(client, f"{base}facets/?{query}")
        facet_times += times
        rows.append((f"facets, {name}", _ms(times)))
    rows.append(("facets, all filters above", _ms(facet_times)))
    dashboard_times = []
    for name, query in filters.items():
        times = _timed(client, f"{base}dashboard/?{query}")
        dashboard_times += times
        rows.append((f"dashboard, {name}", _ms(times)))
    rows.append(("dashboard, all filters above", _ms(dashboard_times)))
    rows += _sorts(client, project, base)
    rows.append((f"search '{RARE_TERM}' (1 in {RARE_EVERY:,})", _ms(_timed(client, f"{base}?q={RARE_TERM}"))))
    rows.append(("search 'refund' (common word)", _ms(_timed(client, f"{base}?q=refund"))))
    rows.append(("search 'billing' (a tag's name too)", _ms(_timed(client, f"{base}?q=billing"))))
    rows.append(("search 'sql-helper' (a metadata value)", _ms(_timed(client, f"{base}?q=sql-helper"))))
    rows += _about(client, project, base, index)
    if not overview:
        rows += _tagging(project, user)
        rows += _exports(project, env)
    return rows


def _sorts(client, project, base: str) -> list[tuple[str, str]]:
    """Each sort's first page and a page half-way down its valued rows (the cursor of the middle row)."""
    from curation.common.pagination import _encode_column_cursor, encode_cursor
    from curation.logs.selectors import SORT_COLUMNS, SORTS
    from curation.models import LogEntry

    rows, all_times = [], []
    for sort in SORTS:
        column = SORT_COLUMNS[sort.lstrip("-")]
        valued = LogEntry.objects.filter(project=project, **{f"{column}__isnull": False})
        middle = valued.order_by(column, "id")[valued.count() // 2]
        if column == "created_at":
            deep = encode_cursor(middle.created_at, middle.pk)
        else:
            deep = _encode_column_cursor(getattr(middle, column), None, middle.pk)
        first = _timed(client, f"{base}?sort={sort}")
        down = _timed(client, f"{base}?sort={sort}&cursor={deep}")
        all_times += first + down
        rows.append((f"sort {sort}, first page / half-way down", f"{_ms(first)} · {_ms(down)}"))
    rows.append(("sorts, all pages above", _ms(all_times)))
    return rows


def _index_around_topics(project, count: int) -> None:
    """The newest `count` logs indexed, each vector one of the twelve topics' real embedding plus noise (cosine
    about 0.6 to its topic): what a search's cost depends on, without embedding every log for an hour."""
    import numpy as np
    from common import TOPICS

    from curation.models import LogEmbedding, LogEntry
    from curation.text.embeddings import embed, vector_bytes

    if LogEmbedding.objects.filter(project=project).count() == count:
        return
    LogEmbedding.objects.filter(project=project).delete()
    centres = embed(list(TOPICS))
    rng = np.random.default_rng(7)
    ids = list(LogEntry.objects.filter(project=project).order_by("-id").values_list("id", flat=True)[:count])
    for start in range(0, len(ids), 5_000):
        chunk = ids[start : start + 5_000]
        noise = rng.normal(0, 0.055, size=(len(chunk), centres.shape[1])).astype(np.float32)
        vectors = centres[np.arange(start, start + len(chunk)) % len(centres)] + noise
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        LogEmbedding.objects.bulk_create(
            LogEmbedding(project=project, log_id=pk, vector=vector_bytes(vector), text_hash="bench")
            for pk, vector in zip(chunk, vectors, strict=True)
        )


def _about(client, project, base: str, index: int) -> list[tuple[str, str]]:
    from urllib.parse import quote

    from common import TOPICS

    from curation.logs.similar.about import logs_about
    from curation.text.embeddings import embed

    _index_around_topics(project, index)
    embed(["load the model"])  # once per process, as a web worker's first search does
    first = _timed_once(client, f"{base}?about={quote('the first search writes the index file')}")
    new, within = [], []
    for repeat in range(REPEATS):
        words = f"{TOPICS[repeat % len(TOPICS)]} problems {repeat}"  # new words: embedded and scored afresh
        new += _timed_once(client, f"{base}?about={quote(words)}")
        within += _timed_once(client, f"{base}?about={quote(words + ' again')}&model=gpt-4o-mini")
    again = _timed(client, f"{base}?about={quote('a refund for a duplicate charge')}")
    found = logs_about(project=project, text="a refund for a duplicate charge")
    return [
        ("about: first search after the index changed (its file written)", f"{first[0]:,.0f} ms"),
        (f"about: new words each time, {index:,} indexed", _ms(new)),
        ("about: the same words again (ranking cached)", _ms(again)),
        ("about: new words within model=gpt-4o-mini", _ms(within)),
        ("about: logs ranked for 'a refund for a duplicate charge'", f"{len(found.ids):,} of {found.searched:,}"),
    ]


def _timed_once(client, url: str) -> list[float]:
    started = time.perf_counter()
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.content[:500])
    return [(time.perf_counter() - started) * 1000]


def _tagging(project, user) -> list[tuple[str, str]]:
    from curation.logs.bulk.services import bulk_job_create, bulk_job_run
    from curation.models import LogEntry

    logs = LogEntry.objects.filter(project=project)
    cutoff = logs.order_by("-created_at", "-id")[min(TAG_TARGET, logs.count()) - 1].created_at
    query = f"created_after={cutoff.isoformat().replace('+00:00', 'Z')}"
    params = {"tags": ["bench-reviewed"]}
    job = bulk_job_create(project=project, action="tag_add", params=params, query=query, actor=user)
    started = time.perf_counter()
    job = bulk_job_run(job_id=job.pk)
    seconds = time.perf_counter() - started
    return [(f"tag {job.done:,} matching logs (bulk job)", f"{seconds:,.1f} s")]


def _exports(project, env: dict[str, str]) -> list[tuple[str, str]]:
    from curation.datasets.services import dataset_add_logs, dataset_create
    from curation.models import LogEntry

    rows = []
    everything = dataset_create(project=project, name=f"all-{time.time_ns()}")
    started = time.perf_counter()
    added = dataset_add_logs(dataset=everything, logs=LogEntry.objects.filter(project=project))
    rows.append((f"add {added:,} logs to a dataset", f"{time.perf_counter() - started:,.1f} s"))
    small = dataset_create(project=project, name=f"100k-{time.time_ns()}")
    newest = LogEntry.objects.filter(project=project).order_by("-id").values("id")[:100_000]
    dataset_add_logs(dataset=small, logs=LogEntry.objects.filter(id__in=newest))
    for dataset in (small, everything):
        entries = dataset.entries.count()
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-c", RSS_WRAPPER, "manage.py", "export_dataset", str(dataset.pk), "--project",
             project.slug, "--format", "openai", "--output", "/dev/null"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"export failed:\n{result.stderr[-2000:]}")
        peak_kb = int(result.stderr.rsplit("PEAK_RSS_KB", 1)[1].split()[0])
        rows.append((f"export {entries:,} entries, rows/s", f"{entries / seconds:,.0f}"))
        rows.append((f"export {entries:,} entries, peak RSS", f"{peak_kb / 1024:,.0f} MB"))
    return rows


if __name__ == "__main__":
    main()
