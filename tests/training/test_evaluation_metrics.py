"""The evaluation's metrics: values, sample sizes and bootstrap intervals, and the pairwise judge against stand-in
judges (a fair one, one that always picks the first answer, one that states no verdict)."""

import re

import pytest

from tests.chat_stand_in import start_chat_stand_in
from training.endpoints.client import EndpointTarget
from training.evaluation.judge import DEFAULT_RUBRIC, Pair, judge_pairs, judge_summary, verdict_of
from training.evaluation.metrics import (
    LOSS,
    TIE,
    WIN,
    Estimate,
    agreement,
    chrf,
    estimate,
    exact_match,
    json_validity,
    label_report,
    relative_change,
    response_schema,
    rouge_l,
    schema_match,
    tool_call_match,
    win_rate,
)


def test_an_estimate_carries_its_sample_size_and_an_interval_around_it():
    found = estimate([1.0] * 70 + [0.0] * 30)

    assert (found.value, found.n) == (0.7, 100)
    assert found.low < 0.7 < found.high
    assert 0.15 < found.high - found.low < 0.2  # about ±9 points at n = 100
    assert estimate([1.0] * 70 + [0.0] * 30) == found  # the same examples, the same interval


def test_more_examples_give_a_narrower_interval():
    small, large = estimate([1.0, 0.0] * 10), estimate([1.0, 0.0] * 500)

    assert large.high - large.low < (small.high - small.low) / 4


def test_no_example_is_no_estimate_and_one_has_no_width():
    assert estimate([]) is None
    assert estimate([0.4]) == Estimate(0.4, 0.4, 0.4, 1)


def test_exact_match_ignores_case_spacing_and_unicode_forms():
    found = exact_match(["  Paris ", "ＡＢＣ", "London"], ["paris", "abc", "Berlin"])

    assert found.value == pytest.approx(2 / 3) and found.n == 3


def test_rouge_l_and_chrf_read_every_script():
    assert rouge_l(["猫が座った"], ["猫が座っている"]).value > 0.5
    assert rouge_l(["кошка сидит"], ["кошка сидит тут"]).value == pytest.approx(0.8)
    assert rouge_l(["a b"], ["c d"]).value == 0
    assert chrf(["the cat sat"], ["the cat sat"]).value == pytest.approx(1.0)
    assert 0 < chrf(["the cat"], ["the cat sat"]).value < 1


def test_json_answers_are_checked_against_their_schema():
    schema = response_schema(
        {"type": "json_schema", "json_schema": {"name": "s", "schema": {
            "type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}}}
    )  # fmt: skip
    answers = ['{"answer": 4}', '```json\n{"answer": 5}\n```', '{"answer": "four"}', "four"]

    assert json_validity(answers).value == 0.75
    assert schema_match(answers, [schema] * 4).value == 0.5
    assert response_schema({"type": "json_object"}) is None


def test_tool_calls_match_by_name_and_by_arguments_as_json():
    def call(name: str, arguments: str) -> dict:
        return {"id": "c", "type": "function", "function": {"name": name, "arguments": arguments}}

    want = [[call("weather", '{"city": "Paris"}')], [call("weather", '{"city": "Rome"}')], []]
    got = [[call("weather", '{"city":"Paris"}')], [call("weather", '{"city": "Oslo"}')], [call("x", "{}")]]

    found = tool_call_match(got, want)

    assert (found.name.value, found.name.n) == (1.0, 2)  # the third expects no call: not counted
    assert found.arguments.value == 0.5


def test_a_class_the_model_stopped_predicting_shows_in_the_label_report():
    truth = ["pos"] * 5 + ["neg"] * 5 + ["neu"] * 2
    answers = ["pos"] * 5 + ["neg"] * 5 + ["pos", "banana"]

    report = label_report(answers, truth)

    classes = {c["label"]: c for c in report["classes"]}
    assert classes["neu"]["recall"] == 0 and classes["neu"]["support"] == 2
    assert classes["banana"]["support"] == 0  # an answer that is no label is counted, not hidden
    assert report["accuracy"].value == pytest.approx(10 / 12)
    assert report["macro_f1"].value == pytest.approx((10 / 11 + 1 + 0) / 3)  # pos, neg, neu
    neu = report["labels"].index("neu")
    assert report["confusion"][neu] == [1 if label in ("banana", "pos") else 0 for label in report["labels"]]


def test_macro_f1_weighs_each_reference_class_alike():
    report = label_report(["a", "a", "a", "a"], ["a", "a", "a", "b"])

    assert report["accuracy"].value == 0.75
    assert report["macro_f1"].value == pytest.approx((6 / 7 + 0) / 2)


def test_win_rate_counts_a_tie_as_half():
    found = win_rate([WIN, WIN, TIE, LOSS])

    assert (found.rate.value, found.wins, found.ties, found.losses) == (0.625, 2, 1, 1)


def test_agreement_and_kappa():
    found = agreement(["a", "a", "b", "b"], ["a", "a", "b", "a"])

    assert found["agreement"].value == 0.75 and found["n"] == 4
    assert found["kappa"] == pytest.approx(0.5)


def test_relative_change_of_a_loss_with_its_interval():
    base = [2.0, 2.2, 1.8, 2.0] * 10
    tuned = [2.04, 2.24, 1.84, 2.04] * 10

    found = relative_change(base, tuned)

    assert found.value == pytest.approx(0.02, abs=1e-3)
    assert found.low <= found.value <= found.high and found.n == 40


# --- the judge ------------------------------------------------------------------------------------------------


def answers_in(body: dict) -> tuple[str, str]:
    text = body["messages"][-1]["content"]
    a = re.search(r"<answer_a>\n(.*?)\n</answer_a>", text, re.DOTALL).group(1)
    b = re.search(r"<answer_b>\n(.*?)\n</answer_b>", text, re.DOTALL).group(1)
    return a, b


def fair(body: dict) -> str:
    """Prefers the answer that says 4, whichever place it is in."""
    a, b = answers_in(body)
    if ("4" in a) == ("4" in b):
        return "Both alike.\nVerdict: tie"
    return "A is right.\nVerdict: A" if "4" in a else "B is right.\nVerdict: B"


@pytest.fixture
def judge():
    server = start_chat_stand_in(answer=fair)
    yield server
    server.close()


PAIRS = [
    Pair([{"role": "user", "content": "2+2?"}], candidate="4", other="5"),
    Pair([{"role": "user", "content": "2+2?"}], candidate="five", other="It is 4."),
    Pair([{"role": "user", "content": "2+2?"}], candidate="4", other="four, i.e. 4"),
]


def test_each_pair_is_judged_in_both_orders_and_wins_only_when_both_agree(judge):
    verdicts = judge_pairs(EndpointTarget(base_url=judge.url, model="judge"), PAIRS)

    assert [v.outcome for v in verdicts] == [WIN, LOSS, TIE]
    assert [(v.first, v.second) for v in verdicts] == [("candidate", "candidate"), ("other", "other"), ("tie", "tie")]
    assert len(judge.requests) == 6
    assert all(body["temperature"] == 0 for body in judge.requests)
    assert DEFAULT_RUBRIC.splitlines()[0] in judge.requests[0]["messages"][0]["content"]
    summary = judge_summary(verdicts)
    assert (summary.win_rate.rate.value, summary.judged, summary.failed) == (0.5, 3, 0)
    assert summary.position_agreement.value == 1.0


def test_a_judge_that_always_picks_the_first_answer_gives_only_ties(judge):
    judge.answer = lambda body: "Verdict: A"

    summary = judge_summary(judge_pairs(EndpointTarget(base_url=judge.url, model="judge"), PAIRS))

    assert (summary.win_rate.wins, summary.win_rate.ties, summary.win_rate.losses) == (0, 3, 0)
    assert summary.position_agreement.value == 0.0


def test_a_verdict_never_stated_is_a_tie_and_a_failed_call_is_left_out(judge):
    judge.answer = lambda body: "I cannot decide."
    judge.failures = [500] * 10  # the first pair's calls fail through their retries

    verdicts = judge_pairs(EndpointTarget(base_url=judge.url, model="judge", max_concurrency=1, max_retries=1), PAIRS)

    assert verdicts[0].error.startswith("HTTP 500")
    assert verdicts[2].outcome == TIE and verdicts[2].first == ""
    assert judge_summary(verdicts).failed >= 1


def test_the_rubric_is_the_users_to_edit(judge):
    judge_pairs(EndpointTarget(base_url=judge.url, model="judge"), PAIRS[:1], rubric="Prefer answers in French.")

    assert "Prefer answers in French." in judge.requests[0]["messages"][0]["content"]


@pytest.mark.parametrize(
    ("text", "verdict"),
    [("Verdict: A", "a"), ("verdict: **B**", "b"), ("Verdict：tie", "tie"), ("Verdict: A\n...\nVerdict: B", "b"),
     ("A is better", "")],
)  # fmt: skip
def test_the_last_stated_verdict_counts(text, verdict):
    assert verdict_of(text) == verdict
