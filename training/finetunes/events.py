"""Relaying a running trainer's progress into rows: `events.jsonl` read in batches into metric points and the
job's fields, and the per-example losses it wrote at the end."""

import json
import logging
import math
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.db import transaction

from curation.common.server_paths import json_paths_hidden, paths_hidden
from curation.models import DatasetEntry
from training.models import ExampleLoss, FineTuneJob, MetricPoint

logger = logging.getLogger(__name__)


READ_BYTES = 4 * 1024 * 1024  # of events.jsonl per transaction


LOSS_BATCH = 5_000


MAX_WARNINGS = 20
# A DPO run's reward margin and accuracy per step and evaluation: [kind ("train" or "eval"), step, margin, accuracy].
# Kept in the summary beside the loss points (MetricPoint), which have no columns for them.
REWARDS = "rewards"


def json_file_read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def example_losses_load(*, job: FineTuneJob) -> int:
    """Store example_losses.jsonl as rows, each linked to its dataset entry while the entry exists.
    Idempotent: a job's earlier rows are replaced."""
    ExampleLoss.objects.filter(job=job).delete()
    path = job.output_dir / "example_losses.jsonl"
    if not path.exists():
        return 0
    stored = 0
    with path.open("rb") as lines:
        batch: list[dict] = []
        for raw in lines:
            row = _parse(raw)
            if row is not None and isinstance(row.get("line"), int) and _number(row.get("loss")) is not None:
                batch.append(row)
            if len(batch) >= LOSS_BATCH:
                stored += _store_losses(job, batch)
                batch = []
        stored += _store_losses(job, batch)
    return stored


def _store_losses(job: FineTuneJob, rows: list[dict]) -> int:
    ids: set[int] = {row["entry_id"] for row in rows if isinstance(row.get("entry_id"), int)}
    entries = DatasetEntry.objects.filter(dataset_id=job.dataset_id, pk__in=ids) if job.dataset_id else None
    existing = set(entries.values_list("pk", flat=True)) if entries is not None else set()  # dataset deleted: none
    losses = [
        ExampleLoss(job=job, entry_id=row.get("entry_id") if row.get("entry_id") in existing else None,
                    line=row["line"], loss=float(row["loss"]), tokens=max(0, int(row.get("tokens") or 0)))
        for row in rows
    ]  # fmt: skip
    ExampleLoss.objects.bulk_create(losses, ignore_conflicts=True)
    return len(losses)


def finetune_relay_events(*, job: FineTuneJob) -> int:
    """Copy the trainer's new events (from `job.events_offset` in events.jsonl) into metric points and the
    job's progress columns. Each batch is stored in one transaction with the new offset, so an event is
    never relayed twice nor skipped; a last line still being written waits for the next call. Returns
    the events read."""
    path = job.output_dir / "events.jsonl"
    relayed = 0
    while True:
        try:
            with path.open("rb") as events:
                if os.fstat(events.fileno()).st_size < job.events_offset:
                    job.events_offset = 0  # written anew by a resumed run: its start event says from which step
                events.seek(job.events_offset)
                chunk = events.read(READ_BYTES)
        except FileNotFoundError:
            return relayed
        end = chunk.rfind(b"\n") + 1
        if not end:
            return relayed
        lines = chunk[:end].splitlines()
        _relay_batch(job, lines, end)
        relayed += len(lines)


def _relay_batch(job: FineTuneJob, lines: list[bytes], size: int) -> None:
    points: list[MetricPoint] = []
    resumed_from: int | None = None
    for raw in lines:
        event = _parse(raw)
        if event is None:
            logger.warning("training.bad_event job=%s line=%r", job.pk, raw[:200])
            continue
        resumed = _apply(job, event, points)
        if resumed is not None:
            # A resumed run repeats the steps after its checkpoint: what an earlier attempt reported of them goes.
            resumed_from = resumed if resumed_from is None else min(resumed_from, resumed)
            points = [point for point in points if point.step <= resumed]
    job.events_offset += size
    with transaction.atomic():
        if resumed_from is not None:
            MetricPoint.objects.filter(job=job, step__gt=resumed_from).delete()
        MetricPoint.objects.bulk_create(points)
        FineTuneJob.objects.filter(pk=job.pk).update(
            step=job.step, total_steps=job.total_steps, eta_seconds=job.eta_seconds, summary=job.summary,
            error=job.error, events_offset=job.events_offset,
        )  # fmt: skip


def _parse(raw: bytes) -> dict | None:
    try:
        value = json.loads(raw)  # the json module reads NaN and Infinity, which a diverging run writes
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _apply(job: FineTuneJob, event: dict, points: list[MetricPoint]) -> int | None:
    """Fold one event into the job (in memory) and `points`; the step a resumed run starts from, for a start."""
    kind = event.get("type")
    fields = json_paths_hidden(json_clean({key: value for key, value in event.items() if key != "type"}))
    step = max(0, int(_number(event.get("step")) or 0))
    when = datetime.fromtimestamp(_number(event.get("time")) or time.time(), tz=UTC)
    if kind == "start":
        job.summary["start"] = fields
        job.total_steps = max(0, int(_number(event.get("total_steps")) or job.total_steps))
        job.step = max(0, int(_number(event.get("resumed_from_step")) or 0))
        job.summary[REWARDS] = [point for point in job.summary.get(REWARDS, []) if point[1] <= job.step]
        return job.step
    if kind == "step":
        points.append(MetricPoint(
            job=job, step=step, epoch=_number(event.get("epoch")), train_loss=_number(event.get("loss")),
            learning_rate=_number(event.get("learning_rate")), grad_norm=_number(event.get("grad_norm")),
            tokens_per_second=_number(event.get("tokens_per_second")), time=when,
        ))  # fmt: skip
        job.step = step
        job.total_steps = max(0, int(_number(event.get("total_steps")) or job.total_steps))
        job.eta_seconds = _number(event.get("eta_s"))
        job.summary["last_step"] = fields
        _reward(job, "train", step, event)
    elif kind == "eval":
        points.append(MetricPoint(job=job, step=step, eval_loss=_number(event.get("eval_loss")), time=when))
        job.summary["last_eval"] = fields
        _reward(job, "eval", step, event)
    elif kind == "warning":
        warning = paths_hidden(str(event.get("message", "")))
        job.summary["warnings"] = [*job.summary.get("warnings", []), warning][-MAX_WARNINGS:]
    elif kind == "error":
        job.error = paths_hidden(str(event.get("message") or "The trainer reported an error without a message."))
    elif kind in ("checkpoint", "early_stop", "cancelled", "done"):
        job.summary[kind] = fields
    return None


def _reward(job: FineTuneJob, kind: str, step: int, event: dict) -> None:
    """A DPO run's reward margin and accuracy at a step, kept in the summary as [kind, step, margin, accuracy]."""
    margin = _number(event.get("reward_margin"))
    if margin is not None:
        point = [kind, step, margin, _number(event.get("reward_accuracy"))]
        job.summary[REWARDS] = [*job.summary.get(REWARDS, []), point]


def _number(value: object) -> float | None:
    """A finite number, or None: PostgreSQL's jsonb and JSON answers have no NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def json_clean(value: Any) -> Any:
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, dict):
        return {str(key): json_clean(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_clean(item) for item in value]
    return value
