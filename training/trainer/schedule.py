"""Which examples every micro-batch of every optimizer step holds, on every process."""

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from training.trainer.config import TrainConfig
from training.trainer.data import DataError


@dataclass
class Schedule:
    """Which examples every micro-batch of every optimizer step holds. Deterministic from the seed, so a
    resumed run sees exactly the batches it would have seen."""

    steps: list[list[list[int]]]  # step → micro-batches (this process's) → example indices
    steps_per_epoch: int
    epochs_of_step: list[float] = field(default_factory=list)


def build_schedule(
    *,
    n_examples: int,
    config: TrainConfig,
    world_size: int,
    rank: int,
    warn: Callable[[str], None],
    lengths: Sequence[int] | None = None,
) -> Schedule:
    """With `lengths`, the examples of each optimizer step are sorted by length before they are cut into
    micro-batches, so each pads to little. The step holds the same examples either way, and its loss
    is normalised over all of them, so grouping changes nothing but speed."""
    per_step = config.batch_size * config.gradient_accumulation * world_size
    steps: list[list[list[int]]] = []
    epochs_of_step: list[float] = []
    epoch = 0
    steps_per_epoch = max(1, math.ceil(n_examples / per_step)) if world_size == 1 else n_examples // per_step
    if steps_per_epoch == 0:
        raise DataError(
            f"{n_examples} training examples are fewer than one optimizer step needs on {world_size} processes "
            f"({per_step}); lower batch_size or gradient_accumulation"
        )
    if world_size > 1 and n_examples % per_step:
        warn(f"{n_examples % per_step} examples per epoch are left out so that every process gets full steps")
    total = math.ceil(steps_per_epoch * config.epochs)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    while len(steps) < total:
        order = list(range(n_examples))
        random.Random(config.seed * 1_000_003 + epoch).shuffle(order)  # noqa: S311 (an order, not a secret)
        for index in range(steps_per_epoch):
            if len(steps) == total:
                break
            chunk = order[index * per_step : (index + 1) * per_step]
            if lengths is not None:
                chunk.sort(key=lambda i: lengths[i])
            micro = [chunk[i : i + config.batch_size] for i in range(0, len(chunk), config.batch_size)]
            steps.append(micro[rank::world_size])
            epochs_of_step.append(epoch + (index + 1) / steps_per_epoch)
        epoch += 1
    return Schedule(steps, steps_per_epoch, epochs_of_step)
