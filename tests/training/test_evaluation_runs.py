"""Evaluation runs on CPU: a tiny local model answers the validation split in a child process (as a GPU worker
runs it), the answers are scored with intervals, and a stand-in judge endpoint judges them against the base model
and the logged answers. Roles, the API, the page, and cancelling."""

import re
import shutil

import pytest

from curation.datasets.export.snapshots import snapshot_request
from curation.models import AuditEvent, Dataset, DatasetEntry
from tests.chat_stand_in import start_chat_stand_in
from tests.training.tiny import FRUITS, colour_conversation
from training.endpoints.services import EndpointFields, endpoint_create
from training.evaluation.services import evaluation_answers_run, evaluation_create, evaluation_score_run
from training.finetunes.services import finetune_create
from training.models import BaseModel, EvaluationRun, FineTuneJob, FineTuneStatus, Method

VALIDATION = 6


@pytest.fixture
def tuned(project, tiny_model) -> FineTuneJob:
    """A succeeded full fine-tune of the tiny model on colour questions, whose weights are the tiny model's own (the
    run's plumbing is under test, not the training)."""
    base = BaseModel.objects.create(name="tiny-llama", path=str(tiny_model))
    dataset = Dataset.objects.create(project=project, name="Colours")
    fruits = sorted(FRUITS)
    for index in range(8 + VALIDATION):
        DatasetEntry.objects.create(
            dataset=dataset, messages=colour_conversation(fruits[index % len(fruits)])["messages"], est_tokens=20,
            split="train" if index < 8 else "validation",
        )  # fmt: skip
    job = finetune_create(dataset=dataset, base_model=base, hyperparameters={"max_steps": 2},
                          snapshot=snapshot_request(dataset=dataset))  # fmt: skip
    FineTuneJob.objects.filter(pk=job.pk).update(status=FineTuneStatus.SUCCEEDED, method=Method.FULL)
    job.refresh_from_db()
    shutil.copytree(tiny_model, job.adapter_dir)
    return job


def colour_judge(body: dict) -> str:
    """Prefers the answer that names a colour; a tie when both do or neither does."""
    text = body["messages"][-1]["content"]
    a = re.search(r"<answer_a>\n(.*?)\n</answer_a>", text, re.DOTALL).group(1)
    b = re.search(r"<answer_b>\n(.*?)\n</answer_b>", text, re.DOTALL).group(1)
    colours = set(FRUITS.values())
    a_ok, b_ok = any(c in a for c in colours), any(c in b for c in colours)
    return "Verdict: tie" if a_ok == b_ok else ("Verdict: A" if a_ok else "Verdict: B")


@pytest.fixture
def judge(project, settings):
    settings.LOGTUNE_ENDPOINT_HOSTS = ["127.0.0.1:*"]
    server = start_chat_stand_in(answer=colour_judge)
    yield endpoint_create(project=project, fields=EndpointFields("judge", server.url, "judge-model"), secret="sk-x")
    server.close()


def test_a_run_answers_scores_and_judges_with_intervals(tuned, judge, editor, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as sent:
        run = evaluation_create(job=tuned, judge=judge, max_examples=50, max_new_tokens=4, actor=editor)
    assert len(sent) == 1 and run.status == FineTuneStatus.QUEUED

    evaluation_answers_run(run_id=run.pk)
    run.refresh_from_db()
    assert (run.status, run.stage, run.total) == (FineTuneStatus.RUNNING, "scoring", 4 * VALIDATION)
    assert len(run.examples) == VALIDATION
    assert all(e["base"] == e["tuned"] for e in run.examples)  # the same weights answer alike, greedily
    assert run.examples[0]["reference"] in FRUITS.values()

    evaluation_score_run(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == FineTuneStatus.SUCCEEDED, run.error
    metrics = run.results["metrics"]
    for name in ("base", "tuned"):
        assert set(metrics[name]) >= {"exact_match", "rouge_l", "chrf"}
        assert metrics[name]["chrf"]["n"] == VALIDATION
        assert metrics[name]["chrf"]["low"] <= metrics[name]["chrf"]["value"] <= metrics[name]["chrf"]["high"]
    assert metrics["base"] == metrics["tuned"]
    against_base, against_teacher = run.results["judge"]["base"], run.results["judge"]["teacher"]
    assert (against_base["ties"], against_base["judged"]) == (VALIDATION, VALIDATION)  # alike answers: ties
    assert against_base["win_rate"]["value"] == 0.5
    tiny_named_a_colour = sum(any(c in e["tuned"] for c in FRUITS.values()) for e in run.examples)
    assert against_teacher["losses"] == VALIDATION - tiny_named_a_colour
    assert run.done == run.total == 4 * VALIDATION
    assert AuditEvent.objects.get(action="finetune.evaluate").detail["judge"] == "judge (judge-model)"


def test_without_a_judge_a_run_reports_metrics_only(tuned, editor):
    run = evaluation_create(job=tuned, max_examples=3, max_new_tokens=2, actor=editor)

    evaluation_answers_run(run_id=run.pk)
    evaluation_score_run(run_id=run.pk)

    run.refresh_from_db()
    assert run.status == FineTuneStatus.SUCCEEDED and run.total == 0
    assert "judge" not in run.results and run.results["metrics"]["tuned"]["exact_match"]["n"] == 3


def test_a_run_cancelled_before_judging_makes_no_call(tuned, judge, editor):
    run = evaluation_create(job=tuned, judge=judge, max_examples=2, max_new_tokens=2, actor=editor)
    evaluation_answers_run(run_id=run.pk)
    EvaluationRun.objects.filter(pk=run.pk).update(cancel_requested=True)

    evaluation_score_run(run_id=run.pk)

    run.refresh_from_db()
    assert run.status == FineTuneStatus.CANCELLED and run.done == 0


def test_only_a_succeeded_fine_tune_with_its_weights_is_evaluated(job, editor):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="succeeded and still has its weights"):
        evaluation_create(job=job, actor=editor)


def test_a_second_delivery_does_nothing(tuned, editor):
    run = evaluation_create(job=tuned, max_examples=2, max_new_tokens=2, actor=editor)
    evaluation_answers_run(run_id=run.pk)
    evaluation_score_run(run_id=run.pk)
    finished = EvaluationRun.objects.get(pk=run.pk).finished_at

    evaluation_answers_run(run_id=run.pk)
    evaluation_score_run(run_id=run.pk)

    assert EvaluationRun.objects.get(pk=run.pk).finished_at == finished


# --- the API and the page --------------------------------------------------------------------------------------------


def test_the_api_starts_lists_shows_and_cancels(client_for, editor, viewer, tuned, judge):
    api, url = client_for(editor), f"/api/v1/finetunes/{tuned.pk}/evaluations"

    created = api.post(f"{url}?project=acme", {"judge": judge.pk, "max_examples": 5}, format="json")

    assert created.status_code == 202, created.json()
    run_id = created.json()["id"]
    assert created.json()["judge_name"] == "judge (judge-model)" and created.json()["status"] == "queued"
    listed = client_for(viewer).get(url, {"project": "acme"}).json()
    assert [item["id"] for item in listed["results"]] == [run_id]
    assert "examples" in client_for(viewer).get(f"{url}/{run_id}", {"project": "acme"}).json()
    assert client_for(viewer).post(f"{url}?project=acme", {}, format="json").status_code == 403
    cancelled = api.post(f"{url}/{run_id}/cancel?project=acme").json()
    assert cancelled["status"] == "cancelled"


def test_the_api_refuses_a_judge_of_another_project(client_for, editor, tuned, outsider):
    from curation.models import Project

    other = Project.objects.get(slug="other")
    foreign = endpoint_create(project=other, fields=EndpointFields("j", "https://api.openai.com/v1", "m"))

    answer = client_for(editor).post(f"/api/v1/finetunes/{tuned.pk}/evaluations?project=acme",
                                     {"judge": foreign.pk}, format="json")  # fmt: skip

    assert answer.status_code == 400
    assert answer.json()["judge"] == [f"Endpoint {foreign.pk} not found in this project."]


def test_the_page_shows_the_verdict_with_its_intervals_and_the_form_to_editors(client, editor, viewer, tuned, judge):
    run = evaluation_create(job=tuned, judge=judge, max_examples=4, max_new_tokens=2, actor=editor)
    evaluation_answers_run(run_id=run.pk)
    evaluation_score_run(run_id=run.pk)
    client.force_login(viewer)

    page = client.get(f"/p/acme/finetunes/{tuned.pk}/").content.decode()

    assert 'id="verdict"' in page and f'id="evaluation-{run.pk}"' in page
    assert "against the base model: win rate" in page and "95% interval, n=4" in page
    assert "ROUGE-L" in page and "chrF" in page
    assert 'id="evaluate-form"' not in page
    client.force_login(editor)
    assert 'id="evaluate-form"' in client.get(f"/p/acme/finetunes/{tuned.pk}/").content.decode()


def test_the_page_starts_a_run(client, editor, tuned, django_capture_on_commit_callbacks):
    client.force_login(editor)

    with django_capture_on_commit_callbacks():
        answer = client.post(f"/p/acme/finetunes/{tuned.pk}/evaluate",
                             {"judge": "", "max_examples": "10", "max_new_tokens": "16", "rubric": ""})  # fmt: skip

    assert answer.status_code == 302 and answer["Location"].endswith("#verdict")
    run = EvaluationRun.objects.get(job=tuned)
    assert (run.max_examples, run.judge_id, run.rubric) == (10, None, "")


def test_the_api_answers_409_for_a_fine_tune_not_finished(client_for, editor, job):
    answer = client_for(editor).post(f"/api/v1/finetunes/{job.pk}/evaluations?project=acme", {}, format="json")

    assert answer.status_code == 409 and answer.json()["status"] == "queued"
