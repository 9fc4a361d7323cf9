"""Token losses of batches, and the evaluation and per-example losses built on them. No Django here."""

from collections.abc import Sequence
from typing import Any

from training.trainer.config import TrainConfig
from training.trainer.data import IGNORE_INDEX, Example, pack, pad

# Attention implementations that read restarting positions as sequence boundaries without building a
# dense mask: with them, packing is truly padding-free and no token attends across examples.
VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3")


def packs(config: TrainConfig) -> bool:
    """Whether micro-batches are packed end to end in one row. With other attention implementations (SDPA,
    eager) a packed row needs a dense block-diagonal mask whose cost grows with the square of the row, so
    `packing` groups examples of similar length and pads each micro-batch to its longest instead."""
    return config.packing and config.attn_implementation in VARLEN_ATTENTION


def by_length(examples: Sequence[Example], indices: Sequence[int]) -> list[int]:
    return sorted(indices, key=lambda i: len(examples[i]))


def batch_tensors(examples: Sequence[Example], *, packing: bool, pad_id: int, device: Any) -> dict[str, Any]:
    import torch

    rows = pack(examples) if packing else pad(examples, pad_id)
    return {name: torch.tensor(value, dtype=torch.long, device=device) for name, value in rows.items()}


def token_losses(model: Any, batch: dict[str, Any]):
    """Cross-entropy of every trained token (1-D, in order) and the row-major position of each among the
    batch's targets (rows x (length - 1)).

    Only the hidden states that predict a trained token go through the output layer (a pre-hook hands it
    just those): on a long prompt with a short answer, and a large vocabulary, that is most of the memory
    and time of the loss."""
    import torch
    import torch.nn.functional as F

    targets = batch["labels"][:, 1:]
    positions = torch.nonzero((targets != IGNORE_INDEX).flatten(), as_tuple=False).squeeze(1)
    width = targets.shape[1]
    rows, cols = positions // width, positions % width

    def predicting_only(_module: Any, args: tuple) -> tuple:
        return (args[0][rows, cols].unsqueeze(0), *args[1:])

    inputs = {k: v for k, v in batch.items() if k != "labels"}
    handle = _output_layer(model).register_forward_pre_hook(predicting_only)
    try:
        logits = model(**inputs, use_cache=False).logits[0]
    finally:
        handle.remove()
    return F.cross_entropy(logits.float(), targets[rows, cols], reduction="none"), positions


def _output_layer(model: Any) -> Any:
    inner = getattr(model, "module", model)  # DistributedDataParallel
    return inner.get_output_embeddings()


def global_sum(accelerator: Any, value: float) -> float:
    import torch

    if accelerator.num_processes == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=accelerator.device)
    return float(accelerator.reduce(tensor, reduction="sum").item())


def evaluate_loss(
    model: Any, examples: Sequence[Example], *, config: TrainConfig, accelerator: Any, pad_id: int
) -> float:
    """Mean loss per trained token over `examples`, shared out across processes."""
    import torch

    model.eval()
    total, count = 0.0, 0.0
    mine = [examples[i] for i in by_length(examples, range(accelerator.process_index, len(examples),
                                                            accelerator.num_processes))]  # fmt: skip
    with torch.no_grad(), accelerator.autocast():
        for start in range(0, len(mine), config.batch_size):
            batch = batch_tensors(
                mine[start : start + config.batch_size], packing=packs(config), pad_id=pad_id,
                device=accelerator.device,
            )  # fmt: skip
            losses, _ = token_losses(model, batch)
            total += float(losses.sum())
            count += losses.numel()
    model.train()
    total, count = global_sum(accelerator, total), global_sum(accelerator, count)
    return total / count if count else float("nan")


def example_losses(
    model: Any, examples: Sequence[Example], *, config: TrainConfig, accelerator: Any, pad_id: int
) -> list[tuple[int, float, int]]:
    """(index, mean loss, trained tokens) of each example this process holds."""
    import torch

    model.eval()
    out = []
    indices = by_length(examples, range(accelerator.process_index, len(examples), accelerator.num_processes))
    with torch.no_grad(), accelerator.autocast():
        for start in range(0, len(indices), config.batch_size):
            chunk = indices[start : start + config.batch_size]
            group = [examples[i] for i in chunk]
            batch = batch_tensors(group, packing=packs(config), pad_id=pad_id, device=accelerator.device)
            losses, positions = token_losses(model, batch)
            owner = _owners(group, packing=packs(config), device=losses.device)[positions]
            sums = torch.zeros(len(group), device=losses.device).index_add_(0, owner, losses.float())
            counts = torch.bincount(owner, minlength=len(group))
            for i, index in enumerate(chunk):
                out.append((index, float(sums[i] / counts[i]), int(counts[i])))
    model.train()
    return out


def _owners(group: Sequence[Example], *, packing: bool, device: Any):
    """For every target position of a batch (row-major, after the shift), which example it belongs to."""
    import torch

    if packing:
        owner = [i for i, example in enumerate(group) for _ in range(len(example))][1:]
        return torch.tensor(owner, device=device)
    width = max(len(example) for example in group) - 1
    return torch.arange(len(group), device=device).repeat_interleave(width)
