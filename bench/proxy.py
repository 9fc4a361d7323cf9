"""The logging proxy's added latency: the same calls sent to a stand-in upstream directly and through the proxy,
and routed calls: shadowed (the provider answers; must cost what a plain proxied call costs) and canary or named
deployments (a deployed fine-tune answers; against calling its model server directly).

    .venv/bin/python bench/proxy.py [--requests 500] [--workers 2] [--threads 4] [--broker-url URL]

Recreates a bench database, creates the bench project with an editor key, starts the stand-in OpenAI and
Anthropic API of tests/proxy/upstream.py on a free port of 127.0.0.1 and points the project's upstreams at it,
then starts the production server (gunicorn gthread, `config.wsgi`, DEBUG=0, a random SECRET_KEY) on another.
For each of four calls (OpenAI Chat Completions and Anthropic Messages, streamed and not), it sends
--requests sequential requests directly and as many through /proxy/…, alternating, each side over its own
keep-alive connection, and times each until the last byte of the answer. It prints p50 and p99 of both and
of the proxy's overhead (the difference of the percentiles), and exits non-zero when any answer was not 200
or the proxy's answer differed from the stand-in's.

The routed rows deploy a fine-tune of the bench project on a stand-in model server (tests/serving/engine.py, on
another port) with two routes picked by the X-Logtune-Route header: `shadow` (every call shadowed) and `canary` (every
call answered by the fine-tune). "shadow" rows compare with the provider called directly, as the plain rows do;
"canary" and "ft:" rows with the model server called directly under the deployment's name. Shadow answers and
routed logs are queued like any log, and no worker takes them.

Logs are queued to the embedded file-system broker (--broker-url to change) and no worker stores them: storing a log
happens off the response path, in a Celery worker, and is measured by bench/ingest.py. Only 127.0.0.1 is
contacted, and the database in --database-url; every request has a timeout and gunicorn is stopped on every
way out.
"""

import argparse
import http.client
import json
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    DEFAULT_DATABASE_URL,
    PROJECT_SLUG,
    bench_database_prepare,
    child_env,
    code_version,
    django_setup,
    free_port,
    gunicorn_start,
    percentile,
    server_stop,
    wait_until_up,
    warn_if_busy,
)

CHAT = [{"role": "user", "content": "Say hello in five words."}]
ROUTED_HEADERS = {"shadow": {"X-Logtune-Route": "shadow"}, "canary": {"X-Logtune-Route": "canary"}}
SERVED_NAME = f"ft:{PROJECT_SLUG}/bench-ft"
CALLS = {
    # name: (direct path, proxy path, body); the routed rows after these
    "openai": (
        "/v1/chat/completions", "/proxy/openai/v1/chat/completions", {"model": "gpt-4o-mini", "messages": CHAT},
    ),
    "openai stream": (
        "/v1/chat/completions", "/proxy/openai/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": CHAT, "stream": True, "stream_options": {"include_usage": True}},
    ),
    "anthropic": (
        "/v1/messages", "/proxy/anthropic/v1/messages",
        {"model": "claude-3-5-haiku-20241022", "max_tokens": 64, "messages": CHAT},
    ),
    "anthropic stream": (
        "/v1/messages", "/proxy/anthropic/v1/messages",
        {"model": "claude-3-5-haiku-20241022", "max_tokens": 64, "messages": CHAT, "stream": True},
    ),
    "openai shadow": (
        "/v1/chat/completions", "/proxy/openai/v1/chat/completions", {"model": "gpt-4o-mini", "messages": CHAT},
    ),
    "openai canary": (
        "/v1/chat/completions", "/proxy/openai/v1/chat/completions", {"model": "gpt-4o-mini", "messages": CHAT},
    ),
    "canary stream": (
        "/v1/chat/completions", "/proxy/openai/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": CHAT, "stream": True, "stream_options": {"include_usage": True}},
    ),
    "ft: named": (
        "/v1/chat/completions", "/proxy/openai/v1/chat/completions", {"model": SERVED_NAME, "messages": CHAT},
    ),
}  # fmt: skip
WARM_UP = 30
REQUEST_TIMEOUT_S = 10
AIM_P50_OVERHEAD_MS = 5.0


def main() -> None:
    args = _parse_args()
    signal.signal(signal.SIGTERM, _raise_exit)
    warn_if_busy()
    with tempfile.TemporaryDirectory(prefix="logtune-proxy-") as tmp:
        env = child_env(database_url=args.database_url, var_dir=Path(tmp))
        env.update(
            ALLOWED_HOSTS="127.0.0.1",
            CELERY_BROKER_URL=args.broker_url,
            LOGTUNE_PROXY_UPSTREAM_HOSTS="127.0.0.1:*",
            LOGTUNE_INGEST_RATE="",  # eight rows of sequential calls outrun the default 600 a minute per key
        )
        print(f"Recreating and migrating {args.database_url}...")
        key = bench_database_prepare(env=env)
        from tests.proxy.upstream import start_stand_in
        from tests.serving.engine import start_engine

        stand_in = start_stand_in()
        engine = start_engine("base")
        _point_project_at(stand_in.url, env=env)
        _deploy_on(engine.url)
        engine.adapters[SERVED_NAME] = "/bench/adapter"
        port = free_port()
        log_path = Path(tmp) / "gunicorn.log"
        print(
            f"Stand-in upstream on {stand_in.url}; gunicorn (gthread, {args.workers} x {args.threads}) on :{port}..."
        )
        server = None
        try:
            server = gunicorn_start(port=port, env=env, log_path=log_path, options=[
                "--workers", str(args.workers), "--worker-class", "gthread", "--threads", str(args.threads),
            ])  # fmt: skip
            wait_until_up(server, port=port, key=key, log_path=log_path)
            engine_url = engine.url.removesuffix("/v1")
            results = {
                name: _measure(
                    name, args, upstream=engine_url if _to_engine(name) else stand_in.url, port=port, key=key
                )
                for name in CALLS
            }
        finally:
            if server is not None:
                server_stop(server)
            stand_in.close()
            engine.close()
    _print_table(results, args)
    problems = [problem for result in results.values() for problem in result.problems]
    if problems:
        raise SystemExit("FAILED:\n" + "\n".join(f"  - {problem}" for problem in problems[:20]))


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL.replace("logtune_bench", "logtune_bench_proxy"),
        help="Dropped and created again (its name must contain 'bench').",
    )
    parser.add_argument("--requests", type=int, default=500, help="Timed requests per call and side.")
    parser.add_argument(
        "--broker-url",
        default="filesystem://",
        help="Where the server queues the logs (default: the embedded file-system broker, in a temporary "
        "folder). No worker consumes them: with redis://…, empty that database afterwards.",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes.")
    parser.add_argument("--threads", type=int, default=4, help="Threads per gunicorn worker (gthread, as deployed).")
    args = parser.parse_args()
    if min(args.requests, args.workers, args.threads) < 1:
        parser.error("--requests, --workers and --threads must be at least 1")
    return args


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(f"Stopped by signal {signum}.")


def _point_project_at(url: str, *, env: dict[str, str]) -> None:
    django_setup(env=env)
    from curation.models import Project

    Project.objects.filter(slug=PROJECT_SLUG).update(openai_base_url=f"{url}/v1", anthropic_base_url=url)


def _deploy_on(url: str) -> None:
    """A succeeded fine-tune of the bench project, serving on the stand-in model server at `url`, and its routes."""
    from django.utils import timezone

    from curation.models import Dataset, DatasetSnapshot, JobStatus, Project
    from training.models import (
        BaseModel,
        Deployment,
        DeploymentStatus,
        Engine,
        FineTuneJob,
        FineTuneStatus,
        ModelServer,
        ProxyRoute,
        RouteMode,
    )  # fmt: skip

    project = Project.objects.get(slug=PROJECT_SLUG)
    dataset = Dataset.objects.create(project=project, name="bench")
    snapshot = DatasetSnapshot.objects.create(
        project=project, dataset=dataset, dataset_name="bench", status=JobStatus.SUCCEEDED
    )
    base = BaseModel.objects.create(name="bench-base", path="/bench/base")
    job = FineTuneJob.objects.create(
        project=project, dataset=dataset, snapshot=snapshot, base_model=base, model=base.path,
        status=FineTuneStatus.SUCCEEDED, finished_at=timezone.now(),
    )  # fmt: skip
    server = ModelServer.objects.create(supervisor="bench", engine=Engine.VLLM, weights=base.path, url=url, ready=True)
    deployment = Deployment.objects.create(
        project=project, job=job, name="bench-ft", served_name=SERVED_NAME, status=DeploymentStatus.SERVING,
        engine=Engine.VLLM, server=server, serving_since=timezone.now(),
    )  # fmt: skip
    for mode in (RouteMode.SHADOW, RouteMode.CANARY):
        ProxyRoute.objects.create(project=project, name=mode, deployment=deployment, mode=mode, match_route=mode)


def _to_engine(name: str) -> bool:
    """Whether the row's direct calls go to the model server (a fine-tune answers it through the proxy)."""
    return "canary" in name or name.startswith("ft:")


@dataclass
class Result:
    direct_ms: list[float] = field(default_factory=list)
    proxied_ms: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _measure(name: str, args: argparse.Namespace, *, upstream: str, port: int, key: str) -> Result:
    direct_path, proxy_path, body = CALLS[name]
    payload = json.dumps(body).encode()
    # A model server is called directly under the deployment's name, which the proxy puts in the routed call.
    direct_payload = json.dumps({**body, "model": SERVED_NAME}).encode() if _to_engine(name) else payload
    host, upstream_port = upstream.removeprefix("http://").split(":")
    direct = http.client.HTTPConnection(host, int(upstream_port), timeout=REQUEST_TIMEOUT_S)
    proxied = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    provider_headers = {
        "Content-Type": "application/json",
        "Authorization": "Bearer sk-bench",
        "x-api-key": "sk-bench",
    }
    route = "shadow" if "shadow" in name else "canary" if "canary" in name else ""
    proxy_headers = {**provider_headers, "X-Logtune-Key": key, **ROUTED_HEADERS.get(route, {})}
    result = Result()
    print(f"  {name}: {WARM_UP} warm-up and {args.requests} timed requests each way...")
    try:
        for number in range(WARM_UP + args.requests):
            direct_ms, expected = _post(direct, direct_path, direct_payload, provider_headers, result)
            proxied_ms, answer = _post(proxied, proxy_path, payload, proxy_headers, result)
            if answer != expected:
                result.problems.append(f"{name}: the proxy's answer differs from the stand-in's ({answer[:80]!r})")
            if number >= WARM_UP:
                result.direct_ms.append(direct_ms)
                result.proxied_ms.append(proxied_ms)
    finally:
        direct.close()
        proxied.close()
    return result


def _post(
    conn: http.client.HTTPConnection, path: str, payload: bytes, headers: dict[str, str], result: Result
) -> tuple[float, bytes]:
    started = time.perf_counter()
    conn.request("POST", path, body=payload, headers=headers)
    response = conn.getresponse()
    answer = response.read()  # the whole answer: for a stream, until its last event
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 200:
        result.problems.append(f"POST {path}: HTTP {response.status} {answer[:200]!r}")
    return elapsed, answer


def _print_table(results: dict[str, Result], args: argparse.Namespace) -> None:
    print(f"\n  {args.requests} sequential requests per row and side; code {code_version()}; milliseconds")
    header = ("call", "direct p50", "direct p99", "proxy p50", "proxy p99", "added p50", "added p99")
    print("  " + "  ".join(f"{column:>16}" if i else f"{column:<16}" for i, column in enumerate(header)))
    worst = 0.0
    for name, result in results.items():
        d50, d99 = percentile(result.direct_ms, 0.5), percentile(result.direct_ms, 0.99)
        p50, p99 = percentile(result.proxied_ms, 0.5), percentile(result.proxied_ms, 0.99)
        worst = max(worst, p50 - d50)
        values = (d50, d99, p50, p99, p50 - d50, p99 - d99)
        print(f"  {name:<16}" + "".join(f"  {value:>16.2f}" for value in values))
    verdict = "met" if worst < AIM_P50_OVERHEAD_MS else "NOT met"
    print(f"\n  Aim: p50 added latency under {AIM_P50_OVERHEAD_MS:g} ms: {verdict} (worst {worst:.2f} ms).")
    plain, shadow = results.get("openai"), results.get("openai shadow")
    if plain is not None and shadow is not None:
        added = [
            percentile(r.proxied_ms, q) - percentile(r.direct_ms, q) for r in (shadow, plain) for q in (0.5, 0.99)
        ]
        print(f"  Shadowed against plain proxied calls, added latency: p50 {added[0] - added[2]:+.2f} ms, "
              f"p99 {added[1] - added[3]:+.2f} ms (aim: 0).\n")  # fmt: skip


if __name__ == "__main__":
    main()
