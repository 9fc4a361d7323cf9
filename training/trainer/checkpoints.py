"""Resumable checkpoints: trainable weights, optimizer, scheduler, RNG and counters. No Django here."""

import json
import random
from pathlib import Path
from typing import Any

from training.trainer.config import ConfigError


def latest_checkpoint(output_dir: Path) -> Path | None:
    folders = [p for p in (output_dir / "checkpoints").glob("step-*") if (p / "state.json").exists()]
    return max(folders, key=lambda p: int(p.name.split("-")[1]), default=None)


def save_checkpoint(
    *, output_dir: Path, step: int, model: Any, optimizer: Any, scheduler: Any, state: dict, keep: int
) -> Path:
    """Trainable weights, optimizer, scheduler, RNG and counters; written to a temporary folder and
    renamed, so a checkpoint that exists is complete."""
    import torch

    final = output_dir / "checkpoints" / f"step-{step}"
    partial = final.with_name(final.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    save_trainable(model, partial / "trainable.safetensors")
    torch.save(optimizer.state_dict(), partial / "optimizer.pt")
    torch.save(scheduler.state_dict(), partial / "scheduler.pt")
    torch.save(_rng_state(), partial / "rng.pt")
    (partial / "state.json").write_text(json.dumps({"step": step, **state}))
    partial.rename(final)
    for old in sorted(final.parent.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))[:-keep]:
        _remove_tree(old)
    return final


def save_trainable(model: Any, path: Path) -> None:
    """The weights that train (an adapter's, or all of them), by parameter name."""
    from safetensors.torch import save_file

    weights = {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}
    save_file(weights, path)


def load_trainable(model: Any, path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    weights = load_file(path)
    params = dict(model.named_parameters())
    missing = [name for name in weights if name not in params]
    if missing:
        raise ConfigError(f"resume: {path} does not match this model (no parameter {missing[0]})")
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))


def load_checkpoint(*, path: Path, model: Any, optimizer: Any, scheduler: Any) -> dict:
    import torch

    load_trainable(model, path / "trainable.safetensors")
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    _set_rng_state(torch.load(path / "rng.pt", weights_only=False))
    return json.loads((path / "state.json").read_text())


def _rng_state() -> dict:
    import torch

    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import torch

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
