"""Preference pairs from people's votes on an evaluation run: on each example a vote compares the tuned model's answer
with another (the base model's, or the logged one). A WIN makes the tuned answer chosen and the other rejected, a LOSS
the reverse; a tie says nothing to prefer. When several people voted on one example and comparison, the majority
decides and an even split gives nothing. The pairs are added to a dataset of pairs by `curation.datasets.pairs`."""

from collections import Counter, defaultdict
from collections.abc import Iterator

from django.contrib.auth.models import User
from django.db import transaction

from curation.datasets.export.preference import Pair
from curation.datasets.pairs import PairRow, PairsResult, pairs_add, pairs_target
from curation.models import ApiKey, Dataset
from training.evaluation.metrics import TIE, WIN
from training.evaluation.votes import OTHER_ANSWER
from training.models import EvaluationRun

SKIPPED_TIE = "tie: skipped"
SKIPPED_SPLIT = "voters split evenly: skipped"
SKIPPED_NO_ANSWERS = "example without both answers or a prompt: skipped"


def vote_majorities(*, run: EvaluationRun, skipped: Counter[str]) -> Iterator[tuple[int, str, float, int]]:
    """(example, comparison, outcome, votes) per voted example and comparison, by majority; ties and even splits are
    counted in `skipped`."""
    tallies: dict[tuple[int, str], Counter[float]] = defaultdict(Counter)
    for example, comparison, outcome in run.votes.order_by("example", "comparison").values_list(
        "example", "comparison", "outcome"
    ):
        tallies[(example, comparison)][outcome] += 1
    for (example, comparison), tally in sorted(tallies.items()):
        (top, count), *rest = tally.most_common()
        if rest and rest[0][1] == count:
            skipped[SKIPPED_SPLIT] += 1
        elif top == TIE:
            skipped[SKIPPED_TIE] += 1
        else:
            yield example, comparison, top, tally.total()


def vote_pairs(*, run: EvaluationRun, skipped: Counter[str]) -> Iterator[PairRow]:
    """A pair per example and comparison people preferred one answer on."""
    for index, comparison, outcome, votes in vote_majorities(run=run, skipped=skipped):
        example = run.examples[index] if index < len(run.examples) else {}
        prompt, tuned, other = example.get("prompt"), example.get("tuned"), example.get(OTHER_ANSWER[comparison])
        if not (isinstance(prompt, list) and prompt and isinstance(tuned, str) and isinstance(other, str)):
            skipped[SKIPPED_NO_ANSWERS] += 1
            continue
        winner, loser = (tuned, other) if outcome == WIN else (other, tuned)
        yield PairRow(
            pair=Pair(prompt=prompt, chosen=_answer(winner), rejected=_answer(loser)),
            provenance={"source": "vote", "run_id": run.pk, "example": index, "comparison": comparison,
                        "votes": votes},
        )  # fmt: skip


def _answer(text: str) -> dict:
    return {"role": "assistant", "content": text}


def vote_pairs_count(*, run: EvaluationRun) -> int:
    """How many pairs the run's votes give now."""
    return sum(1 for _ in vote_pairs(run=run, skipped=Counter()))


def evaluation_pairs_from_votes(
    *,
    run: EvaluationRun,
    target: Dataset | None = None,
    name: str = "",
    actor: User | None = None,
    api_key: ApiKey | None = None,
) -> PairsResult:
    """Pairs from the votes on `run`, added to `target` (a dataset of pairs of the run's project) or to a new one named
    `name`."""
    project = run.job.project
    with transaction.atomic():
        dataset = pairs_target(project=project, dataset=target, name=name, created_by=actor, api_key=api_key)
        skipped: Counter[str] = Counter()
        rows = list(vote_pairs(run=run, skipped=skipped))
        return pairs_add(dataset=dataset, rows=rows, actor=actor, api_key=api_key, skipped=skipped)
