"""People's blind votes on a finished evaluation run: the order of the answers (stable, drawn per voter, example and
comparison, never in the page), the page and its votes, votes that replace earlier ones, roles, the API, the audit
log, and the judge's agreement with people (with Cohen's kappa), computed from real votes against the judge's
verdicts. The runs are built directly: no model answers and no judge is called."""

import re

import pytest

from curation.models import AuditEvent
from tests.factories import DatasetFactory, EvaluationRunFactory, FineTuneJobFactory
from training.evaluation.metrics import LOSS, TIE, WIN
from training.evaluation.votes import (
    blind_outcome,
    votable_examples,
    vote_next,
    vote_progress,
    vote_record,
    vote_sequence,
    vote_tuned_first,
    votes_summary,
)
from training.models import EvaluationVote, FineTuneStatus

EXAMPLES = 12


def answered(n: int = EXAMPLES, verdicts: list[float | None] | None = None) -> list[dict]:
    """Examples as a finished run keeps them; every third from another eval set, which votes treat alike."""
    rows = []
    for i in range(n):
        row = {"prompt": [{"role": "user", "content": f"Question number {i}?"}], "reference": f"Logged reply {i}.",
               "base": f"Base reply {i}.", "tuned": f"Tuned reply {i}."}  # fmt: skip
        if i % 3 == 2:
            row["set"] = "regression"
        if verdicts is not None:
            row["verdict_teacher"] = verdicts[i]
        rows.append(row)
    return rows


@pytest.fixture
def job(project):
    return FineTuneJobFactory(dataset=DatasetFactory(project=project), status=FineTuneStatus.SUCCEEDED)


@pytest.fixture
def run(job):
    return EvaluationRunFactory(job=job, finished=True, examples=answered())


def vote_url(run, against: str = "teacher", at: int | None = None) -> str:
    url = f"/p/acme/finetunes/{run.job_id}/evaluations/{run.pk}/vote?against={against}"
    return url if at is None else f"{url}&at={at}"


def positions_by_side(run, voter, comparison: str = "teacher") -> dict[bool, int]:
    """A position of the voter's sequence where the tuned answer is shown first, and one where it is second."""
    sequence = vote_sequence(run=run, voter=voter, comparison=comparison)
    found: dict[bool, int] = {}
    for position, example in enumerate(sequence):
        found.setdefault(vote_tuned_first(run=run, voter=voter, example=example, comparison=comparison), position)
    return found


# --- the blind order -------------------------------------------------------------------------------------------------


def test_the_order_of_the_answers_is_stable_and_varies_across_examples_voters_and_comparisons(run, editor, owner):
    def sides(voter, comparison):
        return [vote_tuned_first(run=run, voter=voter, example=i, comparison=comparison) for i in range(EXAMPLES)]

    first = sides(editor, "teacher")

    assert sides(editor, "teacher") == first  # the same on every reload
    assert set(first) == {True, False}  # the tuned answer is not always "1"
    assert sides(owner, "teacher") != first
    assert sides(editor, "base") != first


def test_each_voter_has_an_order_of_the_examples_of_their_own(run, editor, owner):
    order = vote_sequence(run=run, voter=editor, comparison="teacher")

    assert sorted(order) == list(range(EXAMPLES)) and order != list(range(EXAMPLES))
    assert vote_sequence(run=run, voter=editor, comparison="teacher") == order
    assert vote_sequence(run=run, voter=editor, comparison="base") == order  # fixed per run and voter
    assert vote_sequence(run=run, voter=owner, comparison="teacher") != order


def test_the_next_example_is_the_first_not_voted_on_from_a_position_then_from_the_top(run, editor):
    order = vote_sequence(run=run, voter=editor, comparison="teacher")
    vote_record(run=run, voter=editor, example=order[0], comparison="teacher", outcome=WIN, tuned_first=None)
    vote_record(run=run, voter=editor, example=order[-1], comparison="teacher", outcome=WIN, tuned_first=None)

    assert vote_next(run=run, voter=editor, comparison="teacher").example == order[1]
    assert vote_next(run=run, voter=editor, comparison="teacher", start=5).position == 5
    assert vote_next(run=run, voter=editor, comparison="teacher", start=EXAMPLES - 1).example == order[1]
    assert vote_next(run=run, voter=editor, comparison="base").example == order[0]  # each comparison on its own
    assert vote_progress(run=run, voter=editor, comparison="teacher").voted == 2


def test_a_blind_choice_is_read_through_the_order_shown():
    assert [blind_outcome(choice, tuned_first=True) for choice in ("1", "2", "tie")] == [WIN, LOSS, TIE]
    assert [blind_outcome(choice, tuned_first=False) for choice in ("1", "2", "tie")] == [LOSS, WIN, TIE]


# --- the page --------------------------------------------------------------------------------------------------------


def normalized(html: str, run, voter, position: int) -> str:
    """The page with what belongs to its example alone replaced by placeholders: the question, the answers as
    shown (1, then 2), the example's index and position, and the per-render CSRF tokens."""
    ballot = vote_next(run=run, voter=voter, comparison="teacher", start=position)
    assert ballot.position == position and ballot.first in html and ballot.second in html
    html = html.replace(ballot.first, "ANSWER-ONE").replace(ballot.second, "ANSWER-TWO")
    html = html.replace(f"Question number {ballot.example}?", "QUESTION")
    html = html.replace(f'name="example" value="{ballot.example}"', 'name="example" value="N"')
    html = html.replace(f'name="at" value="{position}"', 'name="at" value="P"')
    return without_tokens(re.sub(rf"at={position + 1}\b", "at=P1", html))


def without_tokens(html: str) -> str:
    """The page less its CSRF tokens, which are masked anew on every render."""
    return re.sub(r'(csrfmiddlewaretoken" value=|X-CSRFToken": )"[^"]+"', r'\1"TOKEN"', html)


def test_the_page_shows_answers_1_and_2_without_saying_which_is_the_fine_tunes(client, run, editor):
    client.force_login(editor)
    sides = positions_by_side(run, editor)
    pages = {tuned_first: client.get(vote_url(run, at=p)).content.decode() for tuned_first, p in sides.items()}

    # Tuned shown first, tuned shown second: once what belongs to the example is set aside, the pages are the same
    # to the byte, so no attribute, class or comment tells the answers apart.
    assert normalized(pages[True], run, editor, sides[True]) == normalized(pages[False], run, editor, sides[False])
    page = pages[True]
    assert page.index("Tuned reply") < page.index("Logged reply")
    assert pages[False].index("Logged reply") < pages[False].index("Tuned reply")
    assert "1 is better" in page and "2 is better" in page and "Tie" in page and "Skip" in page
    assert "0 of 12 voted" in page and "js/evaluation_vote.js" in page
    assert page.count("Tuned reply") == 1
    reloaded = client.get(vote_url(run, at=sides[True])).content.decode()
    assert without_tokens(reloaded) == without_tokens(page)  # the same example, in the same order, on reload


def test_a_vote_on_the_page_is_stored_as_the_tuned_models_outcome(client, run, editor):
    client.force_login(editor)
    sides = positions_by_side(run, editor)
    order = vote_sequence(run=run, voter=editor, comparison="teacher")

    first = client.post(vote_url(run), {"example": order[sides[True]], "at": sides[True], "choice": "1"})
    second = client.post(vote_url(run), {"example": order[sides[False]], "at": sides[False], "choice": "1"})

    assert first.status_code == 302 and first["Location"].endswith(f"?against=teacher&at={sides[True] + 1}")
    votes = {v.example: v for v in EvaluationVote.objects.filter(run=run, voter=editor)}
    assert (votes[order[sides[True]]].outcome, votes[order[sides[True]]].tuned_first) == (WIN, True)
    assert (votes[order[sides[False]]].outcome, votes[order[sides[False]]].tuned_first) == (LOSS, False)
    assert second.status_code == 302
    assert "2 of 12 voted" in client.get(vote_url(run)).content.decode()


def test_skipping_leaves_an_example_for_later_and_the_last_vote_ends_with_a_link_back(client, job, editor):
    run = EvaluationRunFactory(job=job, finished=True, examples=answered(2))
    client.force_login(editor)
    order = vote_sequence(run=run, voter=editor, comparison="base")

    skipped = client.get(vote_url(run, "base", at=1)).content.decode()
    client.post(vote_url(run, "base"), {"example": order[1], "at": 1, "choice": "tie"})
    back_to_the_first = client.get(vote_url(run, "base", at=2)).content.decode()
    client.post(vote_url(run, "base"), {"example": order[0], "at": 0, "choice": "2"})
    done = client.get(vote_url(run, "base", at=1)).content.decode()

    assert f'name="example" value="{order[1]}"' in skipped and "0 of 2 voted" in skipped
    assert f'name="example" value="{order[0]}"' in back_to_the_first and "1 of 2 voted" in back_to_the_first
    assert 'id="vote-done"' in done and "2 of 2 voted" in done and 'name="choice"' not in done
    assert f'href="/p/acme/finetunes/{job.pk}/#verdict"' in done


def test_the_page_refuses_an_unknown_comparison_or_choice_and_says_why_a_vote_was_refused(client, run, editor):
    client.force_login(editor)

    assert client.get(vote_url(run, "judge")).status_code == 400
    assert client.post(vote_url(run), {"example": "0", "choice": "3"}).status_code == 400
    refused = client.post(vote_url(run), {"example": "99", "choice": "1"}, follow=True).content.decode()

    assert "has no example 99 with both answers" in refused
    assert not EvaluationVote.objects.exists()


def test_a_run_still_running_takes_no_vote(client, job, editor):
    running = EvaluationRunFactory(job=job, status=FineTuneStatus.RUNNING, examples=answered(2))
    client.force_login(editor)

    page = client.get(vote_url(running)).content.decode()
    refused = client.post(vote_url(running), {"example": "0", "choice": "1"}, follow=True).content.decode()

    assert "has not finished" in page and 'name="choice"' not in page
    assert "once an evaluation has finished" in refused and not EvaluationVote.objects.exists()


def test_viewers_are_refused_the_page_and_other_projects_are_not_found(client, run, viewer, outsider, editor):
    client.force_login(viewer)
    assert client.get(vote_url(run)).status_code == 403
    assert client.post(vote_url(run), {"example": "0", "choice": "1"}).status_code == 403

    client.force_login(outsider)
    assert client.get(vote_url(run)).status_code == 404
    assert client.get(vote_url(run).replace("/p/acme/", "/p/other/")).status_code == 404

    foreign = EvaluationRunFactory(finished=True)  # a run of a fine-tune of another project
    client.force_login(editor)
    assert client.get(f"/p/acme/finetunes/{run.job_id}/evaluations/{foreign.pk}/vote").status_code == 404
    assert client.get(f"/p/acme/finetunes/{foreign.job_id}/evaluations/{foreign.pk}/vote").status_code == 404
    assert not EvaluationVote.objects.exists()


# --- votes replace, and are audited ----------------------------------------------------------------------------------


def test_a_second_vote_replaces_the_first_and_both_are_audited(run, editor, owner):
    vote_record(run=run, voter=editor, example=2, comparison="teacher", outcome=WIN, tuned_first=True)
    vote, created = vote_record(
        run=run, voter=editor, example=2, comparison="teacher", outcome=LOSS, tuned_first=False
    )
    vote_record(run=run, voter=owner, example=2, comparison="teacher", outcome=TIE, tuned_first=None)

    assert not created
    assert list(EvaluationVote.objects.filter(voter=editor).values_list("pk", "outcome", "tuned_first")) == [
        (vote.pk, LOSS, False)
    ]
    assert EvaluationVote.objects.filter(run=run, example=2).count() == 2  # one per person
    events = list(AuditEvent.objects.filter(action="finetune.evaluation_vote").order_by("pk"))
    assert [(e.actor.username, e.detail["outcome"], e.detail["replaced"], e.detail["blind"]) for e in events] == [
        ("bob", "win", False, True), ("bob", "loss", True, True), ("alice", "tie", False, False),
    ]  # fmt: skip
    assert events[0].project == run.job.project
    assert events[0].detail.items() >= {"finetune": run.job_id, "evaluation": run.pk, "example": 2}.items()


def test_a_vote_names_a_known_comparison_and_an_example_with_both_answers(run, job, editor):
    from django.core.exceptions import ValidationError

    without_base = EvaluationRunFactory(job=job, finished=True, examples=[{**answered(1)[0], "base": None}])

    with pytest.raises(ValidationError, match="comparison"):
        vote_record(run=run, voter=editor, example=0, comparison="judge", outcome=WIN, tuned_first=None)
    with pytest.raises(ValidationError, match="no example 12"):
        vote_record(run=run, voter=editor, example=EXAMPLES, comparison="base", outcome=WIN, tuned_first=None)
    with pytest.raises(ValidationError, match="no example 0"):
        vote_record(run=without_base, voter=editor, example=0, comparison="base", outcome=WIN, tuned_first=None)
    vote_record(run=without_base, voter=editor, example=0, comparison="teacher", outcome=WIN, tuned_first=None)
    assert not AuditEvent.objects.filter(detail__comparison="base").exists()


def test_only_validation_examples_are_voted_on_the_ones_the_judge_judges(job, editor):
    from django.core.exceptions import ValidationError

    examples = answered(3)
    examples[1] |= {"kind": "retention", "set": "retention: the project's other logs"}
    examples[2] |= {"kind": "regression", "set": "regression: dataset Old"}
    mixed = EvaluationRunFactory(job=job, finished=True, examples=examples)

    assert votable_examples(mixed, "teacher") == [0]
    with pytest.raises(ValidationError, match="no example 1"):
        vote_record(run=mixed, voter=editor, example=1, comparison="teacher", outcome=WIN, tuned_first=None)


# --- people against the judge ----------------------------------------------------------------------------------------

JUDGE = [WIN, WIN, LOSS, TIE, None, WIN]  # example 4: the judge's call failed


@pytest.fixture
def voted(job, editor, owner):
    """Two people voting against the logged answers. Bob on examples 0-4: he and the judge agree on 0, 2 and 3, not
    on 1, and 4 the judge did not rate. Alice on 0 and 2: she agrees with the judge on both."""
    run = EvaluationRunFactory(job=job, finished=True, examples=answered(6, JUDGE))
    for example, outcome in enumerate([WIN, LOSS, LOSS, TIE, WIN]):
        vote_record(run=run, voter=editor, example=example, comparison="teacher", outcome=outcome, tuned_first=True)
    for example, outcome in ((0, WIN), (2, LOSS)):
        vote_record(run=run, voter=owner, example=example, comparison="teacher", outcome=outcome, tuned_first=False)
    return run


def test_the_judges_agreement_with_people_and_cohens_kappa_come_from_every_vote_on_a_rated_example(voted):
    summary = votes_summary(run=voted)["teacher"]

    assert (summary["votes"], summary["voters"], summary["examples"]) == (7, 2, 5)
    # People: W L L T W (bob), W L (alice): 3 wins, 1 tie, 3 losses.
    assert (summary["wins"], summary["ties"], summary["losses"]) == (3, 1, 3)
    assert summary["win_rate"]["value"] == pytest.approx(3.5 / 7) and summary["win_rate"]["n"] == 7
    assert summary["win_rate"]["low"] < 3.5 / 7 < summary["win_rate"]["high"]
    # Six (judge, person) pairs: (W,W) (W,L) (L,L) (T,T) from bob, (W,W) (L,L) from alice; 5 agree.
    assert summary["compared"] == 6 and summary["agreement"]["value"] == pytest.approx(5 / 6)
    # Cohen's kappa by hand: judge W 3/6, L 2/6, T 1/6; people W 2/6, L 3/6, T 1/6.
    chance = (3 * 2 + 2 * 3 + 1 * 1) / 36
    assert summary["kappa"] == pytest.approx((5 / 6 - chance) / (1 - chance))
    assert summary["agreement"]["low"] <= 5 / 6 <= summary["agreement"]["high"]


def test_a_comparison_nobody_voted_on_has_no_rate_and_no_agreement(voted):
    summary = votes_summary(run=voted)["base"]

    assert summary == {
        "votes": 0, "voters": 0, "examples": 0, "win_rate": None, "wins": 0, "ties": 0, "losses": 0,
        "agreement": None, "kappa": None, "compared": 0,
    }  # fmt: skip


def test_the_verdict_section_shows_people_beside_the_judge_and_a_vote_link_to_editors(client, voted, editor, viewer):
    voted.results = {"judge": {"teacher": {"win_rate": {"value": 0.6, "low": 0.3, "high": 0.8, "n": 5}, "wins": 3,
                                           "ties": 0, "losses": 2, "judged": 5, "failed": 1}}}  # fmt: skip
    voted.save()
    client.force_login(editor)

    page = client.get(f"/p/acme/finetunes/{voted.job_id}/").content.decode()

    line = re.search(rf'id="people-{voted.pk}-teacher">(.*?)</p>', page, re.DOTALL).group(1)
    text = " ".join(re.sub(r"<[^>]+>", "", line).split())
    assert text.startswith("People: 7 votes by 2 people, win rate 50% [")
    assert "judge agrees 83% [" in text and "κ = 0.74 (n=6)" in text
    assert page.index("against the logged answers (the teacher): win rate") < page.index(
        f'id="people-{voted.pk}-teacher"'
    )
    assert f'href="/p/acme/finetunes/{voted.job_id}/evaluations/{voted.pk}/vote?against=teacher">Vote</a>' in page
    # The judge did not compare against the base model on this run: people's line stands alone, with no votes yet.
    base = re.search(rf'id="people-{voted.pk}-base">(.*?)</p>', page, re.DOTALL).group(1)
    assert "fine-tuned model against the base model" in base and "no votes yet" in base
    client.force_login(viewer)
    assert "/vote?against=" not in client.get(f"/p/acme/finetunes/{voted.job_id}/").content.decode()


# --- the API ---------------------------------------------------------------------------------------------------------


def votes_api(run) -> str:
    return f"/api/v1/finetunes/{run.job_id}/evaluations/{run.pk}/votes"


def test_the_api_takes_a_persons_vote_replaces_it_and_lists_votes_page_by_page(client_for, run, editor, viewer):
    api = client_for(editor)

    created = api.post(f"{votes_api(run)}?project=acme", {"example": 3, "comparison": "base", "outcome": "tuned"},
                       format="json")  # fmt: skip
    replaced = api.post(f"{votes_api(run)}?project=acme", {"example": 3, "comparison": "base", "outcome": "other"},
                        format="json")  # fmt: skip
    api.post(
        f"{votes_api(run)}?project=acme", {"example": 4, "comparison": "teacher", "outcome": "tie"}, format="json"
    )

    assert created.status_code == 201, created.json()
    assert replaced.status_code == 200 and replaced.json()["id"] == created.json()["id"]
    assert replaced.json() | {"created_at": None} == {
        "id": created.json()["id"], "example": 3, "comparison": "base", "outcome": "other", "voter": "bob",
        "tuned_first": None, "created_at": None,
    }  # fmt: skip
    assert EvaluationVote.objects.get(pk=created.json()["id"]).outcome == LOSS
    first = client_for(viewer).get(votes_api(run), {"project": "acme", "limit": 1}).json()
    rest = client_for(viewer).get(votes_api(run), {"project": "acme", "cursor": first["next_cursor"]}).json()
    assert [v["example"] for v in first["results"] + rest["results"]] == [4, 3] and rest["next_cursor"] is None


def test_the_evaluations_api_detail_holds_the_agreement_summary(client_for, voted, viewer):
    detail = client_for(viewer).get(f"/api/v1/finetunes/{voted.job_id}/evaluations/{voted.pk}", {"project": "acme"})

    teacher = detail.json()["votes"]["teacher"]
    assert (teacher["votes"], teacher["compared"]) == (7, 6)
    assert teacher["kappa"] == pytest.approx(votes_summary(run=voted)["teacher"]["kappa"])
    assert detail.json()["votes"]["base"]["votes"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"example": 0, "comparison": "judge", "outcome": "tuned"}, "comparison"),
        ({"example": 0, "comparison": "base", "outcome": "win"}, "outcome"),
        ({"example": -1, "comparison": "base", "outcome": "tie"}, "example"),
        ({"example": EXAMPLES, "comparison": "base", "outcome": "tie"}, "example"),
        ({"example": "first", "comparison": "base", "outcome": "tie"}, "example"),
        ({"comparison": "base", "outcome": "tie"}, "example"),
    ],
)
def test_the_api_refuses_bad_input_naming_the_field(client_for, run, editor, body, field):
    answer = client_for(editor).post(f"{votes_api(run)}?project=acme", body, format="json")

    assert answer.status_code == 400 and list(answer.json()) == [field], answer.json()
    assert not EvaluationVote.objects.exists()


def test_the_api_refuses_keys_viewers_other_projects_and_runs_not_finished(client_for, key_client, run, job, viewer,
                                                                           outsider, editor):  # fmt: skip
    body = {"example": 0, "comparison": "teacher", "outcome": "tuned"}
    running = EvaluationRunFactory(job=job, status=FineTuneStatus.RUNNING, examples=answered(1))

    by_key = key_client.post(votes_api(run), body, format="json")
    by_viewer = client_for(viewer).post(f"{votes_api(run)}?project=acme", body, format="json")
    by_outsider = client_for(outsider).post(f"{votes_api(run)}?project=other", body, format="json")
    too_early = client_for(editor).post(f"{votes_api(running)}?project=acme", body, format="json")

    assert by_key.status_code == 403 and "one person's" in by_key.json()["detail"]
    assert by_viewer.status_code == 403 and by_outsider.status_code == 404
    assert too_early.status_code == 409 and too_early.json()["status"] == "running"
    assert key_client.get(votes_api(run)).status_code == 200  # reading is not voting
    assert not EvaluationVote.objects.exists() and not AuditEvent.objects.filter(action__contains="vote").exists()


def test_votes_go_with_their_run_and_their_voter(run, editor, owner):
    vote_record(run=run, voter=editor, example=0, comparison="teacher", outcome=WIN, tuned_first=True)
    vote_record(run=run, voter=owner, example=0, comparison="teacher", outcome=WIN, tuned_first=True)

    owner.delete()
    assert EvaluationVote.objects.count() == 1
    run.delete()
    assert not EvaluationVote.objects.exists()
