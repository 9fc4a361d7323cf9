"""Judge throughput: pairs judged per second against a stand-in judge with a fixed latency, at several
concurrencies, as a share of what that latency allows.

    .venv/bin/python bench/evaluate.py [--pairs 200] [--latency-ms 200] [--concurrency 1 8 32]

Starts the stand-in OpenAI-compatible server of tests/chat_stand_in.py on 127.0.0.1, answering every call after
--latency-ms with a verdict, and judges --pairs pairs (each twice, in both orders: 2 calls a pair) through the
real client (training/endpoints/client.py: the openai SDK, a thread per call in flight) at each concurrency. The
ceiling at concurrency c is c calls in flight all the time: c / latency calls/s, half as many pairs. The ratio
says how much of it the client reaches; what is left is the client's own cost per call (building the prompt, the
SDK, HTTP on loopback, the stand-in's own handling). Nothing but 127.0.0.1 is contacted.
"""

import argparse
import time

from common import code_version, print_table, warn_if_busy

from tests.chat_stand_in import start_chat_stand_in
from training.endpoints.client import EndpointTarget
from training.evaluation.judge import Pair, judge_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    warn_if_busy()
    stand_in = start_chat_stand_in(answer=lambda body: "Both are fine.\nVerdict: tie", delay_s=args.latency_ms / 1000)
    pairs = [
        Pair([{"role": "user", "content": f"What is {i} + {i}?"}], candidate=str(2 * i), other=f"{2 * i}.")
        for i in range(args.pairs)
    ]  # fmt: skip
    print(f"Commit {code_version()}: {args.pairs} pairs ({2 * args.pairs} calls), judge latency {args.latency_ms} ms")
    rows: list[tuple[str, str]] = []
    try:
        for concurrency in args.concurrency:
            target = EndpointTarget(base_url=stand_in.url, model="judge", max_concurrency=concurrency, max_retries=0)
            stand_in.most_in_flight = 0
            started = time.perf_counter()
            verdicts = judge_pairs(target, pairs)
            elapsed = time.perf_counter() - started
            if any(v is None or v.error for v in verdicts):
                raise SystemExit(f"concurrency {concurrency}: some calls failed")
            rate = args.pairs / elapsed
            ceiling = concurrency / (args.latency_ms / 1000) / 2
            rows.append((f"concurrency {concurrency}: pairs/s", f"{rate:,.1f}"))
            rows.append((f"concurrency {concurrency}: ceiling pairs/s", f"{ceiling:,.1f}"))
            rows.append((f"concurrency {concurrency}: share of ceiling", f"{rate / ceiling:.0%}"))
            rows.append((f"concurrency {concurrency}: most calls in flight", f"{stand_in.most_in_flight}"))
    finally:
        stand_in.close()
    print_table(rows)


if __name__ == "__main__":
    main()
