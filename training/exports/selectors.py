"""Reads of exports: whether a fine-tune can be exported in a format now (and why not), what the archive holds,
its `logtune.json`, and whether llama.cpp's converter is there for GGUF."""

import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db.models import TextChoices

from curation.common.server_paths import json_paths_hidden
from training.compare.selectors import estimate_read
from training.evaluation.promotion.selectors import finetune_gate, promotion_rule_get
from training.exports import runtimes
from training.models import EvaluationRun, FineTuneJob, FineTuneStatus
from training.selectors import folder_members, members_zip


class ExportFormat(TextChoices):
    VLLM = "vllm", "vLLM"
    OLLAMA = "ollama", "Ollama"
    MERGED = "merged", "Merged weights (safetensors)"
    GGUF = "gguf", "GGUF (llama.cpp)"


SETTING = "LOGTUNE_LLAMA_CPP_DIR"


class ExportNotReady(Exception):
    """The fine-tune cannot be exported in this format now; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Export:
    """An archive to stream: its root folder's name and its members (name in the archive, file or bytes)."""

    job: FineTuneJob
    format: str
    root: str
    members: list[tuple[str, Path | bytes]]

    @property
    def filename(self) -> str:
        return f"{self.root}.zip"

    def stream(self) -> Iterator[bytes]:
        return members_zip(members=self.members)


def gguf_converter_missing() -> str:
    """Why GGUF cannot be made here, naming the setting; "" when llama.cpp's converter is there to run."""
    folder = settings.LOGTUNE_LLAMA_CPP_DIR
    if not folder:
        return (
            f"GGUF needs llama.cpp's converter: set {SETTING} to a llama.cpp folder (with {runtimes.LORA_CONVERTER} "
            f"and {runtimes.MODEL_CONVERTER}) on the web server and the GPU workers."
        )
    missing = [
        name for name in (runtimes.LORA_CONVERTER, runtimes.MODEL_CONVERTER) if not (Path(folder) / name).is_file()
    ]
    if missing:
        return f"{SETTING} names a folder without {' and '.join(missing)}: point it at a llama.cpp checkout."
    if importlib.util.find_spec("gguf") is None and not (Path(folder) / "gguf-py" / "gguf").is_dir():
        return f"GGUF needs the `gguf` Python package (pip install gguf), or llama.cpp's gguf-py in {SETTING}."
    return ""


def _weights_refusal(job: FineTuneJob) -> str:
    if job.weights_deleted_at is not None:
        when = job.weights_deleted_at.strftime("%Y-%m-%d %H:%M UTC")
        return f"The weights of fine-tune {job.pk} were deleted on {when} by {job.weights_deleted_by_label}."
    if job.status != FineTuneStatus.SUCCEEDED:
        return f"Fine-tune {job.pk} is {job.status}: only a succeeded fine-tune has weights to export."
    if not job.adapter_dir.is_dir():
        return f"Fine-tune {job.pk} has no weights in its folder ({job.folder_name}/adapter)."
    return ""


def _gguf_refusal(job: FineTuneJob) -> str:
    if missing := gguf_converter_missing():
        return missing
    if job.gguf_status in (FineTuneStatus.QUEUED, FineTuneStatus.RUNNING):
        return f"The GGUF file of fine-tune {job.pk} is being made ({job.gguf_status}): download it once it is done."
    if job.gguf_status != FineTuneStatus.SUCCEEDED or not job.gguf_path.is_file():
        failed = f" The last conversion failed: {job.gguf_error}" if job.gguf_status == FineTuneStatus.FAILED else ""
        return (f"Fine-tune {job.pk} has not been converted to GGUF: convert it first (POST "
                f"/api/v1/finetunes/{job.pk}/gguf, or Convert to GGUF on its page).{failed}")  # fmt: skip
    return ""


def export_refusal(*, job: FineTuneJob, fmt: str) -> str:
    """Why `job` cannot be exported as `fmt` now; "" when it can."""
    if refusal := _weights_refusal(job):
        return refusal
    merged = job.merge_status == FineTuneStatus.SUCCEEDED and job.merged_dir.is_dir()
    if fmt == ExportFormat.MERGED and job.uses_adapter and not merged:
        return (f"Fine-tune {job.pk} has no merged weights: merge its adapter into the base model first (POST "
                f"/api/v1/finetunes/{job.pk}/merge, or Merge on its page).")  # fmt: skip
    if fmt == ExportFormat.OLLAMA and not any(job.adapter_dir.glob("*.safetensors")):
        return f"Fine-tune {job.pk} has no safetensors weights, which Ollama needs."
    if fmt == ExportFormat.GGUF:
        return _gguf_refusal(job)
    return ""


def _runtime(job: FineTuneJob) -> runtimes.Runtime:
    return runtimes.Runtime(
        name=f"finetune-{job.pk}", base=job.model_name, base_is_folder=job.model.startswith(("/", ".")),
        adapter=job.uses_adapter, folder="adapter" if job.uses_adapter else "model",
    )  # fmt: skip


def export_get(*, job: FineTuneJob, fmt: str, now: datetime) -> Export:
    """The archive of `job` as `fmt`: the weights the runtime loads, what it needs beside them, and logtune.json.
    Raises ExportNotReady saying why when it cannot be made now."""
    if refusal := export_refusal(job=job, fmt=fmt):
        raise ExportNotReady(refusal)
    root, runtime = f"finetune-{job.pk}-{fmt}", _runtime(job)
    members: list[tuple[str, Path | bytes]]
    if fmt in (ExportFormat.VLLM, ExportFormat.OLLAMA):
        members = folder_members(directory=job.adapter_dir, prefix=f"{root}/{runtime.folder}")
        if fmt == ExportFormat.VLLM:
            text = runtimes.vllm_text(runtime, rank=runtimes.adapter_rank(job.adapter_dir))
            members.append((f"{root}/vllm.txt", text.encode()))
        else:
            members.append((f"{root}/Modelfile", runtimes.modelfile_text(runtime).encode()))
    elif fmt == ExportFormat.MERGED:
        source = job.merged_dir if job.uses_adapter else job.adapter_dir
        members = folder_members(directory=source, prefix=f"{root}/model")
    else:
        name = job.gguf_path.name
        members = [
            (f"{root}/{name}", job.gguf_path),
            (f"{root}/llama.cpp.txt", runtimes.llama_cpp_text(runtime, gguf_name=name).encode()),
            (f"{root}/Modelfile", runtimes.modelfile_text(runtime, gguf_name=name).encode()),
        ]
    manifest = json.dumps(export_manifest(job=job, fmt=fmt, now=now), indent=2).encode()
    return Export(job=job, format=fmt, root=root, members=[*members, (f"{root}/logtune.json", manifest)])


def _at(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _get(data: object, *keys: str) -> object:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _evaluation(run: EvaluationRun | None) -> dict | None:
    """The headline figures of an evaluation run: judged win rates, forgetting, and the tuned model's metrics."""
    if run is None:
        return None
    metrics = _get(run.results, "metrics", "tuned")
    return {
        "id": run.pk,
        "finished_at": _at(run.finished_at),
        "examples": run.results.get("examples"),
        "teacher_win_rate": estimate_read(_get(run.results, "judge", "teacher", "win_rate")),
        "base_win_rate": estimate_read(_get(run.results, "judge", "base", "win_rate")),
        "retention_loss_change": estimate_read(_get(run.results, "forgetting", "loss_change")),
        "metrics": {name: estimate_read(value) for name, value in metrics.items()}
        if isinstance(metrics, dict)
        else {},
    }


def _gate(gate: dict | None) -> dict | None:
    """The verdict of the latest succeeded evaluation, as it was stored: passed, and each check with its reason."""
    if gate is None:
        return None
    return {"passed": gate["passed"], "evaluation": gate["evaluation"], "checks": gate.get("checks", [])}


def _eval_loss(job: FineTuneJob) -> float | None:
    """The fine-tuned model's validation loss: from its evaluation, else from the trainer's last report."""
    loss = _number(_get(job.evaluation, "tuned", "eval_loss"))
    return loss if loss is not None else _number(_get(job.summary, "done", "eval_loss"))


def export_manifest(*, job: FineTuneJob, fmt: str, now: datetime) -> dict:
    """logtune.json: which fine-tune this is, of what, trained how and on what, and how well it did. The base model
    as members see it (a hub id, or its place in the data folder), never where the server keeps it."""
    run = job.evaluations.filter(status=FineTuneStatus.SUCCEEDED).order_by("-created_at", "-id").first()
    gate = finetune_gate(job=job, rule=promotion_rule_get(project=job.project).gate_rule)
    base_name = job.base_model.name if job.base_model is not None else job.model_name
    evaluation = job.evaluation if isinstance(job.evaluation, dict) else {}
    manifest = {
        "finetune": job.pk,
        "project": job.project.slug,
        "base_model": {"name": base_name, "path": job.model_name},
        "method": job.method,
        "hyperparameters": job.hyperparameters,
        "snapshot": {"id": job.snapshot_id, "sha256": job.snapshot.sha256},
        "dataset": job.dataset_name,
        "metrics": {
            "eval_loss": _eval_loss(job),
            "base_eval_loss": _number(_get(evaluation, "base", "eval_loss")),
            "evaluation": _evaluation(run),
            "gate": _gate(gate),
        },
        "created_at": _at(job.created_at),
        "finished_at": _at(job.finished_at),
        "exported_at": _at(now),
        "format": fmt,
    }
    return json_paths_hidden(manifest)  # type: ignore[return-value]
