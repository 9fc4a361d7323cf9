"""Evaluation runs: a fine-tune's answers on the validation split of its snapshot, against the base model's and
the logged ones (the teacher), scored with intervals and, with a judge endpoint, judged pairwise.

Two steps, two queues: a GPU worker answers every prompt with the base model and the tuned one, in a child process
(`training.trainer.generate:answers`); then a CPU worker computes the metrics and asks the judge, whose calls make
the progress bar. A second delivery of either task finds its step taken and does nothing.
"""

import json
import logging
import math
from collections.abc import Sequence
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Avg
from django.utils import timezone

from curation.audit.services import audit_record
from curation.common.queueing import task_send_or_mark_unsent
from curation.common.server_paths import paths_hidden
from curation.models import ApiKey, DatasetEntry, LogEntry, LogTag
from training.endpoints.secrets import SecretUnreadable
from training.endpoints.services import EndpointRefused, endpoint_cost_usd, endpoint_target
from training.evaluation.judge import DEFAULT_RUBRIC, JudgeSummary, Pair, judge_pairs, judge_summary
from training.evaluation.metrics import (
    Estimate,
    answer_tool_calls,
    chrf,
    chrf_scores,
    estimate,
    exact_match,
    exact_match_scores,
    json_validity,
    json_value,
    label_report,
    paired_estimate,
    relative_change,
    response_schema,
    rouge_l,
    rouge_l_scores,
    schema_match,
    tool_call_match,
)
from training.evaluation.promotion.services import evaluation_gate_record
from training.evaluation.sets import (
    REGRESSION,
    RETENTION,
    VALIDATION,
    by_set,
    general_sets,
    regression_snapshot,
    run_examples,
    scored_conversation,
)
from training.models import EvaluationRun, FineTuneJob, FineTuneStatus, ModelEndpoint, RegressionSet
from training.playground.services import GpuCallError, call_in_child

logger = logging.getLogger(__name__)

MAX_EXAMPLES = 1000
MAX_NEW_TOKENS = 2048
MAX_SLICE_KEY = 100
# Answers of at most this many words, with few distinct values, are labels (classification data).
LABEL_MAX_WORDS = 4
LABEL_MAX_CLASSES = 20


def evaluation_create(
    *, job: FineTuneJob, judge: ModelEndpoint | None = None, rubric: str = "", max_examples: int = 100,
    max_new_tokens: int = 256, retention_examples: int = 100, slice_key: str = "", actor: User | None = None,
    api_key: ApiKey | None = None,
) -> EvaluationRun:  # fmt: skip
    """Queue an evaluation of a succeeded fine-tune whose weights are kept. Raises ValidationError naming the field."""
    if job.status != FineTuneStatus.SUCCEEDED or job.weights_deleted_at is not None:
        raise ValidationError(
            {"status": "Only a fine-tune that succeeded and still has its weights can be evaluated."}
        )
    if judge is not None and judge.project_id != job.project_id:
        raise ValidationError({"judge": f"Endpoint {judge.pk} not found in this project."})
    if not 1 <= max_examples <= MAX_EXAMPLES:
        raise ValidationError({"max_examples": f"Between 1 and {MAX_EXAMPLES}."})
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ValidationError({"max_new_tokens": f"Between 1 and {MAX_NEW_TOKENS}."})
    if not 0 <= retention_examples <= MAX_EXAMPLES:
        raise ValidationError({"retention_examples": f"Between 0 (no forgetting check) and {MAX_EXAMPLES}."})
    slice_key = slice_key.strip()
    if len(slice_key) > MAX_SLICE_KEY:
        raise ValidationError({"slice_key": f"At most {MAX_SLICE_KEY} characters."})
    with transaction.atomic():
        run = EvaluationRun.objects.create(
            job=job, judge=judge, judge_name=f"{judge.name} ({judge.model})" if judge else "",
            rubric=rubric.strip() or (DEFAULT_RUBRIC if judge else ""), max_examples=max_examples,
            max_new_tokens=max_new_tokens, retention_examples=retention_examples, slice_key=slice_key,
            created_by=actor, created_by_key=api_key, stage="answers",
        )  # fmt: skip
        audit_record(project=job.project, action="finetune.evaluate", actor=actor, api_key=api_key,
                     detail={"finetune": job.pk, "evaluation": run.pk, "judge": run.judge_name})  # fmt: skip
        transaction.on_commit(lambda: _send_answers(run.pk))
    return run


# What one judge call costs beyond the conversation and the two answers (instructions, rubric), and what it writes
# (brief reasoning and the verdict line), in tokens: for the estimate before a run.
JUDGE_OVERHEAD_TOKENS = 350
JUDGE_OUTPUT_TOKENS = 200


def evaluation_estimate(
    *, job: FineTuneJob, judge: ModelEndpoint | None, max_examples: int, max_new_tokens: int,
    retention_examples: int,
) -> dict:  # fmt: skip
    """Before a run: how many examples each kind of set holds (at most), the answers the GPU worker writes, and with
    a judge its calls, tokens and cost (the endpoint's prices, else the price table's; None when unknown)."""
    snapshot = job.snapshot
    validation = min(max_examples, snapshot.rows_validation)
    regression = 0
    for pinned in RegressionSet.objects.filter(project_id=job.project_id).select_related("snapshot"):
        pinned_snapshot = regression_snapshot(pinned)
        regression += min(max_examples, pinned_snapshot.rows_total) if pinned_snapshot is not None else 0
    retention = 0
    if retention_examples:
        other_logs = max(0, job.project.logs.count() - snapshot.rows_total)
        retention = min(retention_examples, other_logs) + retention_examples * len(general_sets())
    answered = validation + regression + retention
    out: dict = {
        "examples": {VALIDATION: validation, REGRESSION: regression, RETENTION: retention},
        "answers": 2 * answered, "answer_tokens_at_most": 2 * answered * max_new_tokens,
        "judge_calls": 0, "judge_input_tokens": 0, "judge_output_tokens": 0, "judge_cost_usd": None,
    }  # fmt: skip
    if judge is None or not validation:
        return out
    entries = DatasetEntry.objects.filter(dataset_id=job.dataset_id, split="validation") if job.dataset_id else None
    per_entry = entries.aggregate(tokens=Avg("est_tokens"))["tokens"] if entries is not None else None
    conversation = int(per_entry or max_new_tokens)
    calls = 2 * 2 * validation
    per_call = conversation + 2 * min(max_new_tokens, conversation) + JUDGE_OVERHEAD_TOKENS
    out |= {"judge_calls": calls, "judge_input_tokens": calls * per_call,
            "judge_output_tokens": calls * JUDGE_OUTPUT_TOKENS}  # fmt: skip
    cost = endpoint_cost_usd(
        judge, prompt_tokens=out["judge_input_tokens"], completion_tokens=out["judge_output_tokens"]
    )
    out["judge_cost_usd"] = None if cost is None else str(cost.quantize(Decimal("0.0001")))
    return out


def _send_answers(run_id: int) -> None:
    from training.evaluation.tasks import evaluation_answers_task

    task_send_or_mark_unsent(
        evaluation_answers_task, run_id, queued=EvaluationRun.objects.filter(pk=run_id, status=FineTuneStatus.QUEUED),
        event="training.evaluation_enqueue_failed",
    )  # fmt: skip


def _send_scoring(run_id: int) -> None:
    from training.evaluation.tasks import evaluation_score_task

    task_send_or_mark_unsent(
        evaluation_score_task, run_id, queued=EvaluationRun.objects.filter(pk=run_id, stage="scoring"),
        event="training.evaluation_enqueue_failed",
    )  # fmt: skip


@transaction.atomic
def evaluation_cancel(*, run: EvaluationRun, actor: User | None = None, api_key: ApiKey | None = None) -> bool:
    """Stop a run: a queued one at once, a running one before its next judge call. False when it had finished."""
    if run.is_finished:
        return False
    EvaluationRun.objects.filter(pk=run.pk, status=FineTuneStatus.QUEUED).update(
        status=FineTuneStatus.CANCELLED, finished_at=timezone.now()
    )
    EvaluationRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    audit_record(project=run.job.project, action="finetune.evaluation_cancel", actor=actor, api_key=api_key,
                 detail={"finetune": run.job_id, "evaluation": run.pk})  # fmt: skip
    return True


# --- step 1: answers (GPU worker) -----------------------------------------------------------------------------


def evaluation_answers_run(*, run_id: int) -> None:
    """Every example of the run's sets (sets.py) answered, and its reference answer scored (loss), by the base model
    and by the fine-tune, each loaded once in a child process."""
    claimed = EvaluationRun.objects.filter(pk=run_id, status=FineTuneStatus.QUEUED).update(
        status=FineTuneStatus.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return
    run = EvaluationRun.objects.select_related("job__snapshot", "job__project").get(pk=run_id)
    job = run.job
    rows = EvaluationRun.objects.filter(pk=run.pk)
    try:
        examples, described = run_examples(run)
        if not any(e["kind"] == VALIDATION for e in examples):
            raise ValueError("The snapshot has no validation entry with an assistant answer to compare with.")
        model, adapter_dir = job.tuned_model
        asked = {"conversations": [e["prompt"] for e in examples], "max_new_tokens": run.max_new_tokens,
                 "scored": [scored_conversation(e) for e in examples]}  # fmt: skip
        base, tuned = call_in_child(
            function="training.trainer.generate:candidate",
            calls=[{"model": job.model, "adapter_dir": None, **asked},
                   {"model": model, "adapter_dir": adapter_dir, **asked}],
            work_dir=job.output_dir / "evaluations" / str(run.pk), timeout=settings.LOGTUNE_GPU_TASK_TIMEOUT_S,
        )  # fmt: skip
    except (GpuCallError, ValueError, OSError) as exc:
        rows.update(status=FineTuneStatus.FAILED, error=paths_hidden(str(exc)), finished_at=timezone.now())
        logger.warning("training.evaluation_failed evaluation=%s job=%s", run.pk, job.pk)
        return
    for i, example in enumerate(examples):
        example["base"], example["tuned"] = base["answers"][i], tuned["answers"][i]
        example["base_loss"], example["tuned_loss"] = base["losses"][i], tuned["losses"][i]
    # Two comparisons on the validation set, each pair in both orders.
    judged = 2 * 2 * sum(e["kind"] == VALIDATION for e in examples) if run.judge_id else 0
    with transaction.atomic():
        rows.update(examples=examples, stage="scoring", total=judged, results={"sets": described})
        transaction.on_commit(lambda: _send_scoring(run.pk))


# --- step 2: metrics and the judge (CPU worker) ---------------------------------------------------------------


def evaluation_score_run(*, run_id: int) -> None:
    claimed = EvaluationRun.objects.filter(pk=run_id, status=FineTuneStatus.RUNNING, stage="scoring").update(
        stage="judging"
    )
    if not claimed:
        return
    run = EvaluationRun.objects.select_related("judge", "job__snapshot").get(pk=run_id)
    rows = EvaluationRun.objects.filter(pk=run.pk)
    examples = run.examples
    validation = [e for e in examples if e.get("kind", VALIDATION) == VALIDATION]
    described = {item["name"]: item for item in (run.results.get("sets") or [])}
    results: dict = {
        "examples": len(validation),
        "metrics": candidate_metrics(validation),
        "loss": loss_metrics(validation),
        "sets": [
            {**described.get(name, {"name": name, "kind": group[0].get("kind", VALIDATION), "note": ""}),
             "examples": len(group), "metrics": candidate_metrics(group), "loss": loss_metrics(group)}
            for name, group in by_set(examples).items()
        ] + [item for name, item in described.items() if not item["examples"]],
    }  # fmt: skip
    retained = [e for e in examples if e.get("kind") == RETENTION]
    if retained:
        results["forgetting"] = forgetting(retained)
    if run.judge is not None:
        try:
            target = endpoint_target(run.judge)
        except (EndpointRefused, SecretUnreadable) as exc:
            rows.update(status=FineTuneStatus.FAILED, error=str(exc), finished_at=timezone.now(), results=results)
            return
        done = 0

        def progressed(_: int, __: int) -> None:
            nonlocal done
            done += 1
            if done % 10 == 0:
                rows.update(done=done)

        def stop() -> bool:
            return rows.filter(cancel_requested=True).exists() if done % 5 == 0 else False

        comparisons = {}
        for name, other in (("base", "base"), ("teacher", "reference")):
            pairs = [Pair(e["prompt"], candidate=e["tuned"], other=e[other]) for e in validation]
            verdicts = judge_pairs(target, pairs, rubric=run.rubric, on_progress=progressed, should_stop=stop)
            if any(v is None for v in verdicts):
                rows.update(status=FineTuneStatus.CANCELLED, finished_at=timezone.now(), results=results, done=done)
                return
            for example, verdict in zip(validation, verdicts, strict=True):
                example[f"verdict_{name}"] = verdict.outcome if verdict is not None and not verdict.error else None
            comparisons[name] = _summary_dict(judge_summary(verdicts))
        results["judge"] = comparisons
    results["slices"] = slices(examples, project_id=run.job.project_id, key=run.slice_key)
    rows.update(status=FineTuneStatus.SUCCEEDED, stage="", results=results, examples=examples,
                done=run.total, finished_at=timezone.now())  # fmt: skip
    evaluation_gate_record(run_id=run.pk)


def candidate_metrics(examples: Sequence[dict]) -> dict:
    """For the base and the tuned model's answers against the reference answers: exact match, ROUGE-L and chrF;
    JSON validity when the references are JSON; JSON-schema match over the examples whose request set a
    `response_format` with a schema; tool-call name and argument match over those whose reference calls tools;
    label metrics when the answers are labels."""
    if not examples:
        return {}
    references = [e["reference"] for e in examples]
    out: dict = {}
    labels = _is_label_task(references)
    json_answers = all(_is_json(r) for r in references)
    asked = [(i, response_schema(e.get("response_format"))) for i, e in enumerate(examples)]
    schemas = [(i, schema) for i, schema in asked if schema is not None]
    calls = [e.get("reference_calls") or [] for e in examples]
    for name in ("base", "tuned"):
        answers = [e[name] for e in examples]
        metrics = {
            "exact_match": exact_match(answers, references), "rouge_l": rouge_l(answers, references),
            "chrf": chrf(answers, references),
        }  # fmt: skip
        if json_answers:
            metrics["json_valid"] = json_validity(answers)
        if schemas:
            metrics["schema_match"] = schema_match([answers[i] for i, _ in schemas], [s for _, s in schemas])
        if any(calls):
            matched = tool_call_match([answer_tool_calls(a) for a in answers], calls)
            metrics |= {"tool_names": matched.name, "tool_arguments": matched.arguments}
        if labels:
            report = label_report(answers, references)
            metrics |= {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}
            out.setdefault("labels", {})[name] = {k: report[k] for k in ("classes", "labels", "confusion")}
        out[name] = {key: _estimate_dict(value) for key, value in metrics.items()}
    return out


def loss_metrics(examples: Sequence[dict]) -> dict:
    """The mean per-example loss of the reference answers under each model, with its interval, the perplexity it
    gives, and the tuned model's change against the base's (a fraction: 0.02 is 2% higher), paired, over the
    examples both could score."""
    paired = _paired_losses(examples)
    if not paired:
        return {}
    base, tuned = [b for b, _ in paired], [t for _, t in paired]
    out: dict = {"change": _estimate_dict(relative_change(base, tuned))}
    for name, values in (("base", base), ("tuned", tuned)):
        value = estimate(values)
        out[name] = _estimate_dict(value)
        out[f"{name}_perplexity"] = math.exp(min(value.value, 50.0)) if value is not None else None
    return out


# Measures whose larger value is better, compared tuned against base on the retention set and in slices.
COMPARED = ("exact_match", "rouge_l", "chrf")


def forgetting(examples: Sequence[dict]) -> dict:
    """Base against tuned on the retention examples (answers the fine-tune was not trained on): each measure's
    change, tuned minus base, and the relative change of the loss, each with a paired interval."""
    references = [e["reference"] for e in examples]
    changes = {}
    for key in COMPARED:
        base, tuned = (_per_example(key, [e[name] for e in examples], references) for name in ("base", "tuned"))
        changes[key] = _estimate_dict(paired_estimate(base, tuned, lambda a, b: float((b - a).mean())))
    loss = loss_metrics(examples)
    return {"examples": len(examples), "changes": changes, "loss_change": loss.get("change"), "loss": loss}


def _per_example(key: str, answers: Sequence[str], references: Sequence[str]) -> list[float]:
    """A measure of each example."""
    scores = {"exact_match": exact_match_scores, "rouge_l": rouge_l_scores, "chrf": chrf_scores}[key]
    return scores(answers, references)


# Slices smaller than this are not reported: an interval over fewer examples says little.
SLICE_MIN_EXAMPLES = 5
SLICES_SHOWN = 40


def slices(examples: Sequence[dict], *, project_id: int, key: str = "") -> list[dict]:
    """Every example's tags (its log's) and, with `key`, its metadata value: for each slice with enough examples,
    tuned against base on ROUGE-L, on the loss and, where judged, the win rate against the base. A slice is
    flagged when the tuned model is worse than the base beyond the interval (the change's interval lies wholly on
    the worse side; for the win rate, below one half)."""
    groups = _slice_groups(examples, project_id=project_id, key=key)
    references = [e["reference"] for e in examples]
    # Each example's ROUGE-L once, whatever the number of slices it is in.
    rouge = {
        id(e): pair for e, pair in zip(examples, zip(
            rouge_l_scores([e["base"] for e in examples], references),
            rouge_l_scores([e["tuned"] for e in examples], references), strict=True,
        ), strict=True)
    }  # fmt: skip
    out = []
    for (by, value), members in groups.items():
        if len(members) < SLICE_MIN_EXAMPLES:
            continue
        base, tuned = [rouge[id(e)][0] for e in members], [rouge[id(e)][1] for e in members]
        rows = [_slice_row(by, value, "rouge_l", base, tuned, worse_if_lower=True)]
        losses = _paired_losses(members)
        if len(losses) >= SLICE_MIN_EXAMPLES:
            base_losses, tuned_losses = [b for b, _ in losses], [t for _, t in losses]
            rows.append(_slice_row(by, value, "loss", base_losses, tuned_losses, worse_if_lower=False))
        verdicts = [e["verdict_base"] for e in members if e.get("verdict_base") is not None]
        if len(verdicts) >= SLICE_MIN_EXAMPLES:
            rate = estimate(verdicts)
            rows.append({"by": by, "value": value, "n": len(verdicts), "metric": "win_rate_vs_base", "base": None,
                         "tuned": _estimate_dict(rate), "delta": None,
                         "flagged": rate is not None and rate.high < 0.5})  # fmt: skip
        out.extend(rows)
    out.sort(key=lambda row: (not row["flagged"], -row["n"], row["by"], row["value"], row["metric"]))
    return out[:SLICES_SHOWN]


def _paired_losses(examples: Sequence[dict]) -> list[tuple[float, float]]:
    """(base, tuned) loss of each example both models could score."""
    return [(e["base_loss"][0], e["tuned_loss"][0]) for e in examples if e.get("base_loss") and e.get("tuned_loss")]


def _slice_row(
    by: str, value: str, metric: str, base: list[float], tuned: list[float], *, worse_if_lower: bool
) -> dict:
    delta = paired_estimate(base, tuned, lambda a, b: float((b - a).mean()))
    flagged = delta is not None and (delta.high < 0 if worse_if_lower else delta.low > 0)
    return {"by": by, "value": value, "n": len(base), "metric": metric, "base": _estimate_dict(estimate(base)),
            "tuned": _estimate_dict(estimate(tuned)), "delta": _estimate_dict(delta), "flagged": flagged}  # fmt: skip


def _slice_groups(examples: Sequence[dict], *, project_id: int, key: str) -> dict[tuple[str, str], list[dict]]:
    """(by, value) → examples: "tag" and each tag of the example's log; `metadata:<key>` and its value."""
    entry_logs = dict(
        DatasetEntry.objects.filter(
            pk__in={e["entry_id"] for e in examples if e.get("entry_id")}, log__isnull=False
        ).values_list("id", "log_id")
    )
    log_of: list[int | None] = [e.get("log_id") or entry_logs.get(e.get("entry_id") or 0) for e in examples]
    logs = {log_id for log_id in log_of if log_id}
    tags: dict[int, list[str]] = {}
    for tagged_id, name in LogTag.objects.filter(log_id__in=logs, log__project_id=project_id).values_list(
        "log_id", "tag__name"
    ):
        tags.setdefault(tagged_id, []).append(name)
    metadata: dict[int, object] = {}
    if key:
        rows = LogEntry.objects.filter(pk__in=logs, project_id=project_id).values_list("id", "metadata")
        for stored_id, values in rows:
            if isinstance(values, dict) and values.get(key) is not None:
                metadata[stored_id] = values[key]
    groups: dict[tuple[str, str], list[dict]] = {}
    for example, log_id in zip(examples, log_of, strict=True):
        for name in tags.get(log_id or 0, []):
            groups.setdefault(("tag", name), []).append(example)
        if log_id is not None and log_id in metadata:
            value = metadata[log_id]
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            groups.setdefault((f"metadata:{key}", text[:200]), []).append(example)
    return groups


def _is_json(text: str) -> bool:
    stripped = text.strip()
    return stripped[:1] in ("{", "[") and json_value(stripped)[0]


def _is_label_task(references: Sequence[str]) -> bool:
    classes = {r.strip().casefold() for r in references}
    short = all(0 < len(r.split()) <= LABEL_MAX_WORDS for r in references)
    return len(references) >= 2 and short and 2 <= len(classes) <= min(LABEL_MAX_CLASSES, max(2, len(references) // 2))


def _estimate_dict(value: Estimate | None) -> dict | None:
    return value.as_dict() if value is not None else None


def _summary_dict(summary: JudgeSummary) -> dict:
    rate = summary.win_rate
    return {
        "win_rate": _estimate_dict(rate.rate), "wins": rate.wins, "ties": rate.ties, "losses": rate.losses,
        "judged": summary.judged, "failed": summary.failed,
        "position_agreement": _estimate_dict(summary.position_agreement),
    }  # fmt: skip
