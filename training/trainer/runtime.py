"""What both training loops share (the SFT loop, `loop.py`, and the preference loop, `preference_loop.py`): the start
of a run (its folder, precision, accelerator, events, seed and tokenizer), the model with its optimizer, cancelling a
run, refusing sharded layouts, and the optimizer with its schedule."""

import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.trainer.config import ConfigError, TrainConfig
from training.trainer.events import Events
from training.trainer.losses import global_sum
from training.trainer.modeling import load_model, load_tokenizer, model_stop_ids, resolve_precision

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


@dataclass
class Start:
    """What a run has before it reads its examples: the accelerator, its precision, where events go, the tokenizer."""

    accelerator: Any
    precision: str
    events: Events
    tokenizer: Any
    stop_ids: set[int]


def run_start(config: TrainConfig, *, events: Events | None) -> Start:
    """The output folder made, the accelerator in the run's precision, the events' sink, the layout checked, the seed
    set, the tokenizer and the model's stop tokens loaded."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    precision = resolve_precision(config)
    accelerator = Accelerator(mixed_precision="no" if precision == "fp32" else precision)
    sink = events or Events(output_dir, accelerator.is_main_process)
    check_distributed(str(accelerator.distributed_type))
    set_seed(config.seed)
    tokenizer = load_tokenizer(config.model)
    return Start(accelerator, precision, sink, tokenizer, model_stop_ids(config.model, tokenizer))


def model_prepared(config: TrainConfig, start: Start, *, total_steps: int) -> tuple[Any, list[Any], Any, Any]:
    """(model, its trainable parameters, optimizer, scheduler): the model loaded with what trains marked, prepared
    with its optimizer by the accelerator, in training mode."""
    model = load_model(config, precision=start.precision, tokenizer=start.tokenizer, device=start.accelerator.device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = make_optimizer(config, params, total_steps=total_steps, device=start.accelerator.device)
    model, optimizer = start.accelerator.prepare(model, optimizer)
    model.train()
    return model, params, optimizer, scheduler
