"""Ingest throughput of `POST /api/v1/logs` (or of OTLP traces) under gunicorn, against a raw COPY of the same rows.

    .venv/bin/python bench/ingest.py [--batches 100] [--batch-size 1000] [--clients 4] [--workers 2]
                                     [--shape chat-anthropic|mix|otlp]

`--shape` picks what is sent: `chat-anthropic` (the default) 60% OpenAI Chat Completions and 40% Anthropic Messages
envelopes; `mix` half Chat Completions, a quarter OpenAI Responses API, a quarter Anthropic Messages; `otlp` the
default logs as OpenTelemetry GenAI spans, one OTLP/HTTP protobuf `ExportTraceServiceRequest` per batch, to
`POST /api/v1/otel/v1/traces`.

Recreates the bench database, starts gunicorn on 127.0.0.1 (production settings, DEBUG=0), sends
pre-serialised batches of realistic ~1 KB logs from concurrent keep-alive clients, and checks every
answer accepted the whole batch. Then it reads the stored rows back and stores them again with
raw COPY, one transaction of log rows plus their tag rows per batch, into the emptied real tables
with their indexes: the ceiling the API could approach. Only 127.0.0.1 is contacted, and the
database in --database-url.
"""

import argparse
import http.client
import os
import queue
import random
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psycopg
from ceiling import LOG_TABLE, TAG_TABLE, checkpoint, copy_batches, count, stored_batches
from common import (
    DEFAULT_DATABASE_URL,
    AutoAnalyze,
    LogMaker,
    bench_database_prepare,
    child_env,
    code_version,
    free_port,
    gunicorn_start,
    percentile,
    print_table,
    server_stop,
    wait_until_up,
    warn_if_busy,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from spans import export_request

REQUEST_TIMEOUT_S = 120


SHAPES = ("chat-anthropic", "mix", "otlp")
LOGS_PATH, OTLP_PATH = "/api/v1/logs", "/api/v1/otel/v1/traces"
JSON, PROTOBUF = "application/json", "application/x-protobuf"


def main() -> None:
    args = _parse_args()
    warn_if_busy()
    load_before = _load_average()
    print(f"Load average (1, 5, 15 min): {load_before}")
    total = args.batches * args.batch_size
    print(f"Generating {total:,} logs ({args.shape}) in {args.batches} batches of {args.batch_size}...")
    bodies = _bodies(batches=args.batches, batch_size=args.batch_size, seed=args.seed, shape=args.shape)
    megabytes = sum(len(body) for body in bodies) / 1e6
    print(f"  {megabytes:.0f} MB of request bodies, {megabytes * 1e3 / total:.2f} KB per log")

    with tempfile.TemporaryDirectory(prefix="logtune-bench-") as tmp:
        env = child_env(database_url=args.database_url, var_dir=Path(tmp))
        print(f"Recreating and migrating {args.database_url}...")
        key = bench_database_prepare(env=env)
        port = free_port()
        log_path = Path(tmp) / "gunicorn.log"
        print(f"Starting gunicorn ({args.workers} workers) on 127.0.0.1:{port}...")
        server = gunicorn_start(port=port, env=env, log_path=log_path, options=[
            "--workers", str(args.workers), "--timeout", str(REQUEST_TIMEOUT_S),
        ])  # fmt: skip
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            try:
                wait_until_up(server, port=port, key=key, log_path=log_path)
                checkpoint(conn)
                print(f"Sending from {args.clients} clients...")
                with AutoAnalyze(url=args.database_url):
                    api = _send(
                        bodies, port=port, key=key, clients=args.clients, batch_size=args.batch_size, shape=args.shape
                    )
            finally:
                server_stop(server, grace=25)
            stored = count(conn, LOG_TABLE)
            if stored != api.accepted:
                raise SystemExit(f"{stored:,} logs stored, {api.accepted:,} accepted")
            tag_rows = count(conn, TAG_TABLE)

            print("Reading the stored rows back for COPY...")
            batches = stored_batches(conn, batch_size=args.batch_size)
            print(f"COPY of {total:,} log rows and their {tag_rows:,} tag rows over {args.workers} connections...")
            copy_seconds = copy_batches(conn, batches, url=args.database_url, connections=args.workers)
            if (count(conn, LOG_TABLE), count(conn, TAG_TABLE)) != (total, tag_rows):
                raise SystemExit("COPY did not store every row")

    api_rate = api.accepted / api.seconds
    copy_rate = total / copy_seconds
    print_table(
        [
            ("code", code_version()),
            ("shape", args.shape),
            ("load average before / after", f"{load_before} / {_load_average()}"),
            ("logs sent", f"{total:,}"),
            ("API logs/s", f"{api_rate:,.0f}"),
            ("API batch p50 ms", f"{percentile(api.latencies, 0.5) * 1e3:,.0f}"),
            ("API batch p95 ms", f"{percentile(api.latencies, 0.95) * 1e3:,.0f}"),
            ("COPY logs/s", f"{copy_rate:,.0f}"),
            ("API / COPY", f"{api_rate / copy_rate:.1%}"),
        ]
    )


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="Dropped and created again.")
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=1000, help="Logs per request (the API takes 1,000 at most).")
    parser.add_argument("--clients", type=int, default=4, help="Concurrent client threads.")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes.")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shape", choices=SHAPES, default="chat-anthropic", help="What is sent (see above).")
    args = parser.parse_args()
    if min(args.batches, args.batch_size, args.clients, args.workers) < 1:
        parser.error("--batches, --batch-size, --clients and --workers must be at least 1")
    return args


def _bodies(*, batches: int, batch_size: int, seed: int, shape: str) -> list[bytes]:
    maker = LogMaker(seed=seed, mix=shape == "mix")
    logs = [[maker.log(batch * batch_size + i) for i in range(batch_size)] for batch in range(batches)]
    if shape == "otlp":
        rng = random.Random(seed)
        return [export_request(batch, rng=rng) for batch in logs]
    return [orjson.dumps({"logs": batch}) for batch in logs]


def _load_average() -> str:
    return " ".join(f"{load:.1f}" for load in os.getloadavg())


# --- the server ------------------------------------------------------------------------------------


# --- the clients -----------------------------------------------------------------------------------


@dataclass
class ApiRun:
    seconds: float = 0.0
    accepted: int = 0
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _send(bodies: list[bytes], *, port: int, key: str, clients: int, batch_size: int, shape: str) -> ApiRun:
    todo: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    for body in bodies:
        todo.put(body)
    run = ApiRun()
    lock = threading.Lock()
    path, content_type = (OTLP_PATH, PROTOBUF) if shape == "otlp" else (LOGS_PATH, JSON)
    check = _check_export_answer if shape == "otlp" else _check_answer
    headers = {"Authorization": f"Bearer {key}", "Content-Type": content_type, "Connection": "keep-alive"}

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
        try:
            while not run.failures:
                try:
                    body = todo.get_nowait()
                except queue.Empty:
                    return
                started = time.perf_counter()
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                answer = response.read()
                latency = time.perf_counter() - started
                failure = check(response.status, answer, batch_size)
                with lock:
                    run.latencies.append(latency)
                    if failure:
                        run.failures.append(failure)
                    else:
                        run.accepted += batch_size
        except Exception as exc:
            with lock:
                run.failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    threads = [threading.Thread(target=client, name=f"client-{n}") for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.seconds = time.perf_counter() - started
    if run.failures:
        raise SystemExit(f"{len(run.failures)} request(s) failed; the first: {run.failures[0]}")
    return run


def _check_answer(status: int, answer: bytes, batch_size: int) -> str:
    """Empty when the whole batch was accepted, else what went wrong."""
    if status != 200:
        return f"HTTP {status}: {answer[:500]!r}"
    result = orjson.loads(answer)
    if result.get("accepted") != batch_size or result.get("duplicates") or result.get("rejected"):
        return f"not all accepted: {answer[:500]!r}"
    return ""


def _check_export_answer(status: int, answer: bytes, batch_size: int) -> str:
    """Empty when every span of the export was stored (an ExportTraceServiceResponse without partial success)."""
    if status != 200:
        return f"HTTP {status}: {answer[:500]!r}"
    response = ExportTraceServiceResponse()
    response.ParseFromString(answer)
    if response.HasField("partial_success"):
        return f"not all stored: {response.partial_success}"
    return ""


if __name__ == "__main__":
    main()
