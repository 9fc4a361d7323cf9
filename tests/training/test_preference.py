"""Preference pairs and DPO on a tiny local model, CPU: the pitfalls users of DPO trainers report do not happen."""

import copy
import json
import math
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from training.trainer.__main__ import help_text
from training.trainer.config import ConfigError, TrainConfig
from training.trainer.data import IGNORE_INDEX, DataError, render_prompt
from training.trainer.modeling import load_tokenizer, model_stop_ids
from training.trainer.preference import (
    PairRefused,
    adapter_reference_logprobs,
    dpo_loss,
    encode_pair,
    load_pairs,
    pair_batch,
    pair_record,
    precompute_reference_logprobs,
    sequence_logprobs,
)

from .tiny import FRUITS, write_jsonl

SYSTEM = {"role": "system", "content": "Answer yes or no."}


def _trl_row(fruit: str, chosen: str = "yes", rejected: str = "no") -> dict:
    return {
        "prompt": [SYSTEM, {"role": "user", "content": f"Is a {fruit} a fruit?"}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return load_tokenizer(str(tiny_model))


@pytest.fixture(scope="module")
def stop_ids(tiny_model, tokenizer):
    return model_stop_ids(str(tiny_model), tokenizer)


def _encode(tokenizer, stop_ids, row: dict, max_length: int = 256):
    return encode_pair(tokenizer, pair_record(1, row), max_length=max_length, stop_ids=stop_ids)


def _pairs(tokenizer, stop_ids) -> list:
    return [_encode(tokenizer, stop_ids, _trl_row(fruit)) for fruit in sorted(FRUITS)]


def _base(tiny_model):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)


def _lora(tiny_model, dropout: float = 0.0):
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=dropout, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(_base(tiny_model), config)


# --- tokens -----------------------------------------------------------------------------------------


def test_chosen_and_rejected_share_the_prompt_tokens_exactly(tokenizer, stop_ids):
    row = _trl_row("plum", chosen="yes, a plum is a fruit", rejected="no")
    example = _encode(tokenizer, stop_ids, row)
    prompt = tokenizer(render_prompt(tokenizer, row["prompt"]), add_special_tokens=False)["input_ids"]

    assert example.prompt_ids == prompt
    chosen, rejected = example.input_ids("chosen"), example.input_ids("rejected")
    assert chosen[: len(prompt)] == rejected[: len(prompt)] == prompt
    assert chosen[len(prompt) :] == example.chosen_ids and rejected[len(prompt) :] == example.rejected_ids
    # Each answer ends with the stop token the template writes, which trains (the model learns to stop).
    assert tokenizer.convert_ids_to_tokens(example.chosen_ids[-1]) == "<|im_end|>"
    assert example.rejected_ids[-1] in stop_ids


def test_labels_cover_only_the_answer_tokens(tokenizer, stop_ids):
    example = _encode(tokenizer, stop_ids, _trl_row("lime"))
    for side, answer in (("chosen", example.chosen_ids), ("rejected", example.rejected_ids)):
        labels = example.labels(side)
        assert labels[: len(example.prompt_ids)] == [IGNORE_INDEX] * len(example.prompt_ids)
        assert labels[len(example.prompt_ids) :] == answer


def test_the_logprob_sum_counts_answer_tokens_only(tiny_model, tokenizer, stop_ids):
    model = _base(tiny_model).eval()
    short = _encode(tokenizer, stop_ids, _trl_row("plum", chosen="yes", rejected="no"))
    long = _encode(tokenizer, stop_ids, _trl_row("plum", chosen="yes, it is a fruit", rejected="no, it is not"))
    batch = pair_batch([short, long], pad_id=tokenizer.pad_token_id, device="cpu")
    with torch.no_grad():
        chosen, rejected = sequence_logprobs(model, batch)

        # By hand, from the full logits: the answer positions only, each row alone (no padding at all).
        for i, (example, side) in enumerate([(short, "chosen"), (long, "chosen"), (short, "rejected"),
                                             (long, "rejected")]):  # fmt: skip
            ids = torch.tensor([example.input_ids(side)])
            logps = F.log_softmax(model(ids).logits[0, :-1].float(), dim=-1).gather(1, ids[0, 1:, None])[:, 0]
            answer = len(example.prompt_ids)
            expected = logps[answer - 1 :].sum()
            got = torch.cat([chosen, rejected])[i]
            assert torch.allclose(got, expected, atol=1e-4)
            assert not torch.allclose(got, logps.sum(), atol=1e-2)  # the prompt would have counted otherwise

        # Changing what fills the masked positions (pads after the shorter row) changes nothing ...
        repadded = {**batch, "input_ids": batch["input_ids"].clone()}
        repadded["input_ids"][batch["attention_mask"] == 0] = 7
        assert torch.equal(torch.cat(sequence_logprobs(model, repadded)), torch.cat([chosen, rejected]))
        # ... changing an answer token's target changes the sum.
        relabelled = {**batch, "labels": batch["labels"].clone()}
        first_answer = len(short.prompt_ids)
        relabelled["labels"][0, first_answer] = (relabelled["labels"][0, first_answer] + 1) % 300
        changed, _ = sequence_logprobs(model, relabelled)
        assert changed[0] != chosen[0] and changed[1] == chosen[1]


def test_truncation_keeps_the_prompt_end_and_the_answer_start(tokenizer, stop_ids):
    row = _trl_row("plum", chosen="yes " * 30, rejected="no " * 30)
    row["prompt"][1]["content"] = "Tell me please. " * 20 + "Is a plum a fruit?"
    whole = _encode(tokenizer, stop_ids, row, max_length=4096)
    cut = _encode(tokenizer, stop_ids, row, max_length=64)

    assert cut.truncated and not whole.truncated
    assert len(cut.input_ids("chosen")) <= 64 and len(cut.input_ids("rejected")) <= 64
    assert cut.prompt_ids == whole.prompt_ids[-len(cut.prompt_ids) :]  # the end of the prompt, with its "assistant"
    assert cut.chosen_ids == whole.chosen_ids[: len(cut.chosen_ids)]
    assert cut.rejected_ids == whole.rejected_ids[: len(cut.rejected_ids)]
    assert len(cut.prompt_ids) >= 32  # at least half the room stays with the prompt


def test_pairs_with_identical_or_empty_answers_are_refused_with_the_reason(tokenizer, stop_ids, tmp_path):
    with pytest.raises(PairRefused, match="line 1: the chosen and rejected answers are identical"):
        _encode(tokenizer, stop_ids, _trl_row("plum", chosen="yes", rejected="yes"))
    with pytest.raises(PairRefused, match="line 1: the rejected answer is empty"):
        _encode(tokenizer, stop_ids, _trl_row("plum", rejected=" "))
    row = _trl_row("plum", chosen="yes " * 40 + "indeed", rejected="yes " * 40 + "no")
    with pytest.raises(PairRefused, match="identical within max_seq_length"):
        _encode(tokenizer, stop_ids, row, max_length=40)

    path = write_jsonl(tmp_path / "pairs.jsonl", [_trl_row("plum"), _trl_row("lime", rejected="yes")])
    train, validation, refused = load_pairs(tokenizer, path, max_length=128, stop_ids=stop_ids)
    assert (len(train), len(validation)) == (1, 0)
    assert [str(reason) for reason in refused] == ["line 2: the chosen and rejected answers are identical"]
    with pytest.raises(DataError, match="line 3: a conversation, not a preference pair"):
        pair_record(3, {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"}]})
    with pytest.raises(DataError, match="line 1: the chosen answer must be one assistant message"):
        pair_record(1, {**_trl_row("plum"), "chosen": [{"role": "user", "content": "yes"}]})


def test_the_openai_and_trl_exports_give_the_same_tokens(tokenizer, stop_ids):
    trl = _trl_row("cherry")
    openai = {
        "input": {"messages": trl["prompt"]},
        "preferred_output": trl["chosen"],
        "non_preferred_output": trl["rejected"],
    }
    assert _encode(tokenizer, stop_ids, openai) == _encode(tokenizer, stop_ids, trl)
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    with_tools = _encode(tokenizer, stop_ids, {**trl, "tools": json.dumps(tools)})
    assert len(with_tools.prompt_ids) > len(_encode(tokenizer, stop_ids, trl).prompt_ids)  # the template shows them


# --- the loss and the reference ---------------------------------------------------------------------


def test_the_loss_and_its_metrics_follow_the_formula():
    pc, pr = torch.tensor([-1.0, -5.0]), torch.tensor([-3.0, -4.0])
    rc, rr = torch.tensor([-2.0, -4.0]), torch.tensor([-2.0, -3.0])
    loss, metrics = dpo_loss(pc, pr, rc, rr, beta=0.5)
    margins = 0.5 * ((pc - rc) - (pr - rr))  # [1.0, 0.0]
    assert loss.item() == pytest.approx(float(-F.logsigmoid(margins).mean()))
    assert metrics.reward_margin == pytest.approx(0.5)
    assert metrics.reward_accuracy == 0.5  # a zero margin is not a win
    assert metrics.chosen_reward == pytest.approx(0.0) and metrics.rejected_reward == pytest.approx(-0.5)
    smoothed, _ = dpo_loss(pc, pr, rc, rr, beta=0.5, label_smoothing=0.1)
    expected = -(0.9 * F.logsigmoid(margins) + 0.1 * F.logsigmoid(-margins)).mean()
    assert smoothed.item() == pytest.approx(expected.item())


def test_the_reference_with_the_adapter_disabled_is_the_base_model(tiny_model, tokenizer, stop_ids):
    base = _base(tiny_model).eval()
    policy = _lora(tiny_model, dropout=0.5)
    with torch.no_grad():
        for name, parameter in policy.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)  # a trained adapter: the policy is no longer the base
    batch = pair_batch(_pairs(tokenizer, stop_ids), pad_id=tokenizer.pad_token_id, device="cpu")
    policy.train()
    with torch.no_grad():
        base_chosen, base_rejected = sequence_logprobs(base, batch)
        policy_chosen, _ = sequence_logprobs(policy, batch)
    ref_chosen, ref_rejected = adapter_reference_logprobs(policy, batch)
    again, _ = adapter_reference_logprobs(policy, batch)

    assert torch.allclose(ref_chosen, base_chosen, atol=1e-5)
    assert torch.allclose(ref_rejected, base_rejected, atol=1e-5)
    assert torch.equal(ref_chosen, again)  # no dropout in the reference
    assert not ref_chosen.requires_grad
    assert not torch.allclose(policy_chosen, base_chosen, atol=1e-2)  # the adapter is back on after
    assert policy.training  # and the model is left in the mode it was in


def test_the_loss_at_the_first_step_is_log_2_when_the_policy_is_the_reference(tiny_model, tokenizer, stop_ids):
    policy = _lora(tiny_model).train()  # LoRA starts as the identity: B = 0
    batch = pair_batch(_pairs(tokenizer, stop_ids), pad_id=tokenizer.pad_token_id, device="cpu")
    loss, metrics = dpo_loss(*sequence_logprobs(policy, batch), *adapter_reference_logprobs(policy, batch), beta=0.1)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)
    assert metrics.reward_margin == pytest.approx(0.0, abs=1e-6) and metrics.reward_accuracy == 0.0


def test_lora_dpo_learns_to_prefer_the_chosen_answers(tiny_model, tokenizer, stop_ids):
    policy = _lora(tiny_model).train()
    batch = pair_batch(_pairs(tokenizer, stop_ids), pad_id=tokenizer.pad_token_id, device="cpu")
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=5e-3)
    history = []
    for _ in range(30):
        reference = adapter_reference_logprobs(policy, batch)
        loss, metrics = dpo_loss(*sequence_logprobs(policy, batch), *reference, beta=0.1)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        history.append((loss.item(), metrics))

    first_loss, first = history[0]
    last_loss, last = history[-1]
    assert last.reward_accuracy == 1.0
    assert last.reward_margin > first.reward_margin + 1.0
    assert last.chosen_reward > 0 > last.rejected_reward
    assert last_loss < 0.5 * first_loss


def test_a_full_fine_tune_with_precomputed_reference_matches_a_frozen_copy(tiny_model, tokenizer, stop_ids):
    policy = _base(tiny_model).train()
    frozen = copy.deepcopy(policy).eval().requires_grad_(False)  # what the precomputed reference saves loading
    pairs = _pairs(tokenizer, stop_ids)
    cache = precompute_reference_logprobs(policy, pairs, batch_size=3, pad_id=tokenizer.pad_token_id, device="cpu")
    assert tuple(cache.logprobs.shape) == (len(pairs), 2) and policy.training
    indices = [5, 0, 2, 7]
    batch = pair_batch([pairs[i] for i in indices], pad_id=tokenizer.pad_token_id, device="cpu")
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)

    policy_logps = sequence_logprobs(policy, batch)
    cached, _ = dpo_loss(*policy_logps, *cache.lookup(indices, "cpu"), beta=0.1)
    with torch.no_grad():
        copied, _ = dpo_loss(*policy_logps, *sequence_logprobs(frozen, batch), beta=0.1)
    assert cached.item() == pytest.approx(copied.item(), abs=1e-6)
    assert cached.item() == pytest.approx(math.log(2), abs=1e-5)

    cached.backward()
    optimizer.step()
    with torch.no_grad():  # after a step the cache is still the initial weights' log-probabilities
        frozen_chosen, frozen_rejected = sequence_logprobs(frozen, batch)
        moved, _ = sequence_logprobs(policy.eval(), batch)
    ref_chosen, ref_rejected = cache.lookup(indices, "cpu")
    assert torch.allclose(ref_chosen, frozen_chosen, atol=1e-5)
    assert torch.allclose(ref_rejected, frozen_rejected, atol=1e-5)
    assert not torch.allclose(moved, frozen_chosen, atol=1e-3)


# --- the config -------------------------------------------------------------------------------------


def test_the_config_takes_the_dpo_objective_and_checks_beta(tmp_path):
    base = {"model": "m", "data_path": "d.jsonl", "output_dir": str(tmp_path)}
    config = TrainConfig(**base)
    assert (config.objective, config.dpo_beta, config.dpo_label_smoothing) == ("sft", 0.1, 0.0)
    assert TrainConfig(**base, objective="dpo", dpo_beta=0.5).objective == "dpo"
    with pytest.raises(ConfigError, match="objective: must be one of sft, dpo"):
        TrainConfig(**base, objective="ppo")
    for beta in (0, -0.1, 1000, float("nan")):
        with pytest.raises(ConfigError, match=r"dpo_beta: must be from 0\.001 to 100"):
            TrainConfig(**base, dpo_beta=beta)
    with pytest.raises(ConfigError, match=r"dpo_label_smoothing: must be from 0 to 0\.5"):
        TrainConfig(**base, dpo_label_smoothing=0.6)
    text = help_text()
    assert 'objective: str = "sft"' in text and "dpo_beta: float = 0.1" in text


# --- the loop ---------------------------------------------------------------------------------------


def _pair_file(path, *, validation: int = 4):
    rows = [{**_trl_row(fruit), "entry_id": 100 + i} for i, fruit in enumerate(sorted(FRUITS))]
    for row in rows[-validation:]:
        row["split"] = "validation"
    return write_jsonl(path, [*rows, _trl_row("fig", rejected="yes", chosen="yes")])


def _dpo_config(tiny_model, data, out, **overrides) -> TrainConfig:
    values = dict(
        model=str(tiny_model), data_path=str(data), output_dir=str(out), objective="dpo", learning_rate=5e-3,
        epochs=100, max_steps=30, batch_size=2, gradient_accumulation=2, lora_dropout=0.0, eval_every_steps=10,
        checkpoint_every_steps=0, max_seq_length=128, warmup_ratio=0.0, precision="fp32",
    )  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


def _events(out) -> list[dict]:
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


def test_the_trainer_runs_lora_dpo_on_a_file_of_pairs(tiny_model, tmp_path):
    from training.trainer.loop import train

    out = tmp_path / "run"
    result = train(_dpo_config(tiny_model, _pair_file(tmp_path / "pairs.jsonl"), out))

    assert result.steps == 30 and (out / "adapter" / "adapter_model.safetensors").exists()
    events = _events(out)
    assert events[0]["type"] == "warning" and "line 9: the chosen and rejected answers are identical" in str(events[0])
    start = next(e for e in events if e["type"] == "start")
    assert (start["examples_train"], start["examples_validation"], start["reference"]) == (4, 4, "adapter disabled")
    steps = [e for e in events if e["type"] == "step"]
    assert steps[0]["loss"] == pytest.approx(math.log(2), abs=1e-5) and steps[0]["reward_margin"] == pytest.approx(0)
    assert steps[-1]["reward_accuracy"] == 1.0 and steps[-1]["reward_margin"] > 1.0
    evals = [e for e in events if e["type"] == "eval"]
    assert [e["step"] for e in evals] == [0, 10, 20, 30]
    assert evals[0]["eval_loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert evals[-1]["reward_margin"] > evals[0]["reward_margin"]  # the held-out pairs too
    assert events[-1]["type"] == "done"


def test_a_full_dpo_run_keeps_its_reference_across_a_resume(tiny_model, tmp_path):
    config = _dpo_config(tiny_model, _pair_file(tmp_path / "pairs.jsonl"), tmp_path / "run", method="full",
                         learning_rate=1e-3, max_steps=4, checkpoint_every_steps=2, eval_every_steps=0)  # fmt: skip
    path = tmp_path / "config.json"
    config.save(path)
    first = subprocess.run([sys.executable, "-m", "training.trainer", str(path)], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    reference = load_file(tmp_path / "run" / "reference_logprobs.safetensors")
    assert tuple(reference["train"].shape) == (4, 2) and tuple(reference["validation"].shape) == (4, 2)

    # A second run resumes from the step-2 checkpoint: it reads the reference instead of computing it anew from
    # weights that have moved, so its first step's loss is not log(2).
    shutil.rmtree(tmp_path / "run" / "adapter")
    (tmp_path / "run" / "events.jsonl").unlink()
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step-4", ignore_errors=True)
    config.max_steps = 4
    from training.trainer.loop import train

    train(config)
    steps = [e for e in _events(tmp_path / "run") if e["type"] == "step"]
    assert [e["step"] for e in steps] == [3, 4]
    assert steps[0]["loss"] < math.log(2) - 1e-4
