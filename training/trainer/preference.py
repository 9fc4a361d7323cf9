"""Preference pairs and Direct Preference Optimization (DPO): from JSONL pairs to token ids, the log-probability of
each answer, the reference model's, and the loss. Pure torch + transformers (+ peft for adapters); no Django here.

A pair is a prompt (messages), a chosen and a rejected assistant answer, one JSONL line each, in either format the
preference exports write: TRL's (`prompt`, `chosen`, `rejected`, `tools` as JSON text) or OpenAI's (`input` with
`messages` and `tools`, `preferred_output`, `non_preferred_output`); an optional `split` and `entry_id` as in SFT.

Tokens. The prompt is rendered with the chat template and its generation prompt, tokenized once, and each answer's
tokens (the text the template adds for that turn, up to and including its stop token) are appended to that same
list. The two full conversations are never tokenized separately: a BPE merge across the prompt/answer boundary
would then give chosen and rejected different prompt tokens, and the difference of their log-probabilities would
carry a prompt term. Labels are the answer tokens only. When a pair is longer than `max_length`, the prompt keeps
its end and both answers keep their start, cut to the same room, so the two rows still share every prompt token.

Log-probabilities are sums over answer tokens (never averaged by length, which changes the objective); chosen and
rejected rows go through the model together, in one forward pass.

The reference model, without a second copy of the weights in memory:
- adapters (lora, qlora): the same model with the adapter disabled (peft's `disable_adapter()`), in eval mode
  (no dropout) and without gradients: `adapter_reference_logprobs`.
- full weights (full, freeze): the reference log-probabilities of every pair are computed once before the first
  step, with the initial weights, and kept (one row of two numbers per pair): `precompute_reference_logprobs`, then
  `ReferenceCache.lookup` for a batch. A frozen copy would double the memory of the weights; the cache costs two
  floats a pair and one extra forward pass over the data.
"""

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.trainer.data import (
    IGNORE_INDEX,
    DataError,
    content_text,
    json_lines,
    render_prompt,
    template_messages,
)


class PairRefused(DataError):
    """A pair with nothing to learn from (identical or empty answers), named by its line and the reason."""


@dataclass
class PairRecord:
    line: int
    entry_id: int | None
    split: str
    prompt: list[dict]
    chosen: dict
    rejected: dict
    tools: list[dict]


@dataclass
class PairExample:
    """Token ids of a pair: the shared prompt and each answer (labels are the answer tokens)."""

    line: int
    entry_id: int | None
    split: str
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    truncated: bool = False

    def input_ids(self, side: str) -> list[int]:
        return self.prompt_ids + self._answer(side)

    def labels(self, side: str) -> list[int]:
        return [IGNORE_INDEX] * len(self.prompt_ids) + self._answer(side)

    def _answer(self, side: str) -> list[int]:
        return self.chosen_ids if side == "chosen" else self.rejected_ids

    def __len__(self) -> int:
        return len(self.prompt_ids) + max(len(self.chosen_ids), len(self.rejected_ids))


# --- reading ----------------------------------------------------------------------------------------


def read_pairs(path: str | Path) -> Iterator[PairRecord]:
    """The pairs of a JSONL file, line by line; a malformed line is a DataError naming it."""
    for number, row in json_lines(path):
        yield pair_record(number, row)


def pair_record(number: int, row: Any) -> PairRecord:
    """One line in TRL's or OpenAI's preference format (as the preference exports write them)."""
    if not isinstance(row, dict):
        raise DataError(f"line {number}: expected a JSON object")
    if "messages" in row and "prompt" not in row:
        raise DataError(
            f"line {number}: a conversation, not a preference pair; objective dpo reads lines with a prompt, a chosen "
            "and a rejected answer (the preference exports of a dataset)"
        )
    if "input" in row:  # OpenAI
        request = row["input"] if isinstance(row["input"], dict) else {}
        prompt, tools = request.get("messages"), request.get("tools")
        chosen, rejected = row.get("preferred_output"), row.get("non_preferred_output")
    else:  # TRL, conversational or plain text
        prompt, tools, chosen, rejected = row.get("prompt"), row.get("tools"), row.get("chosen"), row.get("rejected")
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except ValueError:
            raise DataError(f"line {number}: 'tools' is not JSON") from None
    if not isinstance(prompt, list) or not prompt or not all(isinstance(m, dict) for m in prompt):
        raise DataError(f"line {number}: expected a non-empty prompt (TRL 'prompt' or OpenAI 'input.messages')")
    if not isinstance(tools or [], list):
        raise DataError(f"line {number}: 'tools' must be a list")
    split = row.get("split") or "train"
    if split not in ("train", "validation"):
        raise DataError(f"line {number}: split must be 'train' or 'validation', not {split!r}")
    entry_id = row.get("entry_id")
    return PairRecord(
        number, entry_id if isinstance(entry_id, int) else None, split, prompt,
        _answer(number, "chosen", chosen), _answer(number, "rejected", rejected), tools or [],
    )  # fmt: skip


def _answer(number: int, name: str, value: Any) -> dict:
    if isinstance(value, str):
        return {"role": "assistant", "content": value}
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, dict) or value.get("role", "assistant") != "assistant":
        raise DataError(f"line {number}: the {name} answer must be one assistant message")
    return {**value, "role": "assistant"}


# --- encoding ---------------------------------------------------------------------------------------


def encode_pair(tokenizer: Any, record: PairRecord, *, max_length: int, stop_ids: set[int]) -> PairExample:
    """The prompt's tokens once, and each answer's tokens appended to them. Raises PairRefused when the answers are
    identical or one is empty, DataError when the template cannot render the pair or an answer has no stop token."""
    for name, message in (("chosen", record.chosen), ("rejected", record.rejected)):
        if not content_text(message.get("content")).strip() and not message.get("tool_calls"):
            raise PairRefused(f"line {record.line}: the {name} answer is empty")
    messages = template_messages(record.prompt)
    try:
        prompt_text = render_prompt(tokenizer, messages, record.tools)
        chosen = _answer_ids(tokenizer, messages, record.chosen, record.tools, prompt_text, stop_ids, record.line)
        rejected = _answer_ids(tokenizer, messages, record.rejected, record.tools, prompt_text, stop_ids, record.line)
    except DataError:
        raise
    except Exception as exc:  # the template itself raised (e.g. roles out of order)
        raise DataError(f"line {record.line}: the chat template cannot render it ({exc})") from None
    if chosen == rejected:
        raise PairRefused(f"line {record.line}: the chosen and rejected answers are identical")
    prompt = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    example = PairExample(record.line, record.entry_id, record.split, prompt, chosen, rejected)
    return truncate_pair(example, max_length)


def _answer_ids(
    tokenizer: Any, messages: list[dict], answer: dict, tools: list[dict], prompt_text: str, stop_ids: set[int],
    line: int,
) -> list[int]:  # fmt: skip
    """The tokens the template adds for `answer` after the generation prompt, up to and including its last stop
    token (what follows it, such as a newline, is never generated)."""
    full = tokenizer.apply_chat_template(
        [*messages, *template_messages([answer])], tools=tools or None, tokenize=False, add_generation_prompt=False
    )
    if not full.startswith(prompt_text) or len(full) <= len(prompt_text):
        raise DataError(
            f"line {line}: the model's chat template renders the prompt differently once an answer follows, so the "
            "answer tokens cannot be located"
        )
    ids = tokenizer(full[len(prompt_text) :], add_special_tokens=False)["input_ids"]
    if stop_ids:
        stops = [n for n, token in enumerate(ids) if token in stop_ids]
        if not stops:
            raise DataError(
                f"line {line}: the chat template does not end the answer with a stop token; a model trained on it "
                "would not learn to stop"
            )
        ids = ids[: stops[-1] + 1]
    return ids


def truncate_pair(example: PairExample, max_length: int) -> PairExample:
    """Within `max_length`: the prompt keeps its end (at least half the room when the answers are long), both answers
    their start, cut to the same length. Refuses a pair whose answers become identical once cut."""
    longest = max(len(example.chosen_ids), len(example.rejected_ids))
    if len(example.prompt_ids) + longest <= max_length:
        return example
    keep = min(len(example.prompt_ids), max(max_length - longest, max_length // 2))
    prompt = example.prompt_ids[len(example.prompt_ids) - keep :]
    room = max_length - len(prompt)
    chosen, rejected = example.chosen_ids[:room], example.rejected_ids[:room]
    if chosen == rejected:
        raise PairRefused(
            f"line {example.line}: the chosen and rejected answers are identical within max_seq_length ({max_length})"
        )
    return PairExample(example.line, example.entry_id, example.split, prompt, chosen, rejected, truncated=True)


def load_pairs(
    tokenizer: Any, path: str | Path, *, max_length: int, stop_ids: set[int]
) -> tuple[list[PairExample], list[PairExample], list[PairRefused]]:
    """(train, validation, refused): the refused pairs (identical or empty answers) are left out with their reason;
    a malformed line stops the load."""
    train: list[PairExample] = []
    validation: list[PairExample] = []
    refused: list[PairRefused] = []
    for record in read_pairs(path):
        try:
            example = encode_pair(tokenizer, record, max_length=max_length, stop_ids=stop_ids)
        except PairRefused as exc:
            refused.append(exc)
            continue
        (validation if example.split == "validation" else train).append(example)
    if not train:
        raise DataError(f"{path}: no training pair (every line is in the validation split or refused)")
    return train, validation, refused


def pair_batch(examples: Sequence[PairExample], *, pad_id: int, device: Any) -> dict[str, Any]:
    """Rows 0..n-1 the chosen answers, rows n..2n-1 the rejected ones, padded on the right to the longest; pads
    neither attend nor count."""
    import torch

    rows = [(e.input_ids("chosen"), e.labels("chosen")) for e in examples]
    rows += [(e.input_ids("rejected"), e.labels("rejected")) for e in examples]
    longest = max(len(ids) for ids, _ in rows)
    batch: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "attention_mask": []}
    for ids, labels in rows:
        gap = longest - len(ids)
        batch["input_ids"].append(ids + [pad_id] * gap)
        batch["labels"].append(labels + [IGNORE_INDEX] * gap)
        batch["attention_mask"].append([1] * len(ids) + [0] * gap)
    return {name: torch.tensor(value, dtype=torch.long, device=device) for name, value in batch.items()}


# --- log-probabilities and the loss -----------------------------------------------------------------


def sequence_logprobs(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """(chosen, rejected): the sum of the log-probabilities of each row's answer tokens, in one forward pass over the
    batch of `pair_batch`. Only the answer positions reach the output layer (`token_losses`), so the masked prompt
    and padding contribute nothing."""
    import torch

    from training.trainer.losses import token_losses

    losses, positions = token_losses(model, batch)
    rows = positions // (batch["labels"].shape[1] - 1)
    total = torch.zeros(batch["labels"].shape[0], dtype=losses.dtype, device=losses.device)
    sums = total.index_add(0, rows, -losses)
    half = sums.shape[0] // 2
    return sums[:half], sums[half:]


@dataclass
class DPOMetrics:
    reward_margin: float
    """beta x ((chosen - ref chosen) - (rejected - ref rejected)), averaged over the pairs."""
    reward_accuracy: float
    """The share of pairs whose margin is positive."""
    chosen_reward: float
    rejected_reward: float


def dpo_loss(
    policy_chosen: Any, policy_rejected: Any, ref_chosen: Any, ref_rejected: Any, *, beta: float,
    label_smoothing: float = 0.0,
) -> tuple[Any, DPOMetrics]:  # fmt: skip
    """Sigmoid DPO (Rafailov et al. 2023), averaged over the pairs: -log sigmoid(beta * margin); with conservative
    label smoothing e: -(1 - e) * log sigmoid(beta * margin) - e * log sigmoid(-beta * margin). The arguments are
    summed log-probabilities, one per pair."""
    losses, margins, chosen_rewards, rejected_rewards = dpo_pair_losses(
        policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=beta, label_smoothing=label_smoothing
    )
    metrics = DPOMetrics(
        reward_margin=float(margins.mean()),
        reward_accuracy=float((margins > 0).float().mean()),
        chosen_reward=float(chosen_rewards.mean()),
        rejected_reward=float(rejected_rewards.mean()),
    )
    return losses.mean(), metrics


def dpo_pair_losses(
    policy_chosen: Any, policy_rejected: Any, ref_chosen: Any, ref_rejected: Any, *, beta: float,
    label_smoothing: float = 0.0,
) -> tuple[Any, Any, Any, Any]:  # fmt: skip
    """Each pair's DPO loss, and (detached) its reward margin, chosen reward and rejected reward."""
    import torch.nn.functional as F

    logits = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    losses = -F.logsigmoid(beta * logits) * (1 - label_smoothing) - F.logsigmoid(-beta * logits) * label_smoothing
    chosen_rewards = beta * (policy_chosen - ref_chosen).detach()
    rejected_rewards = beta * (policy_rejected - ref_rejected).detach()
    return losses, chosen_rewards - rejected_rewards, chosen_rewards, rejected_rewards


# --- the reference model ----------------------------------------------------------------------------


@contextlib.contextmanager
def _evaluating(model: Any) -> Iterator[None]:
    """Eval mode (no dropout: the reference must be deterministic) and no gradients; the mode is restored after."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def adapter_reference_logprobs(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """The reference of an adapter fine-tune: the same model with its adapter disabled, no dropout, no gradients."""
    peft_model = getattr(model, "module", model)  # DistributedDataParallel
    with _evaluating(peft_model), peft_model.disable_adapter():
        return sequence_logprobs(peft_model, batch)


@dataclass
class ReferenceCache:
    """The reference log-probabilities of every pair, one row (chosen, rejected) per pair, on the CPU."""

    logprobs: Any

    def lookup(self, indices: Sequence[int], device: Any) -> tuple[Any, Any]:
        rows = self.logprobs[list(indices)].to(device)
        return rows[:, 0], rows[:, 1]


def precompute_reference_logprobs(
    model: Any, examples: Sequence[PairExample], *, batch_size: int, pad_id: int, device: Any
) -> ReferenceCache:
    """The reference of a full fine-tune: every pair's log-probabilities under the current (initial) weights, computed
    once before the first step, so no frozen copy of the model is needed."""
    import torch

    rows = []
    with _evaluating(model):
        for start in range(0, len(examples), batch_size):
            batch = pair_batch(examples[start : start + batch_size], pad_id=pad_id, device=device)
            chosen, rejected = sequence_logprobs(model, batch)
            rows.append(torch.stack([chosen, rejected], dim=1).float().cpu())
    return ReferenceCache(torch.cat(rows) if rows else torch.zeros(0, 2))
