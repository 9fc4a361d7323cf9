"""The trainer: supervised fine-tuning of a causal LM on chat conversations, read top to bottom.

    python -m training.trainer CONFIG.json
    accelerate launch --num_processes N -m training.trainer CONFIG.json

transformers + peft under accelerate. Labels come from `training.trainer.data` (assistant tokens and their
end-of-turn token only); batches are packed without padding; the loss of an optimizer step is the
sum over its trained tokens divided by their number across every micro-batch and process, so batch
1 x accumulation 8 trains exactly like batch 8 x accumulation 1. Progress goes to
`output_dir/events.jsonl` (docs/training.md). No Django here.
"""

import contextlib
import json
import math
import os
import random
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.trainer.checkpoints import (
    latest_checkpoint,
    load_checkpoint,
    load_trainable,
    save_checkpoint,
    save_trainable,
)
from training.trainer.config import ConfigError, TrainConfig
from training.trainer.data import DataError, load_examples
from training.trainer.losses import batch_tensors, evaluate_loss, example_losses, global_sum, packs, token_losses
from training.trainer.modeling import load_model, load_tokenizer, model_stop_ids, parameter_counts, resolve_precision

__all__ = ["TrainResult", "TrainingCancelled", "batch_tensors", "load_tokenizer", "main", "token_losses", "train"]

CANCEL_FILE = "CANCEL"
EVENTS_FILE = "events.jsonl"
BEST_FILE = "best.safetensors"  # with early stopping: the trainable weights of the best evaluation


class TrainingCancelled(Exception):
    pass


# --- events -----------------------------------------------------------------------------------------


class Events:
    """Appends one JSON object per line to events.jsonl (main process only), flushed at once so the
    worker relaying them sees each as soon as it is written."""

    def __init__(self, output_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self._handle = open(output_dir / EVENTS_FILE, "a", encoding="utf-8") if enabled else None  # noqa: SIM115

    def emit(self, type_: str, **fields: Any) -> None:
        if self._handle is None:
            return
        self._handle.write(json.dumps({"type": type_, "time": round(time.time(), 3), **fields}) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


# --- the schedule of batches -------------------------------------------------------------------------


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


# --- training ---------------------------------------------------------------------------------------


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


# Layouts that shard the model across processes. The trainer's saving is written for layouts where every
# process holds the whole model (one process, or data parallel: DDP and its equivalents on other devices).
SHARDED_DISTRIBUTED = {"FSDP", "DEEPSPEED", "MEGATRON_LM"}


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


def train(config: TrainConfig, *, events: Events | None = None) -> TrainResult:
    """Fine-tune as `config` says. Raises ConfigError / DataError for what the user must fix."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    precision = resolve_precision(config)
    accelerator = Accelerator(mixed_precision="no" if precision == "fp32" else precision)
    events = events or Events(output_dir, accelerator.is_main_process)
    check_distributed(str(accelerator.distributed_type))
    set_seed(config.seed)
    device = accelerator.device

    tokenizer = load_tokenizer(config.model)
    stop_ids = model_stop_ids(config.model, tokenizer)
    train_set, validation, dropped = load_examples(
        tokenizer, config.data_path, max_length=config.max_seq_length, stop_ids=stop_ids
    )
    if dropped:
        lines = ", ".join(str(e.line) for e in dropped[:10])
        events.emit("warning", message=f"{len(dropped)} examples lost every trained token to max_seq_length "
                                       f"({config.max_seq_length}) and were left out (lines {lines})")  # fmt: skip
    truncated = sum(1 for e in train_set if e.truncated)
    if truncated:
        events.emit("warning", message=f"{truncated} training examples were cut to {config.max_seq_length} tokens")
    if not validation:
        events.emit("warning", message="no validation split: the fine-tune cannot be compared with the base model")

    packed = packs(config)
    schedule = build_schedule(
        n_examples=len(train_set), config=config, world_size=accelerator.num_processes,
        rank=accelerator.process_index, warn=lambda m: events.emit("warning", message=m),
        lengths=[len(e) for e in train_set] if config.packing and not packed else None,
    )  # fmt: skip
    total_steps = len(schedule.steps)
    model = load_model(config, precision, tokenizer, device)
    trainable, total_params = parameter_counts(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=config.lr, weight_decay=config.weight_decay, fused=device.type == "cuda" or None
    )
    scheduler = get_scheduler(
        config.scheduler if config.scheduler != "constant" else "constant_with_warmup",
        optimizer=optimizer,
        num_warmup_steps=round(config.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()

    state: dict[str, Any] = {
        "best_eval_loss": None,
        "bad_evals": 0,
        "base_eval_loss": None,
        "elapsed_s": 0.0,
        "tokens": 0,
    }
    start_step = 0
    checkpoint = latest_checkpoint(output_dir) if config.resume else None
    if checkpoint is not None:
        state.update(
            load_checkpoint(path=checkpoint, model=accelerator.unwrap_model(model), optimizer=optimizer,
                            scheduler=scheduler)
        )  # fmt: skip
        start_step = state.pop("step")
    pad_id = tokenizer.pad_token_id

    events.emit(
        "start",
        examples_train=len(train_set),
        examples_validation=len(validation),
        tokens_train=sum(len(e) for e in train_set),
        trained_tokens_train=sum(e.trained_tokens for e in train_set),
        dropped=len(dropped),
        total_steps=total_steps,
        steps_per_epoch=schedule.steps_per_epoch,
        world_size=accelerator.num_processes,
        device=str(device),
        precision=precision,
        batching="packed" if packed else "grouped by length" if config.packing else "padded",
        trainable_params=trainable,
        total_params=total_params,
        resumed_from_step=start_step,
    )
    evaluation = _Evaluation(config, tokenizer, stop_ids, accelerator)
    if validation and start_step == 0:
        state["base_eval_loss"] = evaluate_loss(model, validation, config, accelerator, pad_id)
        events.emit("eval", step=0, eval_loss=state["base_eval_loss"], perplexity=_ppl(state["base_eval_loss"]))
        evaluation.answers("base", accelerator.unwrap_model(model))

    cancel = _CancelWatch(output_dir, accelerator)
    started = time.perf_counter()
    losses: list[float] = []
    stopped = "finished"
    step = start_step
    eval_loss = None
    window_tokens = 0
    window_started = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for step in range(start_step + 1, total_steps + 1):
        micro_batches = [[train_set[i] for i in indices] for indices in schedule.steps[step - 1]]
        trained = global_sum(accelerator, sum(e.trained_tokens for mb in micro_batches for e in mb))
        step_loss = 0.0
        for number, group in enumerate(micro_batches):
            batch = batch_tensors(group, packing=packed, pad_id=pad_id, device=device)
            last = number == len(micro_batches) - 1
            with accelerator.no_sync(model) if not last else contextlib.nullcontext(), accelerator.autocast():
                token_loss, _ = token_losses(model, batch)
                # Sum over this micro-batch ÷ trained tokens of the whole step on every process; DDP averages
                # gradients over processes, so multiply back by their number.
                loss = token_loss.sum() / trained * accelerator.num_processes
            accelerator.backward(loss)
            step_loss += float(token_loss.detach().sum())
            window_tokens += sum(len(e) for e in group)
        grad_norm = accelerator.clip_grad_norm_(params, config.max_grad_norm) if config.max_grad_norm else None
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step_loss = global_sum(accelerator, step_loss) / trained
        losses.append(step_loss)
        elapsed = state["elapsed_s"] + time.perf_counter() - started
        done_here = step - start_step
        events.emit(
            "step",
            step=step,
            total_steps=total_steps,
            epoch=round(schedule.epochs_of_step[step - 1], 4),
            loss=step_loss,
            learning_rate=scheduler.get_last_lr()[0],
            grad_norm=float(grad_norm) if grad_norm is not None else None,
            tokens_per_second=global_sum(accelerator, window_tokens) / max(time.perf_counter() - window_started, 1e-6),
            tokens=int(global_sum(accelerator, window_tokens)),
            elapsed_s=round(elapsed, 4),
            eta_s=round((time.perf_counter() - started) / done_here * (total_steps - step), 1),
        )
        state["tokens"] += window_tokens
        window_tokens, window_started = 0, time.perf_counter()

        if validation and config.eval_every_steps and step % config.eval_every_steps == 0 and step < total_steps:
            eval_loss = evaluate_loss(model, validation, config, accelerator, pad_id)
            events.emit("eval", step=step, eval_loss=eval_loss, perplexity=_ppl(eval_loss))
            if not _no_better(state, eval_loss) and config.early_stopping_patience:
                _keep_best(output_dir, step, accelerator, model, state)
            elif config.early_stopping_patience:
                state["bad_evals"] += 1
                if state["bad_evals"] >= config.early_stopping_patience:
                    events.emit("early_stop", step=step, best_eval_loss=state["best_eval_loss"])
                    stopped = "early_stop"
                    break
            window_started = time.perf_counter()
        if config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0 and step < total_steps:
            state["elapsed_s"] = elapsed
            _checkpoint(config, output_dir, step, accelerator, model, optimizer, scheduler, state, events)
        if cancel.requested():
            events.emit("cancelled", step=step)
            raise TrainingCancelled(f"cancelled at step {step}")

    seconds = state["elapsed_s"] + time.perf_counter() - started
    if stopped == "early_stop" and (output_dir / BEST_FILE).exists():
        accelerator.wait_for_everyone()
        load_trainable(accelerator.unwrap_model(model), output_dir / BEST_FILE)
        eval_loss = state["best_eval_loss"]
        events.emit("warning", message=f"early stop: the result is the weights of step {state['best_step']}, "
                                       f"whose validation loss ({eval_loss:.4f}) was the best")  # fmt: skip
    elif validation:
        eval_loss = evaluate_loss(model, validation, config, accelerator, pad_id)
        events.emit("eval", step=step, eval_loss=eval_loss, perplexity=_ppl(eval_loss))
    unwrapped = accelerator.unwrap_model(model)
    adapter_dir = output_dir / "adapter"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped.save_pretrained(adapter_dir)
        tokenizer.save_pretrained(adapter_dir)
    if config.per_example_losses:
        _write_example_losses(output_dir, model, train_set, config, accelerator, pad_id)
    if validation:
        evaluation.answers("tuned", unwrapped)
        if accelerator.is_main_process:
            evaluation.write(output_dir / "evaluation.json", base_loss=state["base_eval_loss"], tuned_loss=eval_loss)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    train_loss = sum(losses) / len(losses) if losses else float("nan")
    events.emit("done", step=step, train_loss=train_loss, eval_loss=eval_loss, adapter_dir=str(adapter_dir),
                seconds=round(seconds, 2), stopped=stopped)  # fmt: skip
    accelerator.wait_for_everyone()
    return TrainResult(
        steps=step,
        train_loss=train_loss,
        eval_loss=eval_loss,
        base_eval_loss=state["base_eval_loss"],
        adapter_dir=adapter_dir,
        seconds=seconds,
        tokens_per_second=state["tokens"] / seconds if seconds else 0.0,
        trained_tokens=sum(e.trained_tokens for e in train_set),
        peak_memory_bytes=peak,
        stopped=stopped,
        losses=losses,
    )


def _keep_best(output_dir: Path, step: int, accelerator: Any, model: Any, state: dict) -> None:
    """With early stopping on, the weights of the best evaluation so far, to end the run with."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        partial = output_dir / (BEST_FILE + ".partial")
        save_trainable(accelerator.unwrap_model(model), partial)
        partial.rename(output_dir / BEST_FILE)
    state["best_step"] = step
    accelerator.wait_for_everyone()


def _no_better(state: dict, eval_loss: float) -> bool:
    best = state["best_eval_loss"]
    if best is None or eval_loss < best:
        state["best_eval_loss"], state["bad_evals"] = eval_loss, 0
        return False
    return True


def _ppl(loss: float) -> float:
    return math.exp(min(loss, 50.0))


def _checkpoint(config, output_dir, step, accelerator, model, optimizer, scheduler, state, events) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        path = save_checkpoint(
            output_dir=output_dir, step=step, model=accelerator.unwrap_model(model), optimizer=optimizer,
            scheduler=scheduler, state=state, keep=config.keep_checkpoints,
        )  # fmt: skip
        events.emit("checkpoint", step=step, path=str(path))
    accelerator.wait_for_everyone()


def _write_example_losses(output_dir, model, train_set, config, accelerator, pad_id) -> None:
    rows = example_losses(model, train_set, config, accelerator, pad_id)
    rank_file = output_dir / f"example_losses.rank{accelerator.process_index}.jsonl"
    with open(rank_file, "w", encoding="utf-8") as handle:
        for index, loss, tokens in rows:
            example = train_set[index]
            handle.write(json.dumps({"line": example.line, "entry_id": example.entry_id, "loss": loss,
                                     "tokens": tokens}) + "\n")  # fmt: skip
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        merged = []
        for part in sorted(output_dir.glob("example_losses.rank*.jsonl")):
            merged += part.read_text().splitlines()
            part.unlink()
        merged.sort(key=lambda line: json.loads(line)["line"])
        (output_dir / "example_losses.jsonl").write_text("".join(line + "\n" for line in merged))


class _CancelWatch:
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


class _Evaluation:
    """Answers of the base and the fine-tuned model to validation prompts, and label accuracy."""

    def __init__(self, config, tokenizer, stop_ids, accelerator) -> None:
        from training.trainer.evaluate import label_task, validation_prompts

        self.config, self.tokenizer, self.stop_ids = config, tokenizer, stop_ids
        self.main = accelerator.is_main_process
        prompts = validation_prompts(config.data_path)
        self.prompts = prompts[: config.eval_generations]
        self.labels = label_task(prompts)
        # The base model's answers are kept on disk: a resumed run no longer has the base model to ask.
        self.base_file = Path(config.output_dir) / "base_answers.json"
        self.results: dict[str, Any] = {}
        if self.base_file.exists():
            self.results["base"] = tuple(json.loads(self.base_file.read_text()))

    def answers(self, which: str, model: Any) -> None:
        from training.trainer.evaluate import generate_answers

        if not self.main:
            return
        prompts = [p.messages for p in self.prompts]
        label_prompts = [p.messages for p in self.labels] if self.labels else []
        answers = generate_answers(
            model, self.tokenizer, prompts + label_prompts, stop_ids=self.stop_ids,
            max_new_tokens=self.config.max_new_tokens,
        )  # fmt: skip
        self.results[which] = (answers[: len(prompts)], answers[len(prompts) :])
        if which == "base":
            self.base_file.write_text(json.dumps(self.results[which]))

    def write(self, path: Path, *, base_loss: float | None, tuned_loss: float | None) -> None:
        from training.trainer.evaluate import evaluation_report

        report = evaluation_report(
            prompts=self.prompts, labels=self.labels, results=self.results, base_loss=base_loss, tuned_loss=tuned_loss
        )
        path.write_text(json.dumps(report, indent=2))


# --- command line -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m training.trainer CONFIG.json", file=sys.stderr)
        return 2
    try:
        config = TrainConfig.load(args[0])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    main_process = int(os.environ.get("RANK", "0")) == 0
    events = Events(output_dir, main_process)
    try:
        result = train(config, events=events)
    except TrainingCancelled:
        return 3
    except (ConfigError, DataError) as exc:
        events.emit("error", message=str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        events.emit("error", message=f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return 1
    finally:
        events.close()
    print(f"done: {result.steps} steps, train loss {result.train_loss:.4f}, eval loss {result.eval_loss}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
