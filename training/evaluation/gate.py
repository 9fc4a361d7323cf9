"""The promotion gate: whether a finished evaluation meets a project's rule, each condition with its reason in words.

Pure: a rule and a run's `results` in, a verdict out, no database. A condition whose measure the run did not take
fails and says what was not measured: a gate that passed on missing evidence would let anything through.

`results` holds estimates as `{"value", "low", "high", "n"}` (95% bootstrap intervals):
- `judge.teacher.win_rate`, `judge.base.win_rate`: the tuned model's win rate against the logged answer and the base
  model, when a judge ran;
- `forgetting.loss_change`: relative change of the mean loss on the retention set, tuned against base (0.02: 2% worse);
- `slices`: `[{"by", "value", "n", "metric", "base", "tuned", "delta", "flagged"}]`, `flagged` when the tuned model is
  worse than the base beyond the interval on that slice.
"""

import math
from dataclasses import asdict, dataclass, fields

SLICES_NAMED = 5  # failed slices named in a reason, the rest counted


@dataclass(frozen=True)
class GateRule:
    """What an evaluation must show for its fine-tune to pass. A threshold of None (0 examples) is not checked."""

    min_teacher_win_rate: float | None = 0.45  # win rate against the logged answers (the teacher), at least
    min_teacher_win_rate_low: float | None = 0.40  # that win rate's lower interval bound, at least
    min_base_win_rate: float | None = None  # win rate against the base model, at least
    max_retention_loss_increase: float | None = 0.02  # retention loss at most this much worse than the base's
    no_flagged_slices: bool = True  # no slice on which the tuned model is worse than the base beyond the interval
    min_judged_examples: int = 30  # examples the judge judged (the fewest over its comparisons), at least

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GateRule":
        return cls(**{name: data[name] for name in GATE_FIELDS if name in data})


GATE_FIELDS = tuple(f.name for f in fields(GateRule))


@dataclass(frozen=True)
class _Estimate:
    value: float
    low: float
    high: float
    n: int


def gate_verdict(rule: GateRule, results: dict) -> dict:
    """`{"passed", "checks": [{"name", "passed", "reason"}]}`: passed when every condition of the rule holds."""
    results = results if isinstance(results, dict) else {}
    checks = [
        check
        for check in (
            _win_rate_check(rule.min_teacher_win_rate, results, "teacher"),
            _lower_bound_check(rule.min_teacher_win_rate_low, results),
            _win_rate_check(rule.min_base_win_rate, results, "base"),
            _retention_check(rule.max_retention_loss_increase, results),
            _slices_check(results) if rule.no_flagged_slices else None,
            _judged_check(rule.min_judged_examples, results),
        )
        if check is not None
    ]
    if not checks:
        checks = [_check("rule", False, "The rule has no condition: nothing was checked.")]
    return {"passed": all(check["passed"] for check in checks), "checks": checks}


def gate_record(rule: GateRule, results: dict) -> dict:
    """The verdict with the rule it was reached under, as stored with a run (`results["gate"]`)."""
    return gate_verdict(rule, results) | {"rule": rule.as_dict()}


def rule_conditions(rule: GateRule) -> list[str]:
    """The rule's conditions in words, for a page."""
    conditions = []
    if rule.min_teacher_win_rate is not None:
        conditions.append(f"a win rate against the teacher of at least {_threshold(rule.min_teacher_win_rate)}")
    if rule.min_teacher_win_rate_low is not None:
        conditions.append(f"its interval's lower bound at least {_threshold(rule.min_teacher_win_rate_low)}")
    if rule.min_base_win_rate is not None:
        conditions.append(f"a win rate against the base model of at least {_threshold(rule.min_base_win_rate)}")
    if rule.max_retention_loss_increase is not None:
        maximum = rule.max_retention_loss_increase
        worse = f"at most {_threshold(maximum)} worse" if maximum >= 0 else f"at least {_threshold(-maximum)} better"
        conditions.append(f"a retention loss {worse} than the base model's")
    if rule.no_flagged_slices:
        conditions.append("no slice of the data on which it is worse than the base model")
    if rule.min_judged_examples:
        conditions.append(f"at least {rule.min_judged_examples} examples judged")
    return conditions


# --- the checks ------------------------------------------------------------------------------------------------

_AGAINST = {"teacher": "against the teacher", "base": "against the base model"}


def _win_rate_check(minimum: float | None, results: dict, against: str) -> dict | None:
    if minimum is None:
        return None
    name = f"{against}_win_rate"
    rate, missing = _win_rate(results, against)
    if rate is None:
        return _check(name, False, missing)
    decimals = _decimals(rate.value, minimum)
    measured = f"Win rate {_AGAINST[against]} {_interval(rate, decimals)}"
    if rate.value >= minimum:
        return _check(name, True, f"{measured} is at least {_threshold(minimum)}.")
    return _check(name, False, f"{measured} is below {_threshold(minimum)}.")


def _lower_bound_check(minimum: float | None, results: dict) -> dict | None:
    if minimum is None:
        return None
    rate, missing = _win_rate(results, "teacher")
    if rate is None:
        return _check("teacher_win_rate_low", False, missing)
    decimals = _decimals(rate.low, minimum)
    measured = (
        f"Win rate against the teacher {_interval(rate, decimals)}: its lower bound {_measured(rate.low, decimals)}"
    )
    if rate.low >= minimum:
        return _check("teacher_win_rate_low", True, f"{measured} is at least {_threshold(minimum)}.")
    return _check("teacher_win_rate_low", False, f"{measured} is below {_threshold(minimum)}.")


def _retention_check(maximum: float | None, results: dict) -> dict | None:
    if maximum is None:
        return None
    forgetting = results.get("forgetting")
    change = _estimate(forgetting.get("loss_change")) if isinstance(forgetting, dict) else None
    if change is None:
        return _check(
            "retention_loss", False, "No retention set was evaluated: the change in retention loss is unknown."
        )
    decimals = max(1, _decimals(change.value, maximum))
    direction = "worse" if change.value >= 0 else "better"
    measured = (
        f"Retention loss {_measured(abs(change.value), decimals)} {direction} than the base model's "
        f"[{_signed(change.low, decimals)}, {_signed(change.high, decimals)}] (n={change.n})"
    )
    passed = change.value <= maximum
    if maximum >= 0:
        limit = f"{'within' if passed else 'more than'} the {_threshold(maximum)} allowed"
    else:
        limit = f"{'at least' if passed else 'less than'} the {_threshold(-maximum)} improvement required"
    return _check("retention_loss", passed, f"{measured}, {limit}.")


def _slices_check(results: dict) -> dict:
    slices = [item for item in results.get("slices") or [] if isinstance(item, dict)]
    if not slices:
        return _check(
            "slices", False,
            "No slices were evaluated: whether the model is worse on a part of the data (a tag, a metadata value) "
            "is unknown.",
        )  # fmt: skip
    flagged = [item for item in slices if item.get("flagged")]
    if not flagged:
        return _check("slices", True, f"No slice is worse than the base model beyond its interval ({len(slices)} "
                      f"slice{'s' if len(slices) != 1 else ''}).")  # fmt: skip
    named = "; ".join(_slice_words(item) for item in flagged[:SLICES_NAMED])
    more = f"; and {len(flagged) - SLICES_NAMED} more" if len(flagged) > SLICES_NAMED else ""
    return _check(
        "slices", False,
        f"Worse than the base model beyond the interval on {len(flagged)} of {len(slices)} "
        f"slice{'s' if len(slices) != 1 else ''}: {named}{more}.",
    )  # fmt: skip


def _judged_check(minimum: int, results: dict) -> dict | None:
    if not minimum:
        return None
    judge = results.get("judge")
    if not isinstance(judge, dict) or not judge:
        return _check("judged_examples", False, "No judge was used: no example was judged.")
    counts = [_judged(comparison) for comparison in judge.values() if isinstance(comparison, dict)]
    judged = min(counts, default=0)
    fewest = " (the fewest over its comparisons)" if len(set(counts)) > 1 else ""
    if judged >= minimum:
        return _check("judged_examples", True, f"{judged} examples were judged{fewest}: at least {minimum}.")
    return _check(
        "judged_examples", False,
        f"{judged} example{'s were' if judged != 1 else ' was'} judged{fewest}: fewer than {minimum}, too few for the "
        f"win rate to say much.",
    )  # fmt: skip


# --- reading results -------------------------------------------------------------------------------------------


def _estimate(raw: object) -> _Estimate | None:
    """An estimate of `results`, or None when it is absent or not one."""
    if not isinstance(raw, dict):
        return None
    numbers = [raw.get(key) for key in ("value", "low", "high")]
    if not all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in numbers):
        return None
    value, low, high = (float(x) for x in numbers)  # type: ignore[arg-type]
    n = raw.get("n")
    return _Estimate(value, low, high, n=n if isinstance(n, int) and not isinstance(n, bool) else 0)


def _win_rate(results: dict, against: str) -> tuple[_Estimate | None, str]:
    """The win rate against `against`, or None and why it is unknown."""
    judge = results.get("judge")
    if not isinstance(judge, dict) or not judge:
        return None, f"No judge was used: the win rate {_AGAINST[against]} is unknown."
    comparison = judge.get(against)
    if not isinstance(comparison, dict):
        return None, f"The judge did not compare the answers {_AGAINST[against]}: that win rate is unknown."
    rate = _estimate(comparison.get("win_rate"))
    if rate is None:
        return None, f"The judge gave no verdict {_AGAINST[against]} (its calls failed): that win rate is unknown."
    return rate, ""


def _judged(comparison: dict) -> int:
    rate = _estimate(comparison.get("win_rate"))
    if rate is not None:
        return rate.n
    judged = comparison.get("judged")
    return judged if isinstance(judged, int) and not isinstance(judged, bool) else 0


def _slice_words(item: dict) -> str:
    by, value = str(item.get("by", "")), str(item.get("value", ""))
    where = f'metadata {by.removeprefix("metadata:")} = "{value}"' if by.startswith("metadata:") else f'{by} "{value}"'
    base, tuned, delta = (_estimate(item.get(key)) for key in ("base", "tuned", "delta"))
    metric = str(item.get("metric", "")) or "the metric"
    if base is None or tuned is None:
        return f"{where} (n={item.get('n', '?')})"
    difference = f", difference {delta.value:+.3f} [{delta.low:+.3f}, {delta.high:+.3f}]" if delta else ""
    return f"{where} ({metric} {tuned.value:.3f} against {base.value:.3f}{difference}, n={item.get('n', '?')})"


# --- words and numbers -----------------------------------------------------------------------------------------


def _check(name: str, passed: bool, reason: str) -> dict:
    return {"name": name, "passed": passed, "reason": reason}


def _decimals(value: float, threshold: float) -> int:
    """The fewest decimals of a percentage (up to 3) at which `value` and `threshold` read differently, so that
    "45% is below 45%" is never said."""
    decimals = 0
    while decimals < 3 and value != threshold and round(value * 100, decimals) == round(threshold * 100, decimals):
        decimals += 1
    return decimals


def _measured(fraction: float, decimals: int) -> str:
    return f"{fraction * 100:.{decimals}f}%"


def _signed(fraction: float, decimals: int) -> str:
    return f"{fraction * 100:+.{decimals}f}%"


def _threshold(fraction: float) -> str:
    """A rule's threshold as set: 0.45 is 45%, 0.025 is 2.5%."""
    return f"{round(fraction * 100, 4):g}%"


def _interval(rate: _Estimate, decimals: int) -> str:
    return (
        f"{_measured(rate.value, decimals)} [{_measured(rate.low, decimals)}, {_measured(rate.high, decimals)}] "
        f"(n={rate.n})"
    )
