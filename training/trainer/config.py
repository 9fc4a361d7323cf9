"""What a fine-tune is asked to do: one dataclass, read from and written to JSON.

The worker writes a `TrainConfig` as JSON next to the job's output and runs
`accelerate launch -m training.trainer CONFIG.json`; the trainer reads it back. No Django here.
"""

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

METHODS = ("lora", "qlora", "full", "freeze")
OBJECTIVES = ("sft", "dpo")
SCHEDULERS = ("cosine", "linear", "constant")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
# What transformers is told to use for attention. Only these: any other name is looked up as a kernel repository
# on the Hugging Face Hub, which would have a GPU worker download and run code.
ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flash_attention_3")

# The range of every numeric setting, both ends included (a few have a stricter check in `validate` too, such as
# a learning rate in (0, 1)). The upper ends are far past any useful run; they keep a mistake or a hostile job (a
# LoRA rank of 2^40, 10^9 new tokens per answer) from holding a GPU worker until it runs out of memory or time.
LIMITS: dict[str, tuple[float, float]] = {
    "learning_rate": (0, 1),
    "epochs": (0, 100),
    "batch_size": (1, 1024),
    "gradient_accumulation": (1, 1024),
    "max_seq_length": (16, 131_072),
    "warmup_ratio": (0, 1),
    "weight_decay": (0, 1),
    "max_grad_norm": (0, 1000),  # 0: no clipping
    "seed": (0, 2**32 - 1),  # what numpy takes
    "max_steps": (1, 1_000_000),
    "lora_rank": (1, 1024),
    "lora_alpha": (1, 4096),
    "lora_dropout": (0, 1),
    "freeze_layers": (0, 1000),
    "eval_every_steps": (0, 1_000_000),
    "early_stopping_patience": (0, 1000),
    "checkpoint_every_steps": (0, 1_000_000),
    "keep_checkpoints": (1, 100),
    "eval_generations": (0, 100),
    "max_new_tokens": (1, 4096),
    "dpo_beta": (0.001, 100),
    "dpo_label_smoothing": (0, 0.5),
}
TARGET_MODULES_MAX = 64  # names (or one pattern), each at most 200 characters
# The settings that take one of a few words.
CHOICES = {
    "objective": OBJECTIVES,
    "scheduler": SCHEDULERS,
    "precision": PRECISIONS,
    "attn_implementation": ATTENTION_IMPLEMENTATIONS,
}

# Learning rates the fine-tuning projects agree on: adapters learn fast, full weights need care.
DEFAULT_LEARNING_RATES = {"lora": 2e-4, "qlora": 2e-4, "full": 1e-5, "freeze": 1e-5}


class ConfigError(ValueError):
    """A config that cannot be trained, with the field and the reason."""


@dataclass
class TrainConfig:
    # --- what to train ---
    model: str
    """A Hugging Face hub id or a local folder holding a causal LM and its tokenizer."""
    data_path: str
    """JSONL in OpenAI chat format, one example per line; an optional `"split"` key ("train" or
    "validation") and `"entry_id"` on each line (a dataset snapshot has both). Lines without a split train."""
    output_dir: str
    """Where events, checkpoints, the adapter (or weights), losses and the evaluation are written."""
    method: str = "lora"
    """lora, qlora (4-bit base, CUDA + bitsandbytes), full, or freeze (full fine-tuning of all but the first
    `freeze_layers` decoder layers)."""

    # --- optimisation ---
    learning_rate: float | None = None
    """None takes the method's default (2e-4 for adapters, 1e-5 for full weights)."""
    epochs: float = 3.0
    """Passes over the training split; a fraction ends part-way through the last one."""
    batch_size: int = 4
    """Examples per micro-batch on each process."""
    gradient_accumulation: int = 4
    """Micro-batches per optimizer step; the step's loss is averaged over all their trained tokens."""
    max_seq_length: int = 2048
    """Longer examples are cut to this many tokens; one left with no trained token is dropped and reported."""
    warmup_ratio: float = 0.05
    """Share of the optimizer steps over which the learning rate rises from 0."""
    scheduler: str = "cosine"
    """The learning rate after the warm-up: cosine, linear (both decay to 0) or constant."""
    weight_decay: float = 0.0
    """AdamW's weight decay."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this norm; 0 does not clip."""
    seed: int = 42
    """Seeds the order of the examples, dropout and the new weights."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (overrides epochs when smaller)."""

    # --- LoRA ---
    lora_rank: int = 16
    """Rank of the LoRA matrices."""
    lora_alpha: int | None = None
    """None gives 2 × rank."""
    lora_dropout: float = 0.05
    """Dropout on the input of the LoRA matrices."""
    target_modules: list[str] | str = "all-linear"
    """The modules that get an adapter: "all-linear", a list of module names, or one regular expression."""
    freeze_layers: int = 0
    """With method "freeze": how many decoder layers, from the input side, keep their weights."""

    # --- objective ---
    objective: str = "sft"
    """sft: learn the assistant turns of conversations. dpo: learn from preference pairs (a prompt, a chosen and a
    rejected answer, one JSONL line each as the preference exports write them) with Direct Preference
    Optimization; the reference model is the base with the adapter disabled (lora, qlora) or the log-probabilities
    of the initial weights, computed once before the first step (full, freeze)."""
    dpo_beta: float = 0.1
    """With objective dpo: how far the fine-tune may move from the reference (larger keeps it closer)."""
    dpo_label_smoothing: float = 0.0
    """With objective dpo: the share of pairs assumed mislabelled (conservative DPO), at most 0.5; 0 is the original
    loss."""

    # --- evaluation and checkpoints ---
    eval_every_steps: int = 50
    """Evaluate on the validation split every N optimizer steps (and at the start and the end); 0: start and end."""
    early_stopping_patience: int = 0
    """Stop after this many evaluations without a better validation loss; 0 never stops early."""
    checkpoint_every_steps: int = 100
    """Save a resumable checkpoint every N optimizer steps; 0 saves none."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints are kept."""
    resume: bool = True
    """Resume from the newest checkpoint in output_dir when there is one."""
    eval_generations: int = 8
    """How many validation prompts to answer with the base and the fine-tuned model, side by side."""
    max_new_tokens: int = 64
    """The longest answer, in tokens, of either model in the evaluation."""
    per_example_losses: bool = True
    """After training, record the loss of every training example (finds likely bad labels)."""

    # --- speed ---
    packing: bool = True
    """Batching with as little padding as the attention allows. With FlashAttention (attn_implementation
    flash_attention_2 or _3) the examples of a micro-batch lie end to end in one row, positions restart at
    each example and attention never crosses from one into another. With SDPA or eager attention, which
    would need a dense mask as large as the row squared, each step's examples are grouped by length and
    each micro-batch is padded to its longest. False: micro-batches in data order, padded."""
    gradient_checkpointing: bool = False
    """Recompute activations during the backward pass: less memory, more compute."""
    precision: str = "auto"
    """auto (bf16 on a GPU that has it, else fp32), bf16, fp16 or fp32."""
    attn_implementation: str = "sdpa"
    """One of ATTENTION_IMPLEMENTATIONS; flash_attention_2 / _3 need the flash-attn package on the GPU workers."""

    # --- free-form ---
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else to keep with the config; the trainer does not read it."""

    def __post_init__(self) -> None:
        self.validate()

    @property
    def lr(self) -> float:
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LEARNING_RATES[self.method]

    @property
    def alpha(self) -> int:
        return self.lora_alpha if self.lora_alpha is not None else 2 * self.lora_rank

    @property
    def uses_adapter(self) -> bool:
        return self.method in ("lora", "qlora")

    def validate(self) -> None:
        _check(self.objective in OBJECTIVES, "objective", f"must be one of {', '.join(OBJECTIVES)}")
        _check(self.method in METHODS, "method", f"must be one of {', '.join(METHODS)}, not {self.method!r}")
        _check(self.scheduler in SCHEDULERS, "scheduler", f"must be one of {', '.join(SCHEDULERS)}")
        _check(self.precision in PRECISIONS, "precision", "must be auto, bf16, fp16 or fp32")
        _check(self.learning_rate is None or 0 < self.learning_rate < 1, "learning_rate", "must be in (0, 1)")
        _check(self.epochs > 0, "epochs", "must be positive")
        for name in ("batch_size", "gradient_accumulation", "lora_rank"):
            _check(getattr(self, name) >= 1, name, "must be at least 1")
        _check(self.max_seq_length >= 16, "max_seq_length", "must be at least 16")
        _check(0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
        _check(0 <= self.lora_dropout < 1, "lora_dropout", "must be in [0, 1)")
        _check(self.max_steps is None or self.max_steps >= 1, "max_steps", "must be at least 1")
        for name in ("freeze_layers", "eval_every_steps", "early_stopping_patience", "checkpoint_every_steps"):
            _check(getattr(self, name) >= 0, name, "must not be negative")
        _check(self.method != "freeze" or self.freeze_layers >= 1, "freeze_layers", "method freeze needs at least 1")
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)  # NaN and infinities compare false: refused too
            _check(value is None or low <= value <= high, name, f"must be from {low} to {high}")
        attention = ATTENTION_IMPLEMENTATIONS
        _check(self.attn_implementation in attention, "attn_implementation", f"must be one of {', '.join(attention)}")
        modules = [self.target_modules] if isinstance(self.target_modules, str) else self.target_modules
        _check(
            0 < len(modules) <= TARGET_MODULES_MAX and all(0 < len(name) <= 200 for name in modules),
            "target_modules", f"must be 1 to {TARGET_MODULES_MAX} names of at most 200 characters",
        )  # fmt: skip

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown setting")
        missing = [name for name in ("model", "data_path", "output_dir") if not data.get(name)]
        if missing:
            raise ConfigError(f"{missing[0]}: required")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(str(exc)) from None

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        return cls.from_dict(data)


def _check(ok: bool, name: str, reason: str) -> None:
    if not ok:
        raise ConfigError(f"{name}: {reason}")
