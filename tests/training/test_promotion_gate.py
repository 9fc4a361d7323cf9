"""The promotion gate: each condition of a project's rule passing and failing with its reason, a measure the run did
not take failing, the verdict stored with a run when it succeeds and kept when the rule changes later, the rule's
rights, API, page and audit."""

import pytest
from rest_framework.test import APIClient

from curation.models import AuditEvent, Role
from curation.projects.services import api_key_create
from tests.factories import DatasetFactory, EvaluationRunFactory, FineTuneJobFactory
from training.evaluation.gate import GateRule, gate_verdict, rule_conditions
from training.evaluation.promotion.services import evaluation_gate_record, promotion_rule_update
from training.evaluation.services import evaluation_score_run
from training.models import EvaluationRun, FineTuneStatus, PromotionRule

RULE_BODY = {
    "min_teacher_win_rate": 0.45, "min_teacher_win_rate_low": 0.4, "min_base_win_rate": None,
    "max_retention_loss_increase": 0.02, "no_flagged_slices": True, "min_judged_examples": 30,
}  # fmt: skip


def estimate(value: float, low: float, high: float, n: int) -> dict:
    return {"value": value, "low": low, "high": high, "n": n}


def a_slice(value: str, *, flagged: bool = False, by: str = "tag") -> dict:
    tuned = 0.48 if flagged else 0.66
    return {
        "by": by, "value": value, "n": 40, "metric": "exact_match", "base": estimate(0.61, 0.46, 0.76, 40),
        "tuned": estimate(tuned, 0.33, 0.63, 40), "delta": estimate(tuned - 0.61, -0.22, -0.04, 40),
        "flagged": flagged,
    }  # fmt: skip


def results(
    *, teacher: dict | None = None, base: dict | None = None, loss_change: dict | None = None,
    slices: list | None = None, judge: bool = True,
) -> dict:  # fmt: skip
    """What a run that measured everything stores, each measure replaceable; `judge=False`: no judge ran."""
    out: dict = {"examples": 120, "metrics": {}}
    if judge:
        teacher = teacher or estimate(0.52, 0.46, 0.58, 120)
        base = base or estimate(0.61, 0.55, 0.67, 120)
        out["judge"] = {
            "teacher": {"win_rate": teacher, "wins": 50, "ties": 25, "losses": 45, "judged": 120, "failed": 0},
            "base": {"win_rate": base, "wins": 60, "ties": 26, "losses": 34, "judged": 120, "failed": 0},
        }
    out["forgetting"] = {"loss_change": loss_change or estimate(0.01, -0.004, 0.024, 200)}
    out["slices"] = [a_slice("refunds"), a_slice("de", by="metadata:lang")] if slices is None else slices
    return out


def reasons(verdict: dict) -> dict[str, str]:
    return {check["name"]: check["reason"] for check in verdict["checks"]}


def outcome(verdict: dict) -> dict[str, bool]:
    return {check["name"]: check["passed"] for check in verdict["checks"]}


# --- the verdict, condition by condition (no database) ---------------------------------------------------------


def test_a_run_that_meets_the_default_rule_passes_with_a_reason_for_each_condition():
    verdict = gate_verdict(GateRule(), results())

    assert verdict["passed"] is True
    assert outcome(verdict) == {
        "teacher_win_rate": True, "teacher_win_rate_low": True, "retention_loss": True, "slices": True,
        "judged_examples": True,
    }  # fmt: skip
    assert reasons(verdict) == {
        "teacher_win_rate": "Win rate against the teacher 52% [46%, 58%] (n=120) is at least 45%.",
        "teacher_win_rate_low": "Win rate against the teacher 52% [46%, 58%] (n=120): its lower bound 46% is at "
        "least 40%.",
        "retention_loss": "Retention loss 1.0% worse than the base model's [-0.4%, +2.4%] (n=200), within the 2% "
        "allowed.",
        "slices": "No slice is worse than the base model beyond its interval (2 slices).",
        "judged_examples": "120 examples were judged: at least 30.",
    }


def test_a_win_rate_against_the_teacher_below_the_minimum_fails_quoting_the_numbers():
    verdict = gate_verdict(GateRule(), results(teacher=estimate(0.41, 0.35, 0.47, 120)))

    assert verdict["passed"] is False
    assert outcome(verdict)["teacher_win_rate"] is False and outcome(verdict)["teacher_win_rate_low"] is False
    assert reasons(verdict)["teacher_win_rate"] == "Win rate against the teacher 41% [35%, 47%] (n=120) is below 45%."
    assert reasons(verdict)["teacher_win_rate_low"] == (
        "Win rate against the teacher 41% [35%, 47%] (n=120): its lower bound 35% is below 40%."
    )


def test_a_win_rate_above_the_minimum_with_too_wide_an_interval_fails_on_its_lower_bound_alone():
    verdict = gate_verdict(GateRule(), results(teacher=estimate(0.5, 0.38, 0.62, 40)))

    assert verdict["passed"] is False
    assert outcome(verdict)["teacher_win_rate"] is True and outcome(verdict)["teacher_win_rate_low"] is False
    assert reasons(verdict)["teacher_win_rate_low"] == (
        "Win rate against the teacher 50% [38%, 62%] (n=40): its lower bound 38% is below 40%."
    )


def test_a_rate_just_under_the_minimum_is_shown_with_the_decimals_that_tell_them_apart():
    verdict = gate_verdict(GateRule(), results(teacher=estimate(0.449, 0.42, 0.48, 500)))

    assert reasons(verdict)["teacher_win_rate"] == (
        "Win rate against the teacher 44.9% [42.0%, 48.0%] (n=500) is below 45%."
    )


def test_the_win_rate_against_the_base_model_is_checked_only_when_the_rule_asks():
    assert "base_win_rate" not in outcome(gate_verdict(GateRule(), results(base=estimate(0.2, 0.1, 0.3, 120))))

    rule = GateRule(min_base_win_rate=0.5)
    passing = gate_verdict(rule, results())
    failing = gate_verdict(rule, results(base=estimate(0.44, 0.38, 0.5, 120)))

    assert (
        reasons(passing)["base_win_rate"] == "Win rate against the base model 61% [55%, 67%] (n=120) is at least 50%."
    )
    assert failing["passed"] is False
    assert reasons(failing)["base_win_rate"] == "Win rate against the base model 44% [38%, 50%] (n=120) is below 50%."


def test_a_retention_loss_worse_than_allowed_fails_and_one_that_improved_passes():
    worse = gate_verdict(GateRule(), results(loss_change=estimate(0.031, 0.012, 0.05, 200)))
    better = gate_verdict(GateRule(), results(loss_change=estimate(-0.015, -0.03, 0.002, 200)))

    assert worse["passed"] is False and outcome(worse)["retention_loss"] is False
    assert reasons(worse)["retention_loss"] == (
        "Retention loss 3.1% worse than the base model's [+1.2%, +5.0%] (n=200), more than the 2% allowed."
    )
    assert better["passed"] is True
    assert reasons(better)["retention_loss"] == (
        "Retention loss 1.5% better than the base model's [-3.0%, +0.2%] (n=200), within the 2% allowed."
    )


def test_a_rule_may_ask_the_retention_loss_to_improve():
    rule = GateRule(max_retention_loss_increase=-0.01)

    verdict = gate_verdict(rule, results(loss_change=estimate(-0.005, -0.02, 0.01, 200)))

    assert outcome(verdict)["retention_loss"] is False
    assert reasons(verdict)["retention_loss"] == (
        "Retention loss 0.5% better than the base model's [-2.0%, +1.0%] (n=200), less than the 1% improvement "
        "required."
    )
    assert "a retention loss at least 1% better than the base model's" in rule_conditions(rule)


def test_a_flagged_slice_fails_the_gate_naming_it_with_its_numbers():
    slices = [a_slice("refunds", flagged=True), a_slice("billing"), a_slice("de", flagged=True, by="metadata:lang")]

    verdict = gate_verdict(GateRule(), results(slices=slices))

    assert verdict["passed"] is False and outcome(verdict)["slices"] is False
    assert reasons(verdict)["slices"] == (
        'Worse than the base model beyond the interval on 2 of 3 slices: tag "refunds" (exact_match 0.480 against '
        '0.610, difference -0.130 [-0.220, -0.040], n=40); metadata lang = "de" (exact_match 0.480 against 0.610, '
        "difference -0.130 [-0.220, -0.040], n=40)."
    )
    assert "slices" not in outcome(gate_verdict(GateRule(no_flagged_slices=False), results(slices=slices)))


def test_too_few_judged_examples_fail_the_gate():
    few = estimate(0.6, 0.4, 0.8, 12)
    judged = results(teacher=few)

    verdict = gate_verdict(GateRule(min_teacher_win_rate_low=None), judged)

    assert outcome(verdict) == {"teacher_win_rate": True, "retention_loss": True, "slices": True,
                                "judged_examples": False}  # fmt: skip
    assert reasons(verdict)["judged_examples"] == (
        "12 examples were judged (the fewest over its comparisons): fewer than 30, too few for the win rate to say "
        "much."
    )
    assert "judged_examples" not in outcome(gate_verdict(GateRule(min_judged_examples=0), judged))


# --- a measure the run did not take fails, saying what was not measured ---------------------------------------


def test_without_a_judge_every_judged_condition_fails_saying_no_judge_was_used():
    verdict = gate_verdict(GateRule(min_base_win_rate=0.5), results(judge=False))

    assert verdict["passed"] is False
    assert {name: passed for name, passed in outcome(verdict).items() if not passed} == {
        "teacher_win_rate": False, "teacher_win_rate_low": False, "base_win_rate": False, "judged_examples": False,
    }  # fmt: skip
    assert reasons(verdict)["teacher_win_rate"] == "No judge was used: the win rate against the teacher is unknown."
    assert reasons(verdict)["base_win_rate"] == "No judge was used: the win rate against the base model is unknown."
    assert reasons(verdict)["judged_examples"] == "No judge was used: no example was judged."


def test_a_judge_whose_calls_all_failed_gives_no_win_rate_and_fails():
    judged = results()
    judged["judge"]["teacher"] |= {"win_rate": None, "judged": 0, "failed": 120}

    verdict = gate_verdict(GateRule(), judged)

    assert reasons(verdict)["teacher_win_rate"] == (
        "The judge gave no verdict against the teacher (its calls failed): that win rate is unknown."
    )
    assert reasons(verdict)["judged_examples"].startswith("0 examples were judged (the fewest over its comparisons)")


def test_without_a_retention_set_or_slices_those_conditions_fail_saying_what_was_not_measured():
    measured = results()
    del measured["forgetting"]
    measured["slices"] = []

    verdict = gate_verdict(GateRule(), measured)

    assert verdict["passed"] is False
    assert reasons(verdict)["retention_loss"] == (
        "No retention set was evaluated: the change in retention loss is unknown."
    )
    assert reasons(verdict)["slices"].startswith("No slices were evaluated:")
    assert outcome(verdict)["retention_loss"] is False and outcome(verdict)["slices"] is False
    del measured["slices"]
    assert outcome(gate_verdict(GateRule(), measured))["slices"] is False


def test_a_rule_with_no_condition_fails_every_run():
    nothing = GateRule(None, None, None, None, False, 0)

    verdict = gate_verdict(nothing, results())

    assert verdict == {"passed": False, "checks": [
        {"name": "rule", "passed": False, "reason": "The rule has no condition: nothing was checked."}
    ]}  # fmt: skip
    assert rule_conditions(nothing) == []


# --- the verdict stored with a run ------------------------------------------------------------------------------


@pytest.fixture
def finetune(project):
    return FineTuneJobFactory(dataset=DatasetFactory(project=project), status=FineTuneStatus.SUCCEEDED)


def succeeded(job, measured: dict) -> EvaluationRun:
    """A run that succeeded with `measured` as its results, its verdict stored as a finished run's is."""
    run = EvaluationRunFactory(job=job, status=FineTuneStatus.SUCCEEDED, results=measured)
    evaluation_gate_record(run_id=run.pk)
    run.refresh_from_db()
    return run


def test_a_run_that_succeeds_stores_its_verdict_under_the_project_rule_then(finetune, owner):
    promotion_rule_update(project=finetune.project, rule=GateRule(min_judged_examples=0), actor=owner)
    answers = [{"prompt": [{"role": "user", "content": "2+2?"}], "reference": "4", "base": "5", "tuned": "4"}] * 3
    run = EvaluationRunFactory(job=finetune, status=FineTuneStatus.RUNNING, stage="scoring", examples=answers)

    evaluation_score_run(run_id=run.pk)

    run.refresh_from_db()
    assert run.status == FineTuneStatus.SUCCEEDED
    gate = run.results["gate"]
    assert gate["rule"] == GateRule(min_judged_examples=0).as_dict()
    assert gate["passed"] is False and "judged_examples" not in outcome(gate)
    assert reasons(gate)["teacher_win_rate"] == "No judge was used: the win rate against the teacher is unknown."


def test_a_run_that_did_not_succeed_gets_no_verdict(finetune):
    for status in (FineTuneStatus.FAILED, FineTuneStatus.CANCELLED, FineTuneStatus.RUNNING):
        run = EvaluationRunFactory(job=finetune, status=status, results=results())

        evaluation_gate_record(run_id=run.pk)

        run.refresh_from_db()
        assert "gate" not in run.results, status


def test_the_stored_verdict_survives_a_rule_change_and_the_current_one_is_shown_beside_it(
    finetune, owner, client_for, client
):
    run = succeeded(finetune, results())
    stored = run.results["gate"]
    assert stored["passed"] is True

    promotion_rule_update(project=finetune.project, rule=GateRule(min_teacher_win_rate=0.6), actor=owner)
    evaluation_gate_record(run_id=run.pk)  # a second call changes nothing

    run.refresh_from_db()
    assert run.results["gate"] == stored
    answer = client_for(owner).get(f"/api/v1/finetunes/{finetune.pk}/evaluations/{run.pk}?project=acme").json()
    assert (answer["gate"]["passed"], answer["gate"]["rule"]) == (True, GateRule().as_dict())
    current = answer["gate"]["current"]
    assert current["passed"] is False and current["rule"]["min_teacher_win_rate"] == 0.6
    assert reasons(current)["teacher_win_rate"] == "Win rate against the teacher 52% [46%, 58%] (n=120) is below 60%."
    client.force_login(owner)
    page = client.get(f"/p/acme/finetunes/{finetune.pk}/").content.decode()
    assert "Passes the promotion gate" in page and "under the rule as it is now (changed since this run)" in page
    assert "is below 60%." in page


def test_the_api_shows_no_current_verdict_while_the_rule_is_the_one_the_run_was_judged_by(
    finetune, viewer, client_for
):
    run = succeeded(finetune, results(teacher=estimate(0.41, 0.35, 0.47, 120)))

    answer = client_for(viewer).get(f"/api/v1/finetunes/{finetune.pk}/evaluations/{run.pk}?project=acme").json()

    assert answer["gate"]["passed"] is False and answer["gate"]["current"] is None
    assert "Win rate against the teacher 41% [35%, 47%] (n=120) is below 45%." in reasons(answer["gate"]).values()


def test_the_fine_tune_api_answers_the_gate_of_its_latest_succeeded_run(finetune, viewer, client_for):
    api = client_for(viewer)
    assert api.get(f"/api/v1/finetunes/{finetune.pk}?project=acme").json()["gate"] is None
    older = succeeded(finetune, results(teacher=estimate(0.41, 0.35, 0.47, 120)))
    latest = succeeded(finetune, results())
    EvaluationRunFactory(job=finetune, status=FineTuneStatus.FAILED)  # newer, but failed

    gate = api.get(f"/api/v1/finetunes/{finetune.pk}?project=acme").json()["gate"]

    assert older.pk < latest.pk and (gate["evaluation"], gate["passed"]) == (latest.pk, True)
    assert "gate" not in api.get("/api/v1/finetunes?project=acme").json()["results"][0]


def test_the_fine_tunes_list_shows_each_ones_badge(finetune, project, viewer, client):
    failing = FineTuneJobFactory(dataset=finetune.dataset, status=FineTuneStatus.SUCCEEDED)
    not_evaluated = FineTuneJobFactory(dataset=finetune.dataset, status=FineTuneStatus.SUCCEEDED)
    succeeded(finetune, results())
    succeeded(failing, results(judge=False))
    client.force_login(viewer)

    page = client.get("/p/acme/finetunes/").content.decode()

    rows = {job.pk: page.split(f"/p/acme/finetunes/{job.pk}/")[1].split("</tr>")[0]
            for job in (finetune, failing, not_evaluated)}  # fmt: skip
    assert "passes the gate" in rows[finetune.pk] and "fails the gate" not in rows[finetune.pk]
    assert "fails the gate" in rows[failing.pk]
    assert "the gate" not in rows[not_evaluated.pk]


# --- the rule: rights, API, page, audit -------------------------------------------------------------------------


def keyed(project, role: str) -> APIClient:
    return APIClient(HTTP_AUTHORIZATION=f"Bearer {api_key_create(project=project, name=role, role=role)[1]}")


def test_members_read_the_default_rule_and_reading_it_stores_nothing(project, viewer, client_for):
    answer = client_for(viewer).get("/api/v1/promotion-rule?project=acme")

    assert answer.status_code == 200
    assert answer.json() == {**RULE_BODY, "updated_at": None, "updated_by": None}
    assert not PromotionRule.objects.exists()


def test_only_owners_set_the_rule(project, owner, editor, viewer, client_for):
    body = {**RULE_BODY, "min_teacher_win_rate": 0.5, "min_base_win_rate": 0.55}

    refused = [client_for(user).put("/api/v1/promotion-rule?project=acme", body, format="json").status_code
               for user in (viewer, editor)]  # fmt: skip
    refused_key = keyed(project, Role.EDITOR).put("/api/v1/promotion-rule", body, format="json").status_code
    by_key = keyed(project, Role.OWNER).put("/api/v1/promotion-rule", body, format="json")

    assert refused == [403, 403] and refused_key == 403
    assert by_key.status_code == 200, by_key.json()
    assert by_key.json()["min_base_win_rate"] == 0.55 and by_key.json()["updated_by"] == (
        f"API key lt_{project.api_keys.get(name=Role.OWNER).prefix}_…"
    )
    rule = PromotionRule.objects.get(project=project)
    assert (rule.min_teacher_win_rate, rule.min_base_win_rate, rule.updated_by_key.name) == (0.5, 0.55, Role.OWNER)


def test_a_rule_out_of_range_or_incomplete_is_refused_naming_the_field(project, owner, client_for):
    api = client_for(owner)

    too_high = api.put("/api/v1/promotion-rule?project=acme", {**RULE_BODY, "min_teacher_win_rate": 45},
                       format="json")  # fmt: skip
    missing = api.put("/api/v1/promotion-rule?project=acme",
                      {k: v for k, v in RULE_BODY.items() if k != "no_flagged_slices"}, format="json")  # fmt: skip
    text = api.put("/api/v1/promotion-rule?project=acme", {**RULE_BODY, "min_judged_examples": "30"}, format="json")

    assert (too_high.status_code, list(too_high.json())) == (400, ["min_teacher_win_rate"])
    assert (missing.status_code, list(missing.json())) == (400, ["no_flagged_slices"])
    assert (text.status_code, list(text.json())) == (400, ["min_judged_examples"])
    assert not PromotionRule.objects.exists()


def test_a_change_is_audited_with_what_changed_and_no_change_is_not(project, owner, client_for):
    api = client_for(owner)
    body = {**RULE_BODY, "min_teacher_win_rate": 0.5, "no_flagged_slices": False}

    api.put("/api/v1/promotion-rule?project=acme", body, format="json")
    api.put("/api/v1/promotion-rule?project=acme", body, format="json")

    event = AuditEvent.objects.get(action="promotion_rule.update")
    assert (event.actor, event.project) == (owner, project)
    assert event.detail == {
        "min_teacher_win_rate": {"from": 0.45, "to": 0.5}, "no_flagged_slices": {"from": True, "to": False},
    }  # fmt: skip


def test_owners_set_the_rule_on_the_project_page_in_percent(project, owner, client):
    client.force_login(owner)
    form = {"min_teacher_win_rate": "50", "min_teacher_win_rate_low": "42.5", "min_base_win_rate": "",
            "max_retention_loss_increase": "1", "min_judged_examples": "50"}  # fmt: skip

    answer = client.post("/p/acme/promotion-rule", form)

    assert answer.status_code == 302 and answer["Location"] == "/p/acme/#promotion-rule"
    assert PromotionRule.objects.get(project=project).gate_rule == GateRule(0.5, 0.425, None, 0.01, False, 50)
    assert AuditEvent.objects.get(action="promotion_rule.update").actor == owner
    page = client.get("/p/acme/").content.decode()
    assert 'id="promotion-rule-form"' in page and 'value="42.5"' in page
    assert "a win rate against the teacher of at least 50%" in page and "at least 50 examples judged" in page


def test_a_bad_value_on_the_page_is_refused_and_changes_nothing(project, owner, client):
    client.force_login(owner)

    client.post("/p/acme/promotion-rule", {**dict.fromkeys(RULE_BODY, ""), "min_teacher_win_rate": "120",
                                           "min_judged_examples": "30"})  # fmt: skip

    assert not PromotionRule.objects.exists()
    assert "Ensure this value is less than or equal to 100" in client.get("/p/acme/").content.decode()


def test_editors_and_viewers_see_the_rule_on_the_project_page_without_its_form(project, editor, viewer, client):
    for member in (editor, viewer):
        client.force_login(member)

        page = client.get("/p/acme/").content.decode()

        assert 'id="promotion-rule"' in page and 'id="promotion-rule-form"' not in page
        assert "a win rate against the teacher of at least 45%" in page
        assert "its interval&#x27;s lower bound at least 40%" in page
        assert client.post("/p/acme/promotion-rule", {"min_judged_examples": "1"}).status_code == 403
    assert not PromotionRule.objects.exists()
