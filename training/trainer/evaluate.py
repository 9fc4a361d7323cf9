"""Base model against fine-tuned model on the validation split: answers side by side and, when the
answers are short labels, accuracy and macro-F1 of both. No Django here."""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.trainer.config import TrainConfig
from training.trainer.data import read_records, render_prompt, template_messages

# Answers of at most this many words, with few distinct values, are labels (classification data).
LABEL_MAX_WORDS = 4
LABEL_MAX_CLASSES = 20
LABEL_MAX_EXAMPLES = 200


@dataclass
class Prompt:
    entry_id: int | None
    line: int
    messages: list[dict]  # up to (not including) the last assistant turn
    reference: str  # the last assistant turn's text


def validation_prompts(validation_path: str | Path) -> list[Prompt]:
    """The validation conversations up to their last assistant turn, and that turn's text."""
    out = []
    for record in read_records(validation_path):
        if record.split != "validation":
            continue
        messages = template_messages(record.messages)
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
        if last is None or last == 0:
            continue
        out.append(Prompt(record.entry_id, record.line, messages[:last], messages[last]["content"].strip()))
    return out


def label_task(prompts: list[Prompt]) -> list[Prompt] | None:
    """The validation prompts when their answers look like labels, else None."""
    prompts = prompts[:LABEL_MAX_EXAMPLES]
    if len(prompts) < 2:
        return None
    references = [p.reference for p in prompts]
    classes = {r.lower() for r in references}
    short = all(0 < len(r.split()) <= LABEL_MAX_WORDS for r in references)
    few = 2 <= len(classes) <= min(LABEL_MAX_CLASSES, max(2, len(references) // 2))
    return prompts if short and few else None


def generate_answers(
    model: Any, tokenizer: Any, conversations: Sequence[list[dict]], *, stop_ids: set[int], max_new_tokens: int,
    batch_size: int = 16,
) -> list[str]:  # fmt: skip
    """Greedy answers, batched with left padding."""
    import torch

    if not conversations:
        return []
    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    answers: list[str] = []
    device = next(model.parameters()).device
    try:
        for start in range(0, len(conversations), batch_size):
            texts = [render_prompt(tokenizer, c) for c in conversations[start : start + batch_size]]
            inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with torch.no_grad():
                output = model.generate(
                    **inputs, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=sorted(stop_ids),
                    pad_token_id=tokenizer.pad_token_id, use_cache=True,
                )  # fmt: skip
            new = output[:, inputs["input_ids"].shape[1] :]
            answers += [a.strip() for a in tokenizer.batch_decode(new, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = side
        if was_training:
            model.train()
    return answers


def label_scores(references: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """Exact-match accuracy (case-insensitive) and macro-F1 over the reference classes."""
    refs = [r.strip().lower() for r in references]
    preds = [p.strip().lower() for p in predictions]
    f1s = [_f1(refs, preds, label) for label in sorted(set(refs))]
    accuracy = sum(1 for r, p in zip(refs, preds, strict=True) if r == p) / len(refs) if refs else 0.0
    return {"accuracy": accuracy, "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0}


def _f1(refs: Sequence[str], preds: Sequence[str], label: str) -> float:
    pairs = list(zip(refs, preds, strict=True))
    tp = sum(1 for r, p in pairs if r == label and p == label)
    fp = sum(1 for r, p in pairs if r != label and p == label)
    fn = sum(1 for r, p in pairs if r == label and p != label)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def evaluation_report(
    *,
    prompts: Sequence[Prompt],
    labels: Sequence[Prompt] | None,
    results: dict[str, tuple[list[str], list[str]]],
    base_loss: float | None,
    tuned_loss: float | None,
) -> dict:
    import math

    def scores(loss: float | None) -> dict | None:
        return None if loss is None else {"eval_loss": loss, "perplexity": math.exp(min(loss, 50.0))}

    base_answers, base_labels = results.get("base", ([], []))
    tuned_answers, tuned_labels = results.get("tuned", ([], []))
    report: dict[str, Any] = {
        "base": scores(base_loss),
        "tuned": scores(tuned_loss),
        "generations": [
            {
                "entry_id": p.entry_id,
                "line": p.line,
                "prompt": p.messages,
                "reference": p.reference,
                "base": base_answers[i] if i < len(base_answers) else None,
                "tuned": tuned_answers[i] if i < len(tuned_answers) else None,
            }
            for i, p in enumerate(prompts)
        ],
    }
    if labels and base_labels and tuned_labels:
        references = [p.reference for p in labels]
        report["labels"] = {
            "base": label_scores(references, base_labels),
            "tuned": label_scores(references, tuned_labels),
            "classes": sorted({r.lower() for r in references}),
            "examples": len(references),
        }
    return report


class Comparison:
    """Answers of the base and the fine-tuned model to validation prompts, and label accuracy, for evaluation.json."""

    def __init__(self, config: TrainConfig, *, tokenizer: Any, stop_ids: set[int], main_process: bool) -> None:
        self.config, self.tokenizer, self.stop_ids = config, tokenizer, stop_ids
        self.main = main_process
        prompts = validation_prompts(config.data_path)
        self.prompts = prompts[: config.eval_generations]
        self.labels = label_task(prompts)
        # The base model's answers are kept on disk: a resumed run no longer has the base model to ask.
        self.base_file = Path(config.output_dir) / "base_answers.json"
        self.results: dict[str, Any] = {}
        if self.base_file.exists():
            self.results["base"] = tuple(json.loads(self.base_file.read_text()))

    def answers(self, which: str, model: Any) -> None:
        if not self.main:
            return
        prompts = [p.messages for p in self.prompts]
        label_prompts = [p.messages for p in self.labels] if self.labels else []
        answers = generate_answers(
            model, self.tokenizer, prompts + label_prompts, stop_ids=self.stop_ids,
            max_new_tokens=self.config.max_new_tokens,
        )  # fmt: skip
        self.results[which] = (answers[: len(prompts)], answers[len(prompts) :])
        if which == "base":
            self.base_file.write_text(json.dumps(self.results[which]))

    def write(self, path: Path, *, base_loss: float | None, tuned_loss: float | None) -> None:
        report = evaluation_report(
            prompts=self.prompts, labels=self.labels, results=self.results, base_loss=base_loss, tuned_loss=tuned_loss
        )
        path.write_text(json.dumps(report, indent=2))
