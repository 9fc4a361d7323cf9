"""Generation jobs: training rows written by a model endpoint from documents or from logs, checked by the filters,
and left for review (docs/generation.md).

- `generation_estimate` / `generation_create`: what a job would call and cost, and starting it.
- `generation_run` (the task): the calls, the parsing of their answers into rows, the filters, the manifest.
- `generation_cancel`: no new call starts; the rows already written stay.
- Review: `row_update` (edit a pending row), `row_accept`, `row_reject`, `rows_accept_bulk`.
"""

from dataclasses import dataclass, field
from decimal import Decimal

from django.contrib.auth.models import User

from curation.models import ApiKey, Project
from training.models import GeneratedRow, GenerationJob


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

    @property
    def capped(self) -> bool:
        return self.groups_uncapped > self.groups


def generation_problems(*, project: Project, request: GenerationRequest) -> dict[str, str]:
    """What is wrong with the request, by field name; empty when nothing is."""
    raise NotImplementedError


def generation_estimate(*, project: Project, request: GenerationRequest) -> GenerationEstimate:
    """Calls, tokens and cost before a job starts. Raises ValidationError naming the field."""
    raise NotImplementedError


def generation_create(
    *, project: Project, request: GenerationRequest, actor: User | None = None, api_key: ApiKey | None = None
) -> GenerationJob:
    """Start a job: its estimate stored, its task queued. Raises ValidationError naming the field.
    Audited as `generation.create`."""
    raise NotImplementedError


def generation_cancel(*, job: GenerationJob, actor: User | None = None, api_key: ApiKey | None = None) -> bool:
    """Ask a queued or running job to stop; False when it had finished. Audited as `generation.cancel`."""
    raise NotImplementedError


def generation_run(*, job_id: int) -> None:
    """The worker's run (training.tasks.generation_run_task)."""
    raise NotImplementedError


def row_update(
    *, row: GeneratedRow, messages: object, actor: User | None = None, api_key: ApiKey | None = None
) -> GeneratedRow:
    """A reviewer's edit of a pending row, checked like an entry edit (ValidationError on `messages`)."""
    raise NotImplementedError


def row_accept(
    *, row: GeneratedRow, messages: object = None, actor: User | None = None, api_key: ApiKey | None = None
) -> GeneratedRow:
    """Accept a pending (or rejected, or dropped) row, edited first when `messages` is given: a synthetic entry
    added to the job's dataset with the row's provenance, or, for a teacher's re-answer, the seed entry revised
    (the seed log added to the dataset first when it was not in it). ValidationError when the dataset is gone."""
    raise NotImplementedError


def row_reject(*, row: GeneratedRow, actor: User | None = None, api_key: ApiKey | None = None) -> GeneratedRow:
    raise NotImplementedError


@dataclass
class RowFilter:
    """Which rows of a job a bulk acceptance takes: the pending ones, optionally only those a judge scored at least
    `min_judge_score`, from one document, or of one style."""

    min_judge_score: float | None = None
    document_id: int | None = None
    style: str = ""


def rows_accept_bulk(
    *, job: GenerationJob, row_filter: RowFilter, expected: int | None = None, actor: User | None = None,
    api_key: ApiKey | None = None,
) -> int:  # fmt: skip
    """Accept every pending row the filter takes; `expected` (the count the user confirmed) must match, or
    ValidationError. Returns how many were accepted. Audited as `generation.accept_bulk`."""
    raise NotImplementedError
