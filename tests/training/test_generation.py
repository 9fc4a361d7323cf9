"""Generation jobs end to end against a stand-in endpoint started here: documents, teacher re-answers and
variations; the filters and their reasons, the manifest, cancel, and review into the dataset."""

from decimal import Decimal

import numpy as np
import pytest
from django.core.exceptions import ValidationError

from curation.logs.similar.services import vector_bytes
from curation.models import AuditEvent, DatasetEntry, LogEmbedding
from curation.text.embeddings import embed, text_of_conversation
from tests.chat_stand_in import start_chat_stand_in
from tests.factories import DatasetEntryFactory, DatasetFactory, LogEntryFactory, ModelEndpointFactory, qa
from tests.generation_stand_in import generator_answer
from training.generation import filters, prompts
from training.generation.documents import document_upload
from training.generation.services import (
    GenerationRequest,
    RowFilter,
    generation_cancel,
    generation_create,
    generation_estimate,
    generation_run,
    row_accept,
    row_reject,
    row_update,
    rows_accept_bulk,
)
from training.models import FineTuneStatus, GeneratedRow, GenerationJob, RowStatus

GUIDE = """# Billing guide

## Refunds

Refunds are paid back to the original card within five working days of approval. A refund above 500 euros needs a
second approval from the finance lead before it is paid. Partial refunds are allowed for annual plans only.
Write to billing-help@example.com for refunds older than a year. This rule is DUPLICATE-ME and important.

## Invoices

Invoices are sent on the first day of each month as PDF files attached to an email. Each invoice lists the seats,
the plan and the tax rate of the customer's country. SHORT answers are given for yes or no questions.
Customers can ask for a corrected invoice within thirty days of the invoice date. REFUSE this one please now.

## Seats

Seats are counted on the last day of the month and billed on the next invoice. Removing a seat takes effect at the
end of the billing period, never at once. Owners can move a seat from one member to another at any time for free.
"""


@pytest.fixture
def stand_in(settings):
    settings.LOGTUNE_ENDPOINT_HOSTS = ["127.0.0.1:*"]
    server = start_chat_stand_in(answer=generator_answer)
    yield server
    server.close()


@pytest.fixture
def writer(project, stand_in):
    return ModelEndpointFactory(project=project, name="writer", base_url=stand_in.url, model="gen-1",
                                api_key_encrypted="", input_price_per_mtok=1, output_price_per_mtok=2)  # fmt: skip


@pytest.fixture
def judge(project, stand_in):
    return ModelEndpointFactory(project=project, name="judge", base_url=stand_in.url, model="judge-1",
                                api_key_encrypted="")  # fmt: skip


@pytest.fixture
def guide(project):
    document, created = document_upload(project=project, name="billing.md", data=GUIDE.encode())
    assert created and document.readable
    return document


def documents_request(dataset, writer, guide, **changes) -> GenerationRequest:
    fields = {
        "kind": "documents",
        "endpoint_id": writer.pk,
        "dataset_id": dataset.pk,
        "document_ids": [guide.pk],
        "rows_per_call": 6,
        "chunk_chars": 500,
        "overlap_chars": 0,
        "min_answer_chars": 10,
    } | changes
    return GenerationRequest(**fields)  # type: ignore[arg-type]


def run(project, request: GenerationRequest) -> GenerationJob:
    job = generation_create(project=project, request=request)
    generation_run(job_id=job.pk)
    job.refresh_from_db()
    return job


def reasons(job: GenerationJob) -> dict[str, int]:
    found: dict[str, int] = {}
    for reason in GeneratedRow.objects.filter(job=job, status=RowStatus.DROPPED).values_list("drop_reason", flat=True):
        found[reason] = found.get(reason, 0) + 1
    return found


# --- prompts and filters, as plain functions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"pairs": [{"question": "Q?", "answer": "A."}]}',
        'Sure!\n```json\n{"pairs": [{"question": "Q?", "answer": "A."}]}\n```\nAnything else?',
        'Here: [{"q": "Q?", "a": "A."}] done',
    ],
)
def test_pairs_are_read_from_json_however_it_is_wrapped(text):
    assert prompts.parse_pairs(text) == prompts.Parsed([("Q?", "A.")])


def test_an_answer_without_json_or_with_bad_items_says_why():
    assert prompts.parse_pairs("no json here").problem == "the answer holds no readable JSON"
    partial = prompts.parse_pairs('{"pairs": [{"question": "Q?", "answer": "A."}, {"question": 3}]}')
    assert partial.items == [("Q?", "A.")] and partial.problem.startswith("1 item")


def test_a_template_keeps_braces_it_does_not_name():
    assert prompts.render('{chunk} -> {"pairs": []} {other}', {"chunk": "X"}) == 'X -> {"pairs": []} {other}'
    assert (
        prompts.template_problem("documents", "no slot") == "The template must contain {chunk}, where the text goes."
    )


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("", filters.EMPTY),
        ("Yes.", filters.TOO_SHORT),
        ("I'm sorry, but I can't help with that.", filters.REFUSAL),
        ("Write to jane.doe@example.com to ask for it.", filters.PERSONAL_DATA),
        ("A long enough answer that is fine.", None),
    ],
)
def test_text_filters(answer, reason):
    drop = filters.text_drop(qa("A question?", answer), min_answer_chars=10, max_row_tokens=100,
                             drop_personal_data=True)  # fmt: skip
    assert (drop.reason if drop else None) == reason


def test_a_row_over_the_token_limit_fails_the_preflight():
    drop = filters.text_drop(qa("Q?", "word " * 400), min_answer_chars=1, max_row_tokens=50, drop_personal_data=True)
    assert drop is not None and drop.reason == filters.PREFLIGHT and "over the limit of 50" in drop.detail


def test_near_duplicates_compare_with_references_and_earlier_rows_but_not_a_rows_own_seed():
    axis = np.eye(4, dtype=np.float32)
    vectors = np.vstack([axis[0], axis[1], axis[1], axis[2]])
    reference = filters.Reference(np.vstack([axis[0], axis[2]]), ["log 7", "log 8"], ids=np.array([7, 8]))
    drops = filters.near_duplicate_drops(vectors, references=[reference], threshold=0.9,
                                         labels=["r0", "r1", "r2", "r3"], leave_out=[None, None, None, 8])  # fmt: skip
    assert [d.detail if d else None for d in drops] == ["1.000 alike to log 7", None, "1.000 alike to r1", None]


def test_the_judges_last_score_counts():
    assert filters.score_of("Score: 4 ... on reflection\nScore: 8") == 8
    assert filters.score_of("Score: 10/10") == 10
    assert filters.score_of("no verdict") is None


# --- documents ------------------------------------------------------------------------------------------------------


def test_the_estimate_counts_calls_tokens_and_cost_before_anything_runs(project, dataset, writer, guide, stand_in):
    estimate = generation_estimate(project=project, request=documents_request(dataset, writer, guide))
    assert estimate.chunks == estimate.calls >= 2 and estimate.answer_calls == estimate.judge_calls == 0
    assert estimate.completion_tokens == estimate.calls * 1024
    assert estimate.cost_usd == Decimal(estimate.prompt_tokens + estimate.completion_tokens * 2) / 1_000_000
    assert stand_in.requests == []  # estimating calls nothing


def test_multi_chunk_groups_are_capped_and_the_estimate_warns(project, dataset, writer, guide):
    request = documents_request(dataset, writer, guide, chunks_per_call=2, max_combinations=1)
    estimate = generation_estimate(project=project, request=request)
    assert estimate.groups == estimate.calls == 1 and estimate.groups_uncapped > 1 and estimate.capped
    assert "only 1 are sent" in estimate.warnings[0]


def test_bad_requests_name_the_field(project, dataset, writer, guide):
    cases = {
        "rows_per_call": documents_request(dataset, writer, guide, rows_per_call=0),
        "prompt_template": documents_request(dataset, writer, guide, prompt_template="Write questions."),
        "document_ids": documents_request(dataset, writer, guide, document_ids=[]),
        "endpoint_id": documents_request(dataset, writer, guide, endpoint_id=10**9),
        "seed_dataset_id": GenerationRequest(kind="teacher", endpoint_id=writer.pk, dataset_id=dataset.pk),
        "styles": GenerationRequest(kind="variations", endpoint_id=writer.pk, dataset_id=dataset.pk,
                                    seed_dataset_id=dataset.pk, styles=["louder"]),
    }  # fmt: skip
    for name, request in cases.items():
        with pytest.raises(ValidationError) as caught:
            generation_create(project=project, request=request)
        assert name in caught.value.message_dict, (name, caught.value.message_dict)
    assert not GenerationJob.objects.exists()


def test_a_documents_job_writes_rows_with_provenance_and_drops_each_planted_problem(
    project, dataset, writer, judge, guide, stand_in
):
    job = run(project, documents_request(dataset, writer, guide, judge_endpoint_id=judge.pk))
    assert job.status == FineTuneStatus.SUCCEEDED, job.error
    found = reasons(job)
    assert found.keys() >= {filters.DUPLICATE, filters.PERSONAL_DATA, filters.TOO_SHORT, filters.REFUSAL}, found
    pending = list(GeneratedRow.objects.filter(job=job, status=RowStatus.PENDING))
    assert len(pending) >= 5 and all(row.judge_score == 9 for row in pending)
    row = pending[0]
    assert row.provenance["document"] == {"id": guide.pk, "name": "billing.md", "sha256": guide.sha256}
    [chunk] = row.provenance["chunks"]
    assert chunk["heading_path"][0] == "Billing guide" and chunk["end"] > chunk["start"]
    assert row.provenance["template_sha256"] == prompts.template_sha256(prompts.DOCUMENTS_TEMPLATE)
    # The manifest's counts are the rows'.
    counts = job.manifest["counts"]
    assert counts["dropped"] == found and counts["by_status"]["pending"] == len(pending)
    assert job.dropped == sum(found.values()) and job.manifest["model"] == "gen-1"
    assert job.prompt_tokens > 0 and job.manifest["cost_usd"] is not None
    # Calls carried the seed and the template; the judge was asked once per row the other filters kept.
    asked = [r for r in stand_in.requests if r["model"] == "gen-1"]
    assert len(asked) == job.manifest["calls"] and all(r["seed"] == 0 for r in asked)
    assert len([r for r in stand_in.requests if r["model"] == "judge-1"]) == len(pending)


def test_a_malformed_answer_and_a_failed_call_are_kept_as_dropped_rows(project, dataset, writer, guide, stand_in):
    broken = document_upload(project=project, name="broken.md", data=b"# Notes\n\nThis line is MALFORMED on purpose.")
    job = run(project, documents_request(dataset, writer, guide, document_ids=[broken[0].pk]))
    [row] = GeneratedRow.objects.filter(job=job)
    assert (row.status, row.drop_reason) == (RowStatus.DROPPED, filters.MALFORMED)
    assert row.messages == [
        {"role": "assistant", "content": "Here are the pairs you asked for: question one, answer one."}
    ]
    with pytest.raises(ValidationError, match="could not be read"):
        row_accept(row=row)
    fixed = qa("What is on purpose?", "The line about notes, written on purpose.")
    assert row_accept(row=row, messages=fixed).entry.messages == fixed  # edited into a conversation, it joins
    stand_in.failures = [400] * 10
    failed = run(project, documents_request(dataset, writer, guide, document_ids=[broken[0].pk]))
    [row] = GeneratedRow.objects.filter(job=failed)
    assert row.drop_reason == filters.CALL_FAILED and "HTTP 400" in row.drop_detail and failed.failed_calls == 1


def test_rows_near_an_indexed_log_or_an_entry_of_the_dataset_are_dropped(project, dataset, writer, guide):
    first = run(project, documents_request(dataset, writer, guide))
    one, two = GeneratedRow.objects.filter(job=first, status=RowStatus.PENDING).order_by("id")[:2]
    # A log asking what the first row asks, answered in slightly other words, in the project's index; an entry of
    # the dataset the same for the second row.
    log = LogEntryFactory(project=project, prompt=one.messages[0]["content"],
                          completion=one.messages[1]["content"] + " Always.")  # fmt: skip
    [vector] = embed([text_of_conversation(log.messages)])
    LogEmbedding.objects.create(project=project, log=log, vector=vector_bytes(vector), text_hash="x")
    entry = DatasetEntryFactory(dataset=dataset, messages=qa(two.messages[0]["content"],
                                                             two.messages[1]["content"] + " Always."))  # fmt: skip
    second = run(project, documents_request(dataset, writer, guide))
    near = {
        row.messages[0]["content"]: row.drop_detail
        for row in GeneratedRow.objects.filter(job=second, drop_reason=filters.NEAR_DUPLICATE)
    }
    assert near[one.messages[0]["content"]].endswith(f"alike to log {log.pk} of the project")
    assert near[two.messages[0]["content"]].endswith(f"alike to entry {entry.pk} of the dataset")
    assert len(near) == 2, near


def test_review_accepts_rejects_and_edits_into_synthetic_entries(project, dataset, writer, guide, owner):
    job = run(project, documents_request(dataset, writer, guide))
    first, second, third, *rest = GeneratedRow.objects.filter(job=job, status=RowStatus.PENDING).order_by("id")
    entry = row_accept(row=first, actor=owner).entry
    assert entry.synthetic and entry.messages == first.messages and entry.log is None
    assert entry.provenance["row_id"] == first.pk and entry.provenance["document"]["name"] == "billing.md"
    row_reject(row=second, actor=owner)
    with pytest.raises(ValidationError):
        row_update(row=third, messages=[{"role": "robot", "content": "x"}])
    edited = qa("How fast are refunds paid?", "Within five working days of approval.")
    row_accept(row=third, messages=edited, actor=owner)
    third.refresh_from_db()
    assert third.edited and third.entry.messages == edited and third.reviewed_by == owner
    # Bulk: the count confirmed must be the count that matches.
    with pytest.raises(ValidationError, match="rows match now"):
        rows_accept_bulk(job=job, row_filter=RowFilter(), expected=len(rest) + 5)
    assert rows_accept_bulk(job=job, row_filter=RowFilter(document_id=guide.pk + 1), expected=0) == 0
    assert rows_accept_bulk(job=job, row_filter=RowFilter(style="harder"), expected=0) == 0
    with pytest.raises(ValidationError, match="rows match now"):  # they are all from the guide
        rows_accept_bulk(job=job, row_filter=RowFilter(document_id=guide.pk, min_judge_score=None), expected=0)
    assert rows_accept_bulk(job=job, row_filter=RowFilter(), expected=len(rest), actor=owner) == len(rest)
    assert DatasetEntry.objects.filter(dataset=dataset, synthetic=True).count() == 2 + len(rest)
    assert AuditEvent.objects.filter(action="generation.accept_bulk", count=len(rest)).exists()
    # A dropped row can still be accepted: nothing is lost.
    duplicate = GeneratedRow.objects.filter(job=job, drop_reason=filters.DUPLICATE).first()
    assert row_accept(row=duplicate).status == RowStatus.ACCEPTED


def test_a_queued_job_is_cancelled_at_once_and_never_calls(project, dataset, writer, guide, stand_in):
    job = generation_create(project=project, request=documents_request(dataset, writer, guide))
    assert generation_cancel(job=job) and job.status == FineTuneStatus.CANCELLED
    generation_run(job_id=job.pk)
    assert stand_in.requests == [] and not generation_cancel(job=job)


@pytest.mark.django_db(transaction=True)  # the stand-in's thread cancels through its own connection
def test_a_running_job_stops_calling_when_cancelled_and_keeps_its_rows(project, dataset, writer, guide, stand_in):
    job = generation_create(project=project, request=documents_request(dataset, writer, guide, chunk_chars=500))
    writer.max_concurrency = 1
    writer.save()
    calls = []

    def answer(body):
        calls.append(1)
        if len(calls) == 1:
            GenerationJob.objects.filter(pk=job.pk).update(cancel_requested=True)
        return generator_answer(body)

    stand_in.answer = answer
    from training.generation import services

    services.STOP_CHECK_EVERY, before = 1, services.STOP_CHECK_EVERY
    try:
        generation_run(job_id=job.pk)
    finally:
        services.STOP_CHECK_EVERY = before
    job.refresh_from_db()
    assert job.status == FineTuneStatus.CANCELLED and len(calls) == 1 < job.manifest["calls"]
    assert GeneratedRow.objects.filter(job=job).exists()
    assert not GeneratedRow.objects.filter(job=job, status=RowStatus.CHECKING).exists()


# --- from logs ------------------------------------------------------------------------------------------------------


def test_a_teacher_re_answer_is_a_revision_of_the_entry_with_the_log_kept(project, writer, owner):
    log = LogEntryFactory(project=project, prompt="How do I reset my password?", completion="Click reset.")
    dataset = DatasetFactory(project=project)
    entry = DatasetEntryFactory(dataset=dataset, log=log)
    job = run(project, GenerationRequest(kind="teacher", endpoint_id=writer.pk, dataset_id=dataset.pk,
                                         seed_dataset_id=dataset.pk))  # fmt: skip
    [row] = GeneratedRow.objects.filter(job=job)
    assert row.original == log.messages and row.messages[:-1] == log.messages[:-1]
    assert row.messages[-1]["content"].startswith("Teacher's answer") and row.status == RowStatus.PENDING
    row_accept(row=row, actor=owner)
    entry.refresh_from_db()
    log.refresh_from_db()
    assert entry.edited and entry.synthetic and entry.messages == row.messages
    assert (
        entry.provenance["revision"] == "teacher" and log.completion_text() == "Click reset."
        if hasattr(log, "completion_text")
        else log.messages[-1]["content"] == "Click reset."
    )


def test_teacher_seeds_from_a_filter_join_the_dataset_when_accepted(project, dataset, writer):
    log = LogEntryFactory(project=project, prompt="Which plan has SSO?", completion="Enterprise.")
    job = run(project, GenerationRequest(kind="teacher", endpoint_id=writer.pk, dataset_id=dataset.pk,
                                         seed_filter={"q": "SSO"}))  # fmt: skip
    [row] = GeneratedRow.objects.filter(job=job)
    entry = row_accept(row=row).entry
    assert entry.log == log and entry.edited and entry.messages[-1]["content"].startswith("Teacher's answer")


def test_variations_write_new_prompts_and_answer_them(project, dataset, writer):
    log = LogEntryFactory(project=project, prompt="Convert 5 miles to km DUPLICATE-ME", completion="8.05 km")
    job = run(project, GenerationRequest(kind="variations", endpoint_id=writer.pk, dataset_id=dataset.pk,
                                         seed_filter={"q": "miles"}, rows_per_call=2, dedup_threshold=0.999,
                                         styles=["paraphrase", "language:French"]))  # fmt: skip
    assert job.status == FineTuneStatus.SUCCEEDED, job.error
    rows = list(GeneratedRow.objects.filter(job=job))
    assert {r.provenance["style"] for r in rows} == {"paraphrase", "language:French"}
    assert all(r.seed_log_id == log.pk for r in rows)
    pending = [r for r in rows if r.status == RowStatus.PENDING]
    assert len(pending) == 4, [(r.messages, r.drop_reason, r.drop_detail) for r in rows]
    assert reasons(job) == {filters.DUPLICATE: 2}
    assert pending[0].messages[-1]["content"].startswith("Teacher's answer")  # the stand-in answers a plain request


def test_a_job_whose_worker_stopped_is_failed_with_its_rows_kept(project, dataset, writer, guide, settings):
    from datetime import timedelta

    from django.utils import timezone

    from training.generation.services import generation_jobs_reap

    job = generation_create(project=project, request=documents_request(dataset, writer, guide))
    row = GeneratedRow.objects.create(job=job, messages=qa("Q?", "A long enough answer."), status=RowStatus.CHECKING)
    old = timezone.now() - timedelta(seconds=settings.LOGTUNE_GENERATION_HEARTBEAT_TIMEOUT_S + 5)
    GenerationJob.objects.filter(pk=job.pk).update(status=FineTuneStatus.RUNNING, heartbeat_at=old)
    fresh = generation_create(project=project, request=documents_request(dataset, writer, guide))
    GenerationJob.objects.filter(pk=fresh.pk).update(status=FineTuneStatus.RUNNING, heartbeat_at=timezone.now())
    assert generation_jobs_reap() == 1
    job.refresh_from_db()
    row.refresh_from_db()
    assert job.status == FineTuneStatus.FAILED and "The worker stopped" in job.error
    assert row.status == RowStatus.PENDING
    assert GenerationJob.objects.get(pk=fresh.pk).status == FineTuneStatus.RUNNING


def test_generation_runs_on_the_default_queue_beside_the_web_workers(celery_session_app):
    from training.generation.tasks import data_generation_reap_task, data_generation_run_task
    from training.playground.tasks import generation_run_task

    router = celery_session_app.amqp.router
    for task in (data_generation_run_task, data_generation_reap_task):
        assert router.route({}, task.name)["queue"].name == "default"
    # The playground's answers are another task, on the GPU queue: no name is shared.
    assert data_generation_run_task.name != generation_run_task.name
    assert celery_session_app.tasks[generation_run_task.name].run.__module__ == "training.playground.tasks"


def test_a_seed_log_deleted_later_leaves_its_rows_and_their_provenance(project, dataset, writer):
    from curation.logs.services import log_delete

    log = LogEntryFactory(project=project, prompt="Convert 5 miles to km", completion="8.05 km")
    job = run(project, GenerationRequest(kind="teacher", endpoint_id=writer.pk, dataset_id=dataset.pk,
                                         seed_filter={"q": "miles"}))  # fmt: skip
    log_delete(log=log)
    [row] = GeneratedRow.objects.filter(job=job)
    assert row.seed_log_id == log.pk and row.provenance["seed_log_id"] == log.pk
