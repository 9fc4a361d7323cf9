"""Score filters benchmark: a million logs, most of them scored, then the explorer's score filters and facets.

    .venv/bin/python bench/scores.py                  # 1,000,000 logs (seeding takes a minute or two)
    .venv/bin/python bench/scores.py --logs 200000    # smaller
    .venv/bin/python bench/scores.py --reuse          # time again on the database seeded last time

The logs are seeded in SQL (their conversations do not matter here): 70% carry a `quality` score from 1 to 5, 20%
a second one, 30% a `thumbs` score (`up` 4 times in 5), 1% a `judge` score. Server time is measured in-process
with Django's test client (view + queries + template, no network), the median and p95 of several runs:
  - GET /api/v1/logs (first page of 50) with a selective and a common score filter;
  - the explorer's facet panel of the same filters (the window of the newest 10,001 matches);
  - scores sent with logs: `logs_ingest` of 1,000 logs with two scores each against 1,000 without.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import (
    DEFAULT_DATABASE_URL,
    bench_project_and_user,
    child_env,
    code_version,
    django_setup,
    manage,
    percentile,
    print_table,
    warn_if_busy,
)

REPEATS = 9

SEED_SQL = """
INSERT INTO curation_logentry (project_id, provider, format, model, status, error_message, finish_reason, messages,
    tools, options, original, notes, metadata, search_text, pii, pii_pending, created_at, ingested_at)
SELECT %(project)s, 'openai', 'messages', 'gpt-4o-mini', 'success', '', 'stop', '[]', '[]', '{}', '{}', '[]', '{}',
    '', '[]', false, now() - make_interval(secs => i), now()
FROM generate_series(1, %(logs)s) AS i;
INSERT INTO curation_logscore (log_id, project_id, name, value_number, value_text, source, comment, created_at)
SELECT id, project_id, 'quality', 1 + (hashtext(id::text || 'q') & 1023) %% 5, NULL, 'api', '', now()
FROM curation_logentry WHERE project_id = %(project)s AND (hashtext(id::text) & 1023) < 717
UNION ALL
SELECT id, project_id, 'quality', 1 + (hashtext(id::text || 'r') & 1023) %% 5, NULL, 'user', '', now()
FROM curation_logentry WHERE project_id = %(project)s AND (hashtext(id::text || 's') & 1023) < 205
UNION ALL
SELECT id, project_id, 'thumbs', NULL, CASE WHEN (hashtext(id::text || 't') & 1023) < 820 THEN 'up' ELSE 'down' END,
    'user', '', now()
FROM curation_logentry WHERE project_id = %(project)s AND (hashtext(id::text || 'u') & 1023) < 307
UNION ALL
SELECT id, project_id, 'judge', (hashtext(id::text || 'j') & 1023) / 1023.0, NULL, 'judge', '', now()
FROM curation_logentry WHERE project_id = %(project)s AND (hashtext(id::text || 'k') & 1023) < 10;
ANALYZE curation_logentry;
ANALYZE curation_logscore;
"""

FILTERS = [
    ("judge>=0.99 (rare)", "score=judge%3E%3D0.99"),
    ("quality>=4 (common)", "score=quality%3E%3D4"),
    ("thumbs:down + quality<=2", "score=thumbs%3Adown&score=quality%3C%3D2"),
    ("no_score=quality", "no_score=quality"),
]


def main() -> None:
    args = _parse_args()
    warn_if_busy()
    env = child_env(database_url=args.database_url, var_dir=Path(tempfile.mkdtemp(prefix="logtune-bench-scores-")))
    env["ALLOWED_HOSTS"] = "testserver,127.0.0.1"
    if not args.reuse:
        from common import database_recreate

        database_recreate(url=args.database_url)
    manage("migrate", "--no-input", env=env)
    manage("collectstatic", "--no-input", env=env)
    django_setup(env=env)
    print(f"Logtune {code_version()}: score filters benchmark, database {args.database_url}")
    project, user = bench_project_and_user()
    if not args.reuse:
        started = time.perf_counter()
        _seed(project, args.logs)
        print(f"  seeded {args.logs:,} logs and their scores in {time.perf_counter() - started:.1f} s")
    rows = _measure(project, user)
    print_table(rows)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", type=int, default=1_000_000)
    parser.add_argument(
        "--database-url", default=DEFAULT_DATABASE_URL.replace("logtune_bench", "logtune_bench_scores")
    )
    parser.add_argument("--reuse", action="store_true", help="Skip seeding: reuse the database of the last run.")
    return parser.parse_args()


def _seed(project, logs: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(SEED_SQL, {"project": project.pk, "logs": logs})


def _timed(call, repeats: int = REPEATS) -> str:
    call()  # once untimed: the first request of a process loads templates and URL patterns
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return f"{statistics.median(times):.0f} / {percentile(times, 0.95):.0f} ms"


def _measure(project, user) -> list[tuple[str, str]]:
    from django.test import Client

    from curation.logs.services import logs_ingest
    from curation.models import LogScore

    client = Client()
    client.force_login(user)
    rows = [("scores stored", f"{LogScore.objects.filter(project=project).count():,}")]
    for label, query in FILTERS:

        def listed(query: str = query) -> None:
            response = client.get(f"/api/v1/logs?project={project.slug}&{query}")
            assert response.status_code == 200, response.content[:300]

        def facets(query: str = query) -> None:
            response = client.get(f"/p/{project.slug}/logs/facets/?{query}")
            assert response.status_code == 200 and b"facet-score" in response.content

        rows.append((f"GET /api/v1/logs {label}, median / p95", _timed(listed)))
        rows.append((f"facets {label}, median / p95", _timed(facets)))
    plain = [{"prompt": f"q{i}", "completion": "a"} for i in range(1_000)]
    with_scores = [
        {**item, "scores": [{"name": "quality", "value": 4}, {"name": "thumbs", "value": "up"}]} for item in plain
    ]
    rows.append(("ingest 1,000 logs, no scores", _timed(lambda: logs_ingest(project=project, items=plain), 5)))
    rows.append(
        ("ingest 1,000 logs, 2 scores each", _timed(lambda: logs_ingest(project=project, items=with_scores), 5))
    )
    return rows


if __name__ == "__main__":
    main()
