"""What an evaluation run answers beyond the validation split, and what it makes of it: loss and perplexity, the
regression sets a project pins, the retention set for forgetting (the project's other logs and the general sets on
disk), slices by tag and metadata with the worse ones flagged, schema and tool-call matches, and the estimate of a
run before it starts. The tiny model answers on CPU, in a child process, as a GPU worker runs it."""

import math
import shutil

import orjson
import pytest

from curation.datasets.export.snapshots import snapshot_request
from curation.datasets.services import dataset_add_logs
from curation.logs.services import logs_ingest
from curation.models import AuditEvent, Dataset, DatasetEntry, LogEntry, Project
from tests.training.tiny import FRUITS, colour_conversation
from training.endpoints.services import EndpointFields, endpoint_create
from training.evaluation.metrics import LOSS, WIN, answer_tool_calls
from training.evaluation.regression import regression_set_pin
from training.evaluation.services import (
    candidate_metrics,
    evaluation_answers_run,
    evaluation_create,
    evaluation_estimate,
    evaluation_score_run,
    slices,
)
from training.finetunes.services import finetune_create
from training.models import BaseModel, FineTuneJob, FineTuneStatus, Method, RegressionSet

FRUIT_NAMES = sorted(FRUITS)


@pytest.fixture
def outsider_project(outsider):
    return Project.objects.get(slug="other")


def fruit_log(index: int, *, tag: str, tier: str) -> dict:
    conversation = colour_conversation(FRUIT_NAMES[index % len(FRUIT_NAMES)])["messages"]
    return {
        "request": {"model": "gpt-4o", "messages": conversation[:-1]},
        "response": {"choices": [{"message": conversation[-1], "finish_reason": "stop"}]},
        "tags": [tag], "metadata": {"tier": tier},
    }  # fmt: skip


@pytest.fixture
def world(project, tiny_model, settings, tmp_path):
    """24 logs tagged "colours" (the training dataset: 12 train, 12 validation, from logs) and 10 tagged "other"
    (never trained on: the retention sample); a regression dataset of 3 entries; a general set on disk."""
    settings.LOGTUNE_EVAL_SETS_DIR = tmp_path / "eval-sets"
    settings.LOGTUNE_EVAL_SETS_DIR.mkdir()
    general = [orjson.dumps(colour_conversation(name)).decode() for name in FRUIT_NAMES[:4]]
    (settings.LOGTUNE_EVAL_SETS_DIR / "colours-general.jsonl").write_text("\n".join([*general, "not json", "{}"]))
    logs_ingest(
        project=project, items=[fruit_log(i, tag="colours", tier="gold" if i % 2 else "free") for i in range(24)]
    )
    logs_ingest(project=project, items=[fruit_log(i, tag="other", tier="free") for i in range(10)])
    dataset = Dataset.objects.create(project=project, name="Colours")
    dataset_add_logs(dataset=dataset, logs=LogEntry.objects.filter(project=project, tags__name="colours"))
    entries = list(DatasetEntry.objects.filter(dataset=dataset).order_by("id"))
    DatasetEntry.objects.filter(pk__in=[e.pk for e in entries[12:]]).update(split="validation")
    base = BaseModel.objects.create(name="tiny-llama", path=str(tiny_model))
    job = finetune_create(dataset=dataset, base_model=base, hyperparameters={"max_steps": 2},
                          snapshot=snapshot_request(dataset=dataset))  # fmt: skip
    FineTuneJob.objects.filter(pk=job.pk).update(status=FineTuneStatus.SUCCEEDED, method=Method.FULL)
    job.refresh_from_db()
    shutil.copytree(tiny_model, job.adapter_dir)
    regression = Dataset.objects.create(project=project, name="Regression")
    for name in FRUIT_NAMES[:3]:
        DatasetEntry.objects.create(dataset=regression, messages=colour_conversation(name)["messages"], est_tokens=20)
    snapshot_request(dataset=regression)
    return job, regression


def test_a_run_answers_every_set_and_reports_loss_forgetting_and_slices(world, editor):
    job, regression = world
    pinned = regression_set_pin(project=job.project, dataset=regression, actor=editor)
    run = evaluation_create(job=job, max_examples=50, max_new_tokens=3, retention_examples=50, slice_key="tier",
                            actor=editor)  # fmt: skip

    evaluation_answers_run(run_id=run.pk)
    evaluation_score_run(run_id=run.pk)

    run.refresh_from_db()
    assert run.status == FineTuneStatus.SUCCEEDED, run.error
    sets = {item["name"]: item for item in run.results["sets"]}
    assert {name: item["examples"] for name, item in sets.items()} == {
        "validation": 12, f"regression: {pinned.name}": 3, "retention: the project's other logs": 10,
        "retention: colours-general": 4,
    }  # fmt: skip
    assert "2 lines unreadable" in sets["retention: colours-general"]["note"]
    trained = set(DatasetEntry.objects.filter(dataset=job.dataset).values_list("log_id", flat=True))
    retained = [e for e in run.examples if e["set"] == "retention: the project's other logs"]
    assert {e["log_id"] for e in retained}.isdisjoint(trained)
    assert set(
        LogEntry.objects.filter(pk__in=[e["log_id"] for e in retained]).values_list("tags__name", flat=True)
    ) == {"other"}
    # The same weights on both sides: every loss equal, no change, perplexity the exponential of the mean loss.
    loss = run.results["loss"]
    assert loss["base"] == loss["tuned"] and loss["base"]["n"] == 12 and loss["base"]["value"] > 0
    assert loss["change"]["value"] == 0 and math.isclose(loss["tuned_perplexity"], math.exp(loss["tuned"]["value"]))
    forgetting = run.results["forgetting"]
    assert forgetting["examples"] == 14 and forgetting["loss_change"]["value"] == 0
    assert forgetting["changes"]["rouge_l"] == {"value": 0.0, "low": 0.0, "high": 0.0, "n": 14}
    by_slice = {(row["by"], row["value"], row["metric"]): row for row in run.results["slices"]}
    assert by_slice[("tag", "colours", "rouge_l")]["n"] == 12 and by_slice[("tag", "other", "loss")]["n"] == 10
    assert by_slice[("metadata:tier", "gold", "rouge_l")]["n"] == 6
    assert not any(row["flagged"] for row in run.results["slices"])


def test_the_page_shows_sets_forgetting_and_slices(client, world, editor):
    job, regression = world
    regression_set_pin(project=job.project, dataset=regression, actor=editor)
    run = evaluation_create(job=job, max_examples=6, max_new_tokens=2, retention_examples=10, actor=editor)
    evaluation_answers_run(run_id=run.pk)
    evaluation_score_run(run_id=run.pk)
    client.force_login(editor)

    page = client.get(f"/p/{job.project.slug}/finetunes/{job.pk}/").content.decode()

    assert "Forgetting, on 14 retention examples" in page
    assert "retention: colours-general" in page and "regression: dataset Regression" in page
    assert "Slices:" in page and "tag <code>other</code>" in page
    assert "perplexity" in page


def examples_for_slices(outcomes: dict[str, tuple[str, str]], count: int) -> list[dict]:
    """`count` examples per tag, with the base's and the tuned model's answers to the reference "red apple"."""
    out = []
    for tag, (base, tuned) in outcomes.items():
        out += [{"reference": "red apple", "base": base, "tuned": tuned, "tag": tag, "verdict_base": None}
                for _ in range(count)]  # fmt: skip
    return out


def test_a_slice_where_the_fine_tune_is_worse_beyond_the_interval_is_flagged(project):
    results = logs_ingest(
        project=project, items=[{**fruit_log(i, tag=tag, tier="x")} for tag in ("good", "bad") for i in range(8)]
    )
    examples = examples_for_slices({"good": ("red", "red apple"), "bad": ("red apple", "blue pear")}, 8)
    for example, stored in zip(examples, results.ids, strict=True):
        example["log_id"] = stored.id
    for example in examples[:8]:
        example["verdict_base"] = WIN
    for example in examples[8:]:
        example["verdict_base"] = LOSS

    rows = {(row["value"], row["metric"]): row for row in slices(examples, project_id=project.pk)}

    assert rows[("bad", "rouge_l")]["flagged"] and rows[("bad", "rouge_l")]["delta"]["high"] < 0
    assert rows[("bad", "win_rate_vs_base")]["flagged"]
    assert not rows[("good", "rouge_l")]["flagged"] and not rows[("good", "win_rate_vs_base")]["flagged"]
    assert next(iter(rows))[0] == "bad"  # flagged slices first


def test_slices_ignore_another_projects_logs(project, outsider_project):
    stored = logs_ingest(project=outsider_project, items=[fruit_log(i, tag="secret", tier="x") for i in range(6)])
    examples = examples_for_slices({"secret": ("red", "blue")}, 6)
    for example, item in zip(examples, stored.ids, strict=True):
        example["log_id"] = item.id

    assert slices(examples, project_id=project.pk) == []


def test_schema_and_tool_call_matches_are_measured_where_the_entries_ask_for_them():
    schema = {"type": "json_schema", "json_schema": {"name": "c", "schema": {
        "type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"]}}}  # fmt: skip
    call = {"type": "function", "function": {"name": "paint", "arguments": '{"colour": "red"}'}}
    examples = [
        {"reference": '{"colour": "red"}', "response_format": schema, "base": "red", "tuned": '{"colour": "red"}'},
        {"reference": '{"colour": "blue"}', "response_format": schema, "base": "{}", "tuned": '{"colour": 3}'},
        {"reference": "", "reference_calls": [call], "base": "I would paint it.",
         "tuned": '<tool_call>\n{"name": "paint", "arguments": {"colour": "red"}}\n</tool_call>'},
        {"reference": "", "reference_calls": [call], "base": '{"name": "paint", "arguments": {"colour": "blue"}}',
         "tuned": '<tool_call>{"name": "paint", "arguments": "{\\"colour\\": \\"red\\"}"}</tool_call>'},
    ]  # fmt: skip

    metrics = candidate_metrics(examples)

    assert metrics["tuned"]["schema_match"]["value"] == 0.5 and metrics["base"]["schema_match"]["value"] == 0
    assert metrics["tuned"]["schema_match"]["n"] == 2
    assert (metrics["tuned"]["tool_names"]["value"], metrics["tuned"]["tool_arguments"]["value"]) == (1, 1)
    assert (metrics["base"]["tool_names"]["value"], metrics["base"]["tool_arguments"]["value"]) == (0.5, 0)


def test_tool_calls_are_read_from_the_common_ways_models_write_them():
    assert answer_tool_calls("no call here") == []
    two = answer_tool_calls(
        '<tool_call>{"name": "a", "arguments": {}}</tool_call> <tool_call>{"name": "b"}</tool_call>'
    )
    assert [c["function"]["name"] for c in two] == ["a", "b"] and two[1]["function"]["arguments"] == "{}"
    listed = answer_tool_calls('[{"name": "a", "parameters": {"x": 1}}]')
    assert listed == [{"type": "function", "function": {"name": "a", "arguments": '{"x": 1}'}}]


def test_the_estimate_counts_sets_and_prices_the_judge(world, editor):
    job, regression = world
    prices = {"input_price_per_mtok": 2, "output_price_per_mtok": 8}
    fields = EndpointFields("judge", "https://api.openai.com/v1", "judge-model", **prices)
    judge = endpoint_create(project=job.project, fields=fields, secret="")
    regression_set_pin(project=job.project, dataset=regression, actor=editor)

    estimate = evaluation_estimate(job=job, judge=judge, max_examples=10, max_new_tokens=20, retention_examples=5)

    assert estimate["examples"] == {"validation": 10, "regression": 3, "retention": 5 + 5}
    assert estimate["answers"] == 2 * 23 and estimate["judge_calls"] == 40
    expected = (estimate["judge_input_tokens"] * 2 + estimate["judge_output_tokens"] * 8) / 1e6
    assert float(estimate["judge_cost_usd"]) == pytest.approx(expected, abs=1e-4)
    without = evaluation_estimate(job=job, judge=None, max_examples=10, max_new_tokens=20, retention_examples=0)
    assert (without["judge_calls"], without["judge_cost_usd"], without["examples"]["retention"]) == (0, None, 0)


def test_regression_sets_are_pinned_and_unpinned_by_editors_and_audited(client, world, editor, viewer):
    job, regression = world
    slug = job.project.slug
    client.force_login(viewer)
    assert client.post(f"/p/{slug}/evaluation-sets/", {"dataset": regression.pk}).status_code == 403
    assert "Pin as a regression set" not in client.get(f"/p/{slug}/evaluation-sets/").content.decode()
    client.force_login(editor)

    response = client.post(f"/p/{slug}/evaluation-sets/", {"dataset": regression.pk})

    assert response.status_code == 302
    pinned = RegressionSet.objects.get(project=job.project)
    assert AuditEvent.objects.get(action="evaluation.regression_set_pin").detail["regression_set"] == pinned.pk
    again = client.post(f"/p/{slug}/evaluation-sets/", {"dataset": regression.pk}, follow=True).content.decode()
    assert "Already a regression set" in again
    assert "colours-general" in client.get(f"/p/{slug}/evaluation-sets/").content.decode()
    assert client.post(f"/p/{slug}/evaluation-sets/{pinned.pk}/unpin").status_code == 302
    assert not RegressionSet.objects.exists()
    assert AuditEvent.objects.filter(action="evaluation.regression_set_unpin").count() == 1


def test_the_api_pins_lists_and_unpins_and_names_bad_fields(client_for, world, editor, viewer, outsider_project):
    job, regression = world
    api, url = client_for(editor), "/api/v1/regression-sets?project=acme"
    other = Dataset.objects.create(project=outsider_project, name="Theirs")

    foreign = api.post(url, {"dataset": other.pk}, format="json")
    assert foreign.status_code == 400 and foreign.json() == {
        "dataset": [f"Dataset {other.pk} not found in this project."]
    }
    neither = api.post(url, {}, format="json")
    assert neither.json() == {"dataset": ["Give a dataset or a snapshot, one of the two."]}
    created = api.post(url, {"dataset": regression.pk}, format="json")
    assert created.status_code == 201 and created.json()["name"] == "dataset Regression"
    pinned = created.json()["id"]
    assert [row["id"] for row in client_for(viewer).get(url).json()["results"]] == [pinned]
    assert client_for(viewer).delete(f"/api/v1/regression-sets/{pinned}?project=acme").status_code == 403
    assert api.delete(f"/api/v1/regression-sets/{pinned}?project=acme").status_code == 204
    runs = f"/api/v1/finetunes/{job.pk}/evaluations"
    estimate = client_for(viewer).post(f"{runs}/estimate?project=acme", {"max_examples": 5}, format="json")
    assert estimate.status_code == 200 and estimate.json()["examples"]["validation"] == 5
    bad = api.post(f"{runs}?project=acme", {"retention_examples": -1, "slice_key": "x" * 101}, format="json")
    assert bad.status_code == 400 and set(bad.json()) == {"retention_examples", "slice_key"}
