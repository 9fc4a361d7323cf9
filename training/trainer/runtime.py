"""What both training loops share (the SFT loop, `loop.py`, and the preference loop, `preference_loop.py`): cancelling
a run, refusing sharded layouts, and the optimizer with its schedule."""

import signal
from pathlib import Path
from typing import Any

from training.trainer.config import ConfigError, TrainConfig
from training.trainer.losses import global_sum

CANCEL_FILE = "CANCEL"
SHARDED_DISTRIBUTED = {"FSDP", "DEEPSPEED", "MEGATRON_LM"}


class TrainingCancelled(Exception):
    pass


def check_distributed(distributed_type: str) -> None:
    """Refuse sharded layouts (FSDP, DeepSpeed): checkpoints, the best weights and the result are written from
    the first process's copy of the parameters, which under sharding holds only its own shard."""
    name = distributed_type.rsplit(".", 1)[-1]
    if name in SHARDED_DISTRIBUTED:
        raise ConfigError(
            f"accelerate is set up for {name}, which shards the model across processes; the trainer saves "
            "whole-model weights and supports one process or DDP (docker/accelerate/ddp.yaml). Train a model "
            "that fits one GPU, with method freeze or an adapter to use less memory."
        )


def make_optimizer(config: TrainConfig, params: list[Any], *, total_steps: int, device: Any) -> tuple[Any, Any]:
    """AdamW over the trainable parameters, and its learning-rate schedule with warm-up."""
    import torch
    from transformers import get_scheduler

    optimizer = torch.optim.AdamW(
        params, lr=config.lr, weight_decay=config.weight_decay, fused=device.type == "cuda" or None
    )
    scheduler = get_scheduler(
        config.scheduler if config.scheduler != "constant" else "constant_with_warmup",
        optimizer=optimizer,
        num_warmup_steps=round(config.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    return optimizer, scheduler


class CancelWatch:
    """The worker asks for a stop by writing output_dir/CANCEL (or with SIGTERM); every process stops
    at the same step because the main process's answer is shared."""

    def __init__(self, output_dir: Path, accelerator: Any) -> None:
        self.path = output_dir / CANCEL_FILE
        self.accelerator = accelerator
        self.signalled = False
        if accelerator.is_main_process:
            signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, *_: object) -> None:
        self.signalled = True

    def requested(self) -> bool:
        mine = 1.0 if (self.signalled or self.path.exists()) else 0.0
        return global_sum(self.accelerator, mine) > 0
