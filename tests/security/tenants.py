"""The world of the security tests: every route of the URLconf, two projects with one of everything each,
and requests that leave nothing behind."""

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from unittest.mock import patch

import numpy as np
from celery import Task
from django.conf import settings
from django.db import connection, transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from curation.datasets.export.snapshots import snapshot_request
from curation.logs.services import logs_ingest
from curation.models import (
    BulkJob,
    Dataset,
    DatasetEntry,
    ImportJob,
    JobStatus,
    LogEmbedding,
    LogEntry,
    Project,
    RedactionJob,
    Role,
    SavedView,
    Tag,
    Topic,
    TopicJob,
    TopicMembership,
)
from curation.projects.services import api_key_create
from curation.text.embeddings import DIMENSION, vector_bytes
from tests.factories import BaseModelFactory, ProjectFactory, UserFactory
from training.endpoints.secrets import secret_encrypt
from training.finetunes.services import finetune_create
from training.forms import ADVANCED, MAIN
from training.generation.documents import document_upload
from training.models import (
    Deployment,
    DeploymentStatus,
    EvaluationRun,
    FineTuneJob,
    FineTuneStatus,
    GeneratedRow,
    Generation,
    GenerationJob,
    LossPreview,
    MetricPoint,
    ModelEndpoint,
    ProxyRoute,
    RegressionSet,
    RouteCall,
    RouteMode,
    RowStatus,
    Side,
)
from training.trainer.config import TrainConfig

# Routes outside the tenant model: sign-in, the admin (Django's own staff checks), the public API description.
# The logging proxy's routes are authenticated by the X-Logtune-Key header alone (no session, no Bearer key);
# tests/proxy covers their keys, roles and projects.
PUBLIC = {
    "login", "logout", "api-schema", "api-docs", "api-redoc", "healthz",
    "proxy-openai-chat", "proxy-openai-responses", "proxy-anthropic-messages",
}  # fmt: skip

# What a path parameter names, from the segment in front of it (`job_id` is an import, a bulk job or a fine-tune).
OBJECT_OF_SEGMENT = {
    "logs": "log", "imports": "import", "bulk-jobs": "bulk", "jobs": "bulk", "datasets": "dataset",
    "entries": "entry", "tags": "tag", "snapshots": "snapshot", "finetunes": "finetune", "keys": "key",
    "views": "view", "generations": "generation", "loss-preview": "preview", "redaction-jobs": "redaction",
    "endpoints": "endpoint", "evaluations": "evaluation", "deployments": "deployment", "routes": "route",
    "scores": "score", "evaluation-sets": "regression_set", "regression-sets": "regression_set",
    "topics": "topic", "topic-jobs": "topic_job", "documents": "document", "generation-jobs": "generation_job",
    "generate": "generation_job", "generation-rows": "generation_row",
}  # fmt: skip


@dataclass(frozen=True)
class Route:
    name: str
    pattern: str  # Django route syntax, from the root
    is_api: bool

    def url(self, objects: dict[str, int], slug: str) -> str:
        def fill(match: re.Match) -> str:
            param = match.group(2)
            if param == "slug":
                return slug
            return str(objects[self.object_for(param, match.start())])

        return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", fill, self.pattern)

    def object_for(self, param: str, position: int) -> str:
        segment = self.pattern[:position].rstrip("/").rsplit("/", 1)[-1]
        return OBJECT_OF_SEGMENT[segment]

    @property
    def has_objects(self) -> bool:
        return bool(re.search(r"<int:\w+>", self.pattern))


def _walk(patterns: list, prefix: str = "") -> Iterator[Route]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if str(entry.pattern).startswith("admin/"):
                continue
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern) and entry.name not in PUBLIC:
            pattern = prefix + str(entry.pattern)
            yield Route(name=entry.name or pattern, pattern=pattern, is_api=pattern.startswith("api/"))


ROUTES = sorted(_walk(get_resolver().url_patterns), key=lambda r: r.pattern)


# A fine-tune form filled with TrainConfig's defaults: each hyperparameter is then made hostile on its own.
FINETUNE = {"base_model": "tiny", "method": "lora"} | {
    f.name: str(f.default) for f in fields(TrainConfig)
    if f.name in (*MAIN, *ADVANCED) and not any(f.default is nothing for nothing in (MISSING, None, False))
}  # fmt: skip
ENDPOINT = {"name": "fuzzed", "base_url": "https://api.openai.com/v1", "model": "m", "max_concurrency": "8",
            "timeout_s": "120"}  # fmt: skip
# Valid parameters that lead a page down its paths (`{log}`: the tenant's log id): a form whose fields are valid,
# so that a hostile value in one of them reaches the service behind it (test_page_parameters), and a GET that
# would do work behind a parameter does it (the matrix asks GETs with these too).
BASELINES = {
    "bulk-preview": [{"action": "dataset_add", "scope": "selected", "ids": "{log}"}],
    "bulk-run": [{"action": "dataset_add", "scope": "matching", "expected": "1", "dataset": "{dataset}"}],
    "dataset": [{}, {"loss_job": "{finetune}"}],
    "dataset-entry": [{"m-role": "user", "m-content": "hi", "m-kind": "text", "m-tool_calls": "",
                       "m-tool_call_id": "", "m-extra": ""}],
    "dataset-entries-action": [{"action": "delete", "ids": "{entry}"}],
    "dataset-split": [{"validation_ratio": "0.2", "seed": "1"}],
    "dataset-new": [{"name": "fuzzed"}],
    "dataset-edit": [{"name": "fuzzed"}],
    "dataset-finetune": [FINETUNE],
    "dataset-finetune-estimate": [FINETUNE],
    "dataset-entry-loss-preview": [{"base_model": "tiny"}],
    "finetune-playground": [{"prompt": "hi", "max_new_tokens": "8"}],
    "saved-view-new": [{"name": "fuzzed", "query": "q=x"}],
    "api-key-new": [{"name": "fuzzed", "role": "viewer"}],
    "tag-edit": [{"name": "fuzzed"}],
    "tag-merge": [{"into": "{tag}"}],
    "finetune-evaluate": [{"judge": "", "max_examples": "5", "max_new_tokens": "8", "rubric": "",
                           "retention_examples": "5", "slice_key": "tier"}],
    "finetune-evaluation-estimate": [{"judge": "", "max_examples": "5", "max_new_tokens": "8",
                                      "retention_examples": "5"}],
    "evaluation-sets": [{"dataset": "{dataset}"}],
    "endpoints": [ENDPOINT],
    "endpoint-edit": [ENDPOINT],
    "log-score-add": [{"name": "quality", "value": "4", "comment": "fuzzed"}],
    "finetune-evaluation-vote": [{"example": "0", "choice": "1", "at": "0"}],
    "project-promotion-rule": [{"min_teacher_win_rate": "45", "min_teacher_win_rate_low": "40",
                                "min_base_win_rate": "", "max_retention_loss_increase": "2",
                                "no_flagged_slices": "on", "min_judged_examples": "30"}],
    "finetunes": [{"sort": "-win_rate"}],
    "finetunes-compare": [{"ids": "{finetune},{compared_finetune}"}],
    "finetune-deploy": [{"name": "fuzzed", "force": "on", "reason": "fuzzed"}],
    "serving": [{"name": "fuzzed", "deployment": "{deployment}", "mode": "canary", "share": "5", "timeout_ms": "10000",
                 "check_json": "on", "judge": "{endpoint}", "judge_sample": "10", "position": "0"}],
    "serving-route": [{"window": "7d"}],
    "serving-route-promote": [{"share": "50"}],
    "topics": [{"sort": "cost"}],
    "topics-compute": [{"k": "3"}],
    "topic-dataset": [{"name": "fuzzed"}],
    "generation": [{"kind": "documents", "endpoint": "{endpoint}", "dataset": "{dataset}", "documents": "{document}",
                    "rows_per_call": "3", "chunks_per_call": "1", "max_combinations": "10", "max_seeds": "5",
                    "max_tokens": "64", "temperature": "0.5", "seed": "0", "dedup_threshold": "0.9",
                    "min_answer_chars": "5", "judge_threshold": "7", "action": "estimate"}],
    "generation-job": [{}, {"status": "dropped"}, {"reason": "personal_data", "min_score": "5", "style": "x"}],
    "generation-job-accept": [{"expected": "2"}],
    "generation-review": [{}, {"row": "{generation_row}"}],
    "generation-row-decide": [{"decision": "reject"}],
}  # fmt: skip
# Operations only a person may make: an API key acts for the project, not for anyone, and is refused (403).
PERSONS_ONLY = {
    ("api-finetune-evaluation-votes", "POST"): "a vote is one person's verdict, counted per person",
}


def baselines(route: Route, objects: dict[str, int]) -> list[dict[str, str]]:
    """The route's BASELINES (or no parameters) with the object ids filled in."""
    found = BASELINES.get(route.name, [{}])
    return [{name: value.format(**objects) for name, value in params.items()} for params in found]


# --- The world: two projects, each with one of everything -----------------------------------------------


@dataclass
class Tenant:
    project: Project
    marker: str
    objects: dict[str, int]
    users: dict[str, object]
    keys: dict[str, str]


def tenant_create(slug: str) -> Tenant:
    marker = f"secret-of-{slug}-{'x' * 6}"
    project = ProjectFactory(slug=slug, name=slug.title())
    users = {role: UserFactory(username=f"{slug}-{role}", memberships=[(project, role)]) for role in Role.values}
    keys = {role: api_key_create(project=project, name=f"{slug} {role}", role=role)[1] for role in Role.values}
    chat = [{"role": "user", "content": f"What is {marker}?"}, {"role": "assistant", "content": f"It is {marker}."}]
    scores = [{"name": "quality", "value": 4, "comment": f"rated {marker}"}]
    logs_ingest(project=project, items=[{"messages": chat, "tags": [f"tag-{marker}"], "scores": scores}])
    log = LogEntry.objects.get(project=project)
    dataset = Dataset.objects.create(project=project, name=f"dataset {marker}")
    entry = DatasetEntry.objects.create(dataset=dataset, log=log, messages=chat, est_tokens=10)
    DatasetEntry.objects.create(dataset=dataset, messages=chat, split="validation", est_tokens=10)
    snapshot = snapshot_request(dataset=dataset)
    base = BaseModelFactory(name="tiny")  # one for both tenants
    job = finetune_create(dataset=dataset, base_model=base, hyperparameters={"max_steps": 2}, snapshot=snapshot)
    # What the trainer reported, stored as an earlier version stored it: with the server's absolute paths.
    summary = {"done": {"step": 2, "adapter_dir": str(job.adapter_dir)}}
    FineTuneJob.objects.filter(pk=job.pk).update(
        status=FineTuneStatus.SUCCEEDED, merge_status=FineTuneStatus.SUCCEEDED, summary=summary
    )
    for folder in (job.adapter_dir, job.merged_dir):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "adapter_config.json").write_text(f'{{"marker": "{marker}"}}')
    (job.output_dir / "train.log").write_text(f"step 1 {marker}\nsaved {job.adapter_dir}/adapter_model.safetensors\n")
    generation = Generation.objects.create(job=job, messages=chat[:1], status=FineTuneStatus.SUCCEEDED)
    compared = _compared_finetune(job, marker, chat)
    # Of an earlier version of the entry: asking for the entry's preview again would queue a new one.
    preview = LossPreview.objects.create(
        entry=entry,
        base_model="tiny",
        status=FineTuneStatus.SUCCEEDED,
        created_at=entry.updated_at - timedelta(days=1),
    )
    answered = {"prompt": chat[:1], "reference": marker, "base": marker, "tuned": marker, "verdict_teacher": 1.0}
    objects = {
        "log": log.pk,
        "tag": Tag.objects.get(project=project).pk,
        "score": log.scores.get().pk,
        "dataset": dataset.pk,
        "entry": entry.pk,
        "snapshot": snapshot.pk,
        "finetune": job.pk,
        "compared_finetune": compared.pk,
        "generation": generation.pk,
        "preview": preview.pk,
        "import": ImportJob.objects.create(project=project, source_name=f"{marker}.jsonl").pk,
        "bulk": BulkJob.objects.create(project=project, action="tag_add", query=f"q={marker}").pk,
        "view": SavedView.objects.create(project=project, name=f"view {marker}", query=f"q={marker}").pk,
        "redaction": RedactionJob.objects.create(dataset=dataset, kinds=["EMAIL"], error=marker).pk,
        "key": project.api_keys.first().pk,  # type: ignore[union-attr]
        "regression_set": RegressionSet.objects.create(project=project, snapshot=snapshot).pk,
        # Finished, with a verdict, so that its vote page shows a ballot (the audit tests queue it again to cancel it).
        "evaluation": EvaluationRun.objects.create(job=job, status=FineTuneStatus.SUCCEEDED, examples=[answered]).pk,
        # A URL no setting allows: checking it answers at once, without a call.
        "endpoint": ModelEndpoint.objects.create(
            project=project,
            name=f"endpoint {marker}",
            base_url="http://127.0.0.1:9/v1",
            model=f"model-{marker}",
            api_key_encrypted=secret_encrypt(f"sk-{marker}"),
            api_key_hint="…xxxx",
        ).pk,
    }
    objects |= _served(compared, marker, log)
    objects |= _topics(project, marker, log)
    objects |= _generated(project, marker, dataset, objects["endpoint"], log)
    return Tenant(project=project, marker=marker, objects=objects, users=users, keys=keys)


def _served(job: FineTuneJob, marker: str, log: LogEntry) -> dict[str, int]:
    """The second fine-tune deployed past the gate (the first stays free to delete), a canary route to it at 5%,
    and a call of that route whose provider side is the tenant's log."""
    LogEntry.objects.filter(pk=log.pk).update(external_id=f"proxy-{marker}")
    deployment = Deployment.objects.create(
        project=job.project, job=job, name="served", served_name=f"ft:{job.project.slug}/served",
        status=DeploymentStatus.SERVING, forced=True, reason=f"forced {marker}",
    )  # fmt: skip
    route = ProxyRoute.objects.create(project=job.project, name=f"route-{job.project.slug}", deployment=deployment,
                                      mode=RouteMode.CANARY, share=0.05, match_model=f"model-{marker}")  # fmt: skip
    RouteCall.objects.create(
        route=route, mode=RouteMode.CANARY, served_by=Side.PROVIDER, fallback=f"timeout {marker}",
        provider_status=200, provider_ms=800.0, provider_log=f"proxy-{marker}", provider_model="gpt-4o-mini",
        finetune_status=200, finetune_ms=300.0,
    )  # fmt: skip
    return {"deployment": deployment.pk, "route": route.pk}


def _topics(project: Project, marker: str, log: LogEntry) -> dict[str, int]:
    """The log indexed, and a computation of the topics that put it in a topic named after the marker."""
    LogEmbedding.objects.create(
        project=project, log=log, vector=vector_bytes(np.eye(1, DIMENSION, dtype=np.float32)[0]), text_hash="0" * 64
    )
    job = TopicJob.objects.create(project=project, status=JobStatus.SUCCEEDED, k=1, logs=1, done=100,
                                  finished_at=log.created_at, error=f"none {marker}")  # fmt: skip
    topic = Topic.objects.create(job=job, number=1, label=f"topic {marker}", terms=[marker], size=1, tokens=10,
                                 trend=[1] + [0] * 13, trend_end=log.created_at.date())  # fmt: skip
    TopicMembership.objects.create(topic=topic, log=log)
    return {"topic": topic.pk, "topic_job": job.pk}


def _generated(project: Project, marker: str, dataset: Dataset, endpoint_id: int, log: LogEntry) -> dict[str, int]:
    """A document, and a generation job still running on it with two rows waiting for review and one dropped."""
    document, _ = document_upload(
        project=project, name=f"{marker}.md", data=f"# {marker}\n\nAll about {marker}.".encode()
    )
    job = GenerationJob.objects.create(
        project=project, dataset=dataset, dataset_name=dataset.name, kind="documents", endpoint_id=endpoint_id,
        endpoint_name=f"endpoint {marker}", params={"document_ids": [document.pk]}, status=FineTuneStatus.RUNNING,
        manifest={"stage": "calls", "model": f"model-{marker}"}, total=2, done=1, generated=3, dropped=1,
    )  # fmt: skip
    rows = [
        GeneratedRow.objects.create(job=job, status=RowStatus.PENDING, messages=[
            {"role": "user", "content": f"What is {marker} {n}?"}, {"role": "assistant", "content": f"It is {marker}."}
        ], provenance={"document": {"id": document.pk, "name": document.name}}, seed_log_id=log.pk)
        for n in range(2)
    ]  # fmt: skip
    GeneratedRow.objects.create(job=job, status=RowStatus.DROPPED, drop_reason="personal_data",
                                drop_detail=f"found {marker}", messages=[])  # fmt: skip
    return {"document": document.pk, "generation_job": job.pk, "generation_row": rows[0].pk}


def _compared_finetune(job: FineTuneJob, marker: str, chat: list[dict]) -> FineTuneJob:
    """A second fine-tune of the same snapshot, as a worker leaves one: curves, an evaluation judged, answers
    holding the marker; compared with the first, it leads the compare page and API down every path."""
    other = FineTuneJob.objects.create(
        project=job.project, dataset=job.dataset, snapshot=job.snapshot, base_model=job.base_model, model=job.model,
        hyperparameters={**job.hyperparameters, "seed": 7}, status=FineTuneStatus.SUCCEEDED,
        evaluation={"base": {"eval_loss": 2.0}, "tuned": {"eval_loss": 1.0}}, started_at=job.created_at,
        finished_at=job.created_at + timedelta(minutes=5),
    )  # fmt: skip
    now = other.finished_at
    MetricPoint.objects.bulk_create([
        MetricPoint(job=other, step=0, eval_loss=2.0, time=now),
        MetricPoint(job=other, step=1, train_loss=1.5, tokens_per_second=90.0, time=now),
    ])  # fmt: skip
    rate = {"value": 0.5, "low": 0.25, "high": 0.75, "n": 2}
    example = {"entry_id": None, "prompt": chat[:1], "reference": marker, "base": marker, "tuned": marker}
    EvaluationRun.objects.create(
        job=other, status=FineTuneStatus.SUCCEEDED, examples=[example],
        results={"examples": 1, "metrics": {"base": {"chrf": rate}, "tuned": {"chrf": rate}},
                 "judge": {"teacher": {"win_rate": rate}, "base": {"win_rate": rate}}},
    )  # fmt: skip
    return other


# What a GET may write: traces of reading, never what a member asked for. Anything else written, or any task sent,
# by a GET is work a viewer (or a link followed by a browser) could start, and fails the tests.
WRITES_ON_READ = {
    "django_session": "the session: a message shown once, a new key shown once",
    "curation_apikey": "a key's last_used_at, at most once a minute",
    "curation_auditevent": "an export or a download (editors) is audited as it happens",
    "curation_logembedding": "the embedding of the log asked about (more like this), worked out in the request and "
    "kept: one row per log, the one indexing would store",
}


def server_roots() -> list[str]:
    """Where the server keeps its files (MEDIA_ROOT, the var folder), which no answer may show."""
    roots = [Path(settings.MEDIA_ROOT), Path(settings.VAR_DIR)]
    return sorted({str(root) for root in roots} | {str(root.resolve()) for root in roots})


def work_done(answer: "Answer") -> list[str]:
    """What a GET should not have done: writes beyond WRITES_ON_READ, tasks sent or left to send."""
    return [f"wrote {table}" for table in sorted(answer.writes - WRITES_ON_READ.keys())] + [
        f"queued {task}" for task in answer.queued
    ]


# --- Asking ----------------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: str
    location: str
    writes: set[str] = field(default_factory=set)  # tables written to (INSERT, UPDATE, DELETE)
    queued: list[str] = field(default_factory=list)  # tasks sent, and work left to send once the request commits


_WRITE = re.compile(r'^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?(\w+)"?', re.IGNORECASE)


@contextmanager
def work_recorded() -> Iterator[Answer]:
    """The tables written to and the tasks sent meanwhile, on an Answer to fill in; the tasks are recorded, not
    sent. Work left for after the commit (`transaction.on_commit`) is added by `ask`, before its rollback drops it."""
    seen = Answer(0, "", "")

    def recording(execute: Callable, sql: str, params: object, many: bool, context: dict) -> object:
        if match := _WRITE.match(sql):
            seen.writes.add(match.group(1))
        return execute(sql, params, many, context)

    def sent(task: Task, *args: object, **kwargs: object) -> None:
        seen.queued.append(task.name)

    with connection.execute_wrapper(recording), patch.object(Task, "apply_async", sent):
        yield seen


def ask(client: Client, method: str, url: str, *, project: str | None = None, params: dict | None = None) -> Answer:
    """One request, inside a savepoint that is rolled back: a delete in one case does not change the next.
    `params`: the query string of a GET, the form of a page's POST. The answer says what the request wrote and
    queued (its tasks are never sent)."""
    query = {"project": project} if project else {}
    if project and method != "GET":
        url = f"{url}?project={project}"
        query = {}
    with work_recorded() as seen:
        with transaction.atomic():
            callbacks = len(connection.run_on_commit)
            if method == "GET":
                response = client.get(url, query | (params or {}))
            elif method == "POST" and not url.startswith("/api/"):
                response = client.post(url, params or {})
            else:
                response = client.generic(method, url, "{}", content_type="application/json")
            seen.queued += ["work sent once the request commits"] * (len(connection.run_on_commit) - callbacks)
            transaction.set_rollback(True)
        body = b"".join(response.streaming_content) if response.streaming else response.content  # type: ignore[attr-defined]
    answer = Answer(response.status_code, body.decode("utf-8", "replace"), response.get("Location", ""))
    answer.writes, answer.queued = seen.writes, seen.queued
    return answer


def session(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def keyed(raw: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


def served_methods(route: Route, own: Tenant) -> list[str]:
    """The methods a route serves: what its owner is not answered 405 for."""
    client = session(own.users[Role.OWNER])
    url = route.url(own.objects, own.project.slug)
    project = own.project.slug if route.is_api else None
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"] if route.is_api else ["GET", "POST"]
    return [m for m in methods if ask(client, m, url, project=project).status != 405]
