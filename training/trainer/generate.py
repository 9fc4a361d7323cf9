"""Answers from a base model, with or without a fine-tuned adapter, for the playground. No Django here."""

from functools import lru_cache
from pathlib import Path
from typing import Any

from training.trainer.data import template_messages


@lru_cache(maxsize=2)
def load_for_answers(model: str, adapter_dir: str | None) -> tuple[Any, Any, set[int]]:
    """(model, tokenizer, stop ids): the base, with the adapter in `adapter_dir` or the full fine-tune saved there,
    kept for the next call of this process."""
    from training.trainer.modeling import load_tokenizer, model_stop_ids

    tokenizer = load_tokenizer(adapter_dir or model)
    if adapter_dir and is_adapter(adapter_dir):
        from peft import PeftModel

        loaded = PeftModel.from_pretrained(load_causal_lm(model), adapter_dir)
        loaded.eval()
    else:  # the base alone, or a full fine-tune's folder, which holds the whole model
        loaded = load_causal_lm(adapter_dir or model)
    return loaded, tokenizer, model_stop_ids(model, tokenizer)


def is_adapter(folder: str | Path) -> bool:
    """Whether `folder` holds a PEFT adapter (rather than a whole model)."""
    return (Path(folder) / "adapter_config.json").exists()


def load_causal_lm(path: str | Path) -> Any:
    """The model saved in `path`, on the GPU when there is one (in bf16 where it can), ready to answer."""
    import torch
    from transformers import AutoModelForCausalLM as Loader

    AutoModelForCausalLM: Any = Loader

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    model.eval()
    return model


def generate(*, model: str, adapter_dir: str | None, messages: list[dict], max_new_tokens: int = 64) -> str:
    """The greedy answer to `messages` (OpenAI chat shape) from `model`, with the adapter when given."""
    from training.trainer.evaluate import generate_answers

    loaded, tokenizer, stop_ids = load_for_answers(model, adapter_dir)
    return generate_answers(
        loaded, tokenizer, [template_messages(messages)], stop_ids=stop_ids, max_new_tokens=max_new_tokens
    )[0]


def answers(
    *, model: str, adapter_dir: str | None, conversations: list[list[dict]], max_new_tokens: int = 256
) -> list[str]:
    """Greedy answers to many conversations (OpenAI chat shape) from `model`, with the adapter when given, batched:
    an evaluation's candidates. The model is loaded once per child process."""
    from training.trainer.evaluate import generate_answers

    loaded, tokenizer, stop_ids = load_for_answers(model, adapter_dir)
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

    loaded, tokenizer, stop_ids = load_for_answers(model, adapter_dir)
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
