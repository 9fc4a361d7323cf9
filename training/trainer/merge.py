"""Merge a LoRA adapter into full weights, on a full-precision base, and prove the weights changed."""

from pathlib import Path


class MergeError(RuntimeError):
    pass


def merge_adapter(*, model: str, adapter_dir: str, output_dir: str) -> None:
    """Load `model` in float32 (never quantised: merging into a 4-bit base silently keeps base weights),
    apply the adapter, merge, check that some weight differs from the base, and save model + tokenizer."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from training.trainer.modeling import load_tokenizer

    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    before = {name: _fingerprint(p) for name, p in base.named_parameters()}  # two numbers a weight, not a copy
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    changed = sum(1 for name, p in merged.named_parameters() if name in before and _fingerprint(p) != before[name])
    if changed == 0:
        raise MergeError(f"merging {adapter_dir} into {model} changed no weight: the adapter is empty or untrained")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    load_tokenizer(adapter_dir).save_pretrained(out)


def _fingerprint(weight) -> tuple[float, float]:
    values = weight.detach().double()
    return float(values.sum()), float(values.square().sum())
