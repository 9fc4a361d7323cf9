"""Concurrent ingest for a bounded time: many API clients against gunicorn on 127.0.0.1.

    .venv/bin/python bench/load.py [--clients 16] [--batch 100] [--seconds 30] [--workers 2]
                                   [--worker-class config|gthread|sync] [--threads 4] [--rate RATE]
    .venv/bin/python bench/load.py --slow 16 [--slow-kind headers|body] [--seconds 20] [--workers 4]

Recreates a bench database, creates the bench project with one API key per client, and starts the
production server (gunicorn, `config.wsgi`, DEBUG=0, a random SECRET_KEY, ALLOWED_HOSTS=127.0.0.1)
on a free port, with per-key ingest rate limiting off unless --rate sets LOGTUNE_INGEST_RATE. Then
--clients threads, each with its own key and keep-alive connection, POST batches of distinct OpenAI
Chat Completions logs to /api/v1/logs for --seconds, and it prints throughput, latency percentiles
and errors by kind. It exits non-zero when any request failed (429s under --rate are counted apart)
or when the project's rows in the database differ from the logs the answers accepted.

--worker-class config (the default) starts gunicorn as production does, with config/gunicorn.py; gthread is the
plain gthread worker, as production ran before it. With --slow N it measures slow clients instead of ingest:
N connections send a request's head (or a login form's body) a byte at a time while /healthz and an API read
are timed (bench/slow_clients.py); it exits non-zero when a probe went unanswered.

Every request has a timeout and so has the whole run; gunicorn runs in a process group of its own
that is stopped on every way out. Only 127.0.0.1 is contacted, and the database in --database-url.
"""

import argparse
import http.client
import queue
import signal
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psycopg
from common import (
    ANSWERS,
    DEFAULT_DATABASE_URL,
    PROJECT_SLUG,
    AutoAnalyze,
    LogMaker,
    child_env,
    code_version,
    database_recreate,
    django_setup,
    free_port,
    gunicorn_start,
    manage,
    percentile,
    print_table,
    server_stop,
    wait_until_up,
    warn_if_busy,
)
from slow_clients import slow_problems, slow_run, slow_table

STOP_GRACE_S = 10
ERROR_PAUSE_S = 0.1
# Generation, migrations, server start and stop, on top of --seconds and the last requests' timeout.
RUN_OVERHEAD_S = 240

OK, RATE_LIMITED, TIMEOUT, CONNECTION, BAD_ANSWER = "ok", "429", "timeout", "connection", "bad answer"


def main() -> None:
    args = _parse_args()
    # SIGTERM and the whole run's deadline become exceptions, so every `finally` below runs.
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGALRM, _raise_out_of_time)
    signal.alarm(args.run_timeout)
    warn_if_busy()
    if args.slow:
        _slow_main(args)
        return
    batches = _batches(args)
    with tempfile.TemporaryDirectory(prefix="logtune-load-") as tmp:
        env = child_env(database_url=args.database_url, var_dir=Path(tmp))
        env.update(ALLOWED_HOSTS="127.0.0.1", LOGTUNE_INGEST_RATE=args.rate)
        print(f"Recreating and migrating {args.database_url}, {args.clients} API keys...")
        warm_up_key, *keys = _database_prepare(env=env, keys=args.clients + 1)
        port = free_port()
        log_path = Path(tmp) / "gunicorn.log"
        print(f"Starting gunicorn ({_server_name(args)}) on 127.0.0.1:{port}...")
        server = None
        try:
            server = gunicorn_start(port=port, options=_server_options(args), env=env, log_path=log_path)
            wait_until_up(server, port=port, key=warm_up_key, log_path=log_path)
            print(f"{args.clients} clients sending batches of {args.batch} for {args.seconds} s...")
            with AutoAnalyze(url=args.database_url):
                run = _load(batches, port=port, keys=keys, args=args)
        finally:
            signal.alarm(0)  # the stop has a deadline of its own and must not be cut short
            if server is not None:
                server_stop(server, grace=STOP_GRACE_S)
    run.stored = _stored_logs(args.database_url)
    print_table(_table(run, args, batches))
    problems = _problems(run, rate_limited=bool(args.rate))
    if problems:
        raise SystemExit("FAILED:\n" + "\n".join(f"  - {problem}" for problem in problems))
    print("OK: no errors, and the database holds exactly the logs the answers accepted.")


def _slow_main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="logtune-slow-") as tmp:
        env = child_env(database_url=args.database_url, var_dir=Path(tmp))
        env.update(ALLOWED_HOSTS="127.0.0.1", LOGTUNE_INGEST_RATE="")
        print(f"Recreating and migrating {args.database_url}...")
        (key,) = _database_prepare(env=env, keys=1)
        port = free_port()
        log_path = Path(tmp) / "gunicorn.log"
        print(f"Starting gunicorn ({_server_name(args)}) on 127.0.0.1:{port}...")
        server = None
        try:
            server = gunicorn_start(port=port, options=_server_options(args), env=env, log_path=log_path)
            wait_until_up(server, port=port, key=key, log_path=log_path)
            print(f"{args.slow} slow clients sending their {args.slow_kind} for {args.seconds} s, probing...")
            run = slow_run(port=port, key=key, args=args)
        finally:
            signal.alarm(0)
            if server is not None:
                server_stop(server, grace=STOP_GRACE_S)
    print_table(slow_table(run, args, server=_server_name(args), code=code_version()))
    problems = slow_problems(run, args)
    if problems:
        raise SystemExit("FAILED:\n" + "\n".join(f"  - {problem}" for problem in problems))
    print("OK: every probe was answered while the slow clients held their connections.")


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL.replace("logtune_bench", "logtune_bench_load"),
        help="Dropped and created again (its name must contain 'bench').",
    )
    parser.add_argument("--clients", type=int, default=16, help="Concurrent client threads, one API key each.")
    parser.add_argument("--batch", type=int, default=100, help="Logs per request (the API takes 1,000 at most).")
    parser.add_argument("--seconds", type=int, default=30, help="No request starts after this many seconds.")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes.")
    # config: config/gunicorn.py, how docker/ runs the web service, so this measures the server as deployed (its
    # worker is gthread's, reading each request's head in its event loop first): a worker's threads overlap one
    # request's waits (its body arriving, PostgreSQL, the commit's WAL flush) with another's Python. gthread is
    # the plain gthread worker, --worker-class sync compares; docs/benchmarks.md has them.
    parser.add_argument("--worker-class", choices=("config", "sync", "gthread"), default="config")
    parser.add_argument("--threads", type=int, default=4, help="Threads per worker, with config or gthread.")
    parser.add_argument("--slow", type=int, default=0, help="Slow clients: measure them instead of ingest.")
    parser.add_argument("--slow-kind", choices=("headers", "body"), default="headers", help="What they send slowly.")
    parser.add_argument("--slow-every", type=float, default=0.5, help="Seconds between two bytes of a slow client.")
    parser.add_argument("--probe-timeout", type=float, default=5.0, help="Seconds a /healthz or API probe may take.")
    parser.add_argument(
        "--rate",
        default="",
        help="LOGTUNE_INGEST_RATE for the server, in that setting's format (default: empty, no limit); "
        "its 429 answers are then counted apart, and the client waits their Retry-After.",
    )
    parser.add_argument("--request-timeout", type=float, default=30.0, help="Seconds; a slower request is an error.")
    parser.add_argument(
        "--run-timeout", type=int, help=f"Seconds in all (default: --seconds + --request-timeout + {RUN_OVERHEAD_S})."
    )
    parser.add_argument(
        "--feed-rate",
        type=int,
        default=4000,
        help="Logs/s that the batches generated beforehand can feed for --seconds; a run that uses them "
        "all up ends early and says so.",
    )
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    if min(args.clients, args.batch, args.seconds, args.workers, args.threads, args.feed_rate) < 1:
        parser.error("--clients, --batch, --seconds, --workers, --threads and --feed-rate must be at least 1")
    if args.slow < 0 or args.slow_every <= 0 or args.probe_timeout <= 0:
        parser.error("--slow must not be negative, --slow-every and --probe-timeout must be positive")
    if args.request_timeout <= 0:
        parser.error("--request-timeout must be positive")
    if args.run_timeout is None:
        args.run_timeout = args.seconds + int(args.request_timeout) + RUN_OVERHEAD_S
    return args


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(f"Stopped by signal {signum}.")


def _raise_out_of_time(signum: int, frame: object) -> None:
    raise SystemExit("The run went past --run-timeout: stopped.")


# --- the logs --------------------------------------------------------------------------------------


class ChatCompletionLogs(LogMaker):
    """The OpenAI Chat Completions envelopes of LogMaker only, in sizes that vary more.

    A quarter of the prompts carry retrieved passages, as retrieval-augmented calls do: a fifth of
    the logs grow by 0.5 to 3 KB and one in twenty by 4 to 15 KB, the usage counting their tokens.
    The size of a log matters to the server: its text feeds the word and trigram indexes.
    """

    def _anthropic(self) -> dict:
        return self._openai()

    def _openai(self) -> dict:
        log = super()._openai()
        draw = self.rng.random()
        if draw >= 0.25:
            return log
        count = self.rng.randint(3, 15) if draw < 0.2 else self.rng.randint(20, 80)
        context = "\n\n".join(f"[{n + 1}] {self._text(ANSWERS)}" for n in range(count))
        for message in log["request"]["messages"]:
            if message["role"] == "user" and isinstance(message["content"], str):
                message["content"] = f"Context:\n{context}\n\nQuestion: {message['content']}"
                break
        usage = log.get("response", {}).get("usage")
        if usage:
            usage["prompt_tokens"] += len(context) // 4
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return log


@dataclass(slots=True)
class Batches:
    bodies: list[bytes]
    size: int

    @property
    def logs(self) -> int:
        return len(self.bodies) * self.size

    @property
    def kb_per_log(self) -> float:
        return sum(len(body) for body in self.bodies) / 1e3 / self.logs


def _batches(args: argparse.Namespace) -> Batches:
    """Request bodies serialised before anything is timed, so the clients spend their time waiting."""
    count = -(-args.feed_rate * args.seconds // args.batch)
    print(f"Generating {count:,} batches of {args.batch} logs (enough for {args.feed_rate:,} logs/s)...")
    maker = ChatCompletionLogs(seed=args.seed)
    bodies = [orjson.dumps({"logs": [maker.log(n * args.batch + i) for i in range(args.batch)]}) for n in range(count)]
    batches = Batches(bodies=bodies, size=args.batch)
    print(f"  {sum(map(len, bodies)) / 1e6:,.0f} MB of request bodies, {batches.kb_per_log:.2f} KB per log")
    return batches


# --- the database and the server -------------------------------------------------------------------


def _database_prepare(*, env: dict[str, str], keys: int) -> list[str]:
    """Recreate and migrate the bench database; returns `keys` new API keys of the bench project.

    The keys are made in this process: a management command per key would start Django each time.
    """
    database_recreate(url=env["DATABASE_URL"])
    manage("migrate", "--no-input", env=env)
    django_setup(env=env)
    from django.db import connections

    from curation.projects.services import api_key_create, project_get_or_create

    project, _ = project_get_or_create(slug=PROJECT_SLUG)
    raws = [api_key_create(project=project, name=f"load client {n}")[1] for n in range(keys)]
    connections.close_all()
    return raws


def _server_name(args: argparse.Namespace) -> str:
    threads = f" of {args.threads} threads" if args.worker_class != "sync" else ""
    kind = "config/gunicorn.py" if args.worker_class == "config" else args.worker_class
    return f"{args.workers} {kind} workers{threads}"


def _server_options(args: argparse.Namespace) -> list[str]:
    if args.worker_class == "config":
        # As production starts it; the command line names only the size and a short stop.
        return ["-c", "config/gunicorn.py", "--workers", str(args.workers), "--threads", str(args.threads),
                "--graceful-timeout", str(STOP_GRACE_S)]  # fmt: skip
    options = [
        "--workers", str(args.workers), "--worker-class", args.worker_class,
        # Longer than the clients wait: a slow request shows as a client timeout, not a killed worker.
        "--timeout", str(int(args.request_timeout) + 10), "--graceful-timeout", str(STOP_GRACE_S),
    ]  # fmt: skip
    if args.worker_class == "gthread":
        options += ["--threads", str(args.threads)]  # with sync workers, gunicorn would switch to gthread
    return options


def _stored_logs(url: str) -> int:
    with psycopg.connect(url, connect_timeout=10, options="-c statement_timeout=60000") as conn:
        row = conn.execute(
            "SELECT count(*) FROM curation_logentry l JOIN curation_project p ON p.id = l.project_id "
            "WHERE p.slug = %s",
            [PROJECT_SLUG],
        ).fetchone()
    return row[0] if row else 0


# --- the clients -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    """One request: its kind (`ok`, `429`, `HTTP <status>`, `connection`, `timeout`, `bad answer`)."""

    kind: str
    seconds: float
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    detail: str = ""


@dataclass
class LoadRun:
    seconds: float = 0.0
    client_cpu_seconds: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)
    ran_out: bool = False
    stuck_clients: int = 0
    stored: int = 0

    @property
    def accepted(self) -> int:
        return sum(outcome.accepted for outcome in self.outcomes)

    def kinds(self) -> Counter[str]:
        return Counter(outcome.kind for outcome in self.outcomes)

    def errors(self, *, rate_limited: bool) -> list[Outcome]:
        counted_apart = {OK, RATE_LIMITED} if rate_limited else {OK}
        return [outcome for outcome in self.outcomes if outcome.kind not in counted_apart]


def _load(batches: Batches, *, port: int, keys: list[str], args: argparse.Namespace) -> LoadRun:
    todo: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    for body in batches.bodies:
        todo.put(body)
    run = LoadRun()
    per_client: list[list[Outcome]] = [[] for _ in keys]
    stop = threading.Event()
    deadline = time.monotonic() + args.seconds
    client = _Client(port=port, todo=todo, batch=args.batch, timeout=args.request_timeout, rate=bool(args.rate))
    threads = [
        # Daemon threads: one stuck past every timeout must not keep this process, or the server, alive.
        threading.Thread(target=client.send, args=(key, deadline, stop, outcomes), name=f"client-{n}", daemon=True)
        for n, (key, outcomes) in enumerate(zip(keys, per_client, strict=True))
    ]
    started, cpu_started = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    hard_end = deadline + args.request_timeout + 5
    for thread in threads:
        thread.join(timeout=max(0.0, hard_end - time.monotonic()))
    run.seconds = time.perf_counter() - started
    run.client_cpu_seconds = time.process_time() - cpu_started
    stop.set()
    run.stuck_clients = sum(thread.is_alive() for thread in threads)
    run.ran_out = client.ran_out.is_set()
    run.outcomes = [outcome for outcomes in per_client for outcome in list(outcomes)]
    return run


class _Client:
    """What every client thread shares: the server, the batches still to send, the rules of a request."""

    def __init__(self, *, port: int, todo: queue.SimpleQueue[bytes], batch: int, timeout: float, rate: bool) -> None:
        self.port, self.todo, self.batch, self.timeout, self.rate = port, todo, batch, timeout, rate
        self.ran_out = threading.Event()

    def send(self, key: str, deadline: float, stop: threading.Event, outcomes: list[Outcome]) -> None:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", "Connection": "keep-alive"}
        conn: http.client.HTTPConnection | None = None
        try:
            while time.monotonic() < deadline and not stop.is_set():
                try:
                    body = self.todo.get_nowait()
                except queue.Empty:
                    self.ran_out.set()
                    return
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                outcome, wait = self._post(conn, body, headers)
                outcomes.append(outcome)
                if wait:
                    # A connection left idle may be closed by the server meanwhile: start a fresh one.
                    conn.close()
                    conn = None
                    stop.wait(min(wait, max(0.0, deadline - time.monotonic())))
        finally:
            if conn is not None:
                conn.close()

    def _post(self, conn: http.client.HTTPConnection, body: bytes, headers: dict) -> tuple[Outcome, float]:
        """The request's outcome, and how long to wait before the next one."""
        started = time.perf_counter()
        try:
            conn.request("POST", "/api/v1/logs", body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
        except TimeoutError as exc:
            return Outcome(TIMEOUT, time.perf_counter() - started, detail=str(exc)), ERROR_PAUSE_S
        except (OSError, http.client.HTTPException) as exc:
            detail = f"{type(exc).__name__}: {exc}"
            return Outcome(CONNECTION, time.perf_counter() - started, detail=detail), ERROR_PAUSE_S
        seconds = time.perf_counter() - started
        if response.status == 429 and self.rate:
            return Outcome(RATE_LIMITED, seconds), _retry_after(response.getheader("Retry-After"))
        if response.status != 200:
            return Outcome(f"HTTP {response.status}", seconds, detail=repr(answer[:300])), 0.0
        return self._answer(answer, seconds), 0.0

    def _answer(self, answer: bytes, seconds: float) -> Outcome:
        """A 200: `ok` when the whole batch was accepted; the counts are kept either way."""
        try:
            result = orjson.loads(answer)
            accepted, duplicates, rejected = result["accepted"], result["duplicates"], len(result["rejected"])
        except (orjson.JSONDecodeError, TypeError, KeyError):
            return Outcome(BAD_ANSWER, seconds, detail=repr(answer[:300]))
        # The logs are distinct and valid: a duplicate or a rejection is a server error.
        kind = OK if (accepted, duplicates, rejected) == (self.batch, 0, 0) else BAD_ANSWER
        detail = "" if kind == OK else repr(answer[:300])
        return Outcome(kind, seconds, accepted, duplicates, rejected, detail)


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 1.0
    except ValueError:
        return 1.0


# --- the report ------------------------------------------------------------------------------------


def _table(run: LoadRun, args: argparse.Namespace, batches: Batches) -> list[tuple[str, str]]:
    kinds = run.kinds()
    statuses = sorted(kind for kind in kinds if kind.startswith("HTTP "))
    http_errors = sum(kinds[kind] for kind in statuses)
    by_status = ", ".join(f"{kind.removeprefix('HTTP ')}: {kinds[kind]}" for kind in statuses)
    # Latency of the requests the server answered and did not turn away: a 429 costs it little.
    latencies = [o.seconds * 1e3 for o in run.outcomes if o.kind not in (RATE_LIMITED, TIMEOUT, CONNECTION)]
    ms = {share: f"{percentile(latencies, share):,.0f}" if latencies else "-" for share in (0.5, 0.95, 0.99)}
    seconds = run.seconds or float("nan")
    duplicates, rejected = sum(o.duplicates for o in run.outcomes), sum(o.rejected for o in run.outcomes)
    return [
        ("code", code_version()),
        ("server", _server_name(args)),
        ("ingest rate limit", args.rate or "off"),
        ("clients", f"{args.clients}"),
        ("batch", f"{args.batch} logs, {batches.kb_per_log:.2f} KB each"),
        ("seconds", f"{run.seconds:.1f}"),
        ("requests", f"{len(run.outcomes):,}"),
        ("logs accepted", f"{run.accepted:,}"),
        ("duplicates / rejected", f"{duplicates} / {rejected}"),
        ("logs/s", f"{run.accepted / seconds:,.0f}"),
        ("requests/s", f"{len(run.outcomes) / seconds:,.1f}"),
        ("latency p50 / p95 / p99 ms", f"{ms[0.5]} / {ms[0.95]} / {ms[0.99]}"),
        ("latency max ms", f"{max(latencies):,.0f}" if latencies else "-"),
        ("errors: HTTP status", f"{http_errors} ({by_status})" if http_errors else "0"),
        ("errors: connection", f"{kinds[CONNECTION]}"),
        ("errors: timeout", f"{kinds[TIMEOUT]}"),
        ("errors: bad answer", f"{kinds[BAD_ANSWER]}"),
        ("429s (rate limited)", f"{kinds[RATE_LIMITED]}" if args.rate else "- (no limit)"),
        ("logs in the database", f"{run.stored:,}"),
        # The clients share the machine with the server: what they cost it.
        ("client CPU, of one core", f"{run.client_cpu_seconds / seconds:.0%}"),
    ]


def _problems(run: LoadRun, *, rate_limited: bool) -> list[str]:
    """What makes the run a failure; warnings that do not are printed here."""
    if run.ran_out:
        print(f"  Warning: every generated batch was sent before --seconds ran out ({run.seconds:.1f} s measured).")
    if rate_limited and not run.kinds()[RATE_LIMITED]:
        print("  Note: no request was rate limited: is --rate above what the clients sent, or the setting unknown?")
    problems = []
    errors = run.errors(rate_limited=rate_limited)
    if errors:
        kinds = Counter(error.kind for error in errors)
        listed = ", ".join(f"{kind} × {count}" for kind, count in kinds.most_common())
        problems.append(f"{len(errors)} request(s) failed ({listed}); the first: {errors[0].kind}: {errors[0].detail}")
    if not any(outcome.kind == OK for outcome in run.outcomes):
        problems.append("no request had its batch accepted")
    if run.stuck_clients:
        problems.append(f"{run.stuck_clients} client(s) were still waiting past the deadline and the request timeout")
    if run.stored != run.accepted:
        problems.append(
            f"the database holds {run.stored:,} logs of project '{PROJECT_SLUG}', but the answers accepted "
            f"{run.accepted:,} (a request that timed out or lost its connection may still have been stored)"
        )
    return problems


if __name__ == "__main__":
    main()
