"""Evaluation runs: a fine-tune's answers on the validation split of its snapshot, against the base model's and
the logged ones (the teacher), scored with intervals and, with a judge endpoint, judged pairwise.

Two steps, two queues: a GPU worker answers every prompt with the base model and the tuned one, in a child process
(`training.trainer.generate:answers`); then a CPU worker computes the metrics and asks the judge, whose calls make
the progress bar. A second delivery of either task finds its step taken and does nothing.
"""

import logging
from collections.abc import Sequence
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from curation.audit.services import audit_record
from curation.common.queueing import task_send_or_mark_unsent
from curation.common.server_paths import paths_hidden
from curation.models import ApiKey
from training.endpoints.secrets import SecretUnreadable
from training.endpoints.services import EndpointRefused, endpoint_target
from training.evaluation.judge import DEFAULT_RUBRIC, JudgeSummary, Pair, judge_pairs, judge_summary
from training.evaluation.metrics import (
    Estimate,
    chrf,
    exact_match,
    json_validity,
    json_value,
    label_report,
    rouge_l,
)
from training.evaluation.promotion.services import evaluation_gate_record
from training.models import EvaluationRun, FineTuneJob, FineTuneStatus, ModelEndpoint
from training.playground.services import GpuCallError, call_in_child
from training.trainer.data import read_records

logger = logging.getLogger(__name__)

MAX_EXAMPLES = 1000
MAX_NEW_TOKENS = 2048
# Answers of at most this many words, with few distinct values, are labels (classification data).
LABEL_MAX_WORDS = 4
LABEL_MAX_CLASSES = 20


def evaluation_create(
    *, job: FineTuneJob, judge: ModelEndpoint | None = None, rubric: str = "", max_examples: int = 100,
    max_new_tokens: int = 256, actor: User | None = None, api_key: ApiKey | None = None,
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
    with transaction.atomic():
        run = EvaluationRun.objects.create(
            job=job, judge=judge, judge_name=f"{judge.name} ({judge.model})" if judge else "",
            rubric=rubric.strip() or (DEFAULT_RUBRIC if judge else ""), max_examples=max_examples,
            max_new_tokens=max_new_tokens, created_by=actor, created_by_key=api_key, stage="answers",
        )  # fmt: skip
        audit_record(project=job.project, action="finetune.evaluate", actor=actor, api_key=api_key,
                     detail={"finetune": job.pk, "evaluation": run.pk, "judge": run.judge_name})  # fmt: skip
        transaction.on_commit(lambda: _send_answers(run.pk))
    return run


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


def validation_examples(path: str | Path, limit: int) -> list[dict]:
    """The first `limit` validation conversations of a snapshot: the prompt (up to the last assistant turn), that
    turn (the teacher's answer), and the entry's `response_format` when it has one."""
    examples = []
    for record in read_records(path):
        if record.split != "validation":
            continue
        last = max((i for i, m in enumerate(record.messages) if m.get("role") == "assistant"), default=0)
        if last == 0:
            continue
        reference = record.messages[last]
        examples.append({
            "entry_id": record.entry_id, "line": record.line, "prompt": record.messages[:last],
            "reference": reference.get("content") if isinstance(reference.get("content"), str) else "",
            "reference_calls": reference.get("tool_calls") or [],
        })  # fmt: skip
        if len(examples) == limit:
            break
    return examples


def evaluation_answers_run(*, run_id: int) -> None:
    claimed = EvaluationRun.objects.filter(pk=run_id, status=FineTuneStatus.QUEUED).update(
        status=FineTuneStatus.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return
    run = EvaluationRun.objects.select_related("job__snapshot").get(pk=run_id)
    job = run.job
    rows = EvaluationRun.objects.filter(pk=run.pk)
    try:
        examples = validation_examples(job.snapshot.file.path, run.max_examples)
        if not examples:
            raise ValueError("The snapshot has no validation entry with an assistant answer to compare with.")
        model, adapter_dir = job.tuned_model
        prompts = [example["prompt"] for example in examples]
        asked = {"conversations": prompts, "max_new_tokens": run.max_new_tokens}
        base, tuned = call_in_child(
            function="training.trainer.generate:answers",
            calls=[{"model": job.model, "adapter_dir": None, **asked},
                   {"model": model, "adapter_dir": adapter_dir, **asked}],
            work_dir=job.output_dir / "evaluations" / str(run.pk), timeout=settings.LOGTUNE_GPU_TASK_TIMEOUT_S,
        )  # fmt: skip
    except (GpuCallError, ValueError, OSError) as exc:
        rows.update(status=FineTuneStatus.FAILED, error=paths_hidden(str(exc)), finished_at=timezone.now())
        logger.warning("training.evaluation_failed evaluation=%s job=%s", run.pk, job.pk)
        return
    for example, base_answer, tuned_answer in zip(examples, base, tuned, strict=True):
        example["base"], example["tuned"] = base_answer, tuned_answer
    judged = 2 * 2 * len(examples) if run.judge_id else 0  # two comparisons, each pair in both orders
    with transaction.atomic():
        rows.update(examples=examples, stage="scoring", total=judged)
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
    results: dict = {"examples": len(examples), "metrics": candidate_metrics(examples, run.job)}
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
            pairs = [Pair(e["prompt"], candidate=e["tuned"], other=e[other]) for e in examples]
            verdicts = judge_pairs(target, pairs, rubric=run.rubric, on_progress=progressed, should_stop=stop)
            if any(v is None for v in verdicts):
                rows.update(status=FineTuneStatus.CANCELLED, finished_at=timezone.now(), results=results, done=done)
                return
            for example, verdict in zip(examples, verdicts, strict=True):
                example[f"verdict_{name}"] = verdict.outcome if verdict is not None and not verdict.error else None
            comparisons[name] = _summary_dict(judge_summary(verdicts))
        results["judge"] = comparisons
    rows.update(status=FineTuneStatus.SUCCEEDED, stage="", results=results, examples=examples,
                done=run.total, finished_at=timezone.now())  # fmt: skip
    evaluation_gate_record(run_id=run.pk)


def candidate_metrics(examples: Sequence[dict], job: FineTuneJob) -> dict:
    """For the base and the tuned model's answers against the teacher's: exact match, ROUGE-L and chrF; JSON
    validity when the teacher answers in JSON; label metrics when the answers are labels."""
    references = [e["reference"] for e in examples]
    out: dict = {}
    labels = _is_label_task(references)
    json_answers = references and all(_is_json(r) for r in references)
    for name in ("base", "tuned"):
        answers = [e[name] for e in examples]
        metrics = {
            "exact_match": exact_match(answers, references), "rouge_l": rouge_l(answers, references),
            "chrf": chrf(answers, references),
        }  # fmt: skip
        if json_answers:
            metrics["json_valid"] = json_validity(answers)
        if labels:
            report = label_report(answers, references)
            metrics |= {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}
            out.setdefault("labels", {})[name] = {k: report[k] for k in ("classes", "labels", "confusion")}
        out[name] = {key: _estimate_dict(value) for key, value in metrics.items()}
    return out


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
