"""People's blind votes on a finished evaluation run, and how well the judge agrees with them.

A vote is one person's verdict on one example for one comparison: the tuned model's answer against the base
model's, or against the logged one (the teacher). It is stored as the judge's verdicts are (WIN, TIE, LOSS for the
tuned model), so the people's win rate and the judge's read alike, and the two can be compared example by example.

On the vote page the two answers are "1" and "2", in an order drawn per (voter, example, comparison) with a keyed
hash (the server's secret), so it is the same on every reload and nobody can work it out from the page: the page
posts "1", "2" or "tie", and the order is drawn again here to turn that into a verdict.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from curation.audit.services import audit_record
from training.evaluation.metrics import LOSS, TIE, WIN, Estimate, agreement, win_rate
from training.evaluation.sets import VALIDATION
from training.models import Comparison, EvaluationRun, EvaluationVote, Outcome

# The example's key of the answer the tuned one is compared with.
OTHER_ANSWER: dict[str, str] = {Comparison.BASE: "base", Comparison.TEACHER: "reference"}
LABELS = {WIN: "win", TIE: "tie", LOSS: "loss"}
_ORDER_SALT = "training.evaluation.votes.order"
_SIDE_SALT = "training.evaluation.votes.side"


# --- the blind order -------------------------------------------------------------------------------------------------


def vote_tuned_first(*, run: EvaluationRun, voter: User, example: int, comparison: str) -> bool:
    """Whether the tuned model's answer is shown as "1" to `voter`: drawn per (voter, example, comparison), stable."""
    return salted_hmac(_SIDE_SALT, f"{run.pk}:{voter.pk}:{example}:{comparison}").digest()[0] % 2 == 0


def blind_outcome(choice: str, *, tuned_first: bool) -> float:
    """The tuned model's outcome for a choice made on the blind page: "1", "2" or "tie"."""
    if choice == "tie":
        return TIE
    return WIN if (choice == "1") == tuned_first else LOSS


def votable_examples(run: EvaluationRun, comparison: str) -> list[int]:
    """The indexes of the run's validation examples that have both answers of `comparison`: those the judge judges,
    so that people's win rate and the judge's rest on the same set (regression and retention sets are measured, not
    judged)."""
    other = OTHER_ANSWER.get(comparison, "")
    return [
        index for index, example in enumerate(run.examples)
        if example.get("kind", VALIDATION) == VALIDATION
        and isinstance(example.get("tuned"), str) and isinstance(example.get(other), str)
    ]  # fmt: skip


def vote_sequence(*, run: EvaluationRun, voter: User, comparison: str) -> list[int]:
    """The votable examples in the order `voter` is shown them: shuffled, the same for this run and voter."""
    return sorted(
        votable_examples(run, comparison),
        key=lambda index: salted_hmac(_ORDER_SALT, f"{run.pk}:{voter.pk}:{index}").digest(),
    )


# --- the next example ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ballot:
    """One example as the vote page shows it: the answers in the voter's order, not saying which is which."""

    example: int
    position: int  # in the voter's sequence: the page goes on from the next one
    prompt: list[dict]
    first: str
    second: str


@dataclass(frozen=True, slots=True)
class VoteProgress:
    voted: int
    total: int

    @property
    def done(self) -> bool:
        return self.voted >= self.total


def vote_progress(*, run: EvaluationRun, voter: User, comparison: str) -> VoteProgress:
    votable = set(votable_examples(run, comparison))
    voted = set(_voted(run, voter, comparison)) & votable
    return VoteProgress(voted=len(voted), total=len(votable))


def vote_next(*, run: EvaluationRun, voter: User, comparison: str, start: int = 0) -> Ballot | None:
    """The first example of the voter's sequence, from position `start` on (then from the top), that they have not
    voted on yet for `comparison`; None when they have voted on all of them."""
    sequence = vote_sequence(run=run, voter=voter, comparison=comparison)
    voted = set(_voted(run, voter, comparison))
    positions = [p for p in range(len(sequence)) if sequence[p] not in voted]
    if not positions:
        return None
    position = next((p for p in positions if p >= start), positions[0])
    index = sequence[position]
    example = run.examples[index]
    tuned, other = example["tuned"], example[OTHER_ANSWER[comparison]]
    first = vote_tuned_first(run=run, voter=voter, example=index, comparison=comparison)
    return Ballot(
        example=index, position=position, prompt=example.get("prompt") or [],
        first=tuned if first else other, second=other if first else tuned,
    )  # fmt: skip


def _voted(run: EvaluationRun, voter: User, comparison: str) -> list[int]:
    return list(
        EvaluationVote.objects.filter(run=run, voter=voter, comparison=comparison).values_list("example", flat=True)
    )


# --- recording a vote ------------------------------------------------------------------------------------------------


@transaction.atomic
def vote_record(
    *, run: EvaluationRun, voter: User, example: int, comparison: str, outcome: float, tuned_first: bool | None
) -> tuple[EvaluationVote, bool]:
    """Record `voter`'s verdict (the tuned model's outcome) on one example of a finished run; a second vote on the same
    example and comparison replaces the first. `tuned_first`: the order the page showed, None when the voter was not
    shown the answers blind (the API). Returns the vote and whether it is new. Raises ValidationError naming the
    field: `status` (the run has not finished), `comparison`, `example`, `outcome`."""
    if not run.is_finished:
        raise ValidationError({"status": f"Votes are taken once an evaluation has finished; it is {run.status}."})
    if comparison not in Comparison.values:
        raise ValidationError({"comparison": f"One of: {', '.join(Comparison.values)}."})
    if example not in votable_examples(run, comparison):
        raise ValidationError(
            {"example": f"Evaluation {run.pk} has no example {example} with both answers to compare "
                        f"(it has {len(run.examples)}, numbered from 0)."}
        )  # fmt: skip
    if outcome not in Outcome.values:
        raise ValidationError({"outcome": "One of: 1.0 (the tuned answer wins), 0.5 (a tie), 0.0 (it loses)."})
    vote, created = EvaluationVote.objects.update_or_create(
        run=run, example=example, comparison=comparison, voter=voter,
        defaults={"outcome": outcome, "tuned_first": tuned_first, "created_at": timezone.now()},
    )  # fmt: skip
    audit_record(
        project=run.job.project, action="finetune.evaluation_vote", actor=voter, count=1,
        detail={"finetune": run.job_id, "evaluation": run.pk, "example": example, "comparison": comparison,
                "outcome": LABELS[outcome], "blind": tuned_first is not None, "replaced": not created},
    )  # fmt: skip
    return vote, created


# --- people against the judge ----------------------------------------------------------------------------------------


def votes_summary(*, run: EvaluationRun) -> dict[str, dict]:
    """Per comparison: the votes, the people's win rate with its interval, and, on the examples both the judge and
    people rated, how often the judge's verdict was the person's, with Cohen's kappa. Several people voting on one
    example give one pair (judge, person) each."""
    votes = list(run.votes.values_list("example", "comparison", "outcome", "voter_id"))
    return {
        comparison: _comparison_summary(run.examples, comparison, [v for v in votes if v[1] == comparison])
        for comparison in Comparison.values
    }


def _comparison_summary(examples: Sequence[dict], comparison: str, votes: list[tuple]) -> dict:
    outcomes = [outcome for _, _, outcome, _ in votes]
    rate = win_rate(outcomes)
    judge, people = [], []
    for example, _, outcome, _ in votes:
        verdict = examples[example].get(f"verdict_{comparison}") if example < len(examples) else None
        if verdict in LABELS:
            judge.append(LABELS[verdict])
            people.append(LABELS[outcome])
    # scikit-learn is loaded only once there is something to compare: a page of runs nobody voted on stays light.
    agreed: dict = agreement(judge, people) if judge else {"agreement": None, "kappa": None, "n": 0}
    return {
        "votes": len(votes), "voters": len({voter for *_, voter in votes}),
        "examples": len({example for example, *_ in votes}), "win_rate": _as_dict(rate.rate), "wins": rate.wins,
        "ties": rate.ties, "losses": rate.losses, "agreement": _as_dict(agreed["agreement"]), "kappa": agreed["kappa"],
        "compared": agreed["n"],
    }  # fmt: skip


def _as_dict(value: Estimate | None) -> dict | None:
    return value.as_dict() if value is not None else None
