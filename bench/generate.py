"""Generation throughput: question/answer pairs written per second by a documents job against a stand-in endpoint
with a fixed latency, at several concurrencies, as a share of what that latency allows; and what each filter costs
per 1,000 rows.

    .venv/bin/python bench/generate.py [--chunks 48] [--rows-per-call 5] [--latency-ms 200] [--concurrency 1 8 32]
                                       [--index 50000] [--database-url URL]

Starts the stand-in OpenAI-compatible server of tests/chat_stand_in.py on 127.0.0.1, answering every call after
--latency-ms with --rows-per-call distinct pairs, uploads a Markdown document of --chunks sections (one chunk each),
and runs a whole documents job in this process, as the worker does (training/generation/services.py): the calls,
the parsing, the text filters and the writes of each row as answers arrive, then the near-duplicate search of the
job's rows against the dataset and the project's index. The ceiling at concurrency c is c calls in flight all the
time: c / latency calls per second, each giving --rows-per-call pairs. Then each filter is timed on 1,000 rows
alone; the near-duplicate search against an index of --index random unit vectors. Nothing but 127.0.0.1 is
contacted; the database is PostgreSQL, created for this run.
"""

import argparse
import itertools
import json
import os
import random
import time
from collections.abc import Callable

import numpy as np
from common import DEFAULT_DATABASE_URL, bench_django, bench_project_and_user, code_version, print_table, warn_if_busy

WORDS = ["invoice", "refund", "seat", "plan", "owner", "member", "tax", "card", "limit", "export", "token", "quota",
         "region", "backup", "audit", "key", "report", "webhook", "retry", "schedule", "archive", "project",
         "dataset", "model", "cluster", "latency", "budget"]  # fmt: skip


def main() -> None:
    args = _parse_args()
    warn_if_busy()
    os.environ["LOGTUNE_ENDPOINT_HOSTS"] = "127.0.0.1:*"
    bench_django(name="generate", database_url=args.database_url, reuse=False)
    from tests.chat_stand_in import start_chat_stand_in

    print(f"Logtune {code_version()}: generation, {args.chunks} chunks x {args.rows_per_call} pairs a call, "
          f"endpoint latency {args.latency_ms:g} ms")  # fmt: skip
    counter = itertools.count()
    stand_in = start_chat_stand_in(answer=lambda body: _pairs(next(counter), args.rows_per_call),
                                   delay_s=args.latency_ms / 1000)  # fmt: skip
    rows: list[tuple[str, str]] = []
    try:
        rows += _jobs(args, stand_in.url)
    finally:
        stand_in.close()
    rows += _filters(args)
    print_table(rows)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=48)
    parser.add_argument("--rows-per-call", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--index", type=int, default=50_000)
    default = DEFAULT_DATABASE_URL.replace("logtune_bench", "logtune_bench_generate")
    parser.add_argument("--database-url", default=default)
    return parser.parse_args()


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _pairs(call: int, n: int) -> str:
    rng = random.Random(call)
    pairs = [{"question": f"Call {call} question {i}: how does the {_sentence(rng, 8)} work?",
              "answer": f"The {_sentence(rng, 40)}."} for i in range(n)]  # fmt: skip
    return json.dumps({"pairs": pairs})


def _document(chunks: int) -> bytes:
    rng = random.Random(7)
    sections = [f"## Section {i}\n\n" + " ".join(f"The {_sentence(rng, 14)}." for _ in range(20))
                for i in range(chunks)]  # fmt: skip
    return ("# Handbook\n\n" + "\n\n".join(sections)).encode()


def _jobs(args: argparse.Namespace, url: str) -> list[tuple[str, str]]:
    from curation.models import Dataset
    from training.generation.documents import document_upload
    from training.generation.services import GenerationRequest, generation_create, generation_run
    from training.models import FineTuneStatus, GeneratedRow, GenerationJob, ModelEndpoint

    project, user = bench_project_and_user()
    document, _ = document_upload(project=project, name="handbook.md", data=_document(args.chunks), actor=user)
    rows: list[tuple[str, str]] = []
    for concurrency in args.concurrency:
        endpoint = ModelEndpoint.objects.create(project=project, name=f"stand-in {concurrency}", base_url=url,
                                                model="writer", max_concurrency=concurrency)  # fmt: skip
        dataset = Dataset.objects.create(project=project, name=f"generated at {concurrency}")
        request = GenerationRequest(kind="documents", endpoint_id=endpoint.pk, dataset_id=dataset.pk,
                                    document_ids=[document.pk], rows_per_call=args.rows_per_call,
                                    chunk_chars=1500, overlap_chars=0)  # fmt: skip
        job = generation_create(project=project, request=request, actor=user)
        started = time.perf_counter()
        generation_run(job_id=job.pk)
        elapsed = time.perf_counter() - started
        job = GenerationJob.objects.get(pk=job.pk)
        if job.status != FineTuneStatus.SUCCEEDED or job.failed_calls:
            raise SystemExit(f"concurrency {concurrency}: the job {job.status}: {job.error or job.failed_calls}")
        written = GeneratedRow.objects.filter(job=job).count()
        calls = job.manifest["calls"]
        ceiling = concurrency / (args.latency_ms / 1000) * args.rows_per_call
        rate = written / elapsed
        calling = job.manifest["seconds"]["calls"]
        rows += [
            (f"concurrency {concurrency}: calls, pairs written", f"{calls}, {written}"),
            (
                f"concurrency {concurrency}: pairs/s (calls stage: calls, parsing, text filters, writes)",
                f"{written / calling:,.1f}",
            ),
            (f"concurrency {concurrency}: pairs/s (whole job, with the near-duplicate search)", f"{rate:,.1f}"),
            (f"concurrency {concurrency}: ceiling pairs/s", f"{ceiling:,.1f}"),
            (f"concurrency {concurrency}: share of ceiling, calls stage", f"{written / calling / ceiling:.0%}"),
        ]
    return rows


def _filters(args: argparse.Namespace) -> list[tuple[str, str]]:
    from curation.text.embeddings import DIMENSION, embed, text_of_conversation
    from training.generation import filters, prompts

    rng = random.Random(11)
    conversations = [json.loads(_pairs(i, 1))["pairs"][0] for i in range(1000)]
    messages = [[{"role": "user", "content": p["question"]}, {"role": "assistant", "content": p["answer"]}]
                for p in conversations]  # fmt: skip
    rows: list[tuple[str, str]] = []

    def timed(label: str, work: Callable[[], object]) -> object:
        started = time.perf_counter()
        result = work()
        rows.append((f"per 1,000 rows: {label}", f"{(time.perf_counter() - started) * 1000:,.0f} ms"))
        return result

    answers = [f"```json\n{json.dumps({'pairs': [p]})}\n```" for p in conversations]
    timed("reading the answers' JSON", lambda: [prompts.parse_pairs(a) for a in answers])
    timed("text filters (empty, short, refusal, pre-flight, personal data)",
          lambda: [filters.text_drop(m, min_answer_chars=20, max_row_tokens=4096, drop_personal_data=True)
                   for m in messages])  # fmt: skip
    seen = filters.ExactSeen()
    timed("same text", lambda: [seen.drop(m, str(i)) for i, m in enumerate(messages)])
    vectors = timed("embedding (the index's model)", lambda: embed([text_of_conversation(m) for m in messages]))
    generator = np.random.default_rng(rng.randrange(1 << 30))
    index = generator.normal(size=(args.index, DIMENSION)).astype(np.float32)
    index /= np.linalg.norm(index, axis=1, keepdims=True)
    reference = filters.Reference(index, [f"log {i}" for i in range(args.index)], ids=np.arange(args.index))
    timed(f"near-duplicates, against {args.index:,} indexed logs and each other",
          lambda: filters.near_duplicate_drops(vectors, references=[reference], threshold=0.95,
                                               labels=[str(i) for i in range(1000)]))  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
