"""The trainer on a tiny local model, CPU: it learns, and none of the classic fine-tuning pitfalls happens."""

import json
import shutil
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from training.trainer.config import ConfigError, TrainConfig
from training.trainer.data import Record, encode, stop_token_ids
from training.trainer.evaluate import label_scores
from training.trainer.generate import generate
from training.trainer.loop import train
from training.trainer.losses import batch_tensors, token_losses
from training.trainer.merge import MergeError, merge_adapter
from training.trainer.modeling import load_tokenizer

from .tiny import FRUITS, colour_conversation, colour_dataset, write_jsonl

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def colours(tmp_path_factory) -> Path:
    return colour_dataset(tmp_path_factory.mktemp("data") / "colours.jsonl")


def _config(tiny_model, data, out, **overrides) -> TrainConfig:
    values = dict(
        model=str(tiny_model), data_path=str(data), output_dir=str(out), learning_rate=1e-2, epochs=10,
        batch_size=8, gradient_accumulation=1, lora_dropout=0.0, eval_every_steps=20, checkpoint_every_steps=0,
        eval_generations=3, max_new_tokens=8, max_seq_length=128, warmup_ratio=0.0,
        precision="fp32",  # the same arithmetic on a GPU, where "auto" would pick bf16
    )  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


def _events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(tiny_model, colours, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = train(_config(tiny_model, colours, out))
    return out, result


def test_lora_learns_the_task_and_beats_the_base_model(trained):
    out, result = trained
    assert result.stopped == "finished"
    assert result.steps == 60  # 48 examples / 8 per step, 10 epochs
    assert result.eval_loss < 0.3 * result.base_eval_loss
    assert (out / "adapter" / "adapter_config.json").exists()
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    assert (out / "adapter" / "tokenizer_config.json").exists()

    events = _events(out)
    assert events[0]["type"] == "start" and events[-1]["type"] == "done"
    start = events[0]
    assert (start["examples_train"], start["examples_validation"], start["total_steps"]) == (48, 16, 60)
    assert start["batching"] == "grouped by length"  # SDPA: packing would need a dense mask
    steps = [e for e in events if e["type"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 61))
    assert steps[-1]["loss"] < steps[0]["loss"] / 3
    assert all(e["tokens_per_second"] > 0 and e["eta_s"] >= 0 for e in steps)
    evals = [e for e in events if e["type"] == "eval"]
    assert [e["step"] for e in evals] == [0, 20, 40, 60]


def test_the_evaluation_compares_base_and_fine_tuned_answers(trained):
    out, result = trained
    report = json.loads((out / "evaluation.json").read_text())
    assert report["base"]["eval_loss"] == pytest.approx(result.base_eval_loss)
    assert report["tuned"]["eval_loss"] == pytest.approx(result.eval_loss)
    assert report["tuned"]["perplexity"] < report["base"]["perplexity"]
    assert len(report["generations"]) == 3
    first = report["generations"][0]
    assert first["reference"] in FRUITS.values() and first["prompt"][-1]["role"] == "user"
    assert isinstance(first["base"], str) and isinstance(first["tuned"], str)
    labels = report["labels"]  # one-word colours are labels: accuracy and macro-F1 of both models
    assert labels["examples"] == 16 and set(labels["classes"]) <= set(FRUITS.values())
    assert labels["tuned"]["accuracy"] > labels["base"]["accuracy"]
    assert labels["tuned"]["accuracy"] >= 0.75


def test_the_adapter_reloads_and_answers(trained, tiny_model):
    out, _ = trained
    question = colour_conversation("banana")["messages"][:-1]
    tuned = generate(model=str(tiny_model), adapter_dir=str(out / "adapter"), messages=question, max_new_tokens=8)
    base = generate(model=str(tiny_model), adapter_dir=None, messages=question, max_new_tokens=8)
    assert tuned == "yellow"
    assert base != tuned


def test_every_training_example_gets_its_loss(trained, tiny_model, colours):
    out, _ = trained
    rows = [json.loads(line) for line in (out / "example_losses.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rows] == list(range(1, 49))
    assert [r["entry_id"] for r in rows] == list(range(1000, 1048))
    tokenizer = load_tokenizer(str(tiny_model))
    for row in rows:  # the colour word and <|im_end|>
        colour = json.loads(colours.read_text().splitlines()[row["line"] - 1])["messages"][-1]["content"]
        assert row["tokens"] == len(tokenizer(colour + "<|im_end|>", add_special_tokens=False)["input_ids"])
        assert row["loss"] >= 0


def test_merged_weights_differ_from_the_base_and_answer_the_same(trained, tiny_model, tmp_path):
    out, _ = trained
    merge_adapter(model=str(tiny_model), adapter_dir=str(out / "adapter"), output_dir=str(tmp_path / "merged"))
    question = colour_conversation("banana")["messages"][:-1]
    assert generate(model=str(tmp_path / "merged"), adapter_dir=None, messages=question, max_new_tokens=8) == "yellow"
    base = load_file(tiny_model / "model.safetensors")
    merged = load_file(tmp_path / "merged" / "model.safetensors")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(base[name], merged[name])


def test_merging_an_untrained_adapter_is_refused(tiny_model, colours, tmp_path):
    # lr 0 is not allowed, so train with a learning rate too small to move float32 weights, 0 steps of warm-up.
    config = _config(tiny_model, colours, tmp_path, max_steps=1, learning_rate=1e-30, per_example_losses=False,
                     eval_generations=0)  # fmt: skip
    train(config)
    with pytest.raises(MergeError, match="changed no weight"):
        merge_adapter(model=str(tiny_model), adapter_dir=str(tmp_path / "adapter"), output_dir=str(tmp_path / "m"))


def test_batch_1_with_accumulation_8_trains_like_batch_8(tiny_model, colours, tmp_path):
    results = {}
    for batch, accumulation in ((8, 1), (1, 8), (2, 4)):
        out = tmp_path / f"b{batch}"
        config = _config(tiny_model, colours, out, batch_size=batch, gradient_accumulation=accumulation, max_steps=2,
                         per_example_losses=False, eval_generations=0)  # fmt: skip
        result = train(config)
        results[batch] = (result.losses, load_file(out / "adapter" / "adapter_model.safetensors"))
    losses, weights = results[8]
    for batch in (1, 2):
        other_losses, other_weights = results[batch]
        assert other_losses == pytest.approx(losses, rel=1e-5)
        for name, tensor in weights.items():
            # Adam divides by the gradient's own size, so float rounding shows most where gradients are tiny.
            torch.testing.assert_close(other_weights[name], tensor, rtol=1e-3, atol=1e-4)


def test_packed_examples_never_attend_across_boundaries(tiny_model):
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(str(tiny_model))
    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa").eval()
    stop = stop_token_ids(tokenizer)

    def example(fruit):
        return encode(tokenizer, Record(1, None, "train", colour_conversation(fruit)["messages"], []),
                      max_length=128, stop_ids=stop)  # fmt: skip

    a, b = example("apple"), example("lemon")
    with torch.no_grad():
        alone, _ = token_losses(model, batch_tensors([b], packing=False, pad_id=0, device="cpu"))
        packed, _ = token_losses(model, batch_tensors([a, b], packing=True, pad_id=0, device="cpu"))
        padded, _ = token_losses(model, batch_tensors([a, b], packing=False, pad_id=0, device="cpu"))
        contaminated = batch_tensors([a, b], packing=True, pad_id=0, device="cpu")
        contaminated["position_ids"] = torch.arange(len(a) + len(b)).unsqueeze(0)  # no boundary
        leaked, _ = token_losses(model, contaminated)
    n = b.trained_tokens
    torch.testing.assert_close(packed[-n:], alone, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(leaked[-n:], alone, rtol=1e-3)  # what attending across would have given


def test_resuming_from_a_checkpoint_continues_exactly(tiny_model, colours, tmp_path):
    settings = dict(max_steps=6, checkpoint_every_steps=3, keep_checkpoints=1, lora_dropout=0.1,
                    per_example_losses=False, eval_generations=0, eval_every_steps=0)  # fmt: skip
    whole = train(_config(tiny_model, colours, tmp_path / "whole", **settings))
    assert sorted(p.name for p in (tmp_path / "whole" / "checkpoints").iterdir()) == ["step-3"]
    # A run interrupted after step 3: only its checkpoint is left.
    shutil.copytree(tmp_path / "whole" / "checkpoints", tmp_path / "resumed" / "checkpoints")
    resumed = train(_config(tiny_model, colours, tmp_path / "resumed", **settings))
    assert _events(tmp_path / "resumed")[0]["resumed_from_step"] == 3
    assert resumed.losses == pytest.approx(whole.losses[3:], rel=1e-6)
    first = load_file(tmp_path / "whole" / "adapter" / "adapter_model.safetensors")
    second = load_file(tmp_path / "resumed" / "adapter" / "adapter_model.safetensors")
    for name, tensor in first.items():
        torch.testing.assert_close(second[name], tensor)


def test_a_cancel_file_stops_training_after_the_current_step(tiny_model, colours, tmp_path):
    from training.trainer.loop import TrainingCancelled

    tmp_path.joinpath("CANCEL").touch()
    with pytest.raises(TrainingCancelled):
        train(_config(tiny_model, colours, tmp_path, eval_generations=0))
    events = _events(tmp_path)
    assert [e["type"] for e in events if e["type"] in ("step", "cancelled")] == ["step", "cancelled"]
    assert not (tmp_path / "adapter").exists()


def test_freeze_keeps_the_first_layers_and_trains_the_rest(tiny_model, colours, tmp_path):
    config = _config(tiny_model, colours, tmp_path, method="freeze", freeze_layers=1, max_steps=3,
                     learning_rate=1e-3, per_example_losses=False, eval_generations=0)  # fmt: skip
    result = train(config)
    assert _events(tmp_path)[0]["trainable_params"] < _events(tmp_path)[0]["total_params"]
    base, tuned = load_file(tiny_model / "model.safetensors"), load_file(tmp_path / "adapter" / "model.safetensors")
    assert torch.equal(base["model.layers.0.mlp.up_proj.weight"], tuned["model.layers.0.mlp.up_proj.weight"])
    assert torch.equal(base["model.embed_tokens.weight"], tuned["model.embed_tokens.weight"])
    assert not torch.equal(base["model.layers.1.mlp.up_proj.weight"], tuned["model.layers.1.mlp.up_proj.weight"])
    assert result.steps == 3


def test_full_fine_tuning_trains_every_weight(tiny_model, colours, tmp_path):
    result = train(_config(tiny_model, colours, tmp_path, method="full", max_steps=3, learning_rate=1e-3,
                           per_example_losses=False, eval_generations=0))  # fmt: skip
    start = _events(tmp_path)[0]
    assert start["trainable_params"] == start["total_params"]
    assert result.eval_loss < result.base_eval_loss


def test_qlora_without_cuda_says_what_it_needs(tiny_model, colours, tmp_path):
    with pytest.raises(ConfigError, match="qlora needs a CUDA GPU"):
        train(_config(tiny_model, colours, tmp_path, method="qlora"))


def test_bad_settings_are_named():
    with pytest.raises(ConfigError, match="method: must be one of"):
        TrainConfig(model="m", data_path="d", output_dir="o", method="magic")
    with pytest.raises(ConfigError, match="batch_size: must be at least 1"):
        TrainConfig(model="m", data_path="d", output_dir="o", batch_size=0)
    with pytest.raises(ConfigError, match="lora_rnak: unknown setting"):
        TrainConfig.from_dict({"model": "m", "data_path": "d", "output_dir": "o", "lora_rnak": 8})


def test_the_command_line_reports_errors_as_events(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"messages": [{"role": "user", "content": "no answer"}]}])
    config = _config(tiny_model, data, tmp_path / "out")
    config.save(tmp_path / "config.json")
    run = subprocess.run([sys.executable, "-m", "training.trainer", str(tmp_path / "config.json")],
                         cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 2
    assert "line 1: no assistant turn to train on" in run.stderr
    last = _events(tmp_path / "out")[-1]
    assert last["type"] == "error"
    assert last["message"] == "line 1: no assistant turn to train on (every example needs one)"

    (tmp_path / "bad.json").write_text('{"model": "m", "data_path": "d"}')
    run = subprocess.run([sys.executable, "-m", "training.trainer", str(tmp_path / "bad.json")],
                         cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 2 and "output_dir: required" in run.stderr


def test_label_scores_count_accuracy_and_macro_f1():
    scores = label_scores(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert scores["accuracy"] == 0.75
    # a: precision 1, recall 0.5 → F1 2/3; b: precision 2/3, recall 1 → F1 0.8
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)


def test_early_stopping_ends_a_run_whose_validation_loss_stops_improving(tiny_model, colours, tmp_path):
    # A learning rate far too high makes the validation loss worse at every evaluation.
    config = _config(tiny_model, colours, tmp_path, learning_rate=0.5, eval_every_steps=1, early_stopping_patience=2,
                     per_example_losses=False, eval_generations=0)  # fmt: skip
    result = train(config)
    assert result.stopped == "early_stop"
    assert result.steps < 60
    events = _events(tmp_path)
    stop = next(e for e in events if e["type"] == "early_stop")
    assert stop["step"] == result.steps
    # The result is the best evaluated weights, not the last ones.
    evals = {e["step"]: e["eval_loss"] for e in events if e["type"] == "eval" and e["step"] > 0}
    best_step = min(evals, key=evals.get)
    assert best_step < result.steps
    assert result.eval_loss == pytest.approx(evals[best_step])
    assert any(f"weights of step {best_step}" in e.get("message", "") for e in events)
    restored = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    best = load_file(tmp_path / "best.safetensors")
    for name, tensor in best.items():  # the adapter file names parameters without the adapter's name
        assert torch.equal(restored[name.replace(".default", "")], tensor)


@pytest.mark.parametrize("layout", ["FSDP", "DEEPSPEED", "DistributedType.FSDP"])
def test_sharded_layouts_are_refused_before_training(layout):
    from training.trainer.runtime import check_distributed

    with pytest.raises(ConfigError, match=r"shards the model across processes.*supports one process or DDP"):
        check_distributed(layout)


@pytest.mark.parametrize("layout", ["NO", "MULTI_GPU", "DistributedType.MULTI_CPU"])
def test_whole_model_layouts_train(layout):
    from training.trainer.runtime import check_distributed

    check_distributed(layout)  # no error


def test_time_spent_is_counted_once_across_checkpoints(tiny_model, colours, tmp_path, monkeypatch):
    from training.trainer import loop

    ticks = iter(range(1_000_000))  # a clock that moves one second each time it is read
    monkeypatch.setattr(loop, "time", SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    out = tmp_path / "run"
    train(_config(tiny_model, colours, out, max_steps=8, checkpoint_every_steps=2, eval_every_steps=0,
                  eval_generations=0))  # fmt: skip

    elapsed = [event["elapsed_s"] for event in _events(out) if event["type"] == "step"]
    steps = [later - earlier for earlier, later in pairwise(elapsed)]
    assert len(elapsed) == 8 and max(steps) == min(steps)  # a checkpoint adds no time it did not take
