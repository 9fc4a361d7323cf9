"""bench/train.py: every run trains for the asked steps on the tiny model on the CPU, and the TRL runs count
the same trained tokens as the plain script on the same batches."""

import argparse
import importlib.util
import math
from pathlib import Path

import pytest

from training.trainer.demo_model import DemoSize, build_demo_model

pytest.importorskip("trl", reason="the dev extra installs `trl`: pip install -e '.[dev]'")

BENCH = Path(__file__).resolve().parents[2] / "bench" / "train.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_train", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runs(bench, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench-train")
    # The demo model's wide initialisation: its losses depend on the context, so a lost boundary would show.
    model = build_demo_model(folder / "model", size=DemoSize(max_positions=512))
    data = bench._write_data(folder / "data.jsonl", 24, 256, seed=3)
    results = {}
    for which in bench.RUNS:
        settings = {"steps": 2, "warmup": 1, "batch_size": 2, "accumulation": 2, "max_seq_length": 256, "seed": 5}
        args = argparse.Namespace(child=which, model=str(model), data=str(data), out=str(folder / which),
                                  attn="sdpa", **settings)  # fmt: skip
        results[which] = bench._child(args)
    return results


def test_every_run_takes_the_asked_steps_and_measures_throughput_and_memory(runs):
    for which, result in runs.items():
        assert result["steps"] == 2, which
        assert result["trained_tokens_per_second"] > 0, which
        assert result["tokens_per_second"] > result["trained_tokens_per_second"], which
        assert result["peak_memory_mb"] > 0, which
        assert math.isfinite(result["first_loss"]), which


def test_trl_counts_the_assistant_tokens_the_plain_script_trains_on_in_the_same_batches(runs):
    baseline, trl, padding_free = runs["baseline"], runs["trl"], runs["trl-padding-free"]
    assert trl["trained_tokens_per_step"] == baseline["trained_tokens_per_step"]
    assert padding_free["trained_tokens_per_step"] == trl["trained_tokens_per_step"]
    assert 0 < trl["trained_share"] < 1
    assert trl["trained_share"] == pytest.approx(runs["ours"]["trained_share"], abs=0.05)


def test_padding_free_keeps_the_examples_apart(runs):
    # Same batches, same weights: flattened into one row, the loss is the padded batches' only if no example
    # attends to the one before it.
    assert runs["trl-padding-free"]["first_loss"] == pytest.approx(runs["trl"]["first_loss"], rel=1e-4)
    assert runs["trl-packing"]["micro_batch_rows"] >= 1
