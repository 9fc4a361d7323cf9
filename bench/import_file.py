"""Speed and memory of importing a JSONL file: `manage.py import_logs FILE --inline` in a child process.

    .venv/bin/python bench/import_file.py [--lines 1000000] [--gzip]
    .venv/bin/python bench/import_file.py --large-lines 24 --line-mb 30   # few, very large lines

With `--large-lines N --line-mb M` the file holds N logs of about M MB each instead (a long document pasted
into the prompt of each): what a batch of lines costs in memory when every line is near the per-log limit.

Writes a file of realistic ~1 KB logs to a temporary folder (not timed), recreates the bench
database, imports the file and follows the child: its resident memory (peak so far, read from
/proc every --interval seconds) against the lines the import job has committed, to show memory
stays flat from the first 10% of the file to the end. Checks that every line became a stored log.
Then it reads the stored rows back and stores them again with raw COPY into the emptied tables, 1,000
logs and their tags a transaction over --copy-connections sessions (default 1, like the import): the
ceiling, measured in the same run. The load average at the start of each phase is printed with the
figures, since other work on the machine lowers both.
"""

import argparse
import gzip
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import orjson
import psycopg
from ceiling import LOG_TABLE, TAG_TABLE, checkpoint, copy_batches, count, stored_batches
from common import (
    DEFAULT_DATABASE_URL,
    PROJECT_SLUG,
    QUESTIONS,
    REPO_ROOT,
    TOPICS,
    AutoAnalyze,
    LogMaker,
    bench_database_prepare,
    child_env,
    code_version,
    print_table,
    warn_if_busy,
)


@dataclass
class Sample:
    seconds: float
    lines_done: int
    rss_mb: float
    peak_mb: float  # the child's peak resident memory so far (VmHWM)


@dataclass
class ImportRun:
    seconds: float = 0.0
    peak_mb: float = 0.0  # from the kernel's accounting of the finished child (ru_maxrss)
    samples: list[Sample] = field(default_factory=list)


def main() -> None:
    args = _parse_args()
    warn_if_busy()
    with tempfile.TemporaryDirectory(prefix="logtune-bench-") as tmp:
        path = Path(tmp) / ("logs.jsonl.gz" if args.gzip else "logs.jsonl")
        if args.large_lines:
            args.lines = args.large_lines
        print(f"Writing {args.lines:,} logs to {path}...")
        started = time.perf_counter()
        line_mb = args.line_mb if args.large_lines else None
        _write_file(path, lines=args.lines, seed=args.seed, compress=args.gzip, line_mb=line_mb)
        size_mb = path.stat().st_size / 1e6
        print(f"  {size_mb:,.0f} MB in {time.perf_counter() - started:.0f} s")

        env = child_env(database_url=args.database_url, var_dir=Path(tmp))
        print(f"Recreating and migrating {args.database_url}...")
        bench_database_prepare(env=env)
        load_before = os.getloadavg()[0]
        print(f"Importing... (load average {load_before:.1f})")
        with AutoAnalyze(url=args.database_url):
            run = _import(path, env=env, interval=args.interval, log_dir=Path(tmp))
    _check_stored(url=args.database_url, lines=args.lines)
    load_copy = os.getloadavg()[0]
    print(f"COPY of the stored rows over {args.copy_connections} connection(s)... (load average {load_copy:.1f})")
    copy_seconds = _copy_ceiling(url=args.database_url, connections=args.copy_connections)

    _print_memory_trace(run.samples, lines=args.lines)
    tenth = _first_sample_past(run.samples, args.lines // 10)
    final = run.samples[-1]
    print_table(
        [
            ("code", code_version()),
            ("file", f"{size_mb:,.0f} MB{' gzip' if args.gzip else ''}"),
            ("lines", f"{args.lines:,}" + (f" of {args.line_mb:g} MB" if args.large_lines else "")),
            ("seconds", f"{run.seconds:,.1f}"),
            ("lines/s", f"{args.lines / run.seconds:,.0f}"),
            ("MB/s", f"{size_mb / run.seconds:,.1f}"),
            ("COPY lines/s", f"{args.lines / copy_seconds:,.0f}"),
            ("import / COPY", f"{copy_seconds / run.seconds:.1%}"),
            ("load average at import / COPY start", f"{load_before:.1f} / {load_copy:.1f}"),
            ("peak RSS MB", f"{run.peak_mb:,.0f}"),
            (f"peak RSS MB at {tenth.lines_done:,} lines" if tenth else "peak RSS MB at 10%", _mb(tenth)),
            (f"peak RSS MB at {final.lines_done:,} lines", _mb(final)),
        ]
    )


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="Dropped and created again.")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--gzip", action="store_true", help="Write and import a .jsonl.gz file.")
    parser.add_argument("--interval", type=float, default=0.5, help="Seconds between memory samples.")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--copy-connections", type=int, default=1, help="Sessions of the COPY ceiling (the import uses one)."
    )
    parser.add_argument("--large-lines", type=int, default=0, metavar="N", help="N logs of --line-mb MB instead.")
    parser.add_argument("--line-mb", type=float, default=30.0, metavar="M", help="Size of each large line in MB.")
    args = parser.parse_args()
    if args.lines < 1 or args.interval <= 0 or args.copy_connections < 1:
        parser.error("--lines and --copy-connections must be at least 1 and --interval positive")
    if args.large_lines < 0 or args.line_mb <= 0:
        parser.error("--large-lines must not be negative and --line-mb must be positive")
    return args


def _write_file(path: Path, *, lines: int, seed: int, compress: bool, line_mb: float | None = None) -> None:
    """Stream the logs to disk one line at a time: a million lines never sit in memory. With `line_mb`, each
    log carries a document of that many MB in its first user message."""
    maker = LogMaker(seed=seed)
    document = _document(int(line_mb * 1e6), seed=seed) if line_mb else ""
    with path.open("wb", buffering=1 << 20) as raw:
        out: BinaryIO = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) if compress else raw
        for index in range(lines):
            log = maker.log(index)
            if document:
                _paste(log, f"Document {index}:\n{document}")
            out.write(orjson.dumps(log, option=orjson.OPT_APPEND_NEWLINE))
        out.close()  # writes the gzip trailer; the file itself is closed by the `with`


def _document(size: int, *, seed: int) -> str:
    """About `size` bytes of prose-like text: sentences of the bench's words, varied, in paragraphs."""
    rng = random.Random(seed)
    words = " ".join(TOPICS + QUESTIONS).replace(".", "").replace(",", "").split()
    paragraphs = [
        ". ".join(" ".join(rng.choices(words, k=rng.randint(8, 24))).capitalize() for _ in range(6)) + "."
        for _ in range(200)
    ]
    text = "\n\n".join(paragraphs)
    return (text * (size // len(text) + 1))[:size]


def _paste(log: dict, text: str) -> None:
    """Put `text` at the end of the log's first user message (OpenAI or Anthropic shape)."""
    message = next(m for m in log["request"]["messages"] if m["role"] == "user")
    if isinstance(message["content"], str):
        message["content"] += "\n\n" + text
    else:
        message["content"].append({"type": "text", "text": text})


def _import(path: Path, *, env: dict[str, str], interval: float, log_dir: Path) -> ImportRun:
    command = [
        sys.executable, "manage.py", "import_logs", str(path),
        "--project", PROJECT_SLUG, "--inline", "--no-progress",
    ]  # fmt: skip
    run = ImportRun()
    output = log_dir / "import_logs.out"
    with output.open("wb") as out, psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        checkpoint(conn)
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            while True:
                # wait4 rather than wait: it also gives the child's own peak memory, not that of all children.
                pid, status, usage = os.wait4(child.pid, os.WNOHANG)
                if pid:
                    break
                sample = _sample(child.pid, conn, time.perf_counter() - started)
                if sample is not None:
                    run.samples.append(sample)
                time.sleep(interval)
        except BaseException:
            child.kill()
            child.wait()
            raise
        run.seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(f"import_logs failed ({child.returncode}):\n{output.read_text()[-4000:]}")
        run.peak_mb = usage.ru_maxrss / 1024  # kilobytes on Linux
        # The last lines are committed after the last sample: the end is the whole run's peak.
        rss_mb = run.samples[-1].rss_mb if run.samples else 0.0
        run.samples.append(Sample(run.seconds, _lines_done(conn), rss_mb, run.peak_mb))
    return run


def _sample(pid: int, conn: psycopg.Connection, seconds: float) -> Sample | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    memory = {
        name: int(value.split()[0]) / 1024
        for name, value in (line.split(":", 1) for line in status.splitlines())
        if name in ("VmRSS", "VmHWM")
    }
    if "VmRSS" not in memory:  # exiting: its memory is already gone
        return None
    return Sample(seconds, _lines_done(conn), memory["VmRSS"], memory["VmHWM"])


def _lines_done(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT coalesce(max(lines_done), 0) FROM curation_importjob").fetchone()
    return row[0] if row else 0


def _print_memory_trace(samples: list[Sample], *, lines: int) -> None:
    print(f"  {'lines done':>12}  {'seconds':>8}  {'RSS MB':>7}  {'peak MB':>7}")
    shown: set[int] = set()
    for tenth in range(1, 11):
        sample = _first_sample_past(samples, lines * tenth // 10)
        if sample is not None and id(sample) not in shown:
            shown.add(id(sample))
            print(f"  {sample.lines_done:>12,}  {sample.seconds:>8.1f}  {sample.rss_mb:>7.0f}  {sample.peak_mb:>7.0f}")


def _first_sample_past(samples: list[Sample], lines: int) -> Sample | None:
    return next((sample for sample in samples if sample.lines_done >= lines), None)


def _mb(sample: Sample | None) -> str:
    return f"{sample.peak_mb:,.0f}" if sample else "-"


def _copy_ceiling(*, url: str, connections: int) -> float:
    """Seconds to store the rows the import stored again with raw COPY, 1,000 logs and their tags a transaction
    (the import's batch), into the emptied tables with all their indexes: what PostgreSQL alone costs."""
    with psycopg.connect(url, autocommit=True) as conn:
        logs, tags = count(conn, LOG_TABLE), count(conn, TAG_TABLE)
        batches = stored_batches(conn, batch_size=1000)
        seconds = copy_batches(conn, batches, url=url, connections=connections)
        if (count(conn, LOG_TABLE), count(conn, TAG_TABLE)) != (logs, tags):
            raise SystemExit("COPY did not store every row")
    return seconds


def _check_stored(*, url: str, lines: int) -> None:
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT count(*) FROM curation_logentry").fetchone()[0]  # type: ignore[index]
        status, accepted, rejected = conn.execute(
            "SELECT status, accepted, rejected FROM curation_importjob ORDER BY id DESC LIMIT 1"
        ).fetchone()  # type: ignore[misc]
    if (stored, accepted, rejected, status) != (lines, lines, 0, "succeeded"):
        raise SystemExit(
            f"{lines:,} lines, but {stored:,} logs stored; the job says {status}, "
            f"{accepted:,} accepted, {rejected:,} rejected"
        )


if __name__ == "__main__":
    main()
