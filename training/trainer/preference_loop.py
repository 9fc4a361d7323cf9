"""The training loop of `objective: "dpo"`: Direct Preference Optimization on preference pairs, read top to bottom.

`train_dpo(config)` sets a run up like SFT does (accelerator, model with what trains marked, optimizer, the same
deterministic schedule), gets the reference (the disabled adapter, or log-probabilities of the initial weights
computed once and kept in `output_dir/reference_logprobs.safetensors` so a resumed run keeps the same reference),
evaluates the start on the validation pairs, then takes one optimizer step at a time (train, report, evaluate,
checkpoint, look for a cancel) and saves the result. The loss of a step is the mean over all its pairs, across
micro-batches and processes. Not yet: early stopping, per-example losses and the side-by-side evaluation.json of
SFT runs. No Django here.
"""

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.trainer.checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint
from training.trainer.config import TrainConfig
from training.trainer.events import Events
from training.trainer.losses import global_sum
from training.trainer.modeling import parameter_counts
from training.trainer.preference import (
    PairExample,
    ReferenceCache,
    adapter_reference_logprobs,
    dpo_pair_losses,
    load_pairs,
    pair_batch,
    precompute_reference_logprobs,
    sequence_logprobs,
)
from training.trainer.runtime import CancelWatch, TrainingCancelled, model_prepared, run_start
from training.trainer.schedule import Schedule, build_schedule
from training.trainer.state import TrainResult

REFERENCE_FILE = "reference_logprobs.safetensors"


@dataclass
class PreferenceRun:
    config: TrainConfig
    accelerator: Any
    events: Events
    tokenizer: Any
    train_set: list[PairExample]
    validation: list[PairExample]
    schedule: Schedule
    model: Any
    params: list[Any]
    optimizer: Any
    scheduler: Any
    reference: ReferenceCache | None = None  # full weights: the initial log-probabilities; adapters: None
    validation_reference: ReferenceCache | None = None

    @property
    def output_dir(self) -> Path:
        return Path(self.config.output_dir)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id


@dataclass
class PreferenceState:
    step: int = 0
    start_step: int = 0
    losses: list[float] = field(default_factory=list)
    eval_loss: float | None = None
    base_eval_loss: float | None = None
    started: float = 0.0
    tokens: int = 0


def train_dpo(config: TrainConfig, *, events: Events | None = None) -> TrainResult:
    """DPO as `config` says. Raises ConfigError / DataError for what the user must fix."""
    run = set_up(config, events=events)
    state = resume(run)
    set_reference(run)
    report_start(run, state)
    if run.validation and state.step == 0:
        state.base_eval_loss = evaluate(run, state)
    cancel = CancelWatch(run.output_dir, run.accelerator)
    state.started = time.perf_counter()
    while state.step < len(run.schedule.steps):
        state.step += 1
        train_step(run, state)
        every, total = config.eval_every_steps, len(run.schedule.steps)
        if run.validation and every and state.step % every == 0 and state.step < total:
            evaluate(run, state)
        if config.checkpoint_every_steps and state.step % config.checkpoint_every_steps == 0 and state.step < total:
            checkpoint(run, state)
        if cancel.requested():
            run.events.emit("cancelled", step=state.step)
            raise TrainingCancelled(f"cancelled at step {state.step}")
    return finish(run, state)


def set_up(config: TrainConfig, *, events: Events | None) -> PreferenceRun:
    start = run_start(config, events=events)
    accelerator, sink = start.accelerator, start.events
    train_set, validation, refused = load_pairs(
        start.tokenizer, config.data_path, max_length=config.max_seq_length, stop_ids=start.stop_ids
    )
    for reason in refused[:10]:
        sink.emit("warning", message=f"pair left out: {reason}")
    if len(refused) > 10:
        sink.emit("warning", message=f"{len(refused)} pairs left out in all")
    schedule = build_schedule(
        n_examples=len(train_set), config=config, world_size=accelerator.num_processes,
        rank=accelerator.process_index, warn=lambda m: sink.emit("warning", message=m),
        lengths=[len(e) for e in train_set],
    )  # fmt: skip
    model, params, optimizer, scheduler = model_prepared(config, start, total_steps=len(schedule.steps))
    return PreferenceRun(
        config=config, accelerator=accelerator, events=sink, tokenizer=start.tokenizer, train_set=train_set,
        validation=validation, schedule=schedule, model=model, params=params, optimizer=optimizer,
        scheduler=scheduler,
    )  # fmt: skip


def resume(run: PreferenceRun) -> PreferenceState:
    found = latest_checkpoint(run.output_dir) if run.config.resume else None
    if found is None:
        return PreferenceState()
    unwrapped = run.accelerator.unwrap_model(run.model)
    saved = load_checkpoint(path=found, model=unwrapped, optimizer=run.optimizer, scheduler=run.scheduler)
    return PreferenceState(step=saved["step"], start_step=saved["step"])


def set_reference(run: PreferenceRun) -> None:
    """Full weights: every pair's reference log-probabilities with the initial weights, computed once (a resumed run
    reads the file the first run wrote: its weights are no longer the initial ones)."""
    from safetensors.torch import load_file, save_file

    if run.config.uses_adapter:
        return
    path = run.output_dir / REFERENCE_FILE
    if path.exists():
        saved = load_file(path)
        run.reference, run.validation_reference = ReferenceCache(saved["train"]), ReferenceCache(saved["validation"])
        return
    model, accelerator = run.accelerator.unwrap_model(run.model), run.accelerator
    options = {"batch_size": run.config.batch_size, "pad_id": run.pad_id, "device": accelerator.device}
    with accelerator.autocast():
        run.reference = precompute_reference_logprobs(model, run.train_set, **options)
        run.validation_reference = precompute_reference_logprobs(model, run.validation, **options)
    if accelerator.is_main_process:
        save_file({"train": run.reference.logprobs, "validation": run.validation_reference.logprobs}, path)


def report_start(run: PreferenceRun, state: PreferenceState) -> None:
    trainable, total = parameter_counts(run.accelerator.unwrap_model(run.model))
    run.events.emit(
        "start", objective="dpo", examples_train=len(run.train_set), examples_validation=len(run.validation),
        tokens_train=sum(len(e.input_ids("chosen")) + len(e.input_ids("rejected")) for e in run.train_set),
        total_steps=len(run.schedule.steps), steps_per_epoch=run.schedule.steps_per_epoch,
        world_size=run.accelerator.num_processes, device=str(run.accelerator.device), batching="padded pairs",
        trainable_params=trainable, total_params=total, resumed_from_step=state.start_step,
        reference="adapter disabled" if run.config.uses_adapter else "precomputed",
    )  # fmt: skip


def pair_loss(
    run: PreferenceRun, examples: list[PairExample], indices: list[int], reference: ReferenceCache | None
) -> tuple[Any, Any]:
    """(each pair's DPO loss, its reward margin) for one micro-batch: chosen and rejected in one forward pass."""
    batch = pair_batch(examples, pad_id=run.pad_id, device=run.accelerator.device)
    if reference is None:
        ref = adapter_reference_logprobs(run.model, batch)
    else:
        ref = reference.lookup(indices, run.accelerator.device)
    policy = sequence_logprobs(run.model, batch)
    losses, margins, _, _ = dpo_pair_losses(
        *policy, *ref, beta=run.config.dpo_beta, label_smoothing=run.config.dpo_label_smoothing
    )
    return losses, margins


def train_step(run: PreferenceRun, state: PreferenceState) -> None:
    """One optimizer step: the mean DPO loss over the step's pairs on every process, then the step event."""
    accelerator = run.accelerator
    micro = run.schedule.steps[state.step - 1]
    pairs = global_sum(accelerator, sum(len(m) for m in micro))
    loss_sum, margin_sum, wins, tokens = 0.0, 0.0, 0.0, 0
    for number, indices in enumerate(micro):
        group = [run.train_set[i] for i in indices]
        last = number == len(micro) - 1
        with accelerator.no_sync(run.model) if not last else contextlib.nullcontext(), accelerator.autocast():
            losses, margins = pair_loss(run, group, indices, run.reference)
            accelerator.backward(losses.sum() / pairs * accelerator.num_processes)
        loss_sum += float(losses.detach().sum())
        margin_sum += float(margins.sum())
        wins += float((margins > 0).sum())
        tokens += sum(len(e.input_ids("chosen")) + len(e.input_ids("rejected")) for e in group)
    max_norm = run.config.max_grad_norm
    grad_norm = accelerator.clip_grad_norm_(run.params, max_norm) if max_norm else None
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    loss = global_sum(accelerator, loss_sum) / pairs
    state.losses.append(loss)
    state.tokens += tokens
    elapsed = time.perf_counter() - state.started
    run.events.emit(
        "step", step=state.step, total_steps=len(run.schedule.steps),
        epoch=round(run.schedule.epochs_of_step[state.step - 1], 4), loss=loss,
        reward_margin=global_sum(accelerator, margin_sum) / pairs,
        reward_accuracy=global_sum(accelerator, wins) / pairs,
        learning_rate=run.scheduler.get_last_lr()[0], grad_norm=float(grad_norm) if grad_norm is not None else None,
        tokens=int(global_sum(accelerator, tokens)), tokens_per_second=state.tokens / max(elapsed, 1e-6),
        elapsed_s=round(elapsed, 4),
        eta_s=round(elapsed / (state.step - state.start_step) * (len(run.schedule.steps) - state.step), 1),
    )  # fmt: skip


def evaluate(run: PreferenceRun, state: PreferenceState) -> float:
    """The mean DPO loss, reward margin and accuracy on the validation pairs (step 0: the reference itself)."""
    import torch

    accelerator = run.accelerator
    mine = list(range(accelerator.process_index, len(run.validation), accelerator.num_processes))
    loss_sum, margin_sum, wins = 0.0, 0.0, 0.0
    run.model.eval()
    with torch.no_grad(), accelerator.autocast():
        for start in range(0, len(mine), run.config.batch_size):
            indices = mine[start : start + run.config.batch_size]
            group = [run.validation[i] for i in indices]
            losses, margins = pair_loss(run, group, indices, run.validation_reference)
            loss_sum += float(losses.sum())
            margin_sum += float(margins.sum())
            wins += float((margins > 0).sum())
    run.model.train()
    count = len(run.validation)
    loss = global_sum(accelerator, loss_sum) / count
    run.events.emit(
        "eval", step=state.step, eval_loss=loss, reward_margin=global_sum(accelerator, margin_sum) / count,
        reward_accuracy=global_sum(accelerator, wins) / count,
    )  # fmt: skip
    state.eval_loss = loss
    return loss


def checkpoint(run: PreferenceRun, state: PreferenceState) -> None:
    accelerator = run.accelerator
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        path = save_checkpoint(
            output_dir=run.output_dir, step=state.step, model=accelerator.unwrap_model(run.model),
            optimizer=run.optimizer, scheduler=run.scheduler, state={}, keep=run.config.keep_checkpoints,
        )  # fmt: skip
        run.events.emit("checkpoint", step=state.step, path=str(path))
    accelerator.wait_for_everyone()


def finish(run: PreferenceRun, state: PreferenceState) -> TrainResult:
    import torch

    seconds = time.perf_counter() - state.started
    if run.validation:
        evaluate(run, state)
    adapter_dir = run.output_dir / "adapter"
    run.accelerator.wait_for_everyone()
    if run.accelerator.is_main_process:
        run.accelerator.unwrap_model(run.model).save_pretrained(adapter_dir)
        run.tokenizer.save_pretrained(adapter_dir)
    device = run.accelerator.device
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    train_loss = sum(state.losses) / len(state.losses) if state.losses else float("nan")
    run.events.emit("done", step=state.step, train_loss=train_loss, eval_loss=state.eval_loss,
                    adapter_dir=str(adapter_dir), seconds=round(seconds, 2), stopped="finished")  # fmt: skip
    run.accelerator.wait_for_everyone()
    return TrainResult(
        steps=state.step, train_loss=train_loss, eval_loss=state.eval_loss, base_eval_loss=state.base_eval_loss,
        adapter_dir=adapter_dir, seconds=seconds, tokens_per_second=state.tokens / seconds if seconds else 0.0,
        trained_tokens=sum(len(e.chosen_ids) + len(e.rejected_ids) for e in run.train_set), peak_memory_bytes=peak,
        losses=state.losses,
    )  # fmt: skip
