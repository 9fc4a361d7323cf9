"""The conversations an evaluation run answers, set by set (docs/evaluation.md, "Eval sets"):

- **validation**: the validation split of the snapshot the fine-tune trained on;
- **regression**: every dataset or snapshot the project pinned as a regression set (`RegressionSet`), all of its
  entries, whatever their split;
- **retention**: for forgetting, a sample of the project's logs that are not in the training snapshot (other
  topics, other tasks), and every general set an operator placed in LOGTUNE_EVAL_SETS_DIR (`<name>.jsonl`, one
  OpenAI chat line each, as a fine-tuning file).

Each example is the conversation before its last assistant turn (the prompt), that turn (the reference: the logged
or written answer), and what scoring needs: its tools, its `response_format`, where it came from (entry or log).
"""

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson
from django.conf import settings

from curation.datasets.export.formats import to_openai
from curation.models import DatasetEntry, DatasetSnapshot, JobStatus, LogEntry, LogStatus
from training.models import EvaluationRun, RegressionSet
from training.trainer.data import content_text

logger = logging.getLogger(__name__)

VALIDATION, REGRESSION, RETENTION = "validation", "regression", "retention"
PROJECT_LOGS = "retention: the project's other logs"


def example_of(
    row: dict, *, set_name: str, kind: str, entry_id: int | None = None, log_id: int | None = None,
    line: int | None = None,
) -> dict | None:  # fmt: skip
    """An OpenAI chat line (`messages`, `tools`, `response_format`) as an example; None when no assistant turn
    follows something to answer."""
    messages = row.get("messages")
    if not isinstance(messages, list):
        return None
    last = max((i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"), default=0)
    if last == 0:
        return None
    reference = messages[last]
    tools = row.get("tools") if isinstance(row.get("tools"), list) else []
    return {
        "set": set_name, "kind": kind, "entry_id": entry_id, "log_id": log_id, "line": line,
        "prompt": messages[:last], "tools": tools, "response_format": row.get("response_format"),
        "reference": content_text(reference.get("content")), "reference_calls": reference.get("tool_calls") or [],
    }  # fmt: skip


def scored_conversation(example: dict) -> dict:
    """The prompt followed by its reference answer: what the loss of a candidate is measured on."""
    answer: dict = {"role": "assistant", "content": example["reference"]}
    if example.get("reference_calls"):
        answer["tool_calls"] = example["reference_calls"]
    return {"messages": [*example["prompt"], answer], "tools": example.get("tools") or []}


def _snapshot_lines(path: str | Path) -> Iterator[tuple[int, dict]]:
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                yield number, orjson.loads(raw)


def snapshot_examples(path: str | Path, *, limit: int, set_name: str, kind: str, split: str | None) -> list[dict]:
    """Up to `limit` examples of a snapshot file, of one split or of all."""
    out = []
    for number, row in _snapshot_lines(path):
        if split is not None and (row.get("split") or "train") != split:
            continue
        entry_id = row.get("entry_id") if isinstance(row.get("entry_id"), int) else None
        example = example_of(row, set_name=set_name, kind=kind, entry_id=entry_id, line=number)
        if example is not None:
            out.append(example)
            if len(out) == limit:
                break
    return out


def regression_snapshot(pinned: RegressionSet) -> DatasetSnapshot | None:
    """The snapshot a regression set reads: the pinned one, or the pinned dataset's newest finished one."""
    if pinned.snapshot_id:
        snapshot = pinned.snapshot
        return snapshot if snapshot is not None and snapshot.status == JobStatus.SUCCEEDED else None
    if pinned.dataset_id is None:
        return None
    return (
        DatasetSnapshot.objects.filter(dataset_id=pinned.dataset_id, status=JobStatus.SUCCEEDED)
        .exclude(file="")
        .order_by("-created_at", "-id")
        .first()
    )


def regression_set_name(pinned: RegressionSet) -> str:
    return f"{REGRESSION}: {pinned.name}"


def retention_logs(*, run: EvaluationRun, limit: int) -> list[dict]:
    """A random sample of the project's readable logs with an answer that the training snapshot does not hold."""
    if limit <= 0:
        return []
    job = run.job
    entry_ids = [
        row["entry_id"] for _, row in _snapshot_lines(job.snapshot.file.path) if isinstance(row.get("entry_id"), int)
    ]
    trained: set[int] = set()
    for start in range(0, len(entry_ids), 5000):
        chunk = entry_ids[start : start + 5000]
        trained.update(DatasetEntry.objects.filter(pk__in=chunk, log__isnull=False).values_list("log_id", flat=True))
    picked: list[int] = []
    candidates = LogEntry.objects.filter(project_id=job.project_id, status=LogStatus.SUCCESS).order_by("?")
    for log_id in candidates.values_list("id", flat=True).iterator(chunk_size=2000):
        if log_id not in trained:
            picked.append(log_id)
            if len(picked) == limit:
                break
    out = []
    logs = LogEntry.objects.filter(pk__in=picked).only("id", "messages", "tools", "options")
    order = {log_id: at for at, log_id in enumerate(picked)}
    for log in sorted(logs, key=lambda log: order[log.pk]):
        row = to_openai(log.messages, log.tools, set(), log.options)
        example = example_of(row, set_name=PROJECT_LOGS, kind=RETENTION, log_id=log.pk)
        if example is not None:
            out.append(example)
    return out


def general_sets() -> list[Path]:
    """The operator's general sets: LOGTUNE_EVAL_SETS_DIR's `*.jsonl` files, by name."""
    folder = settings.LOGTUNE_EVAL_SETS_DIR
    if not folder or not Path(folder).is_dir():
        return []
    return sorted(Path(folder).glob("*.jsonl"))


def general_examples(path: Path, *, limit: int) -> tuple[list[dict], int]:
    """Up to `limit` examples of a general set, and how many of its lines could not be read."""
    out, skipped = [], 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                row = orjson.loads(raw)
            except orjson.JSONDecodeError:
                skipped += 1
                continue
            example = (
                example_of(row, set_name=f"{RETENTION}: {path.stem}", kind=RETENTION, line=number)
                if isinstance(row, dict)
                else None
            )
            if example is None:
                skipped += 1
                continue
            out.append(example)
            if len(out) == limit:
                break
    return out, skipped


def run_examples(run: EvaluationRun) -> tuple[list[dict], list[dict]]:
    """Every example the run answers, and a description of each set (name, kind, examples, notes)."""
    job = run.job
    limit = run.max_examples
    examples = snapshot_examples(job.snapshot.file.path, limit=limit, set_name=VALIDATION, kind=VALIDATION,
                                 split="validation")  # fmt: skip
    sets = [{"name": VALIDATION, "kind": VALIDATION, "examples": len(examples), "note": ""}]
    for pinned in RegressionSet.objects.filter(project_id=job.project_id).select_related("dataset", "snapshot"):
        snapshot = regression_snapshot(pinned)
        name = regression_set_name(pinned)
        if snapshot is None or not snapshot.file:
            sets.append({"name": name, "kind": REGRESSION, "examples": 0, "note": "no finished snapshot to read"})
            continue
        found = snapshot_examples(snapshot.file.path, limit=limit, set_name=name, kind=REGRESSION, split=None)
        examples += found
        sets.append({"name": name, "kind": REGRESSION, "examples": len(found), "note": f"snapshot {snapshot.pk}"})
    if run.retention_examples:
        found = retention_logs(run=run, limit=run.retention_examples)
        examples += found
        sets.append({"name": PROJECT_LOGS, "kind": RETENTION, "examples": len(found), "note": ""})
        for path in general_sets():
            found, skipped = general_examples(path, limit=run.retention_examples)
            examples += found
            note = f"{skipped} lines unreadable or without an answer, skipped" if skipped else ""
            sets.append({"name": f"{RETENTION}: {path.stem}", "kind": RETENTION, "examples": len(found), "note": note})
    return examples, sets


def by_set(examples: Iterable[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for example in examples:
        out.setdefault(example.get("set") or VALIDATION, []).append(example)
    return out
