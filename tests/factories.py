"""factory_boy factories, one per model of curation and training (tests/test_factories.py holds them to it).

Rows are made the way the application makes them where a service fills more than the fields: a log goes
through `logs_ingest` (the readers fill messages, tokens, cost, search text and personal data), a key through
`api_key_create` (only its hash is stored; the secret is on `.raw`). Everything else is a plain row with
sensible defaults; a row that belongs to a project takes it from its parent (an entry's dataset, a job's
dataset), so passing the parent is enough.
"""

import copy
from collections.abc import Sequence
from datetime import datetime
from itertools import count

import factory
import numpy as np
from django.contrib.auth import get_user_model
from django.db.models import Max
from django.utils import timezone

from curation.logs.ingest.canonical import search_text
from curation.logs.services import logs_ingest
from curation.models import (
    ApiKey,
    AuditEvent,
    BulkAction,
    BulkJob,
    Dataset,
    DatasetEntry,
    DatasetSnapshot,
    EmbeddingJob,
    EntryEmbedding,
    ImportJob,
    ImportLineError,
    JobStatus,
    LogEmbedding,
    LogEmbeddingJob,
    LogEntry,
    LogScore,
    LogTag,
    Membership,
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
from curation.text.embeddings import DIMENSION, text_hash, text_of_conversation, vector_bytes
from curation.text.tokens import est_tokens
from training.endpoints.secrets import secret_encrypt
from training.models import (
    BaseModel,
    Deployment,
    DeploymentStatus,
    Engine,
    EvaluationRun,
    EvaluationVote,
    ExampleLoss,
    FineTuneJob,
    FineTuneStatus,
    GeneratedRow,
    Generation,
    GenerationJob,
    LossPreview,
    MetricPoint,
    ModelEndpoint,
    ModelServer,
    PromotionRule,
    ProxyRoute,
    RegressionSet,
    RouteCall,
    RouteMode,
    Side,
    SourceDocument,
)

PASSWORD = "correct horse battery staple"  # every factory user's; the browser tests log in with it


def qa(question: str, answer: str) -> list[dict]:
    """A one-question conversation in the canonical (OpenAI chat) shape."""
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def unit_vector(n: int) -> bytes:
    """A stored embedding: the n-th axis of the embedding space, so two rows are alike only if made alike."""
    vector = np.zeros(DIMENSION, dtype="float32")
    vector[n % DIMENSION] = 1.0
    return vector_bytes(vector)


# --- Projects, people and keys ---------------------------------------------------------------------------


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"project-{n}")
    name = factory.LazyAttribute(lambda p: p.slug.title())


class UserFactory(factory.django.DjangoModelFactory):
    """A user; `memberships=[(project, role), …]` makes them a member of each project."""

    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password(PASSWORD)

    @factory.post_generation
    def memberships(self, create: bool, extracted: list | None, **kwargs: object) -> None:
        for project, role in extracted or []:
            MembershipFactory(project=project, user=self, role=role)


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    project = factory.SubFactory(ProjectFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.VIEWER


class ApiKeyFactory(factory.django.DjangoModelFactory):
    """A key made by `api_key_create`, as the key page and the CLI make one (and audited as `key.create`).
    The secret is never stored: it is on the returned row's `.raw`, for the Authorization header."""

    class Meta:
        model = ApiKey

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"key {n}")
    role = Role.EDITOR
    created_by = None

    @classmethod
    def _create(cls, model_class: type[ApiKey], *, project, name, role, created_by, **fields) -> ApiKey:
        key, raw = api_key_create(project=project, name=name, role=role, created_by=created_by)
        if fields:  # last_used_at, revoked_at: what later use leaves on the row
            for field, value in fields.items():
                setattr(key, field, value)
            key.save(update_fields=list(fields))
        key.raw = raw
        return key


# --- Logs, tags and what is done to them ---------------------------------------------------------------------


class LogEntryFactory(factory.django.DjangoModelFactory):
    """A log stored by `logs_ingest` from an OpenAI chat completion (request and response, as the proxy and
    the SDK wrappers send one), so the derived columns are the readers' own. `prompt` is the user's question,
    or `messages` the whole request conversation; a `status_code` of 400 or more stores a provider error.

    `LogEntryFactory.ingest(project=…, items=[…])` stores payloads of any accepted shape as they are."""

    class Meta:
        model = LogEntry

    class Params:
        prompt = factory.Sequence(lambda n: f"Question {n}: what is {n} + {n}?")

    project = factory.SubFactory(ProjectFactory)
    model = "gpt-4o-mini"
    messages = factory.LazyAttribute(lambda log: [{"role": "user", "content": log.prompt}])
    completion = "Here is the answer."
    status_code = 200
    latency_ms = 800
    usage = factory.LazyFunction(lambda: {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25})
    tags = factory.LazyFunction(list)
    metadata = factory.LazyFunction(dict)
    created_at = None  # when it was called (a datetime or an ISO string); None: now
    external_id = None

    @classmethod
    def _create(cls, model_class: type[LogEntry], *, project: Project, **fields: object) -> LogEntry:
        [log] = cls.ingest(project=project, items=[openai_completion(**fields)])
        return log

    @staticmethod
    def ingest(*, project: Project, items: Sequence[object]) -> list[LogEntry]:
        """Store `items` as the logs API does; every one must be stored. Returns the new rows, in item order."""
        last = LogEntry.objects.filter(project=project).aggregate(last=Max("id"))["last"] or 0
        result = logs_ingest(project=project, items=items)
        assert (result.rejected, result.duplicates) == ([], 0), (result.rejected, result.duplicates)
        return list(LogEntry.objects.filter(project=project, id__gt=last).order_by("id"))


_completion_ids = count(1)


def openai_completion(
    *,
    model: str,
    messages: list[dict],
    completion: str,
    status_code: int,
    latency_ms: int | None,
    usage: dict,
    tags: list[str],
    metadata: dict,
    created_at: datetime | str | None,
    external_id: str | None,
) -> dict:
    """The log object of one OpenAI chat completion, as docs/ingest.md shows it."""
    if status_code >= 400:
        response: dict = {"error": {"message": completion, "type": "server_error"}}
    else:
        response = {
            "id": f"chatcmpl-{next(_completion_ids)}",
            "object": "chat.completion",
            "created": 1756720800,
            "model": model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": completion}, "finish_reason": "stop"}
            ],
            "usage": usage,
        }
    log: dict = {
        "provider": "openai",
        "request": {"model": model, "messages": copy.deepcopy(messages)},
        "response": response,
        "status_code": status_code,
        "latency_ms": latency_ms,
        "tags": tags,
        "metadata": metadata,
    }
    if created_at is not None:
        log["created_at"] = created_at.isoformat() if isinstance(created_at, datetime) else created_at
    if external_id is not None:
        log["external_id"] = external_id
    return log


class TagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tag

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"tag-{n}")


class LogTagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LogTag

    log = factory.SubFactory(LogEntryFactory)
    tag = factory.SubFactory(TagFactory, project=factory.SelfAttribute("..log.project"))


class ImportJobFactory(factory.django.DjangoModelFactory):
    """An import asked for and not started (no file: the file-carrying path is `import_job_create`)."""

    class Meta:
        model = ImportJob

    project = factory.SubFactory(ProjectFactory)
    source_name = factory.Sequence(lambda n: f"logs-{n}.jsonl")


class ImportLineErrorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ImportLineError

    job = factory.SubFactory(ImportJobFactory)
    line = factory.Sequence(lambda n: n + 1)
    error = "expected a log object with 'request', 'messages' or 'prompt'"


class SavedViewFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SavedView

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"view {n}")
    query = "tag=math"


class AuditEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AuditEvent

    project = factory.SubFactory(ProjectFactory)
    action = "logs.delete"
    count = 1


class BulkJobFactory(factory.django.DjangoModelFactory):
    """A bulk action queued for a worker (`bulk_job_create` is the path that also counts and enqueues)."""

    class Meta:
        model = BulkJob

    project = factory.SubFactory(ProjectFactory)
    action = BulkAction.TAG_ADD
    query = "tag=math"
    params = factory.LazyFunction(lambda: {"tags": ["reviewed"]})


class LogScoreFactory(factory.django.DjangoModelFactory):
    """A thumbs-up sent with the API (`log_scores_add` is the path that checks and audits)."""

    class Meta:
        model = LogScore

    log = factory.SubFactory(LogEntryFactory)
    project = factory.SelfAttribute("log.project")
    name = "thumbs"
    value_text = "up"
    source = "api"


class LogEmbeddingFactory(factory.django.DjangoModelFactory):
    """A log's embedding, fresh: its `text_hash` is the hash of the log's text as it is now."""

    class Meta:
        model = LogEmbedding

    log = factory.SubFactory(LogEntryFactory)
    project = factory.SelfAttribute("log.project")
    vector = factory.Sequence(unit_vector)
    text_hash = factory.LazyAttribute(lambda e: text_hash(text_of_conversation(e.log.messages)))


class LogEmbeddingJobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LogEmbeddingJob

    project = factory.SubFactory(ProjectFactory)
    limit = 1000


class TopicJobFactory(factory.django.DjangoModelFactory):
    """A computation of a project's topics that succeeded (its topics: TopicFactory)."""

    class Meta:
        model = TopicJob

    project = factory.SubFactory(ProjectFactory)
    status = JobStatus.SUCCEEDED
    done = 100
    k = 1
    logs = 1
    finished_at = factory.LazyFunction(timezone.now)


class TopicFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Topic

    job = factory.SubFactory(TopicJobFactory)
    number = factory.Sequence(lambda n: n + 1)
    label = factory.LazyAttribute(lambda topic: " · ".join(topic.terms[:3]))
    terms = factory.LazyFunction(lambda: ["invoice", "refund", "charge"])
    size = 1
    trend = factory.LazyFunction(lambda: [0] * 13 + [1])


class TopicMembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TopicMembership

    topic = factory.SubFactory(TopicFactory)
    log = factory.SubFactory(LogEntryFactory, project=factory.SelfAttribute("..topic.job.project"))


# --- Datasets ------------------------------------------------------------------------------------------------


class DatasetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Dataset

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"Dataset {n}")


class DatasetEntryFactory(factory.django.DjangoModelFactory):
    """An entry with the columns the dataset services work out from its conversation (`turns`, `search_text`,
    `est_tokens`); pass them to store one as a direct write would leave it. With a `log`, its copy."""

    class Meta:
        model = DatasetEntry

    dataset = factory.SubFactory(DatasetFactory)
    log = None
    messages = factory.LazyAttributeSequence(
        lambda e, n: copy.deepcopy(e.log.messages) if e.log is not None else qa(f"Question {n}?", f"Answer {n}.")
    )
    tools = factory.LazyAttribute(lambda e: copy.deepcopy(e.log.tools) if e.log is not None else [])
    model = factory.LazyAttribute(lambda e: e.log.model if e.log is not None else "")
    turns = factory.LazyAttribute(lambda e: len(e.messages))
    search_text = factory.LazyAttribute(lambda e: search_text(e.messages))
    est_tokens = factory.LazyAttribute(lambda e: est_tokens(e.search_text))


class DatasetSnapshotFactory(factory.django.DjangoModelFactory):
    """A snapshot asked for and not written yet (`snapshot_create` writes the file and its hash)."""

    class Meta:
        model = DatasetSnapshot

    dataset = factory.SubFactory(DatasetFactory)
    project = factory.SelfAttribute("dataset.project")
    rows_total = factory.LazyAttribute(lambda s: s.dataset.entries.count())


class EntryEmbeddingFactory(factory.django.DjangoModelFactory):
    """An entry's embedding, fresh: its `text_hash` is the hash of the entry's text as it is now."""

    class Meta:
        model = EntryEmbedding

    entry = factory.SubFactory(DatasetEntryFactory)
    vector = factory.Sequence(unit_vector)
    text_hash = factory.LazyAttribute(lambda e: text_hash(text_of_conversation(e.entry.messages)))


class EmbeddingJobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EmbeddingJob

    dataset = factory.SubFactory(DatasetFactory)


class RedactionJobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RedactionJob

    dataset = factory.SubFactory(DatasetFactory)
    kinds = factory.LazyFunction(lambda: ["EMAIL"])
    total = factory.LazyAttribute(lambda job: job.dataset.entries.count())


# --- Fine-tunes ----------------------------------------------------------------------------------------------


class BaseModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BaseModel
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"tiny-{n}")
    path = factory.LazyAttribute(lambda m: f"/models/{m.name}")


class FineTuneJobFactory(factory.django.DjangoModelFactory):
    """A queued fine-tune row on a written snapshot (`finetune_create` is the path that freezes the dataset,
    resolves the hyperparameters and enqueues)."""

    class Meta:
        model = FineTuneJob

    dataset = factory.SubFactory(DatasetFactory)
    project = factory.SelfAttribute("dataset.project")
    snapshot = factory.SubFactory(
        DatasetSnapshotFactory, dataset=factory.SelfAttribute("..dataset"), status=JobStatus.SUCCEEDED
    )
    base_model = factory.SubFactory(BaseModelFactory)
    model = factory.SelfAttribute("base_model.path")
    hyperparameters = factory.LazyFunction(lambda: {"max_steps": 4})


class MetricPointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MetricPoint

    job = factory.SubFactory(FineTuneJobFactory)
    step = factory.Sequence(lambda n: n + 1)
    train_loss = 1.0
    time = factory.LazyFunction(timezone.now)


class ExampleLossFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ExampleLoss

    job = factory.SubFactory(FineTuneJobFactory)
    entry = factory.SubFactory(DatasetEntryFactory, dataset=factory.SelfAttribute("..job.dataset"))
    line = factory.Sequence(lambda n: n + 1)
    loss = 0.5
    tokens = 3


class GenerationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Generation

    job = factory.SubFactory(FineTuneJobFactory)
    messages = factory.LazyFunction(lambda: [{"role": "user", "content": "2+2?"}])


class SourceDocumentFactory(factory.django.DjangoModelFactory):
    """A Markdown document as an upload stores it (`document_upload` reads it: use that to get its chunks counted)."""

    class Meta:
        model = SourceDocument

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"guide-{n}.md")
    file = factory.django.FileField(filename="guide.md", data=b"# Guide\n\nRefunds take five working days.")
    sha256 = factory.Sequence(lambda n: f"{n:064x}")
    size = 40
    kind = "markdown"
    characters = 40
    chunks = 1


class GenerationJobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GenerationJob

    project = factory.SubFactory(ProjectFactory)
    dataset = factory.SubFactory(DatasetFactory, project=factory.SelfAttribute("..project"))
    kind = "documents"


class GeneratedRowFactory(factory.django.DjangoModelFactory):
    """A row waiting for review: a question and its answer, from the first chunk of a document."""

    class Meta:
        model = GeneratedRow

    job = factory.SubFactory(GenerationJobFactory)
    status = "pending"
    messages = factory.Sequence(lambda n: qa(f"Generated question {n}?", f"Generated answer number {n}."))
    provenance = factory.LazyFunction(lambda: {"kind": "documents", "chunks": [{"index": 0}]})


class LossPreviewFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LossPreview

    entry = factory.SubFactory(DatasetEntryFactory)
    base_model = "tiny"


class ModelEndpointFactory(factory.django.DjangoModelFactory):
    """An OpenAI-compatible endpoint with an encrypted key (`endpoint_create` is the path that checks the host)."""

    class Meta:
        model = ModelEndpoint

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"judge {n}")
    base_url = "https://api.openai.com/v1"
    model = "gpt-4o-mini"
    api_key_encrypted = factory.LazyFunction(lambda: secret_encrypt("sk-test-0123456789abcdef"))
    api_key_hint = "…cdef"


def evaluated_examples(n: int = 3) -> list[dict]:
    """What a finished evaluation keeps of each example: the prompt, the three answers and the judge's verdicts."""
    verdicts = (1.0, 0.5, 0.0)
    return [
        {"prompt": [{"role": "user", "content": f"{i}+{i}?"}], "reference": str(2 * i), "base": f"maybe {i}",
         "tuned": f"{2 * i}.", "verdict_base": verdicts[i % 3], "verdict_teacher": verdicts[(i + 1) % 3]}
        for i in range(n)
    ]  # fmt: skip


class EvaluationRunFactory(factory.django.DjangoModelFactory):
    """A queued evaluation of a fine-tune (`evaluation_create` is the path that checks the job and enqueues);
    `finished=True`: one that succeeded, with the answers and the judge's verdicts on its examples."""

    class Meta:
        model = EvaluationRun

    class Params:
        finished = factory.Trait(
            status=FineTuneStatus.SUCCEEDED, examples=factory.LazyFunction(evaluated_examples),
            judge_name="judge (gpt-4o-mini)", finished_at=factory.LazyFunction(timezone.now),
        )  # fmt: skip

    job = factory.SubFactory(FineTuneJobFactory)
    max_examples = 10


class RegressionSetFactory(factory.django.DjangoModelFactory):
    """A dataset pinned as a regression set of its project (`regression_set_pin` is the path that checks it)."""

    class Meta:
        model = RegressionSet

    project = factory.SubFactory(ProjectFactory)
    dataset = factory.SubFactory(DatasetFactory, project=factory.SelfAttribute("..project"))


class EvaluationVoteFactory(factory.django.DjangoModelFactory):
    """A person's blind vote on the first example of a finished evaluation (`vote_record` is the path that checks it
    and audits it)."""

    class Meta:
        model = EvaluationVote

    run = factory.SubFactory(EvaluationRunFactory, finished=True)
    example = 0
    comparison = "teacher"
    voter = factory.SubFactory(UserFactory)
    outcome = 1.0
    tuned_first = True


class PromotionRuleFactory(factory.django.DjangoModelFactory):
    """A project's promotion rule with the defaults (`promotion_rule_update` is the path that audits a change)."""

    class Meta:
        model = PromotionRule

    project = factory.SubFactory(ProjectFactory)


class ModelServerFactory(factory.django.DjangoModelFactory):
    """A ready transformers server, as a serving supervisor leaves one."""

    class Meta:
        model = ModelServer

    supervisor = factory.Sequence(lambda n: f"gpu-1:{1000 + n}")
    engine = Engine.TRANSFORMERS
    weights = "/models/tiny"
    url = factory.Sequence(lambda n: f"http://127.0.0.1:{9000 + n}/v1")
    ready = True


class DeploymentFactory(factory.django.DjangoModelFactory):
    """A fine-tune served as `ft:<project>/<name>` (`deployment_create` is the path that checks the gate and audits);
    `serving=True`: loaded on a model server."""

    class Meta:
        model = Deployment

    class Params:
        serving = factory.Trait(
            status=DeploymentStatus.SERVING, engine=Engine.TRANSFORMERS, server=factory.SubFactory(ModelServerFactory),
            serving_since=factory.LazyFunction(timezone.now),
        )  # fmt: skip

    job = factory.SubFactory(FineTuneJobFactory, status=FineTuneStatus.SUCCEEDED)
    project = factory.SelfAttribute("job.project")
    name = factory.Sequence(lambda n: f"ft-{n}")
    served_name = factory.LazyAttribute(lambda d: f"ft:{d.project.slug}/{d.name}")


class ProxyRouteFactory(factory.django.DjangoModelFactory):
    """A shadow route of every call to a deployment (`route_create` is the path that checks it and audits)."""

    class Meta:
        model = ProxyRoute

    deployment = factory.SubFactory(DeploymentFactory)
    project = factory.SelfAttribute("deployment.project")
    name = factory.Sequence(lambda n: f"route-{n}")
    mode = RouteMode.SHADOW


class RouteCallFactory(factory.django.DjangoModelFactory):
    """A call a shadow route picked: the provider answered in 800 ms, the fine-tune in 300 ms."""

    class Meta:
        model = RouteCall

    route = factory.SubFactory(ProxyRouteFactory)
    mode = factory.SelfAttribute("route.mode")
    served_by = Side.PROVIDER
    provider_status = 200
    provider_ms = 800.0
    provider_log = factory.Sequence(lambda n: f"proxy-p{n}")
    provider_prompt_tokens = 100
    provider_completion_tokens = 20
    provider_model = "gpt-4o-mini"
    finetune_status = 200
    finetune_ms = 300.0
    finetune_log = factory.Sequence(lambda n: f"proxy-f{n}")
    finetune_prompt_tokens = 100
    finetune_completion_tokens = 25
