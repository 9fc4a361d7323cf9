"""The metrics an evaluation reports, each with its sample size and a 95% bootstrap interval (the examples
resampled 2,000 times, percentile interval: `scipy.stats.bootstrap`). Plain functions on lists of answers: no
Django, no model.

A metric is an `Estimate`: the value on the examples, the interval, and n. Where n is too small for an interval
(fewer than 2 examples, or every resample alike) the interval is the value itself.
"""

import json
import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95
SEED = 20260101  # the same examples give the same interval


@dataclass(frozen=True, slots=True)
class Estimate:
    value: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}] (n={self.n:,})"


def estimate(values: Sequence[float]) -> Estimate | None:
    """The mean of per-example values (1/0 for right/wrong, a score), with its bootstrap interval; None for no
    example."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return None
    value = float(data.mean())
    if data.size < 2 or np.all(data == data[0]):
        return Estimate(value, value, value, int(data.size))
    from scipy import stats  # imported where used: web processes that never compute a metric stay small

    result = stats.bootstrap(
        (data,), np.mean, n_resamples=RESAMPLES, confidence_level=LEVEL, method="percentile",
        rng=np.random.default_rng(SEED),
    )  # fmt: skip
    interval = result.confidence_interval
    return Estimate(value, float(interval.low), float(interval.high), int(data.size))


def paired_estimate(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    statistic: Callable[[np.ndarray, np.ndarray], float],
) -> Estimate | None:
    """`statistic(a, b)` of two per-example series that belong together (the same examples under two models),
    resampling examples, not each series apart."""
    first, second = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if first.size == 0:
        return None
    value = float(statistic(first, second))
    if first.size < 2:
        return Estimate(value, value, value, int(first.size))
    rng = np.random.default_rng(SEED)
    picks = rng.integers(0, first.size, size=(RESAMPLES, first.size))
    values = np.array([statistic(first[pick], second[pick]) for pick in picks])
    alpha = (1 - LEVEL) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return Estimate(value, float(low), float(high), int(first.size))


def relative_change(a: Sequence[float], b: Sequence[float]) -> Estimate | None:
    """How much larger b's mean is than a's, as a fraction of a's (0.02: 2% worse, for a loss)."""
    return paired_estimate(a, b, lambda x, y: float(y.mean() / x.mean() - 1) if x.mean() else math.nan)


# --- text answers ---------------------------------------------------------------------------------------------------


def normalized(text: str) -> str:
    """For exact match: Unicode NFKC, case folded, whitespace runs as one space, ends trimmed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def exact_match_scores(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    return [float(normalized(p) == normalized(r)) for p, r in zip(predictions, references, strict=True)]


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> Estimate | None:
    return estimate(exact_match_scores(predictions, references))


# Words of scripts written with spaces, and each character of those written without (Han, Hiragana, Katakana,
# Thai...): the default tokenizer of `rouge-score` keeps only [a-z0-9], which leaves nothing of most languages.
_WORD = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\u0e00-\u0e7f]|[^\W_]+", re.UNICODE)


class _Tokenizer:
    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text.casefold())


def rouge_l_scores(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L F-measure (longest common subsequence of words) of each example, by Google's `rouge-score`."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_Tokenizer())
    return [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references, strict=True)]


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> Estimate | None:
    return estimate(rouge_l_scores(predictions, references))


def chrf_scores(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """chrF (character n-gram F-score, 0 to 1) of each example, by `sacrebleu`: works in every script."""
    from sacrebleu.metrics import CHRF

    metric = CHRF()
    return [metric.sentence_score(p, [r]).score / 100 for p, r in zip(predictions, references, strict=True)]


def chrf(predictions: Sequence[str], references: Sequence[str]) -> Estimate | None:
    return estimate(chrf_scores(predictions, references))


# --- structured answers ---------------------------------------------------------------------------------------------


def json_value(text: str) -> tuple[bool, object]:
    """(is it JSON, its value); a ```json fence around it is allowed, as models often write one."""
    body = text.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.DOTALL)
    try:
        return True, json.loads(fence.group(1) if fence else body)
    except ValueError:
        return False, None


def json_validity(predictions: Sequence[str]) -> Estimate | None:
    return estimate([float(json_value(p)[0]) for p in predictions])


def schema_match(predictions: Sequence[str], schemas: Sequence[dict]) -> Estimate | None:
    """The share of answers that are JSON valid against their entry's `response_format` schema (JSON Schema, the
    draft the schema names, else 2020-12)."""
    import jsonschema

    matches = []
    for prediction, schema in zip(predictions, schemas, strict=True):
        ok, value = json_value(prediction)
        if ok:
            validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
            ok = validator(schema).is_valid(value)
        matches.append(float(ok))
    return estimate(matches)


def response_schema(response_format: dict | None) -> dict | None:
    """The JSON schema a `response_format` (Chat Completions' shape, as entries keep it) asks for."""
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    schema = (response_format.get("json_schema") or {}).get("schema")
    return schema if isinstance(schema, dict) else None


@dataclass(frozen=True, slots=True)
class ToolCallMatch:
    name: Estimate | None  # the same functions called, in order
    arguments: Estimate | None  # and with equal arguments (as JSON values)


def tool_call_match(predicted: Sequence[list[dict]], expected: Sequence[list[dict]]) -> ToolCallMatch:
    """Over the examples whose expected answer calls tools: did the answer call the same ones, with the same
    arguments? Calls are OpenAI's (`{"function": {"name", "arguments"}}`)."""
    names, arguments = [], []
    for got, want in zip(predicted, expected, strict=True):
        if not want:
            continue
        same_names = [_call(c)[0] for c in got] == [_call(c)[0] for c in want]
        names.append(float(same_names))
        arguments.append(float(same_names and [_call(c)[1] for c in got] == [_call(c)[1] for c in want]))
    return ToolCallMatch(estimate(names), estimate(arguments))


_TOOL_CALL_TAG = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def answer_tool_calls(text: str) -> list[dict]:
    """The tool calls a generated answer makes, as OpenAI's calls: each `<tool_call>{"name", "arguments"}</tool_call>`
    block (the convention of Qwen, Hermes and Logtune's own fallback template), else the whole answer when it is
    one such object (or a list of them). Arguments may be an object or its JSON text."""
    blocks = _TOOL_CALL_TAG.findall(text)
    values = [json_value(block) for block in blocks] if blocks else [json_value(text)]
    calls = []
    for ok, value in values:
        for item in (value if isinstance(value, list) else [value]) if ok else []:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                arguments = item.get("arguments", item.get("parameters", {}))
                text_arguments = arguments if isinstance(arguments, str) else json.dumps(arguments)
                calls.append({"type": "function", "function": {"name": item["name"], "arguments": text_arguments}})
    return calls


def _call(call: dict) -> tuple[str, object]:
    function = call.get("function") or {}
    ok, value = json_value(function.get("arguments") or "")
    return function.get("name", ""), value if ok else function.get("arguments")


# --- labels ---------------------------------------------------------------------------------------------------------


def label_report(predictions: Sequence[str], references: Sequence[str]) -> dict:
    """For short label answers: accuracy and macro-F1 with intervals, and per class precision, recall, F1 and
    support, and the confusion matrix (rows: the reference, columns: the answer), by scikit-learn. An answer that
    is no known label counts as a class of its own, so a class the model stopped predicting shows."""
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    answers = [normalized(p) for p in predictions]
    truth = [normalized(r) for r in references]
    labels = sorted(set(truth) | set(answers))
    precision, recall, f1, support = precision_recall_fscore_support(truth, answers, labels=labels, zero_division=0)
    classes = [
        {"label": label, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        if s or label in answers
    ]
    reference_labels = sorted(set(truth))
    index = {label: i for i, label in enumerate(labels)}
    codes_true, codes_answer = np.array([index[t] for t in truth]), np.array([index[a] for a in answers])

    def macro_f1(t: np.ndarray, a: np.ndarray) -> float:
        return float(f1_score(t, a, labels=[index[x] for x in reference_labels], average="macro", zero_division=0))

    return {
        "accuracy": exact_match(predictions, references),
        "macro_f1": paired_estimate(codes_true, codes_answer, macro_f1),
        "classes": classes,
        "labels": labels,
        "confusion": confusion_matrix(truth, answers, labels=labels).tolist(),
    }


# --- pairwise verdicts and agreement --------------------------------------------------------------------------------

WIN, TIE, LOSS = 1.0, 0.5, 0.0


@dataclass(frozen=True, slots=True)
class WinRate:
    rate: Estimate | None  # (wins + ½ ties) / pairs
    wins: int
    ties: int
    losses: int


def win_rate(outcomes: Sequence[float]) -> WinRate:
    """Outcomes of the candidate against another, per example: WIN, TIE or LOSS. The rate's interval is Wilson's, a
    tie counting half a win: unlike a bootstrap, it does not collapse to a point when every pair went one way (3 wins
    of 3 is [0.44, 1], not [1, 1])."""
    wins, ties = sum(o == WIN for o in outcomes), sum(o == TIE for o in outcomes)
    return WinRate(wilson_interval(wins + ties / 2, len(outcomes)), wins, ties, sum(o == LOSS for o in outcomes))


Z95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval


def wilson_interval(successes: float, n: int) -> Estimate | None:
    """The share `successes / n` with its 95% Wilson score interval (right at 0 and at n, where the normal one
    collapses); None for no trial."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denominator
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n)


def agreement(a: Sequence[str], b: Sequence[str]) -> dict:
    """How often two raters (the judge and people) gave the same verdict, with Cohen's kappa (agreement beyond
    what chance would give, by scikit-learn); n is the number of examples both rated."""
    from sklearn.metrics import cohen_kappa_score

    if not a:
        return {"agreement": None, "kappa": None, "n": 0}
    same = estimate([float(x == y) for x, y in zip(a, b, strict=True)])
    kappa = float(cohen_kappa_score(a, b)) if len(set(a) | set(b)) > 1 else 1.0
    return {"agreement": same, "kappa": None if math.isnan(kappa) else kappa, "n": len(a)}
