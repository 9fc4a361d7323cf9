"""Answers from a base model, with or without a fine-tuned adapter, for the playground. No Django here."""

from functools import lru_cache
from pathlib import Path
from typing import Any

from training.trainer.data import template_messages


@lru_cache(maxsize=2)
def _load(model: str, adapter_dir: str | None) -> tuple[Any, Any, set[int]]:
    import torch
    from transformers import AutoModelForCausalLM as Loader

    AutoModelForCausalLM: Any = Loader

    from training.trainer.modeling import load_tokenizer, model_stop_ids

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    base = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(device)
    tokenizer = load_tokenizer(adapter_dir or model)
    if adapter_dir and (Path(adapter_dir) / "adapter_config.json").exists():
        from peft import PeftModel

        base = PeftModel.from_pretrained(base, adapter_dir)
    elif adapter_dir:  # full fine-tuning: the folder holds the whole model
        base = AutoModelForCausalLM.from_pretrained(adapter_dir, dtype=dtype).to(device)
    base.eval()
    return base, tokenizer, model_stop_ids(model, tokenizer)


def generate(*, model: str, adapter_dir: str | None, messages: list[dict], max_new_tokens: int = 64) -> str:
    """The greedy answer to `messages` (OpenAI chat shape) from `model`, with the adapter when given."""
    from training.trainer.evaluate import generate_answers

    loaded, tokenizer, stop_ids = _load(model, adapter_dir)
    return generate_answers(
        loaded, tokenizer, [template_messages(messages)], stop_ids=stop_ids, max_new_tokens=max_new_tokens
    )[0]


def answers(
    *, model: str, adapter_dir: str | None, conversations: list[list[dict]], max_new_tokens: int = 256
) -> list[str]:
    """Greedy answers to many conversations (OpenAI chat shape) from `model`, with the adapter when given, batched:
    an evaluation's candidates. The model is loaded once per child process."""
    from training.trainer.evaluate import generate_answers

    loaded, tokenizer, stop_ids = _load(model, adapter_dir)
    return generate_answers(
        loaded, tokenizer, [template_messages(c) for c in conversations], stop_ids=stop_ids,
        max_new_tokens=max_new_tokens,
    )  # fmt: skip


def candidate(
    *, model: str, adapter_dir: str | None, conversations: list[list[dict]], scored: list[dict],
    max_new_tokens: int = 256, max_length: int = 4096,
) -> dict:  # fmt: skip
    """An evaluation's work for one candidate, the model loaded once: its greedy answers to `conversations`, and
    the loss of each of `scored` (`{"messages", "tools"}`: a conversation with the answer to score) as training
    measures it, over the assistant turns' tokens. A conversation the template cannot render, or that keeps no
    answer token within `max_length`, has no loss (None)."""
    return {
        "answers": answers(
            model=model, adapter_dir=adapter_dir, conversations=conversations, max_new_tokens=max_new_tokens
        ),
        "losses": losses(model=model, adapter_dir=adapter_dir, scored=scored, max_length=max_length),
    }


def losses(*, model: str, adapter_dir: str | None, scored: list[dict], max_length: int = 4096) -> list[list | None]:
    """[mean loss, trained tokens] of each conversation of `scored`, or None when it has none (see `candidate`)."""
    import torch
    import torch.nn.functional as F

    from training.trainer.data import IGNORE_INDEX, DataError, Record, encode

    loaded, tokenizer, stop_ids = _load(model, adapter_dir)
    device = next(loaded.parameters()).device
    out: list[list | None] = []
    with torch.no_grad():
        for number, item in enumerate(scored, start=1):
            record = Record(number, None, "validation", item["messages"], item.get("tools") or [])
            try:
                example = encode(tokenizer, record, max_length=max_length, stop_ids=stop_ids)
            except DataError:
                out.append(None)
                continue
            if example.trained_tokens == 0:
                out.append(None)
                continue
            ids = torch.tensor([example.input_ids], device=device)
            labels = torch.tensor([example.labels], device=device)
            logits = loaded(input_ids=ids).logits[:, :-1].float()
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                                   ignore_index=IGNORE_INDEX)  # fmt: skip
            out.append([float(loss), example.trained_tokens])
    return out
