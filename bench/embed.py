"""Embedding speed: our Embedder in each precision against sentence-transformers, on bench/dedup.py's texts.

    .venv/bin/python bench/embed.py                     # 2,000 entries, 2 threads, batches of 64, 2 rounds
    .venv/bin/python bench/embed.py --entries 500 --rounds 1

The texts are `text_of_conversation` of bench/dedup.py's generated entries (same seed, same texts). Measured in
one process, on the same texts, batch size and threads:
  - sentence-transformers: `SentenceTransformer(model_path(), device="cpu").encode(texts, batch_size=...)`, the
    reference (its vectors are the float32 model's, as the model card runs it);
  - `Embedder(precision=...)` for float32 and bfloat16 (where the CPU computes it natively), marked with what
    LOGTUNE_EMBED_PRECISION=auto picks here; and the float32 Embedder with torch's dynamic int8 quantisation of the
    attention's Linear layers (`torch.ao.quantization.quantize_dynamic`), a variant tried and not kept.
Each is run `--rounds` times, the variants taking turns, so a busy machine slows them alike; texts/s is over all
rounds, and the ratio is against sentence-transformers' texts/s in this run. Each variant's vectors are compared
with the reference: the cosine of each text's two vectors (min, 1st percentile, mean), and how far a pair's
similarity moves over all pairs of the first 2,000 texts: the largest change, and how many pairs cross the dedup
thresholds 0.9 and 0.95 (of how many the reference puts at or above them), which is what a threshold sees.
sentence-transformers is in the `bench` extra (`make bench` installs it).
"""

import argparse
import os
import sys
import time
import warnings

from common import code_version, print_table, warn_if_busy

# Pairs whose verdict a precision changes: at or above the reference's threshold on one side, below on the other.
THRESHOLDS = (0.9, 0.95)


def main() -> None:
    args = _parse_args()
    # Before numpy and torch are imported: BLAS and torch read these once.
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "LOGTUNE_EMBED_THREADS"):
        os.environ[name] = str(args.threads)
    warnings.filterwarnings("ignore")  # torch's deprecation notice of eager-mode quantisation, once per call
    warn_if_busy()
    import numpy as np
    import torch
    from dedup import _make_entries

    from curation.text.embeddings import (
        Embedder,
        cpu_has_native_bf16,
        embedding_precision,
        model_path,
        text_of_conversation,
    )

    texts = [text_of_conversation(entry.messages) for entry in _make_entries(args.entries, 0.2, args.seed)]
    auto = embedding_precision("auto", device="cpu", cpu_bf16=cpu_has_native_bf16())
    print(f"Logtune {code_version()}: embedding speed, {len(texts):,} texts of {np.mean([len(t) for t in texts]):,.0f}"
          f" characters on average, {args.threads} threads, batches of {args.batch_size}, {args.rounds} rounds;"
          f" auto here: {auto}")  # fmt: skip
    encoders = {"sentence-transformers": _sentence_transformers(model_path(), args.batch_size)}
    for precision in ["float32", "bfloat16", "int8"] if cpu_has_native_bf16() else ["float32", "int8"]:
        embedder = Embedder(device="cpu", precision="float32" if precision == "int8" else precision)
        if precision == "int8":
            embedder.model = _int8_attention(embedder.model)
        encoders[f"Embedder, {precision}"] = lambda batch, embedder=embedder: embedder.embed(
            batch, batch_size=args.batch_size
        )
    torch.set_num_threads(args.threads)
    seconds = dict.fromkeys(encoders, 0.0)
    vectors: dict[str, np.ndarray] = {}
    for round_number in range(args.rounds):
        for name, encode in encoders.items():
            encode(texts[:32])  # warm: the first batch of a process allocates
            started = time.perf_counter()
            vectors[name] = encode(texts)
            seconds[name] += time.perf_counter() - started
            print(f"  round {round_number + 1}, {name}: {len(texts) / (time.perf_counter() - started):,.1f} texts/s",
                  flush=True)  # fmt: skip
    print_table(_rows(texts, seconds, vectors, args.rounds, auto))


def _sentence_transformers(path, batch_size: int):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    return lambda batch: model.encode(batch, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)


def _int8_attention(model):
    """Dynamic int8 quantisation of the attention's Linear layers only: quantising the feed-forward ones too (their
    inputs after GELU have outliers that one scale per tensor cannot hold) took vectors down to cosine 0.88."""
    import torch

    names = {name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)
             and ".attention." in name}  # fmt: skip
    return torch.ao.quantization.quantize_dynamic(model, names, dtype=torch.qint8)


def _rows(texts, seconds, vectors, rounds, auto) -> list[tuple[str, str]]:
    import numpy as np

    reference = vectors["sentence-transformers"].astype(np.float32)
    sample = reference[:2_000]
    baseline = rounds * len(texts) / seconds["sentence-transformers"]
    rows = []
    for name, took in seconds.items():
        rate = rounds * len(texts) / took
        cosine = np.sum(vectors[name] * reference, axis=1)
        other = vectors[name][:2_000]
        similarity, reference_similarity = np.triu(other @ other.T, 1), np.triu(sample @ sample.T, 1)
        drift = float(np.abs(similarity - reference_similarity).max())
        flips = [
            (int(((similarity >= threshold) != (reference_similarity >= threshold)).sum()),
             int((reference_similarity >= threshold).sum()))
            for threshold in THRESHOLDS
        ]  # fmt: skip
        chosen = " (auto)" if name.endswith(f", {auto}") else ""
        rows += [
            (f"{name}{chosen}", f"{rate:,.1f} texts/s, {rate / baseline:.2f}x sentence-transformers"),
            ("  cosine to the reference: min / p1 / mean", " / ".join(
                f"{value:.4f}" for value in (cosine.min(), np.percentile(cosine, 1), cosine.mean()))),
            ("  largest change of a pair's similarity", f"{drift:.4f}"),
            ("  pairs on the other side of " + " / ".join(map(str, THRESHOLDS)), " / ".join(
                f"{flipped:,} of {above:,}" for flipped, above in flips)),
        ]  # fmt: skip
    return rows


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=2_000)
    parser.add_argument("--threads", type=int, default=2, help="torch and BLAS threads (the cores to use).")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="Runs of every variant, taking turns.")
    parser.add_argument("--seed", type=int, default=13)
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(main())
