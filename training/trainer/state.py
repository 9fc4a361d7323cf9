"""What a run is made of (Run), where it stands (TrainState, checkpointed) and what it gives (TrainResult)."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.trainer.config import TrainConfig
from training.trainer.data import Example
from training.trainer.events import Events
from training.trainer.losses import evaluate_loss
from training.trainer.schedule import Schedule


@dataclass
class TrainResult:
    steps: int
    train_loss: float
    eval_loss: float | None
    base_eval_loss: float | None
    adapter_dir: Path
    seconds: float
    tokens_per_second: float
    trained_tokens: int
    peak_memory_bytes: int
    stopped: str = "finished"  # finished, early_stop, cancelled
    losses: list[float] = field(default_factory=list)


@dataclass
class Run:
    """What a run trains with, set up once: the config, the accelerator, the examples and their schedule, the
    model (prepared by accelerate), its optimizer and learning-rate scheduler."""

    config: TrainConfig
    accelerator: Any
    events: Events
    precision: str
    tokenizer: Any
    stop_ids: set[int]
    train_set: list[Example]
    validation: list[Example]
    dropped: list[Example]
    packed: bool
    schedule: Schedule
    model: Any
    params: list[Any]
    optimizer: Any
    scheduler: Any
    trainable_params: int
    total_params: int

    @property
    def output_dir(self) -> Path:
        return Path(self.config.output_dir)

    @property
    def total_steps(self) -> int:
        return len(self.schedule.steps)

    @property
    def device(self) -> Any:
        return self.accelerator.device

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    def unwrapped(self) -> Any:
        return self.accelerator.unwrap_model(self.model)

    def validation_loss(self) -> float:
        return evaluate_loss(
            self.model, self.validation, config=self.config, accelerator=self.accelerator, pad_id=self.pad_id
        )


# What a checkpoint's state.json holds besides the step, in this order.
CHECKPOINTED = ("best_eval_loss", "bad_evals", "base_eval_loss", "elapsed_s", "tokens", "best_step")


@dataclass
class TrainState:
    """Where a run stands. The fields up to `best_step` go into every checkpoint and come back on resume; the
    others belong to this process's run."""

    step: int = 0  # the last optimizer step taken
    best_eval_loss: float | None = None
    bad_evals: int = 0  # evaluations in a row without a better validation loss
    base_eval_loss: float | None = None
    elapsed_s: float = 0.0  # training seconds before this run's clock started, as the last checkpoint saved them
    tokens: int = 0  # tokens this process trained on (padding excluded)
    best_step: int | None = None  # the step of the weights in best.safetensors (early stopping)
    # --- this run only ---
    start_step: int = 0
    eval_loss: float | None = None
    stopped: str = "finished"  # or early_stop
    losses: list[float] = field(default_factory=list)  # of each step this run took
    started: float = 0.0  # time.perf_counter() when the steps began
    step_elapsed_s: float = 0.0  # training seconds at the end of the last step
    window_tokens: int = 0  # tokens since the last step event, for its throughput
    step_trained_tokens: int = 0  # tokens that carried loss in the last step, all processes
    window_started: float = 0.0

    @classmethod
    def resumed(cls, saved: dict[str, Any]) -> "TrainState":
        return cls(step=saved["step"], start_step=saved["step"], **{k: saved[k] for k in CHECKPOINTED if k in saved})

    def saved(self) -> dict[str, Any]:
        """What a checkpoint keeps (best_step only once there is one)."""
        values = {name: getattr(self, name) for name in CHECKPOINTED}
        if self.best_step is None:
            del values["best_step"]
        return values

    def new_best(self, eval_loss: float) -> bool:
        """Whether `eval_loss` is the best so far; if so it is kept and the evaluations without one count from 0."""
        if self.best_eval_loss is None or eval_loss < self.best_eval_loss:
            self.best_eval_loss, self.bad_evals = eval_loss, 0
            return True
        return False
