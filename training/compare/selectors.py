"""Fine-tunes side by side: their loss curves, their metrics with intervals, the settings they differ in, and their
answers to the validation examples their latest evaluation runs share. Reads only; the page and the API both call
`comparison_get`."""

import json
import math
from dataclasses import dataclass, field
from typing import TypeGuard

from django.core.exceptions import ValidationError

from curation.common.params import whole_number
from curation.models import Project
from training import selectors
from training.evaluation.views import COMPARISONS, METRIC_LABELS
from training.models import EvaluationRun, FineTuneJob

MAX_JOBS = 6
# Training points drawn per job at most: a long run's curve keeps its shape, and six of them stay light to send.
CURVE_POINTS_MAX = 500


def compare_ids(pieces: list[str]) -> list[int]:
    """The fine-tune ids asked for (`["3", "5,8"]`: each piece may hold several, comma-separated), each once, in
    the order given. A ValidationError on `ids` when one is no id, or when there are fewer than two or more than
    MAX_JOBS."""
    ids: list[int] = []
    for piece in (part.strip() for value in pieces for part in value.split(",")):
        if not piece:
            continue
        number = whole_number(piece)
        if number is None:
            shown = piece if len(piece) <= 40 else piece[:37] + "..."
            raise ValidationError({"ids": f"{shown!r} is not a fine-tune id."})
        if number not in ids:
            ids.append(number)
    if len(ids) < 2:
        raise ValidationError({"ids": "Choose two fine-tunes or more to compare."})
    if len(ids) > MAX_JOBS:
        raise ValidationError({"ids": f"At most {MAX_JOBS} fine-tunes are compared at once; {len(ids)} were chosen."})
    return ids


def estimate_read(value: object) -> dict | None:
    """An estimate as an evaluation run stores it ({"value", "low", "high", "n"}), checked: None for anything
    else (a metric that could not be computed, or a shape this code does not know)."""
    if not isinstance(value, dict):
        return None
    mean, low, high, n = value.get("value"), value.get("low"), value.get("high"), value.get("n")
    if not _finite(mean):
        return None
    return {
        "value": float(mean),
        "low": float(low) if _finite(low) else None,
        "high": float(high) if _finite(high) else None,
        "n": n if isinstance(n, int) and not isinstance(n, bool) else None,
    }


def teacher_win_rate(run: EvaluationRun) -> dict | None:
    """The judge's win rate of the fine-tuned model against the logged answers, in a run's results; None when the
    run had no judge."""
    return estimate_read(_get(run.results, "judge", "teacher", "win_rate"))


def _finite(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class MetricRow:
    """One metric of every job, in the jobs' order: the fine-tuned model's estimate, and the base model's where
    the metric has one (a judge's win rate has none: it compares the two)."""

    name: str
    label: str
    source: str  # "trainer" (the validation loss), "evaluation" (scored answers) or "judge"
    tuned: list[dict | None]
    base: list[dict | None]


@dataclass
class SettingRow:
    name: str
    values: list[object]  # None where a job has no such setting
    differs: bool


@dataclass
class Comparison:
    jobs: list[FineTuneJob]  # with finetunes_table's columns, in the order asked
    runs: dict[int, EvaluationRun]  # each job's latest succeeded evaluation run, by job id, with its examples
    metrics: list[MetricRow] = field(default_factory=list)
    settings: list[SettingRow] = field(default_factory=list)


def comparison_get(*, project: Project, ids: list[int]) -> Comparison | None:
    """The jobs of `ids` compared; None when one of them is not a job of the project."""
    found = {job.pk: job for job in selectors.finetunes_table(project=project, ids=ids)}
    if set(found) != set(ids):
        return None
    jobs = [found[pk] for pk in ids]
    runs = selectors.evaluations_latest(jobs=jobs, examples=True)
    return Comparison(jobs=jobs, runs=runs, metrics=_metric_rows(jobs, runs), settings=_setting_rows(jobs))


def _metric_rows(jobs: list[FineTuneJob], runs: dict[int, EvaluationRun]) -> list[MetricRow]:
    rows = [_loss_row(jobs)]
    results = [runs[job.pk].results if job.pk in runs else {} for job in jobs]
    metrics = [r.get("metrics") if isinstance(r.get("metrics"), dict) else {} for r in results]
    for name, label in METRIC_LABELS.items():
        tuned = [estimate_read(_get(m, "tuned", name)) for m in metrics]
        if any(tuned):
            rows.append(
                MetricRow(name, label, "evaluation", tuned, [estimate_read(_get(m, "base", name)) for m in metrics])
            )
    for name, label in COMPARISONS.items():
        rates = [estimate_read(_get(r, "judge", name, "win_rate")) for r in results]
        if any(rates):
            rows.append(MetricRow(f"win_rate_{name}", f"Win rate {label}", "judge", rates, [None] * len(jobs)))
    return rows


def _get(value: object, *path: str) -> object:
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _loss_row(jobs: list[FineTuneJob]) -> MetricRow:
    """The trainer's validation loss of the base and the tuned model: one number each, on the validation examples
    the trainer reported (no interval: it is a mean over tokens, not over examples)."""

    def loss(value: float | None, job: FineTuneJob) -> dict | None:
        if value is None:
            return None
        n = _get(job.summary, "start", "examples_validation")
        return {"value": value, "low": None, "high": None, "n": n if isinstance(n, int) else None}

    return MetricRow(
        "eval_loss", "Validation loss (trainer)", "trainer",
        [loss(job.tuned_eval_loss, job) for job in jobs], [loss(job.base_eval_loss, job) for job in jobs],  # type: ignore[attr-defined]
    )  # fmt: skip


def _setting_rows(jobs: list[FineTuneJob]) -> list[SettingRow]:
    """The base model, the method, then every hyperparameter any of the jobs has, by name."""
    table = [{"base_model": job.base_label, "method": job.method, **job.hyperparameters} for job in jobs]  # type: ignore[attr-defined]
    names = ["base_model", "method", *sorted({name for row in table for name in row} - {"base_model", "method"})]
    rows = []
    for name in names:
        values = [row.get(name) for row in table]
        seen = {json.dumps([name in row, row.get(name)], sort_keys=True, default=str) for row in table}
        rows.append(SettingRow(name, values, differs=len(seen) > 1))
    return rows


# --- the curves -----------------------------------------------------------------------------------------------


def comparison_curves(comparison: Comparison) -> list[dict]:
    """Series for LogtuneCharts.lines: each job's training loss (a solid line, in the legend) and validation loss
    (dashed, in the job's colour), the training points thinned to CURVE_POINTS_MAX by an even stride."""
    curves = selectors.metric_curves(jobs=comparison.jobs)
    series = []
    for colour, job in enumerate(comparison.jobs):
        points = curves[job.pk]
        train = [[step, loss] for step, loss, _ in points if loss is not None]
        stride = math.ceil(len(train) / CURVE_POINTS_MAX) if train else 1
        train = [point for i, point in enumerate(train) if i % stride == 0 or i == len(train) - 1]
        evals = [[step, loss] for step, _, loss in points if loss is not None]
        series.append({"name": f"#{job.pk} train", "colour": colour, "points": train})
        series.append({"name": f"#{job.pk} validation", "colour": colour, "dashed": True, "key": False,
                       "points": evals})  # fmt: skip
    return series


# --- the examples side by side --------------------------------------------------------------------------------


@dataclass
class SharedExamples:
    jobs: list[FineTuneJob]  # the jobs with an evaluation run, whose answers are shown
    without_run: list[FineTuneJob]
    rows: list[dict]  # {"prompt", "reference", "answers": [{"job", "answer", "verdict"}]}


def _prompt_key(prompt: object) -> str:
    return json.dumps(prompt, sort_keys=True, ensure_ascii=False, default=str)


def shared_examples(comparison: Comparison) -> SharedExamples:
    """The validation examples that the latest evaluation runs of the jobs share, in the first run's order: matched
    by their dataset entry, else by the same prompt. Each with the logged answer and every job's answer (its verdict
    against the logged answer, when a judge gave one)."""
    jobs = [job for job in comparison.jobs if job.pk in comparison.runs]
    without = [job for job in comparison.jobs if job.pk not in comparison.runs]
    examples = [[e for e in comparison.runs[job.pk].examples if isinstance(e, dict)] for job in jobs]
    if not jobs:
        return SharedExamples(jobs, without, [])
    indexes = []
    for found in examples[1:]:
        by_entry = {e["entry_id"]: e for e in found if e.get("entry_id") is not None}
        by_prompt = {_prompt_key(e.get("prompt")): e for e in found}
        indexes.append((by_entry, by_prompt))
    rows = []
    for first in examples[0]:
        matched = [first]
        for by_entry, by_prompt in indexes:
            other = by_entry.get(first.get("entry_id")) or by_prompt.get(_prompt_key(first.get("prompt")))
            if other is None:
                break
            matched.append(other)
        else:
            rows.append({
                "prompt": first.get("prompt") if isinstance(first.get("prompt"), list) else [],
                "reference": first.get("reference") or "",
                "answers": [{"job": job.pk, "answer": e.get("tuned") or "", "verdict": e.get("verdict_teacher")}
                            for job, e in zip(jobs, matched, strict=True)],
            })  # fmt: skip
    return SharedExamples(jobs, without, rows)
