"""Which tokens of a conversation count toward the loss under a model's chat template.

Needs only a tokenizer, no model; but transformers imports torch when it is installed, so the web
process asks a worker for it (the task `training.tasks.loss_preview_task`, training/playground/tasks.py)."""

from functools import lru_cache
from typing import Any

from training.trainer.data import DataError, Record, encode, ensure_chat_template, stop_token_ids


@lru_cache(maxsize=8)
def _tokenizer(model: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    ensure_chat_template(tokenizer)
    return tokenizer


def loss_preview(*, model: str, messages: list[dict], tools: list[dict], max_length: int = 32_768) -> list[dict]:
    """The conversation as the model sees it, token by token: `{"text", "trained"}` for each token.
    Raises DataError (with the reason) when the conversation could not be trained on."""
    tokenizer = _tokenizer(model)
    record = Record(line=1, entry_id=None, split="train", messages=messages, tools=tools)
    example = encode(tokenizer, record, max_length=max_length, stop_ids=stop_token_ids(tokenizer))
    texts = [tokenizer.decode([token]) for token in example.input_ids]
    return [{"text": text, "trained": label != -100} for text, label in zip(texts, example.labels, strict=True)]


__all__ = ["DataError", "loss_preview"]
