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
