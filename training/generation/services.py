"""Generation jobs: training rows written by a model endpoint from documents or from logs, checked by the filters,
and left for review (docs/generation.md).

- `generation_estimate` / `generation_create`: what a job would call and cost, and starting it.
- `generation_run` (the task): the calls, the parsing of their answers into rows, the filters, the manifest.
- `generation_cancel`: no new call starts; the rows already written stay.
- Review: `row_update` (edit a pending row), `row_accept`, `row_reject`, `rows_accept_bulk`.
"""

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import CharField, Count, F, QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.utils import timezone

from curation.audit.services import audit_record
from curation.common.queueing import task_send_or_fail
from curation.datasets.services import dataset_add_logs, dataset_entries_add_synthetic, entry_update
from curation.logs.filters import logs_filter
from curation.logs.ingest import IngestError, parse_log
from curation.logs.similar.matrix import chunk_matrix, index_matrix, index_state
from curation.models import ApiKey, Dataset, DatasetEntry, DatasetKind, EntryEmbedding, LogEntry, Project
from curation.text.documents import Chunk, combinations_capped
from curation.text.embeddings import embed, text_of_conversation
from curation.text.rendering import content_text
from curation.text.tokens import est_tokens
from training.endpoints.client import ChatAnswer, EndpointTarget, chat_many
from training.endpoints.secrets import SecretUnreadable
from training.endpoints.services import EndpointRefused, endpoint_cost_usd, endpoint_target
from training.generation import filters, prompts
from training.generation.documents import document_chunks
from training.models import (
    FINISHED,
    FineTuneStatus,
    GeneratedRow,
    GenerationJob,
    GenerationKind,
    ModelEndpoint,
    RowStatus,
    SourceDocument,
)

logger = logging.getLogger(__name__)

# Bounds of what a request may ask.
MAX_ROWS_PER_CALL = 20
MAX_CHUNKS_PER_CALL = 5
MAX_COMBINATIONS = 5000
MAX_SEEDS = 5000
MAX_CALLS = 20000
MAX_TOKENS = 32768
# Entries of the target dataset compared by meaning; past this, the stored vectors and the exact check only.
MAX_DATASET_EMBEDDED = 20000
COMPLETION_GUESS = 150  # tokens of one question/answer pair or one variation, for the likely cost
STOP_CHECK_EVERY = 5  # answers between two looks at cancel_requested
BULK_BATCH = 500


@dataclass
class GenerationRequest:
    """What a job is asked to do. Unset fields take the defaults shown; `generation_problems` names what is wrong."""

    kind: str  # GenerationKind: documents, teacher, variations
    endpoint_id: int  # the model endpoint that writes (documents, variations) or re-answers (teacher)
    dataset_id: int  # the dataset accepted rows join (teacher: whose entries are revised)
    # From documents
    document_ids: list[int] = field(default_factory=list)
    rows_per_call: int = 3  # question/answer pairs per call; variations per seed and style
    chunks_per_call: int = 1  # 2 or more: questions that need several chunks at once
    max_combinations: int = 200  # the cap on groups of chunks when chunks_per_call > 1
    chunk_chars: int = 4000
    overlap_chars: int = 400
    prompt_template: str = ""  # "" for the kind's default (prompts.DEFAULT_TEMPLATES)
    system_prompt: str = ""  # a system message every generated row starts with; "" for none
    # From logs: the seeds are entries of a dataset, or logs matching an explorer filter (its query string's params)
    seed_dataset_id: int | None = None
    seed_filter: dict = field(default_factory=dict)
    max_seeds: int = 200
    styles: list[str] = field(default_factory=lambda: ["paraphrase"])  # paraphrase, harder, language:<name>
    # The calls
    max_tokens: int = 1024
    temperature: float = 0.7
    seed: int = 0
    # The filters
    dedup_threshold: float = 0.95
    min_answer_chars: int = 20
    max_row_tokens: int = 4096
    drop_personal_data: bool = True
    judge_endpoint_id: int | None = None
    judge_threshold: float = 7.0  # out of 10
    judge_rubric: str = ""


@dataclass
class GenerationEstimate:
    calls: int  # first-stage calls (variations: plus one answer per variation, counted in `answer_calls`)
    answer_calls: int
    judge_calls: int
    prompt_tokens: int
    completion_tokens: int  # at most: max_tokens per call
    cost_usd: Decimal | None  # None: the endpoint has no price (a local server)
    seeds: int = 0
    chunks: int = 0
    groups: int = 0  # groups of chunks sent (chunks_per_call > 1)
    groups_uncapped: int = 0  # how many groups there would be without the cap
    warnings: list[str] = field(default_factory=list)
    # What the answers will likely hold (a pair or a variation is about COMPLETION_GUESS tokens), and its cost.
    completion_tokens_likely: int = 0
    cost_usd_likely: Decimal | None = None

    @property
    def capped(self) -> bool:
        return self.groups_uncapped > self.groups


# --- what a job will call ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class Call:
    """One first-stage call: its request (without `model`) and what every row from its answer inherits."""

    request: dict
    provenance: dict
    prefix: list[dict] = field(default_factory=list)  # the messages a row starts with before its question
    original: list[dict] | None = None  # teacher: the seed's conversation
    seed_log_id: int | None = None
    seed_entry_id: int | None = None


@dataclass(slots=True)
class Plan:
    calls: list[Call]
    seeds: int = 0
    chunks: int = 0
    groups: int = 0
    groups_uncapped: int = 0
    documents: list[dict] = field(default_factory=list)


def _template(request: GenerationRequest) -> str:
    return request.prompt_template or prompts.DEFAULT_TEMPLATES.get(request.kind, "")


def _system(request: GenerationRequest) -> list[dict]:
    return [{"role": "system", "content": request.system_prompt}] if request.system_prompt.strip() else []


def _call_options(request: GenerationRequest) -> dict:
    return {"max_tokens": request.max_tokens, "temperature": request.temperature, "seed": request.seed}


def _plan(project: Project, request: GenerationRequest) -> Plan:
    if request.kind == GenerationKind.DOCUMENTS:
        return _documents_plan(project, request)
    return _seeds_plan(project, request)


def _documents_plan(project: Project, request: GenerationRequest) -> Plan:
    template = _template(request)
    documents = SourceDocument.objects.filter(project=project, pk__in=request.document_ids).order_by("pk")
    plan = Plan(calls=[])
    left = request.max_combinations
    for document in documents:
        chunks = document_chunks(document, max_chars=request.chunk_chars, overlap_chars=request.overlap_chars)
        plan.chunks += len(chunks)
        plan.documents.append({"id": document.pk, "name": document.name, "sha256": document.sha256,
                               "chunks": len(chunks), "readable": document.readable})  # fmt: skip
        if request.chunks_per_call > 1:
            capped = combinations_capped(chunks, request.chunks_per_call, max(left, 0))
            groups, plan.groups_uncapped = capped.combinations, plan.groups_uncapped + capped.total
            left -= len(groups)
        else:
            groups = [(chunk,) for chunk in chunks]
            plan.groups_uncapped += len(groups)
        plan.groups += len(groups)
        for group in groups:
            text = "\n\n---\n\n".join(chunk.text for chunk in group)
            heading = " / ".join(group[0].heading_path) or "(none)"
            content = prompts.render(template, {"chunk": text, "document": document.name, "heading": heading,
                                                "n": request.rows_per_call})  # fmt: skip
            plan.calls.append(Call(
                request={"messages": [{"role": "user", "content": content}], **_call_options(request)},
                provenance={"document": {"id": document.pk, "name": document.name, "sha256": document.sha256},
                            "chunks": [_chunk_provenance(chunk) for chunk in group]},
                prefix=_system(request),
            ))  # fmt: skip
    return plan


def _chunk_provenance(chunk: Chunk) -> dict:
    found = {"id": chunk.id, "index": chunk.index, "start": chunk.start, "end": chunk.end,
             "heading_path": list(chunk.heading_path)}  # fmt: skip
    if chunk.first_page is not None:
        found |= {"first_page": chunk.first_page, "last_page": chunk.last_page}
    return found


@dataclass(slots=True)
class Seed:
    messages: list[dict]
    tools: list[dict]
    log_id: int | None
    entry_id: int | None


def _seeds(project: Project, request: GenerationRequest) -> list[Seed]:
    if request.seed_dataset_id is not None:
        entries = DatasetEntry.objects.filter(dataset__project=project, dataset_id=request.seed_dataset_id)
        chosen = entries.order_by("id").values_list("messages", "tools", "log_id", "id")[: request.max_seeds]
        return [Seed(m or [], t or [], log, entry) for m, t, log, entry in chosen]
    logs = logs_filter(project=project, params=request.seed_filter).order_by("-id")
    matched = logs.values_list("messages", "tools", "id")[: request.max_seeds]
    return [Seed(m or [], t or [], log, None) for m, t, log in matched]


def _last_index(messages: list[dict], role: str) -> int | None:
    return next((i for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == role), None)


def _seeds_plan(project: Project, request: GenerationRequest) -> Plan:
    seeds = _seeds(project, request)
    plan = Plan(calls=[], seeds=len(seeds))
    for seed in seeds:
        messages = [m for m in seed.messages if isinstance(m, dict)]
        user = _last_index(messages, "user")
        if user is None:
            continue  # nothing asked: nothing to re-answer or vary
        where = {"seed_log_id": seed.log_id, "seed_entry_id": seed.entry_id}
        if request.kind == GenerationKind.TEACHER:
            answer = _last_index(messages, "assistant")
            prompt = messages[:answer] if answer is not None and answer > user else messages
            body: dict = {"messages": prompt, **_call_options(request)}
            if seed.tools:
                body["tools"] = seed.tools
            plan.calls.append(Call(request=body, provenance=where, prefix=prompt, original=messages,
                                   seed_log_id=seed.log_id, seed_entry_id=seed.entry_id))  # fmt: skip
            continue
        question = prompts_text(messages[user])
        for style in request.styles:
            content = prompts.render(_template(request), {"prompt": question, "style": prompts.style_text(style),
                                                          "n": request.rows_per_call})  # fmt: skip
            plan.calls.append(Call(
                request={"messages": [{"role": "user", "content": content}], **_call_options(request)},
                provenance=where | {"style": style}, prefix=messages[:user],
                seed_log_id=seed.log_id, seed_entry_id=seed.entry_id,
            ))  # fmt: skip
    return plan


def prompts_text(message: dict) -> str:
    return content_text(message.get("content"))


# --- checking and estimating ------------------------------------------------------------------------------------


def _endpoint(project: Project, endpoint_id: int | None) -> ModelEndpoint | None:
    if endpoint_id is None:
        return None
    return ModelEndpoint.objects.filter(project=project, pk=endpoint_id).first()


def _between(problems: dict, name: str, value: float, low: float, high: float, unit: str = "") -> None:
    if not low <= value <= high:
        problems[name] = f"Between {low:g} and {high:g}{unit}."


def generation_problems(*, project: Project, request: GenerationRequest) -> dict[str, str]:
    """What is wrong with the request, by field name; empty when nothing is."""
    problems: dict[str, str] = {}
    if request.kind not in GenerationKind.values:
        return {"kind": f"One of {', '.join(GenerationKind.values)}."}
    if _endpoint(project, request.endpoint_id) is None:
        problems["endpoint_id"] = "Choose one of the project's model endpoints."
    dataset = Dataset.objects.filter(project=project, pk=request.dataset_id).first()
    if dataset is None:
        problems["dataset_id"] = "Choose one of the project's datasets."
    elif dataset.kind != DatasetKind.CHAT:
        problems["dataset_id"] = "Generated rows are conversations: choose a dataset of conversations, not of pairs."
    _between(problems, "rows_per_call", request.rows_per_call, 1, MAX_ROWS_PER_CALL)
    _between(problems, "max_tokens", request.max_tokens, 1, MAX_TOKENS)
    _between(problems, "temperature", request.temperature, 0, 2)
    _between(problems, "dedup_threshold", request.dedup_threshold, 0.5, 1)
    _between(problems, "min_answer_chars", request.min_answer_chars, 0, 10000)
    _between(problems, "max_row_tokens", request.max_row_tokens, 16, 131072)
    if request.judge_endpoint_id is not None:
        if _endpoint(project, request.judge_endpoint_id) is None:
            problems["judge_endpoint_id"] = "Choose one of the project's model endpoints, or no judge."
        _between(problems, "judge_threshold", request.judge_threshold, 1, 10)
    if problem := prompts.template_problem(request.kind, _template(request)):
        problems["prompt_template"] = problem
    if request.kind == GenerationKind.DOCUMENTS:
        _documents_problems(project, request, problems)
    else:
        _seeds_problems(project, request, problems)
    return problems


def _documents_problems(project: Project, request: GenerationRequest, problems: dict[str, str]) -> None:
    _between(problems, "chunks_per_call", request.chunks_per_call, 1, MAX_CHUNKS_PER_CALL)
    _between(problems, "max_combinations", request.max_combinations, 1, MAX_COMBINATIONS)
    _between(problems, "chunk_chars", request.chunk_chars, 500, 20000, " characters")
    if not 0 <= request.overlap_chars <= request.chunk_chars // 2:
        problems["overlap_chars"] = "Between 0 and half the chunk size."
    documents = list(SourceDocument.objects.filter(project=project, pk__in=request.document_ids))
    if not request.document_ids:
        problems["document_ids"] = "Choose at least one document."
    elif len(documents) != len(set(request.document_ids)):
        problems["document_ids"] = "Some of these are not documents of the project."
    elif not any(document.readable for document in documents):
        problems["document_ids"] = "None of these documents could be read; see each one's reason."


def _seeds_problems(project: Project, request: GenerationRequest, problems: dict[str, str]) -> None:
    _between(problems, "max_seeds", request.max_seeds, 1, MAX_SEEDS)
    if (request.seed_dataset_id is None) == (not request.seed_filter):
        problems["seed_dataset_id"] = "Seeds come from a dataset or from a filter of logs: give one of the two."
    elif request.seed_dataset_id is not None:
        if not Dataset.objects.filter(project=project, pk=request.seed_dataset_id).exists():
            problems["seed_dataset_id"] = "Choose one of the project's datasets."
        elif request.kind == GenerationKind.TEACHER and request.seed_dataset_id != request.dataset_id:
            problems["seed_dataset_id"] = "A teacher revises entries of the dataset it writes to: choose that one."
    else:
        try:
            logs_filter(project=project, params=request.seed_filter)
        except ValidationError as exc:
            problems["seed_filter"] = "; ".join(f"{name}: {' '.join(map(str, errors))}"
                                                for name, errors in exc.message_dict.items())  # fmt: skip
    if request.kind == GenerationKind.VARIATIONS:
        if not request.styles:
            problems["styles"] = "Choose at least one style: paraphrase, harder or language:<name>."
        for style in request.styles:
            try:
                prompts.style_text(style)
            except ValueError as exc:
                problems["styles"] = f"{str(exc)[0].upper()}{str(exc)[1:]}."


def generation_estimate(*, project: Project, request: GenerationRequest) -> GenerationEstimate:
    """Calls, tokens and cost before a job starts. Raises ValidationError naming the field."""
    problems = generation_problems(project=project, request=request)
    if problems:
        raise ValidationError(problems)
    plan = _plan(project, request)
    return _estimate(project, request, plan)


def _estimate(project: Project, request: GenerationRequest, plan: Plan) -> GenerationEstimate:
    endpoint = _endpoint(project, request.endpoint_id)
    assert endpoint is not None  # checked
    calls = len(plan.calls)
    prompt_tokens = sum(est_tokens(_request_text(call.request)) for call in plan.calls)
    completion_max = calls * request.max_tokens
    per_call_rows = 1 if request.kind == GenerationKind.TEACHER else request.rows_per_call
    rows_likely = calls * per_call_rows
    answer_calls = rows_likely if request.kind == GenerationKind.VARIATIONS else 0
    likely = min(completion_max, calls * per_call_rows * COMPLETION_GUESS)
    answer_prompt = answer_calls * COMPLETION_GUESS
    if answer_calls:
        prompt_tokens += answer_prompt
        completion_max += answer_calls * request.max_tokens
        likely += answer_calls * COMPLETION_GUESS * 2
    cost = endpoint_cost_usd(endpoint, prompt_tokens=prompt_tokens, completion_tokens=completion_max)
    cost_likely = endpoint_cost_usd(endpoint, prompt_tokens=prompt_tokens, completion_tokens=likely)
    judge = _endpoint(project, request.judge_endpoint_id)
    judge_calls = rows_likely if judge else 0
    if judge is not None and judge_calls:
        judged_in = judge_calls * (COMPLETION_GUESS * 2 + 200)
        cost = _plus(cost, endpoint_cost_usd(judge, prompt_tokens=judged_in, completion_tokens=judge_calls * 512))
        likely_judged = endpoint_cost_usd(judge, prompt_tokens=judged_in, completion_tokens=judge_calls * 100)
        cost_likely = _plus(cost_likely, likely_judged)
    warnings = []
    if plan.groups_uncapped > plan.groups and request.chunks_per_call > 1:
        warnings.append(f"{plan.groups_uncapped:,} groups of {request.chunks_per_call} chunks are possible; only "
                        f"{plan.groups:,} are sent (the cap, max_combinations): neighbours and chunks under the same "
                        f"heading first.")  # fmt: skip
    if calls == 0:
        warnings.append("Nothing to send: no chunk, or no seed with a user turn.")
    if calls > MAX_CALLS:
        warnings.append(f"{calls:,} calls is over the limit of {MAX_CALLS:,}: choose fewer documents or seeds.")
    unreadable = [d["name"] for d in plan.documents if not d["readable"]]
    if unreadable:
        warnings.append(f"Left out, unreadable: {', '.join(unreadable)}.")
    return GenerationEstimate(
        calls=calls, answer_calls=answer_calls, judge_calls=judge_calls, prompt_tokens=prompt_tokens,
        completion_tokens=completion_max, cost_usd=cost, seeds=plan.seeds, chunks=plan.chunks, groups=plan.groups,
        groups_uncapped=plan.groups_uncapped, warnings=warnings, completion_tokens_likely=likely,
        cost_usd_likely=cost_likely,
    )  # fmt: skip


def _plus(first: Decimal | None, second: Decimal | None) -> Decimal | None:
    """The sum of two costs; None when neither is known (no price), a known one alone otherwise."""
    if first is None and second is None:
        return None
    return (first or Decimal(0)) + (second or Decimal(0))


def _request_text(request: dict) -> str:
    return "\n".join(prompts_text(m) for m in request.get("messages", []) if isinstance(m, dict))


def estimate_dict(estimate: GenerationEstimate) -> dict:
    found = asdict(estimate)
    for name in ("cost_usd", "cost_usd_likely"):
        found[name] = None if found[name] is None else str(round(found[name], 6))
    return found | {"capped": estimate.capped}


# --- starting and stopping --------------------------------------------------------------------------------------


def generation_create(
    *, project: Project, request: GenerationRequest, actor: User | None = None, api_key: ApiKey | None = None
) -> GenerationJob:
    """Start a job: its estimate stored, its task queued. Raises ValidationError naming the field.
    Audited as `generation.create`."""
    estimate = generation_estimate(project=project, request=request)
    if estimate.calls == 0:
        raise ValidationError({"document_ids" if request.kind == GenerationKind.DOCUMENTS else "seed_filter":
                               estimate.warnings[0]})  # fmt: skip
    if estimate.calls > MAX_CALLS:
        raise ValidationError({"max_seeds" if request.kind != GenerationKind.DOCUMENTS else "document_ids":
                               estimate.warnings[-1]})  # fmt: skip
    endpoint = _endpoint(project, request.endpoint_id)
    judge = _endpoint(project, request.judge_endpoint_id)
    dataset = Dataset.objects.get(project=project, pk=request.dataset_id)
    assert endpoint is not None
    with transaction.atomic():
        job = GenerationJob.objects.create(
            project=project, dataset=dataset, dataset_name=dataset.name, kind=request.kind, endpoint=endpoint,
            endpoint_name=str(endpoint), judge=judge, judge_name=str(judge) if judge else "", params=asdict(request),
            estimate=estimate_dict(estimate), total=estimate.calls, created_by=actor, created_by_key=api_key,
            enqueued_at=timezone.now(),
        )  # fmt: skip
        audit_record(project=project, action="generation.create", actor=actor, api_key=api_key,
                     detail={"job_id": job.pk, "kind": job.kind, "endpoint": job.endpoint_name,
                             "dataset": dataset.name, "calls": estimate.calls})  # fmt: skip
        transaction.on_commit(lambda: _send(job.pk))
    return job


def _send(job_id: int) -> None:
    from training.generation.tasks import data_generation_run_task

    task_send_or_fail(data_generation_run_task, job_id, job=GenerationJob.objects.filter(pk=job_id, status="queued"),
                      event="generation.send")  # fmt: skip


def generation_cancel(*, job: GenerationJob, actor: User | None = None, api_key: ApiKey | None = None) -> bool:
    """Ask a queued or running job to stop; False when it had finished. Audited as `generation.cancel`. A queued job
    is cancelled at once; a running one stops starting calls, and keeps (and checks) the rows already written."""
    if job.status in FINISHED:
        return False
    now = timezone.now()
    GenerationJob.objects.filter(pk=job.pk).update(cancel_requested=True)
    GenerationJob.objects.filter(pk=job.pk, status=FineTuneStatus.QUEUED).update(
        status=FineTuneStatus.CANCELLED, finished_at=now
    )
    audit_record(project=job.project, action="generation.cancel", actor=actor, api_key=api_key,
                 detail={"job_id": job.pk})  # fmt: skip
    job.refresh_from_db()
    return True


# --- the run ----------------------------------------------------------------------------------------------------


class _Stopped(Exception):
    pass


def generation_run(*, job_id: int) -> None:
    """The worker's run (training.tasks.data_generation_run_task): the calls, their rows checked by the text filters as
    they arrive; then the near-duplicate search; then the judge. A failure stops the job with its reason and keeps
    every row written."""
    now = timezone.now()
    claimed = GenerationJob.objects.filter(pk=job_id, status=FineTuneStatus.QUEUED).update(
        status=FineTuneStatus.RUNNING, started_at=now, heartbeat_at=now
    )
    if not claimed:
        return
    job = GenerationJob.objects.select_related("project", "endpoint", "judge", "dataset").get(pk=job_id)
    run = _Run(job)
    try:
        run.go()
    except (EndpointRefused, SecretUnreadable, ValidationError, ValueError, OSError) as exc:
        run.finish(FineTuneStatus.FAILED, error=str(exc))
        logger.warning("generation.failed job=%s: %s", job_id, exc)
    except Exception as exc:
        run.finish(FineTuneStatus.FAILED, error=f"Unexpected error: {exc}")
        logger.exception("generation.failed job=%s", job_id)
        raise


class _Run:
    def __init__(self, job: GenerationJob) -> None:
        self.job = job
        self.rows = GenerationJob.objects.filter(pk=job.pk)
        self.request = GenerationRequest(**job.params)
        self.answers_seen = 0
        self.stopped = False
        self.judge_unscored = 0
        self.unwritten: list[GeneratedRow] = []
        self.stage_started: float | None = None
        template = _template(self.request)
        self.manifest: dict = {
            "kind": job.kind, "endpoint": job.endpoint_name, "model": job.endpoint.model if job.endpoint else "",
            "prompt_template": template, "template_sha256": prompts.template_sha256(template),
            "system_prompt": self.request.system_prompt, "seed": self.request.seed,
            "temperature": self.request.temperature, "max_tokens": self.request.max_tokens,
            "judge": job.judge_name, "judge_threshold": self.request.judge_threshold if job.judge_id else None,
            "filters": {"dedup_threshold": self.request.dedup_threshold,
                        "min_answer_chars": self.request.min_answer_chars,
                        "max_row_tokens": self.request.max_row_tokens,
                        "drop_personal_data": self.request.drop_personal_data},
            "dataset": {"id": job.dataset_id, "name": job.dataset_name}, "stage": "calls",
        }  # fmt: skip
        base = {"job_id": job.pk, "kind": job.kind, "endpoint": job.endpoint_name,
                "model": self.manifest["model"], "template_sha256": self.manifest["template_sha256"],
                "seed": self.request.seed}  # fmt: skip
        self.base_provenance = base

    # progress, cancel and the manifest

    def should_stop(self) -> bool:
        self.answers_seen += 1
        if self.answers_seen % STOP_CHECK_EVERY == 0:
            self.stopped = self.stopped or self.rows.filter(cancel_requested=True).exists()
        return self.stopped

    def stage(self, name: str, total: int) -> None:
        self._time_stage()
        self.manifest["stage"] = name
        self.rows.update(manifest=self.manifest, done=0, total=total, heartbeat_at=timezone.now())

    def _time_stage(self) -> None:
        """The seconds the stage that ends now took, in the manifest's `seconds`."""
        now, started = time.monotonic(), self.stage_started
        if started is not None:
            seconds = self.manifest.setdefault("seconds", {})
            seconds[self.manifest["stage"]] = round(now - started, 3)
        self.stage_started = now

    def finish(self, status: str, error: str = "") -> None:
        self._time_stage()
        counts = dict(GeneratedRow.objects.filter(job=self.job).values_list("status").annotate(n=Count("id")))
        dropped = dict(
            GeneratedRow.objects.filter(job=self.job, status=RowStatus.DROPPED)
            .values_list("drop_reason").annotate(n=Count("id"))
        )  # fmt: skip
        job = GenerationJob.objects.get(pk=self.job.pk)
        cost = (
            endpoint_cost_usd(self.job.endpoint, prompt_tokens=job.prompt_tokens,
                              completion_tokens=job.completion_tokens) if self.job.endpoint else None
        )  # fmt: skip
        self.manifest |= {
            "stage": "done", "status": status,
            "counts": {"calls": job.total if self.manifest.get("calls") is None else self.manifest["calls"],
                       "failed_calls": job.failed_calls, "generated": job.generated, "dropped": dropped,
                       "by_status": counts, "judge_unscored": self.judge_unscored},
            "tokens": {"prompt": job.prompt_tokens, "completion": job.completion_tokens},
            "cost_usd": None if cost is None else str(round(cost, 6)),
            "started_at": job.started_at.isoformat() if job.started_at else None,
            "finished_at": timezone.now().isoformat(),
        }  # fmt: skip
        self.rows.update(status=status, error=error[:5000], manifest=self.manifest, finished_at=timezone.now(),
                         dropped=sum(dropped.values()))  # fmt: skip

    def go(self) -> None:
        plan = _plan(self.job.project, self.request)
        self.manifest["documents"] = plan.documents
        self.manifest["calls"] = len(plan.calls)
        self.stage("calls", len(plan.calls))
        self.exact = filters.ExactSeen(self._dataset_hashes())
        target = endpoint_target(self.job.endpoint) if self.job.endpoint else None
        if target is None:
            raise ValueError("The job's endpoint was removed.")
        if self.request.kind == GenerationKind.VARIATIONS:
            prompts_found = self._calls(target, plan.calls, self._variation_prompts)
            self.stage("answers", len(prompts_found))
            self._calls(target, [call for call, _ in prompts_found], self._answered_variation,
                        items=[text for _, text in prompts_found])  # fmt: skip
        else:
            self._calls(target, plan.calls, self._rows_of_answer)
        self._near_duplicates()
        self._judge()
        self.finish(FineTuneStatus.CANCELLED if self.stopped else FineTuneStatus.SUCCEEDED)

    def _calls(
        self, target: EndpointTarget, calls: list[Call], handle: Callable, *, items: list | None = None
    ) -> list:
        found: list = []
        requests = [call.request for call in calls]

        def answered(answer: ChatAnswer) -> None:
            call = calls[answer.index]
            item = items[answer.index] if items is not None else None
            found.extend(handle(call, answer, item))
            generated, dropped = self._flush()
            self.rows.update(
                done=F("done") + 1, failed_calls=F("failed_calls") + (1 if answer.error else 0),
                prompt_tokens=F("prompt_tokens") + (answer.prompt_tokens or 0),
                completion_tokens=F("completion_tokens") + (answer.completion_tokens or 0),
                generated=F("generated") + generated, dropped=F("dropped") + dropped, heartbeat_at=timezone.now(),
            )  # fmt: skip

        chat_many(target, requests, on_answer=answered, should_stop=self.should_stop)
        return found

    # rows

    def _write(self, call: Call, messages: list[dict] | None, provenance: dict, drop: filters.Drop | None,
               *, original: list[dict] | None = None) -> None:  # fmt: skip
        """A row of the answer being read, checked by the text filters; written with the answer's others."""
        if drop is None and messages is not None:
            drop = filters.text_drop(
                messages, min_answer_chars=self.request.min_answer_chars,
                max_row_tokens=self.request.max_row_tokens, drop_personal_data=self.request.drop_personal_data,
            )  # fmt: skip
        row = GeneratedRow(job=self.job, messages=messages or [], original=original, provenance=provenance,
                           seed_log_id=call.seed_log_id, seed_entry_id=call.seed_entry_id)  # fmt: skip
        if drop is not None:
            row.status, row.drop_reason, row.drop_detail = RowStatus.DROPPED, drop.reason, drop.detail[:2000]
        self.unwritten.append(row)

    def _flush(self) -> tuple[int, int]:
        """Write the rows of one answer in one statement, then drop those with the same text as a row kept before
        or an entry of the dataset. Returns (rows with a conversation, rows dropped)."""
        rows, self.unwritten = self.unwritten, []
        if not rows:
            return 0, 0
        GeneratedRow.objects.bulk_create(rows)
        dropped = sum(row.status == RowStatus.DROPPED for row in rows)
        if self.request.kind != GenerationKind.TEACHER:  # a revision of its seed is meant to be alike
            for row in rows:
                if row.status != RowStatus.CHECKING:
                    continue
                if drop := self.exact.drop(row.messages, f"row {row.pk} of this job"):
                    GeneratedRow.objects.filter(pk=row.pk).update(status=RowStatus.DROPPED, drop_reason=drop.reason,
                                                                  drop_detail=drop.detail)  # fmt: skip
                    dropped += 1
        return sum(bool(row.messages) and not row.provenance.get("raw") for row in rows), dropped

    def _failed(self, call: Call, answer: ChatAnswer, provenance: dict) -> list:
        """A failed call or an unreadable answer is kept as a dropped row saying why (and what was answered)."""
        reason = filters.CALL_FAILED if answer.error else filters.MALFORMED
        detail = answer.error or "the answer holds no readable JSON"
        raw = [] if answer.error else [{"role": "assistant", "content": answer.text}]
        self._write(call, raw, provenance | {"raw": True}, filters.Drop(reason, detail))
        return []

    def _rows_of_answer(self, call: Call, answer: ChatAnswer, _item: object) -> list:
        provenance = self.base_provenance | call.provenance
        if answer.error or answer.message is None:
            return self._failed(call, answer, provenance)
        if self.request.kind == GenerationKind.TEACHER:
            message = {k: v for k, v in answer.message.items() if v not in (None, [], "") or k == "content"}
            message["role"] = "assistant"
            self._write(call, [*call.prefix, message], provenance, None, original=call.original)
            return []
        parsed = prompts.parse_pairs(answer.text)
        if not parsed.items:
            self._write(call, [{"role": "assistant", "content": answer.text}], provenance | {"raw": True},
                        filters.Drop(filters.MALFORMED, parsed.problem))  # fmt: skip
            return []
        for number, (question, reply) in enumerate(parsed.items):
            messages = [*call.prefix, {"role": "user", "content": question}, {"role": "assistant", "content": reply}]
            self._write(call, messages, provenance | {"pair": number}, None)
        if parsed.problem:
            self._write(call, [{"role": "assistant", "content": answer.text}], provenance | {"raw": True},
                        filters.Drop(filters.MALFORMED, parsed.problem))  # fmt: skip
        return []

    def _variation_prompts(self, call: Call, answer: ChatAnswer, _item: object) -> list[tuple[Call, str]]:
        """The new requests of a variations answer, each to be answered in the second stage."""
        provenance = self.base_provenance | call.provenance
        if answer.error or answer.message is None:
            return self._failed(call, answer, provenance)
        parsed = prompts.parse_prompts(answer.text)
        if not parsed.items:
            self._write(call, [{"role": "assistant", "content": answer.text}], provenance | {"raw": True},
                        filters.Drop(filters.MALFORMED, parsed.problem))  # fmt: skip
            return []
        found = []
        for number, text in enumerate(parsed.items):
            messages = [*call.prefix, {"role": "user", "content": text}]
            follow = Call(request={"messages": messages, **_call_options(self.request)},
                          provenance=call.provenance | {"variation": number}, prefix=messages,
                          seed_log_id=call.seed_log_id, seed_entry_id=call.seed_entry_id)  # fmt: skip
            found.append((follow, text))
        return found

    def _answered_variation(self, call: Call, answer: ChatAnswer, _text: object) -> list:
        provenance = self.base_provenance | call.provenance
        if answer.error or answer.message is None:
            self._write(call, call.prefix, provenance, filters.Drop(filters.CALL_FAILED, answer.error))
            return []
        self._write(call, [*call.prefix, {"role": "assistant", "content": answer.text}], provenance, None)
        return []

    def _dataset_hashes(self) -> dict[int, str]:
        if self.request.kind == GenerationKind.TEACHER or self.job.dataset_id is None:
            return {}
        entries = DatasetEntry.objects.filter(dataset_id=self.job.dataset_id).values_list("id", "messages")
        return {filters.normalised_hash(messages): f"entry {pk} of the dataset"
                for pk, messages in entries.iterator(chunk_size=2000)}  # fmt: skip

    # the near-duplicate search

    def _near_duplicates(self) -> None:
        checking = GeneratedRow.objects.filter(job=self.job, status=RowStatus.CHECKING).order_by("id")
        if self.request.kind == GenerationKind.TEACHER:  # a revision of its seed: the seed is meant to be alike
            return
        rows = list(checking.values_list("id", "messages", "seed_log_id"))
        if not rows:
            return
        self.stage("deduplicating", len(rows))
        vectors = embed([text_of_conversation(messages) for _, messages, _ in rows], progress=self._embedded)
        references = [self._dataset_reference(), self._index_reference()]
        drops = filters.near_duplicate_drops(
            vectors, references=[r for r in references if r is not None], threshold=self.request.dedup_threshold,
            labels=[f"row {pk} of this job" for pk, _, _ in rows], leave_out=[seed for _, _, seed in rows],
        )  # fmt: skip
        for (pk, _, _), drop in zip(rows, drops, strict=True):
            if drop is not None:
                GeneratedRow.objects.filter(pk=pk).update(status=RowStatus.DROPPED, drop_reason=drop.reason,
                                                          drop_detail=drop.detail)  # fmt: skip
        self.rows.update(done=len(rows), dropped=F("dropped") + sum(d is not None for d in drops))

    def _embedded(self, done: int, total: int) -> None:
        self.rows.update(done=done, heartbeat_at=timezone.now())

    def _dataset_reference(self) -> filters.Reference | None:
        if self.job.dataset_id is None:
            return None
        stored = EntryEmbedding.objects.filter(entry__dataset_id=self.job.dataset_id).values_list("entry_id", "vector")
        pairs = list(stored[:MAX_DATASET_EMBEDDED])
        have = {pk for pk, _ in pairs}
        missing = list(
            DatasetEntry.objects.filter(dataset_id=self.job.dataset_id).exclude(pk__in=have)
            .order_by("id").values_list("id", "messages")[: max(0, MAX_DATASET_EMBEDDED - len(pairs))]
        )  # fmt: skip
        parts, labels = [], []
        if pairs:
            parts.append(chunk_matrix([(pk, bytes(vector)) for pk, vector in pairs]))
            labels += [f"entry {pk} of the dataset" for pk, _ in pairs]
        if missing:
            parts.append(embed([text_of_conversation(messages) for _, messages in missing]))
            labels += [f"entry {pk} of the dataset" for pk, _ in missing]
        if not parts:
            return None
        return filters.Reference(np.vstack(parts).astype(np.float32), labels)

    def _index_reference(self) -> filters.Reference | None:
        state = index_state(project=self.job.project)
        if not state.size:
            return None
        found = index_matrix(project=self.job.project, state=state)
        return filters.Reference(found.vectors, _LogLabels(found.ids), ids=found.ids)  # type: ignore[arg-type]

    # the judge

    def _judge(self) -> None:
        if self.job.judge is None or self.stopped:
            GeneratedRow.objects.filter(job=self.job, status=RowStatus.CHECKING).update(status=RowStatus.PENDING)
            return
        rows = list(GeneratedRow.objects.filter(job=self.job, status=RowStatus.CHECKING).order_by("id"))
        self.stage("judging", len(rows))
        target = endpoint_target(self.job.judge)
        rubric = self.job.params.get("judge_rubric", "")
        threshold = self.request.judge_threshold

        def scored(answer: ChatAnswer) -> None:
            row = rows[answer.index]
            score = filters.score_of(answer.text) if not answer.error else None
            changes: dict = {"judge_score": score, "status": RowStatus.PENDING}
            if score is None:
                self.judge_unscored += 1
            elif score < threshold:
                changes |= {"status": RowStatus.DROPPED, "drop_reason": filters.JUDGE,
                            "drop_detail": f"scored {score:g} out of 10, under {threshold:g}"}  # fmt: skip
            GeneratedRow.objects.filter(pk=row.pk).update(**changes)
            self.rows.update(done=F("done") + 1, dropped=F("dropped") + int(changes["status"] == RowStatus.DROPPED),
                             heartbeat_at=timezone.now())  # fmt: skip

        chat_many(target, [filters.judge_request(row.messages, rubric) for row in rows], on_answer=scored,
                  should_stop=self.should_stop)  # fmt: skip
        # Rows the judge never saw (cancelled) wait for review unscored.
        GeneratedRow.objects.filter(job=self.job, status=RowStatus.CHECKING).update(status=RowStatus.PENDING)


class _LogLabels:
    """ "log <id>" for a row of the index, computed when asked: the index may hold a million rows."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids

    def __getitem__(self, index: int) -> str:
        return f"log {int(self.ids[index])} of the project"

    def __len__(self) -> int:
        return len(self.ids)


def generation_jobs_reap() -> int:
    """Fail the running jobs whose worker has written nothing for LOGTUNE_GENERATION_HEARTBEAT_TIMEOUT_S (it died,
    or its machine did), keeping the rows they wrote for review. They are not run again by themselves: their calls
    were paid for, and a new job for what is left is the user's choice. Returns how many were failed."""
    stale = timezone.now() - timedelta(seconds=settings.LOGTUNE_GENERATION_HEARTBEAT_TIMEOUT_S)
    reaped = 0
    for job in GenerationJob.objects.filter(status=FineTuneStatus.RUNNING, heartbeat_at__lt=stale):
        GeneratedRow.objects.filter(job=job, status=RowStatus.CHECKING).update(status=RowStatus.PENDING)
        reaped += GenerationJob.objects.filter(pk=job.pk, status=FineTuneStatus.RUNNING).update(
            status=FineTuneStatus.FAILED, finished_at=timezone.now(),
            error=f"The worker stopped: nothing was written for {settings.LOGTUNE_GENERATION_HEARTBEAT_TIMEOUT_S} s. "
            "The rows written before wait for review, unchecked for near-duplicates; start a new job for the rest.",
        )  # fmt: skip
    if reaped:
        logger.warning("generation.reaped jobs=%s", reaped)
    return reaped


# --- review -----------------------------------------------------------------------------------------------------


def _reviewed(row: GeneratedRow, status: str, actor: User | None, api_key: ApiKey | None) -> None:
    row.status, row.reviewed_by, row.reviewed_by_key, row.reviewed_at = status, actor, api_key, timezone.now()


def _clean_messages(messages: object) -> list[dict]:
    try:
        parsed = parse_log({"messages": messages})
    except IngestError as exc:
        raise ValidationError({"messages": str(exc)}) from None
    if parsed.notes:
        raise ValidationError({"messages": parsed.notes[0].replace("replaced by U+FFFD", "cannot be stored")})
    return parsed.messages


def row_update(
    *, row: GeneratedRow, messages: object, actor: User | None = None, api_key: ApiKey | None = None
) -> GeneratedRow:
    """A reviewer's edit of a row not yet accepted, checked like an entry edit (ValidationError on `messages`)."""
    if row.status == RowStatus.ACCEPTED:
        raise ValidationError({"messages": "The row was accepted: edit its entry in the dataset instead."})
    row.messages, row.edited = _clean_messages(messages), True
    row.save(update_fields=["messages", "edited"])
    _audit(row, "generation.row_update", actor, api_key)
    return row


def _audit(row: GeneratedRow, action: str, actor: User | None, api_key: ApiKey | None) -> None:
    audit_record(project=row.job.project, action=action, actor=actor, api_key=api_key,
                 detail={"job_id": row.job_id, "row_id": row.pk})  # fmt: skip


@transaction.atomic
def row_accept(
    *, row: GeneratedRow, messages: object = None, actor: User | None = None, api_key: ApiKey | None = None
) -> GeneratedRow:
    """Accept a pending (or rejected, or dropped) row, edited first when `messages` is given: a synthetic entry
    added to the job's dataset with the row's provenance, or, for a teacher's re-answer, the seed entry revised
    (the seed log added to the dataset first when it was not in it). ValidationError when the dataset is gone."""
    row = (
        GeneratedRow.objects.select_for_update(of=("self",))
        .select_related("job__dataset", "job__project")
        .get(pk=row.pk)
    )
    if row.status == RowStatus.ACCEPTED:
        return row
    if messages is not None:
        row.messages, row.edited = _clean_messages(messages), True
    dataset = row.job.dataset
    if dataset is None:
        raise ValidationError({"dataset": "The job's dataset was deleted: there is nowhere to add the row."})
    if row.provenance.get("raw") and not row.edited:
        raise ValidationError({"messages": "This row is an answer that could not be read: edit it into a "
                                           "conversation first."})  # fmt: skip
    provenance = row.provenance | {"row_id": row.pk, "reviewed_edit": row.edited}
    if row.job.kind == GenerationKind.TEACHER:
        row.entry = _revise(row, dataset, provenance, actor, api_key)
    else:
        row.entry = dataset_entries_add_synthetic(dataset=dataset, rows=[(row.messages, provenance)], actor=actor,
                                                  api_key=api_key)[0]  # fmt: skip
    _reviewed(row, RowStatus.ACCEPTED, actor, api_key)
    row.save()
    _audit(row, "generation.accept", actor, api_key)
    return row


def _revise(row: GeneratedRow, dataset: Dataset, provenance: dict, actor: User | None,
            api_key: ApiKey | None) -> DatasetEntry:  # fmt: skip
    """The teacher's answer as a revision of the seed's entry in the dataset; its log keeps the original."""
    entry = DatasetEntry.objects.filter(dataset=dataset, pk=row.seed_entry_id).first() if row.seed_entry_id else None
    if entry is None and row.seed_log_id is not None:
        dataset_add_logs(dataset=dataset, logs=LogEntry.objects.filter(pk=row.seed_log_id))
        entry = DatasetEntry.objects.filter(dataset=dataset, log_id=row.seed_log_id).first()
    if entry is None:
        raise ValidationError({"entry": "The seed this row re-answers is gone (its entry or log was deleted)."})
    if entry.log_id is None:  # no log holds what it said before: the revision keeps it
        provenance = provenance | {"original": entry.messages}
    entry = entry_update(entry=entry, messages=row.messages, tools=entry.tools, actor=actor, api_key=api_key)
    DatasetEntry.objects.filter(pk=entry.pk).update(synthetic=True, provenance=provenance | {"revision": "teacher"})
    entry.refresh_from_db()
    return entry


def row_reject(*, row: GeneratedRow, actor: User | None = None, api_key: ApiKey | None = None) -> GeneratedRow:
    """Reject a row not yet accepted; an accepted row stays accepted (delete its entry from the dataset)."""
    if row.status == RowStatus.ACCEPTED:
        raise ValidationError({"status": "The row was accepted: delete its entry from the dataset instead."})
    _reviewed(row, RowStatus.REJECTED, actor, api_key)
    row.save(update_fields=["status", "reviewed_by", "reviewed_by_key", "reviewed_at"])
    _audit(row, "generation.reject", actor, api_key)
    return row


@dataclass
class RowFilter:
    """Which rows of a job a bulk acceptance takes: the pending ones, optionally only those a judge scored at least
    `min_judge_score`, from one document, or of one style."""

    min_judge_score: float | None = None
    document_id: int | None = None
    style: str = ""


def rows_matching(*, job: GenerationJob, row_filter: RowFilter) -> QuerySet[GeneratedRow]:
    rows = GeneratedRow.objects.filter(job=job, status=RowStatus.PENDING)
    if row_filter.min_judge_score is not None:
        rows = rows.filter(judge_score__gte=row_filter.min_judge_score)
    # The provenance column is `json` (it keeps the keys' order), which compares as text only: ->> on both.
    if row_filter.document_id is not None:
        rows = rows.annotate(document_key=_text(KT("provenance__document__id"))).filter(
            document_key=str(row_filter.document_id)
        )
    if row_filter.style:
        rows = rows.annotate(style_key=_text(KT("provenance__style"))).filter(style_key=row_filter.style)
    return rows.order_by("id")


def _text(expression: Any) -> Cast:
    return Cast(expression, output_field=CharField())


def rows_accept_bulk(
    *, job: GenerationJob, row_filter: RowFilter, expected: int | None = None, actor: User | None = None,
    api_key: ApiKey | None = None,
) -> int:  # fmt: skip
    """Accept every pending row the filter takes; `expected` (the count the user confirmed) must match, or
    ValidationError. Returns how many were accepted. Audited as `generation.accept_bulk`."""
    rows = rows_matching(job=job, row_filter=row_filter)
    count = rows.count()
    if expected is not None and expected != count:
        raise ValidationError({"expected": f"{count} rows match now, not {expected}: look again and confirm."})
    if job.dataset_id is None:
        raise ValidationError({"dataset": "The job's dataset was deleted: there is nowhere to add the rows."})
    accepted = 0
    for batch in _batches(rows.values_list("id", flat=True), BULK_BATCH):
        with transaction.atomic():
            chosen = list(GeneratedRow.objects.select_for_update().filter(pk__in=batch, status=RowStatus.PENDING)
                          .order_by("id"))  # fmt: skip
            if job.kind == GenerationKind.TEACHER:
                for row in chosen:
                    row_accept(row=row, actor=actor, api_key=api_key)
            else:
                entries = dataset_entries_add_synthetic(
                    dataset=job.dataset, actor=actor, api_key=api_key,  # type: ignore[arg-type]
                    rows=[(row.messages, row.provenance | {"row_id": row.pk, "reviewed_edit": row.edited})
                          for row in chosen],
                )  # fmt: skip
                now = timezone.now()
                for row, entry in zip(chosen, entries, strict=True):
                    row.entry, row.status, row.reviewed_by, row.reviewed_by_key, row.reviewed_at = (
                        entry, RowStatus.ACCEPTED, actor, api_key, now)  # fmt: skip
                GeneratedRow.objects.bulk_update(chosen, ["entry", "status", "reviewed_by", "reviewed_by_key",
                                                          "reviewed_at"])  # fmt: skip
            accepted += len(chosen)
    audit_record(project=job.project, action="generation.accept_bulk", count=accepted, actor=actor, api_key=api_key,
                 detail={"job_id": job.pk, "filter": asdict(row_filter)})  # fmt: skip
    return accepted


def _batches(ids: QuerySet, size: int) -> Iterator[list[int]]:
    batch: list[int] = []
    for pk in ids.iterator(chunk_size=size):
        batch.append(pk)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
