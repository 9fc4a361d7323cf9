"""The list of fine-tunes as a sortable table, and two to six fine-tunes compared: curves, metrics with intervals,
the settings they differ in, and their answers side by side. Jobs, metric points and evaluation runs are rows built
by the factories: nothing is trained."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from curation.models import Role
from tests.factories import (
    BaseModelFactory,
    DatasetFactory,
    EvaluationRunFactory,
    FineTuneJobFactory,
    MetricPointFactory,
    ProjectFactory,
    UserFactory,
    qa,
)
from training import views
from training.models import FineTuneJob, FineTuneStatus, Method

pytestmark = pytest.mark.django_db

T0 = timezone.now() - timedelta(days=1)


def estimate(value: float, low: float, high: float, n: int = 50) -> dict:
    return {"value": value, "low": low, "high": high, "n": n}


def judged(teacher: float, base: float = 0.5) -> dict:
    """Win rates as a judge leaves them, each ±0.1 around its value."""
    interval = {"teacher": (round(teacher - 0.1, 2), round(teacher + 0.1, 2)), "base": (base - 0.1, base + 0.1)}
    return {"judge": {"teacher": {"win_rate": estimate(teacher, *interval["teacher"]), "wins": 1},
                      "base": {"win_rate": estimate(base, *interval["base"])}}}  # fmt: skip


def job_with(
    project, *, dataset: str, base: str, method: str, lr: float, epochs: float, rank: int, seconds: int,
    speeds: list[float], status: str, losses: tuple[float, float], created: int,
) -> FineTuneJob:  # fmt: skip
    """A job whose every column in the table has its own value."""
    started = T0 + timedelta(minutes=created)
    running = status == FineTuneStatus.RUNNING
    job = FineTuneJobFactory(
        dataset=DatasetFactory(project=project, name=dataset), base_model=BaseModelFactory(name=base), method=method,
        hyperparameters={"learning_rate": lr, "epochs": epochs, "lora_rank": rank, "batch_size": 4},
        status=status, created_at=started, started_at=started,
        finished_at=None if running else started + timedelta(seconds=seconds),
        heartbeat_at=started + timedelta(seconds=seconds),
        evaluation={"base": {"eval_loss": losses[0]}, "tuned": {"eval_loss": losses[1]}},
        summary={"start": {"examples_validation": 12}},
    )  # fmt: skip
    for step, speed in enumerate(speeds, 1):
        MetricPointFactory(job=job, step=step, train_loss=2.0 / step, tokens_per_second=speed)
    return job


@pytest.fixture
def three(project):
    """A, B and C, created in that order, whose columns sort in different orders."""
    a = job_with(project, dataset="alpha", base="m-b", method=Method.LORA, lr=3e-4, epochs=1, rank=8, seconds=300,
                 speeds=[40, 60], status=FineTuneStatus.SUCCEEDED, losses=(2.0, 0.9), created=2)  # fmt: skip
    b = job_with(project, dataset="Beta", base="m-c", method=Method.FULL, lr=1e-5, epochs=3, rank=16, seconds=60,
                 speeds=[200], status=FineTuneStatus.FAILED, losses=(2.1, 0.5), created=0)  # fmt: skip
    c = job_with(project, dataset="gamma", base="m-a", method=Method.QLORA, lr=1e-4, epochs=2, rank=32, seconds=3600,
                 speeds=[100, 140], status=FineTuneStatus.RUNNING, losses=(2.2, 1.2), created=1)  # fmt: skip
    # A's latest succeeded run is the one shown; a later failed one and an earlier succeeded one are not.
    EvaluationRunFactory(job=a, status=FineTuneStatus.SUCCEEDED, results=judged(0.2), created_at=T0)
    EvaluationRunFactory(
        job=a, status=FineTuneStatus.SUCCEEDED, results=judged(0.7), created_at=T0 + timedelta(hours=1)
    )
    EvaluationRunFactory(job=a, status=FineTuneStatus.FAILED, results=judged(0.9), created_at=T0 + timedelta(hours=2))
    EvaluationRunFactory(job=b, status=FineTuneStatus.SUCCEEDED, results=judged(0.4), created_at=T0)
    return {"A": a, "B": b, "C": c}


def listed(client, query: str) -> list[int]:
    response = client.get(f"/p/acme/finetunes/{query}")
    assert response.status_code == 200
    return [row["job"].pk for row in response.context["jobs"]]


# Ascending, by the values above; None marks the jobs with no value, last in both directions.
ORDERS = {
    "id": "ABC", "dataset": "ABC", "base": "CAB", "method": "BAC", "learning_rate": "BCA", "epochs": "ACB",
    "lora_rank": "AC", "duration": "BAC", "tokens_per_second": "ACB", "status": "CAB", "eval_loss": "BAC",
    "win_rate": "BA", "created": "BCA",
}  # fmt: skip


@pytest.mark.parametrize("column", sorted(ORDERS))
def test_the_list_sorts_by_each_column_both_ways_with_missing_values_last(client, viewer, three, column):
    client.force_login(viewer)
    ascending = [three[name].pk for name in ORDERS[column]]
    missing = [job.pk for name, job in three.items() if name not in ORDERS[column]]

    assert listed(client, f"?sort={column}") == ascending + missing
    assert listed(client, f"?sort=-{column}") == ascending[::-1] + missing


def test_every_column_of_the_table_can_be_sorted():
    assert {key for key, _, _ in views.FINETUNE_COLUMNS} == set(ORDERS)


@pytest.mark.parametrize("sort", ["", "nothing", "--id", "id;drop", "-"])
def test_a_sort_no_column_has_is_ignored_for_the_newest_first(client, viewer, three, sort):
    client.force_login(viewer)

    assert listed(client, f"?sort={sort}") == [three["A"].pk, three["C"].pk, three["B"].pk]


def test_the_table_shows_each_column_and_links_its_head_to_the_other_direction(client, viewer, three):
    client.force_login(viewer)

    page = client.get("/p/acme/finetunes/?sort=eval_loss").content.decode()

    assert '<th class="num" aria-sort="ascending"><a href="?sort=-eval_loss" data-sort="eval_loss">Val. loss ▲' in page
    assert '<a href="?sort=duration" data-sort="duration">Duration</a>' in page
    a = page[page.index(f'<tr data-job="{three["A"].pk}">') :].split("</tr>")[0]
    assert ">alpha</a>" in a and "m-b" in a and ">lora<" in a and ">0.0003<" in a and ">1<" in a and ">8<" in a
    assert ">5:00<" in a and ">50<" in a and "Succeeded" in a and "2.000 →</span> 0.900" in a
    assert '70%</a> <span class="muted">[60–80%]</span>' in a and f'name="ids" value="{three["A"].pk}"' in a
    b = page[page.index(f'<tr data-job="{three["B"].pk}">') :].split("</tr>")[0]
    assert ">1e-05<" in b and "40%" in b and ">—<" in b  # a full fine-tune has no LoRA rank
    c = page[page.index(f'<tr data-job="{three["C"].pk}">') :].split("</tr>")[0]
    assert ">1:00:00<" in c and ">120<" in c and "<progress" in c and 'data-column="win_rate">—<' in c


def test_the_list_is_paged_keeping_its_order(client, viewer, three, monkeypatch):
    monkeypatch.setattr(views, "FINETUNES_PAGE_SIZE", 2)
    client.force_login(viewer)

    first = client.get("/p/acme/finetunes/?sort=duration")
    second = client.get(first.context["next_url"].replace("?", "/p/acme/finetunes/?"))

    assert first.context["next_url"] == "?sort=duration&page=2"
    assert [row["job"].pk for row in second.context["jobs"]] == [three["C"].pk]
    assert second.context["previous_url"] == "?sort=duration&page=1" and second.context["next_url"] == ""
    assert listed(client, "?sort=duration&page=9" + "9" * 40) == [three["C"].pk]  # past the end: the last page


def test_the_list_reads_in_the_same_few_queries_however_many_jobs_it_shows(
    client, viewer, three, django_assert_max_num_queries
):
    client.force_login(viewer)
    client.get("/p/acme/finetunes/")  # the session and the membership, read once
    with django_assert_max_num_queries(8) as three_jobs:
        client.get("/p/acme/finetunes/?sort=win_rate")
    for name in ("delta", "epsilon", "zeta"):
        job_with(three["A"].project, dataset=name, base=f"m-{name}", method=Method.LORA, lr=1e-4, epochs=1, rank=8,
                 seconds=10, speeds=[1], status=FineTuneStatus.SUCCEEDED, losses=(1, 1), created=9)  # fmt: skip

    with django_assert_max_num_queries(len(three_jobs.captured_queries)):
        client.get("/p/acme/finetunes/?sort=win_rate")


def test_the_compare_form_sends_the_ticked_jobs_to_the_compare_page(client, viewer, three):
    client.force_login(viewer)

    page = client.get("/p/acme/finetunes/").content.decode()

    assert 'action="/p/acme/finetunes/compare"' in page and 'method="get"' in page and "data-compare-button" in page


# --- compared ----------------------------------------------------------------------------------------------------


def examples(*rows: tuple[int | None, str, str]) -> list[dict]:
    """Evaluation examples: (entry id, question, the job's answer); the logged answer is "logged <question>"."""
    return [{"entry_id": entry, "line": i, "prompt": qa(question, "")[:1], "reference": f"logged {question}",
             "base": "base says", "tuned": answer, "verdict_teacher": 1.0 if "right" in answer else 0.0}
            for i, (entry, question, answer) in enumerate(rows, 1)]  # fmt: skip


def metrics(rouge: float, exact: float) -> dict:
    tuned = {"rouge_l": estimate(rouge, rouge - 0.05, rouge + 0.05, 40), "exact_match": estimate(exact, 0.1, 0.3, 40),
             "bleurt": estimate(0.99, 0.9, 1.0)}  # fmt: skip
    return {"metrics": {"base": {"rouge_l": estimate(0.1, 0.05, 0.15, 40)}, "tuned": tuned, "labels": {"base": {}}}}


def compare(client, *jobs: FineTuneJob, query: str = ""):
    return client.get(f"/p/acme/finetunes/compare?ids={','.join(str(job.pk) for job in jobs)}{query}")


@pytest.fixture
def x_and_y(three):
    """A and B with evaluation runs whose examples overlap: by entry, by prompt alone, and some not at all."""
    a, b = three["A"], three["B"]
    EvaluationRunFactory(
        job=a, status=FineTuneStatus.SUCCEEDED, created_at=T0 + timedelta(hours=3),
        results=metrics(0.62, 0.2) | judged(0.7),
        examples=examples((11, "one?", "right one"), (None, "two?", "A two"), (13, "three?", "A three"),
                          (15, "five?", "right five")),
    )  # fmt: skip
    EvaluationRunFactory(
        job=b, status=FineTuneStatus.SUCCEEDED, created_at=T0 + timedelta(hours=3),
        results=metrics(0.48, 0.25) | judged(0.4),
        examples=examples((25, "five?", "B five"), (None, "two?", "right two"), (11, "one!", "B one"),
                          (14, "four?", "B four")),
    )  # fmt: skip
    return a, b


def test_two_jobs_compared_show_their_metrics_with_intervals_and_n(client, viewer, x_and_y):
    a, b = x_and_y
    client.force_login(viewer)

    response = compare(client, b, a)

    assert response.status_code == 200
    assert [row["job"].pk for row in response.context["jobs"]] == [b.pk, a.pk]  # in the order asked
    rows = {row["label"]: row["cells"] for row in response.context["metrics"]}
    assert list(rows) == ["Validation loss (trainer)", "Exact match", "ROUGE-L", "Win rate against the base model",
                          "Win rate against the logged answers (the teacher)"]  # fmt: skip
    assert rows["ROUGE-L"][0] == (estimate(0.48, 0.43, 0.53, 40), estimate(0.1, 0.05, 0.15, 40))
    assert rows["Validation loss (trainer)"][1][0] == {"value": 0.9, "low": None, "high": None, "n": 12}
    assert rows["Win rate against the logged answers (the teacher)"][1] == (estimate(0.7, 0.6, 0.8), None)
    html = response.content.decode()
    assert '0.620 <span class="muted">[0.570, 0.670]</span> <small class="muted">n=40</small>' in html
    assert '<strong>70%</strong> <span class="muted">[60–80%]</span> <small class="muted">n=50</small>' in html
    assert "bleurt" not in html and "0.990" not in html  # a metric this page does not know is left out


def test_the_settings_table_marks_only_the_rows_that_differ(client, viewer, three):
    a, b, c = three["A"], three["B"], three["C"]
    FineTuneJob.objects.filter(pk=c.pk).update(hyperparameters={**c.hyperparameters, "seed": 7})
    client.force_login(viewer)

    response = compare(client, a, b, c)

    settings = {row.name: row for row in response.context["settings"]}
    assert {name for name, row in settings.items() if row.differs} == {
        "base_model", "method", "learning_rate", "epochs", "lora_rank", "seed",
    }  # fmt: skip
    assert settings["batch_size"].values == [4, 4, 4] and not settings["batch_size"].differs
    assert settings["seed"].values == [None, None, 7]
    html = response.content.decode()
    assert '<tr data-setting="seed" class="differs">' in html and '<tr data-setting="batch_size">' in html


def test_three_jobs_compared_draw_every_curve_in_its_own_colour(client, viewer, three):
    a, b, c = three["A"], three["B"], three["C"]
    MetricPointFactory(job=a, step=0, train_loss=None, eval_loss=2.0)
    MetricPointFactory(job=a, step=2, train_loss=None, eval_loss=1.1)
    client.force_login(viewer)

    response = compare(client, a, b, c)

    html = response.content.decode()
    curves = json.loads(html.split('<script id="compare-curves" type="application/json">')[1].split("</script>")[0])
    assert [(s["name"], s["colour"], s.get("dashed", False)) for s in curves] == [
        (f"#{a.pk} train", 0, False), (f"#{a.pk} validation", 0, True), (f"#{b.pk} train", 1, False),
        (f"#{b.pk} validation", 1, True), (f"#{c.pk} train", 2, False), (f"#{c.pk} validation", 2, True),
    ]  # fmt: skip
    assert curves[0]["points"] == [[1, 2.0], [2, 1.0]] and curves[1]["points"] == [[0, 2.0], [2, 1.1]]
    assert curves[1]["key"] is False  # the legend names each job once
    assert 'data-lines="compare-curves"' in html


def test_a_long_curve_is_thinned_to_its_shape(client, viewer, three, monkeypatch):
    from training.compare import selectors

    monkeypatch.setattr(selectors, "CURVE_POINTS_MAX", 3)
    a, b = three["A"], three["B"]
    for step in range(3, 11):
        MetricPointFactory(job=a, step=step, train_loss=1.0 / step)
    client.force_login(viewer)

    curves = compare(client, a, b).context["curves"]

    assert [step for step, _ in curves[0]["points"]] == [1, 5, 9, 10]  # every fourth, and the last


def test_answers_are_side_by_side_for_the_examples_the_runs_share_the_logged_answer_first(client, viewer, x_and_y):
    a, b = x_and_y
    client.force_login(viewer)

    response = compare(client, a, b)

    shared = [
        (row["reference"], [answer["answer"] for answer in row["answers"]]) for row in response.context["examples"]
    ]
    # one? by its entry (B's prompt differs), two? by its prompt (no entry), five? by its prompt (other entries).
    assert shared == [("logged one?", ["right one", "B one"]), ("logged two?", ["A two", "right two"]),
                      ("logged five?", ["right five", "B five"])]  # fmt: skip
    html = response.content.decode()
    head = html[html.index("<th>Prompt</th>") :].split("</tr>")[0]
    assert head == f"<th>Prompt</th><th>Logged answer</th><th>Fine-tune {a.pk}</th><th>Fine-tune {b.pk}</th>"
    assert "A three" not in html and "B four" not in html
    assert 'verdict-win" title="the judge, against the logged answer">win</span>' in html


def test_the_answers_are_paged_twenty_at_a_time(client, viewer, three):
    a, b = three["A"], three["B"]
    rows = [(None, f"q{i}?", f"answer {i}") for i in range(25)]
    for job in (a, b):
        EvaluationRunFactory(job=job, status=FineTuneStatus.SUCCEEDED, examples=examples(*rows),
                             created_at=T0 + timedelta(hours=5))  # fmt: skip
    client.force_login(viewer)

    first = compare(client, a, b)
    second = compare(client, a, b, query="&page=2")

    assert len(first.context["examples"]) == 20 and first.context["examples_total"] == 25
    assert first.context["next_url"] == f"?ids={a.pk}%2C{b.pk}&page=2#examples"
    assert [row["reference"] for row in second.context["examples"]] == [f"logged q{i}?" for i in range(20, 25)]


def test_a_job_without_an_evaluation_is_named_and_the_others_answers_shown(client, viewer, x_and_y, three):
    a, b = x_and_y
    client.force_login(viewer)

    response = compare(client, a, b, three["C"])

    assert [job.pk for job in response.context["example_jobs"]] == [a.pk, b.pk]
    assert f"No succeeded evaluation run for fine-tune {three['C'].pk}" in response.content.decode()
    assert len(response.context["examples"]) == 3


def test_the_api_answers_the_same_comparison(client_for, viewer, x_and_y):
    a, b = x_and_y

    answer = client_for(viewer).get(f"/api/v1/finetunes/compare?ids={a.pk},{b.pk}&project=acme")

    assert answer.status_code == 200
    body = answer.json()
    assert [job["id"] for job in body["jobs"]] == [a.pk, b.pk]
    assert body["jobs"][0]["duration_s"] == 300.0 and body["jobs"][0]["tokens_per_second"] == 50.0
    assert (body["jobs"][0]["eval_loss_base"], body["jobs"][0]["eval_loss_tuned"]) == (2.0, 0.9)
    assert body["jobs"][0]["evaluation_run"] is not None
    rouge = next(row for row in body["metrics"] if row["name"] == "rouge_l")
    assert rouge["kind"] == "evaluation" and rouge["values"] == [
        {"job": a.pk, "tuned": estimate(0.62, 0.57, 0.67, 40), "base": estimate(0.1, 0.05, 0.15, 40)},
        {"job": b.pk, "tuned": estimate(0.48, 0.43, 0.53, 40), "base": estimate(0.1, 0.05, 0.15, 40)},
    ]
    settings = {row["name"]: row for row in body["hyperparameters"]}
    assert settings["learning_rate"] == {"name": "learning_rate", "values": [3e-4, 1e-5], "differs": True}
    assert settings["batch_size"]["differs"] is False
    assert "examples" not in body


# --- who may compare what ----------------------------------------------------------------------------------------


def test_a_job_of_another_project_or_no_job_at_all_is_not_found(client, client_for, viewer, three):
    other = ProjectFactory(slug="other")
    theirs = FineTuneJobFactory(dataset=DatasetFactory(project=other))
    UserFactory(username="both", memberships=[(other, Role.OWNER)])
    client.force_login(viewer)
    api = client_for(viewer)
    a = three["A"]

    for ids in (f"{a.pk},{theirs.pk}", f"{a.pk},{theirs.pk + 1000}"):
        assert client.get(f"/p/acme/finetunes/compare?ids={ids}").status_code == 404
        assert api.get(f"/api/v1/finetunes/compare?ids={ids}&project=acme").status_code == 404
    assert client.get(f"/p/other/finetunes/compare?ids={a.pk},{theirs.pk}").status_code == 404  # not a member there


def test_an_outsider_finds_no_such_project(client, outsider, three):
    client.force_login(outsider)

    assert client.get(f"/p/acme/finetunes/compare?ids={three['A'].pk},{three['B'].pk}").status_code == 404


@pytest.mark.parametrize(
    ("ids", "problem"),
    [
        ("", "Choose two fine-tunes or more"),
        ("{A}", "Choose two fine-tunes or more"),
        ("{A},{A}", "Choose two fine-tunes or more"),
        ("{A},x", "&#x27;x&#x27; is not a fine-tune id"),
        ("{A},²", "is not a fine-tune id"),
        ("{A}," + "1" * 30, "is not a fine-tune id"),
        ("1,2,3,4,5,6,7", "At most 6 fine-tunes are compared at once; 7 were chosen"),
    ],
)
def test_fewer_than_two_or_bad_ids_are_refused_with_the_reason(client, viewer, three, ids, problem):
    client.force_login(viewer)

    response = client.get("/p/acme/finetunes/compare", {"ids": ids.format(A=three["A"].pk)})

    assert response.status_code == 400 and problem in response.content.decode()


def test_ids_are_taken_ticked_one_by_one_as_the_list_form_sends_them(client, viewer, three):
    client.force_login(viewer)

    response = client.get("/p/acme/finetunes/compare", {"ids": [three["A"].pk, f"{three['B'].pk}, {three['C'].pk}"]})

    assert [row["job"].pk for row in response.context["jobs"]] == [three[n].pk for n in "ABC"]


@pytest.mark.parametrize("ids", ["", "{A}", "{A},{A}", "{A},", " {A},{B}", "{A};{B}", "1,2,3,4,5,6,7"])
def test_the_api_refuses_fewer_than_two_or_bad_ids_naming_them(client_for, viewer, three, ids):
    query = ids.format(A=three["A"].pk, B=three["B"].pk)

    answer = client_for(viewer).get("/api/v1/finetunes/compare", {"ids": query, "project": "acme"})

    assert answer.status_code == 400 and list(answer.json()) == ["ids"]


def test_a_viewer_key_may_compare(project, three):
    from rest_framework.test import APIClient

    from tests.factories import ApiKeyFactory

    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {ApiKeyFactory(project=project, role=Role.VIEWER).raw}")

    answer = client.get(f"/api/v1/finetunes/compare?ids={three['A'].pk},{three['C'].pk}")

    assert answer.status_code == 200 and [job["id"] for job in answer.json()["jobs"]] == [three["A"].pk, three["C"].pk]
