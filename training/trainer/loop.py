"""The training loop: supervised fine-tuning of a causal LM on chat conversations, read top to bottom.

`train(config)` sets a run up (accelerator, data, model, optimizer), resumes it from its newest checkpoint,
evaluates the base model, then takes one optimizer step at a time (train, report, evaluate, checkpoint, look
for a cancel) and finishes (the weights, per-example losses, the evaluation against the base model).

transformers + peft under accelerate. Labels come from `training.trainer.data` (assistant tokens and their
end-of-turn token only); batches are packed without padding; the loss of an optimizer step is the
sum over its trained tokens divided by their number across every micro-batch and process, so batch
1 x accumulation 8 trains exactly like batch 8 x accumulation 1. Progress goes to
`output_dir/events.jsonl` (docs/training.md). No Django here.
"""

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

from training.trainer.checkpoints import (
    latest_checkpoint,
    load_checkpoint,
    load_trainable,
    save_checkpoint,
    save_trainable,
)
from training.trainer.config import TrainConfig
from training.trainer.data import Example, load_examples
from training.trainer.evaluate import Comparison
from training.trainer.events import Events
from training.trainer.losses import batch_tensors, example_losses, global_sum, packs, token_losses
from training.trainer.modeling import parameter_counts
from training.trainer.runtime import CancelWatch, TrainingCancelled, model_prepared, run_start
from training.trainer.schedule import build_schedule
from training.trainer.state import Run, TrainResult, TrainState

BEST_FILE = "best.safetensors"  # with early stopping: the trainable weights of the best evaluation

# Layouts that shard the model across processes. The trainer's saving is written for layouts where every
# process holds the whole model (one process, or data parallel: DDP and its equivalents on other devices).


def train(config: TrainConfig, *, events: Events | None = None) -> TrainResult:
    """Fine-tune as `config` says. Raises ConfigError / DataError for what the user must fix."""
    if config.objective == "dpo":  # preference pairs: a loop of their own (training/trainer/preference_loop.py)
        from training.trainer.preference_loop import train_dpo

        return train_dpo(config, events=events)
    run = set_up(config, events=events)
    state = resume(run)
    report_start(run, state)
    comparison = Comparison(
        config, tokenizer=run.tokenizer, stop_ids=run.stop_ids, main_process=run.accelerator.is_main_process
    )
    if run.validation and state.step == 0:
        evaluate_base(run, state, comparison)
    cancel = CancelWatch(run.output_dir, run.accelerator)
    start_clock(run, state)
    while state.step < run.total_steps:
        state.step += 1
        loss, grad_norm = train_step(run, state)
        report_step(run, state, loss=loss, grad_norm=grad_norm)
        if run.validation and _due(state.step, every=config.eval_every_steps, total=run.total_steps):
            evaluate(run, state)
            if state.stopped == "early_stop":
                break
        if _due(state.step, every=config.checkpoint_every_steps, total=run.total_steps):
            checkpoint(run, state)
        if cancel.requested():
            run.events.emit("cancelled", step=state.step)
            raise TrainingCancelled(f"cancelled at step {state.step}")
    return finish(run, state, comparison)


# --- setting up -------------------------------------------------------------------------------------


def set_up(config: TrainConfig, *, events: Events | None) -> Run:
    """The accelerator, the examples and their schedule, the model with what trains marked, its optimizer."""
    start = run_start(config, events=events)
    accelerator, sink = start.accelerator, start.events
    train_set, validation, dropped = load_data(config, tokenizer=start.tokenizer, stop_ids=start.stop_ids, events=sink)
    packed = packs(config)
    schedule = build_schedule(
        n_examples=len(train_set), config=config, world_size=accelerator.num_processes,
        rank=accelerator.process_index, warn=lambda m: sink.emit("warning", message=m),
        lengths=[len(e) for e in train_set] if config.packing and not packed else None,
    )  # fmt: skip
    model, params, optimizer, scheduler = model_prepared(config, start, total_steps=len(schedule.steps))
    trainable_params, total_params = parameter_counts(model)
    return Run(
        config=config, accelerator=accelerator, events=sink, precision=start.precision, tokenizer=start.tokenizer,
        stop_ids=start.stop_ids, train_set=train_set, validation=validation, dropped=dropped, packed=packed,
        schedule=schedule, model=model, params=params, optimizer=optimizer, scheduler=scheduler,
        trainable_params=trainable_params, total_params=total_params,
    )  # fmt: skip


def load_data(
    config: TrainConfig, *, tokenizer: Any, stop_ids: set[int], events: Events
) -> tuple[list[Example], list[Example], list[Example]]:
    """(train, validation, dropped), with a warning for what was dropped or cut and for a missing validation split."""
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
    return train_set, validation, dropped


def resume(run: Run) -> TrainState:
    """A new state, or the newest checkpoint's, whose weights, optimizer, scheduler and RNG are loaded too."""
    found = latest_checkpoint(run.output_dir) if run.config.resume else None
    if found is None:
        return TrainState()
    saved = load_checkpoint(path=found, model=run.unwrapped(), optimizer=run.optimizer, scheduler=run.scheduler)
    return TrainState.resumed(saved)


def report_start(run: Run, state: TrainState) -> None:
    config = run.config
    run.events.emit(
        "start",
        examples_train=len(run.train_set),
        examples_validation=len(run.validation),
        tokens_train=sum(len(e) for e in run.train_set),
        trained_tokens_train=sum(e.trained_tokens for e in run.train_set),
        dropped=len(run.dropped),
        total_steps=run.total_steps,
        steps_per_epoch=run.schedule.steps_per_epoch,
        world_size=run.accelerator.num_processes,
        device=str(run.device),
        precision=run.precision,
        batching="packed" if run.packed else "grouped by length" if config.packing else "padded",
        trainable_params=run.trainable_params,
        total_params=run.total_params,
        resumed_from_step=state.start_step,
    )


def evaluate_base(run: Run, state: TrainState, comparison: Comparison) -> None:
    """The base model's validation loss and answers, to compare the fine-tune with (a resumed run has them)."""
    state.base_eval_loss = run.validation_loss()
    run.events.emit("eval", step=0, eval_loss=state.base_eval_loss, perplexity=_ppl(state.base_eval_loss))
    comparison.answers("base", run.unwrapped())


def start_clock(run: Run, state: TrainState) -> None:
    import torch

    state.started = state.window_started = time.perf_counter()
    if run.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(run.device)


# --- one step ---------------------------------------------------------------------------------------


def train_step(run: Run, state: TrainState) -> tuple[float, Any]:
    """One optimizer step over this process's micro-batches of `state.step`: (its loss per trained token, the
    gradient norm before clipping, or None without clipping)."""
    micro_batches = [[run.train_set[i] for i in indices] for indices in run.schedule.steps[state.step - 1]]
    trained = global_sum(run.accelerator, sum(e.trained_tokens for mb in micro_batches for e in mb))
    state.step_trained_tokens = int(trained)
    loss_sum = 0.0
    for number, group in enumerate(micro_batches):
        loss_sum += backward(run, group, trained=trained, last=number == len(micro_batches) - 1)
        state.window_tokens += sum(len(e) for e in group)
    max_norm = run.config.max_grad_norm
    grad_norm = run.accelerator.clip_grad_norm_(run.params, max_norm) if max_norm else None
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    loss = global_sum(run.accelerator, loss_sum) / trained
    state.losses.append(loss)
    return loss, grad_norm


def backward(run: Run, group: list[Example], *, trained: float, last: bool) -> float:
    """Forward and backward of one micro-batch; the sum of its token losses. Gradients are synchronised across
    processes on the step's last micro-batch only."""
    accelerator = run.accelerator
    batch = batch_tensors(group, packing=run.packed, pad_id=run.pad_id, device=run.device)
    with accelerator.no_sync(run.model) if not last else contextlib.nullcontext(), accelerator.autocast():
        token_loss, _ = token_losses(run.model, batch)
        # Sum over this micro-batch ÷ trained tokens of the whole step on every process; DDP averages
        # gradients over processes, so multiply back by their number.
        loss = token_loss.sum() / trained * accelerator.num_processes
    accelerator.backward(loss)
    return float(token_loss.detach().sum())


def report_step(run: Run, state: TrainState, *, loss: float, grad_norm: Any) -> None:
    """The step event: loss, learning rate, throughput since the last one, time spent and left."""
    state.step_elapsed_s = state.elapsed_s + time.perf_counter() - state.started
    window_tokens = global_sum(run.accelerator, state.window_tokens)
    per_step = (time.perf_counter() - state.started) / (state.step - state.start_step)
    run.events.emit(
        "step",
        step=state.step,
        total_steps=run.total_steps,
        epoch=round(run.schedule.epochs_of_step[state.step - 1], 4),
        loss=loss,
        learning_rate=run.scheduler.get_last_lr()[0],
        grad_norm=float(grad_norm) if grad_norm is not None else None,
        tokens_per_second=window_tokens / max(time.perf_counter() - state.window_started, 1e-6),
        tokens=int(window_tokens),
        trained_tokens=state.step_trained_tokens,
        elapsed_s=round(state.step_elapsed_s, 4),
        eta_s=round(per_step * (run.total_steps - state.step), 1),
    )
    state.tokens += state.window_tokens
    state.window_tokens, state.window_started = 0, time.perf_counter()


def evaluate(run: Run, state: TrainState) -> None:
    """The validation loss; with early stopping on, the best weights so far are kept, and after
    `early_stopping_patience` evaluations without a better loss the run stops (state.stopped)."""
    loss = state.eval_loss = run.validation_loss()
    run.events.emit("eval", step=state.step, eval_loss=loss, perplexity=_ppl(loss))
    patience = run.config.early_stopping_patience
    if state.new_best(loss) and patience:
        keep_best(run, state)
    elif patience:
        state.bad_evals += 1
        if state.bad_evals >= patience:
            run.events.emit("early_stop", step=state.step, best_eval_loss=state.best_eval_loss)
            state.stopped = "early_stop"
            return
    state.window_started = time.perf_counter()  # the evaluation's time is not training throughput


def keep_best(run: Run, state: TrainState) -> None:
    """With early stopping on, the weights of the best evaluation so far, to end the run with."""
    accelerator = run.accelerator
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        partial = run.output_dir / (BEST_FILE + ".partial")
        save_trainable(run.unwrapped(), partial)
        partial.rename(run.output_dir / BEST_FILE)
    state.best_step = state.step
    accelerator.wait_for_everyone()


def checkpoint(run: Run, state: TrainState) -> None:
    # The checkpoint keeps the time spent up to now, which a resumed run starts from; this run's clock goes on.
    saved = {**state.saved(), "elapsed_s": state.step_elapsed_s}
    accelerator = run.accelerator
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        path = save_checkpoint(
            output_dir=run.output_dir, step=state.step, model=run.unwrapped(), optimizer=run.optimizer,
            scheduler=run.scheduler, state=saved, keep=run.config.keep_checkpoints,
        )  # fmt: skip
        run.events.emit("checkpoint", step=state.step, path=str(path))
    accelerator.wait_for_everyone()


# --- the end ----------------------------------------------------------------------------------------


def finish(run: Run, state: TrainState, comparison: Comparison) -> TrainResult:
    """The result: the best (early stop) or last weights with the tokenizer, the loss of every training
    example, the evaluation against the base model, and the done event."""
    import torch

    seconds = state.elapsed_s + time.perf_counter() - state.started
    if state.stopped == "early_stop" and (run.output_dir / BEST_FILE).exists():
        restore_best(run, state)
    elif run.validation:
        loss = state.eval_loss = run.validation_loss()
        run.events.emit("eval", step=state.step, eval_loss=loss, perplexity=_ppl(loss))
    adapter_dir = save_result(run)
    if run.config.per_example_losses:
        write_example_losses(run)
    if run.validation:
        comparison.answers("tuned", run.unwrapped())
        if run.accelerator.is_main_process:
            comparison.write(
                run.output_dir / "evaluation.json", base_loss=state.base_eval_loss, tuned_loss=state.eval_loss
            )
    peak = torch.cuda.max_memory_allocated(run.device) if run.device.type == "cuda" else 0
    train_loss = sum(state.losses) / len(state.losses) if state.losses else float("nan")
    run.events.emit("done", step=state.step, train_loss=train_loss, eval_loss=state.eval_loss,
                    adapter_dir=str(adapter_dir), seconds=round(seconds, 2), stopped=state.stopped)  # fmt: skip
    run.accelerator.wait_for_everyone()
    return TrainResult(
        steps=state.step,
        train_loss=train_loss,
        eval_loss=state.eval_loss,
        base_eval_loss=state.base_eval_loss,
        adapter_dir=adapter_dir,
        seconds=seconds,
        tokens_per_second=state.tokens / seconds if seconds else 0.0,
        trained_tokens=sum(e.trained_tokens for e in run.train_set),
        peak_memory_bytes=peak,
        stopped=state.stopped,
        losses=state.losses,
    )


def restore_best(run: Run, state: TrainState) -> None:
    run.accelerator.wait_for_everyone()
    load_trainable(run.unwrapped(), run.output_dir / BEST_FILE)
    state.eval_loss = state.best_eval_loss
    run.events.emit("warning", message=f"early stop: the result is the weights of step {state.best_step}, "
                                       f"whose validation loss ({state.eval_loss:.4f}) was the best")  # fmt: skip


def save_result(run: Run) -> Path:
    """The adapter (or the whole model) and the tokenizer, in output_dir/adapter."""
    adapter_dir = run.output_dir / "adapter"
    run.accelerator.wait_for_everyone()
    if run.accelerator.is_main_process:
        run.unwrapped().save_pretrained(adapter_dir)
        run.tokenizer.save_pretrained(adapter_dir)
    return adapter_dir


def write_example_losses(run: Run) -> None:
    """example_losses.jsonl: every training example's loss, written by each process, merged by the first."""
    accelerator, output_dir, train_set = run.accelerator, run.output_dir, run.train_set
    rows = example_losses(run.model, train_set, config=run.config, accelerator=accelerator, pad_id=run.pad_id)
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


def _due(step: int, *, every: int, total: int) -> bool:
    """Whether an evaluation or checkpoint set for `every` steps falls on `step` (the last step has its own)."""
    return bool(every) and step % every == 0 and step < total


def _ppl(loss: float) -> float:
    return math.exp(min(loss, 50.0))
