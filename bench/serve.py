"""Tokens per second a deployed fine-tune serves through the proxy, against its model server called directly.

    .venv/bin/python bench/serve.py [--engine transformers|vllm] [--model PATH] [--adapters 2] [--requests 32]
                                    [--concurrency 4] [--max-tokens 32]

Recreates a bench database, builds the tiny demo model unless --model names one (a folder: nothing is downloaded),
makes --adapters LoRA adapters over it (random, non-zero), deploys each as a fine-tune of the bench project, and runs
the real serving supervisor (`training.serving.supervisor`) until the engine serves them all: the small transformers
server (default, CPU) or vLLM (--engine vllm, on a GPU worker). Then it starts the production server (gunicorn) and,
for each adapter in turn, sends --requests chat completions at --concurrency at once, greedy with a fixed
max_tokens, to the model server directly and through `/proxy/openai/v1/chat/completions` (`model: "ft:…"`),
alternating the two sides, and prints completion tokens per second of each, their ratio, and latency percentiles.
The proxy's logs are queued to the embedded file-system broker and no worker stores them.
"""

import argparse
import signal
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
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

QUESTION = [{"role": "user", "content": "Write a short story about a lime."}]


def main() -> None:
    args = _parse_args()
    signal.signal(signal.SIGTERM, _raise_exit)
    warn_if_busy()
    with tempfile.TemporaryDirectory(prefix="logtune-serve-") as tmp:
        env = child_env(database_url=args.database_url, var_dir=Path(tmp))
        env.update(ALLOWED_HOSTS="127.0.0.1", CELERY_BROKER_URL="filesystem://", LOGTUNE_INGEST_RATE="",
                   MEDIA_ROOT=str(Path(tmp) / "media"), OMP_NUM_THREADS=str(args.threads))  # fmt: skip
        print(f"Recreating and migrating {args.database_url}...")
        key = bench_database_prepare(env=env)
        django_setup(env=env)
        model = args.model or _demo_model(Path(tmp) / "demo")
        names = _deploy(model, args.adapters)
        supervisor, stop = _supervise(args.engine)
        port = free_port()
        log_path = Path(tmp) / "gunicorn.log"
        server = None
        try:
            _wait_serving(names)
            server = gunicorn_start(port=port, env=env, log_path=log_path, options=[
                "--workers", "2", "--worker-class", "gthread", "--threads", str(max(4, args.concurrency)),
            ])  # fmt: skip
            wait_until_up(server, port=port, key=key, log_path=log_path)
            url = _server_url()
            rows = [_measure(name, args, direct=url, proxy=f"http://127.0.0.1:{port}/proxy/openai/v1", key=key)
                    for name in names]  # fmt: skip
        finally:
            if server is not None:
                server_stop(server)
            stop.set()
            supervisor.join(timeout=60)
    _print_table(rows, args)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL.replace("logtune_bench", "logtune_bench_serve"),
                        help="Dropped and created again (its name must contain 'bench').")  # fmt: skip
    parser.add_argument("--engine", choices=["transformers", "vllm"], default="transformers")
    parser.add_argument("--model", default="", help="A model folder (default: the tiny demo model, built here).")
    parser.add_argument("--adapters", type=int, default=2, help="Fine-tunes deployed on the one server.")
    parser.add_argument("--requests", type=int, default=32, help="Timed requests per adapter and side.")
    parser.add_argument("--concurrency", type=int, default=4, help="Requests in flight at once.")
    parser.add_argument("--max-tokens", type=int, default=32, help="max_tokens of each request (greedy).")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the small server.")
    args = parser.parse_args()
    if min(args.adapters, args.requests, args.concurrency, args.max_tokens) < 1:
        parser.error("--adapters, --requests, --concurrency and --max-tokens must be at least 1")
    return args


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(f"Stopped by signal {signum}.")


def _demo_model(folder: Path) -> str:
    from training.trainer.demo_model import build_demo_model

    return str(build_demo_model(folder))


def _deploy(model: str, count: int) -> list[str]:
    """`count` fine-tunes of `model` in the bench project, each with a random LoRA adapter, deployed."""
    import torch
    from django.utils import timezone
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from curation.models import Dataset, DatasetSnapshot, JobStatus, Project
    from training.models import BaseModel, Deployment, FineTuneJob, FineTuneStatus

    project = Project.objects.get(slug=PROJECT_SLUG)
    dataset = Dataset.objects.create(project=project, name="bench")
    snapshot = DatasetSnapshot.objects.create(project=project, dataset=dataset, status=JobStatus.SUCCEEDED)
    base = BaseModel.objects.create(name="bench-base", path=model)
    names = []
    for number in range(count):
        job = FineTuneJob.objects.create(
            project=project, dataset=dataset, snapshot=snapshot, base_model=base, model=model,
            status=FineTuneStatus.SUCCEEDED, finished_at=timezone.now(),
        )  # fmt: skip
        torch.manual_seed(number)
        config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
        get_peft_model(AutoModelForCausalLM.from_pretrained(model), config).save_pretrained(job.adapter_dir)
        deployment = Deployment.objects.create(
            project=project, job=job, name=f"bench-{number}", served_name=f"ft:{PROJECT_SLUG}/bench-{number}"
        )
        names.append(deployment.served_name)
    return names


def _supervise(engine: str) -> tuple[threading.Thread, threading.Event]:
    """The serving supervisor's rounds in a thread of this process, until the event is set."""
    from django.db import connection

    from training.serving.supervisor import ROUND_SECONDS, Supervisor

    stop = threading.Event()

    def run() -> None:
        supervisor = Supervisor(engine=engine)
        try:
            while not stop.is_set():
                supervisor.round()
                stop.wait(ROUND_SECONDS / 4)
        finally:
            supervisor.stop()
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, stop


def _wait_serving(names: list[str], seconds: float = 900) -> None:
    from training.models import Deployment, DeploymentStatus

    print(f"Waiting for the engine to serve {len(names)} adapters...")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        statuses = dict(Deployment.objects.values_list("served_name", "status"))
        if any(status == DeploymentStatus.FAILED for status in statuses.values()):
            error = Deployment.objects.filter(status=DeploymentStatus.FAILED).values_list("error", flat=True).first()
            raise SystemExit(f"A deployment failed: {error}")
        if all(statuses.get(name) == DeploymentStatus.SERVING for name in names):
            return
        time.sleep(0.5)
    raise SystemExit(f"The engine did not serve the adapters within {seconds:.0f} s.")


def _server_url() -> str:
    from training.models import ModelServer

    return ModelServer.objects.get().url


def _measure(name: str, args: argparse.Namespace, *, direct: str, proxy: str, key: str) -> dict:
    body = {"model": name, "messages": QUESTION, "max_tokens": args.max_tokens, "temperature": 0}
    sides = {"direct": (direct, {}), "proxy": (proxy, {"X-Logtune-Key": key})}
    results: dict[str, dict] = {side: {"tokens": 0, "seconds": 0.0, "latencies": []} for side in sides}
    print(f"  {name}: {args.requests} requests at {args.concurrency} at once, each side, alternating...")
    with httpx.Client(timeout=600, limits=httpx.Limits(max_connections=2 * args.concurrency)) as client:
        for url, headers in sides.values():  # one untimed round each to warm up
            _round(client, url, headers, body, args.concurrency, args.concurrency)
        for _ in range(2):  # two timed rounds per side, alternated
            for side, (url, headers) in sides.items():
                started = time.perf_counter()
                answers = _round(client, url, headers, body, args.requests // 2, args.concurrency)
                results[side]["seconds"] += time.perf_counter() - started
                results[side]["tokens"] += sum(tokens for tokens, _ in answers)
                results[side]["latencies"] += [ms for _, ms in answers]
    return {"name": name, **results}


def _round(client: httpx.Client, url: str, headers: dict, body: dict, count: int, concurrency: int) -> list:
    def one(_: int) -> tuple[int, float]:
        started = time.perf_counter()
        response = client.post(f"{url}/chat/completions", json=body, headers=headers)
        if response.status_code != 200:
            raise SystemExit(f"POST {url}: HTTP {response.status_code} {response.text[:300]}")
        return response.json()["usage"]["completion_tokens"], (time.perf_counter() - started) * 1000

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(count)))


def _print_table(rows: list[dict], args: argparse.Namespace) -> None:
    print(f"\n  engine {args.engine}; {args.requests} requests per adapter and side, {args.concurrency} at once, "
          f"max_tokens {args.max_tokens}; code {code_version()}")  # fmt: skip
    header = ("model", "direct tok/s", "proxy tok/s", "proxy/direct", "direct p50 ms", "proxy p50 ms", "proxy p99 ms")
    print("  " + "  ".join(f"{column:>14}" if i else f"{column:<20}" for i, column in enumerate(header)))
    for row in rows:
        direct, proxied = row["direct"], row["proxy"]
        rate = {
            side: r["tokens"] / r["seconds"] if r["seconds"] else 0.0 for side, r in (("d", direct), ("p", proxied))
        }
        values = (
            f"{rate['d']:.1f}", f"{rate['p']:.1f}", f"{rate['p'] / rate['d']:.3f}" if rate["d"] else "-",
            f"{percentile(direct['latencies'], 0.5):.1f}", f"{percentile(proxied['latencies'], 0.5):.1f}",
            f"{percentile(proxied['latencies'], 0.99):.1f}",
        )  # fmt: skip
        print(f"  {row['name']:<20}" + "".join(f"  {value:>14}" for value in values))


if __name__ == "__main__":
    main()
