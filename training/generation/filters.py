"""The filters a generated row passes before it waits for review. Each dropped row keeps its reason's code (one of
`DROP_REASONS`) and a detail that says what was found; a reviewer can still accept it (nothing is lost).

In order, cheapest first: the call failed; the answer held no readable JSON; empty; too short; a refusal; the
pre-flight checks a dataset's validation makes (roles, tool-call JSON, the last turn an answer, the length); personal
data; the same text as a row kept before or an entry of the target dataset; near-duplicates (cosine similarity of
the embeddings that near-duplicate search uses) of a row kept before, an entry of the target dataset or a log of the
project's index; last, a judge's score under the threshold.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from curation.datasets.validation import CHECK_TITLES, conversation_problems, normalised_hash
from curation.text.pii.conversations import conversation_find
from curation.text.rendering import content_text
from curation.text.tokens import est_tokens

CALL_FAILED = "call_failed"
MALFORMED = "malformed"
EMPTY = "empty"
TOO_SHORT = "too_short"
REFUSAL = "refusal"
PREFLIGHT = "preflight"
PERSONAL_DATA = "personal_data"
DUPLICATE = "duplicate"
NEAR_DUPLICATE = "near_duplicate"
JUDGE = "judge"

DROP_REASONS = {
    CALL_FAILED: "The call failed",
    MALFORMED: "No readable JSON in the answer",
    EMPTY: "Empty question or answer",
    TOO_SHORT: "Answer too short",
    REFUSAL: "A refusal",
    PREFLIGHT: "Failed a pre-flight check",
    PERSONAL_DATA: "Personal data",
    DUPLICATE: "Same text as another row or entry",
    NEAR_DUPLICATE: "Near-duplicate",
    JUDGE: "Under the judge's threshold",
}

# Openings of an answer that declines instead of answering. Matched on the answer's first 200 characters only:
# an answer that explains, further down, what it cannot do is still an answer.
_REFUSAL = re.compile(
    r"\b(i'?m sorry,? but i (can'?t|cannot|won'?t)|i (can'?t|cannot|won'?t|am unable to|'m unable to) "
    r"(help|assist|answer|provide|comply|do that)|as an ai( language model)?,? i|i'?m not able to (help|answer)"
    r"|the (excerpt|document|text) does not (say|mention|contain|provide))",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Drop:
    reason: str  # a key of DROP_REASONS
    detail: str


def answer_text(messages: Sequence[dict]) -> str:
    last = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "assistant"), None)
    return content_text(last.get("content")).strip() if last else ""


def question_text(messages: Sequence[dict]) -> str:
    last = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None)
    return content_text(last.get("content")).strip() if last else ""


def text_drop(
    messages: list[dict], *, min_answer_chars: int, max_row_tokens: int, drop_personal_data: bool
) -> Drop | None:
    """The first of the text filters the row fails (empty, too short, refusal, pre-flight, personal data), or None."""
    answer = answer_text(messages)
    has_tool_calls = any(isinstance(m, dict) and m.get("tool_calls") for m in messages[-1:])
    if not question_text(messages) or not (answer or has_tool_calls):
        return Drop(EMPTY, "the question is empty" if not question_text(messages) else "the answer is empty")
    if not has_tool_calls and len(answer) < min_answer_chars:
        return Drop(TOO_SHORT, f"the answer has {len(answer)} characters, under {min_answer_chars}")
    if match := _REFUSAL.search(answer[:200]):
        return Drop(REFUSAL, f"the answer declines: “{match[0]}”")
    problems = conversation_problems(messages)
    if problems:
        return Drop(PREFLIGHT, "fails: " + "; ".join(CHECK_TITLES.get(code, code) for code in problems))
    tokens = est_tokens("\n".join(content_text(m.get("content")) for m in messages if isinstance(m, dict)))
    if tokens > max_row_tokens:
        return Drop(PREFLIGHT, f"about {tokens:,} tokens, over the limit of {max_row_tokens:,}")
    if drop_personal_data:
        found = conversation_find(messages)
        if found:
            kinds = sorted({item.finding.kind for item in found})
            return Drop(PERSONAL_DATA, f"{len(found)} finding(s): {', '.join(kinds)}")
    return None


class ExactSeen:
    """The normalised hashes of the conversations seen so far (the target dataset's entries, the rows kept)."""

    def __init__(self, known: dict[int, str] | None = None) -> None:
        self._seen: dict[int, str] = dict(known or {})

    def drop(self, messages: list[dict], label: str) -> Drop | None:
        """A DUPLICATE drop when the conversation was seen (saying where), else None and it is remembered as
        `label`."""
        key = normalised_hash(messages)
        if key in self._seen:
            return Drop(DUPLICATE, f"the same text as {self._seen[key]}")
        self._seen[key] = label
        return None


@dataclass(frozen=True, slots=True)
class Reference:
    """Vectors to compare with: unit rows of `matrix`, each named by `labels` ("log 12", "entry 5")."""

    matrix: np.ndarray  # float32 (n, d), unit rows
    labels: list[str]
    ids: np.ndarray | None = None  # the rows' ids, to leave one out (a variation's own seed log)


def near_duplicate_drops(
    vectors: np.ndarray, *, references: Sequence[Reference], threshold: float, labels: Sequence[str],
    leave_out: Sequence[int | None] = (), block: int = 2048,
) -> list[Drop | None]:  # fmt: skip
    """For each row of `vectors` (unit rows, in the order the rows were written), a NEAR_DUPLICATE drop when it is at
    least `threshold` alike to a reference row or to an earlier row that was kept, else None. `leave_out[i]`: an
    id of the references that row i may be alike to (its own seed)."""
    n = len(vectors)
    drops: list[Drop | None] = [None] * n
    for reference in references:
        if not len(reference.matrix):
            continue
        for start in range(0, len(reference.matrix), block):
            part = reference.matrix[start : start + block]
            similarities = vectors @ part.T
            if reference.ids is not None and leave_out:
                ids = reference.ids[start : start + block]
                for row, own in enumerate(leave_out):
                    if own is not None:
                        similarities[row, ids == own] = -1
            best = similarities.argmax(axis=1)
            for row in range(n):
                score = float(similarities[row, best[row]])
                if score >= threshold and drops[row] is None:
                    drops[row] = Drop(NEAR_DUPLICATE, f"{score:.3f} alike to {reference.labels[start + best[row]]}")
    kept: list[int] = []
    for row in range(n):
        if drops[row] is not None:
            continue
        if kept:
            scores = vectors[kept] @ vectors[row]
            best = int(scores.argmax())
            if scores[best] >= threshold:
                drops[row] = Drop(NEAR_DUPLICATE, f"{float(scores[best]):.3f} alike to {labels[kept[best]]}")
                continue
        kept.append(row)
    return drops


# --- the judge ------------------------------------------------------------------------------------------------------

DEFAULT_JUDGE_RUBRIC = """\
Score how good this example is for training an assistant, as a careful expert reviewer would:
- The question is clear and something a real user would ask.
- The answer is correct, complete and answers exactly what was asked; nothing is made up.
- The answer is clear and concise."""

_JUDGE_SYSTEM = """\
You grade one example of training data: a conversation and the assistant's answer at its end.

{rubric}

Think briefly, then end with one line that is exactly:
Score: N
where N is a whole number from 1 (useless) to 10 (excellent)."""

_SCORE = re.compile(r"score\s*[:：]\s*\**\s*(10|[1-9])(?:\s*/\s*10)?\b", re.IGNORECASE)


def judge_request(messages: Sequence[dict], rubric: str) -> dict:
    """The chat request that asks a judge to score the row (the body without `model`)."""
    lines = []
    for message in messages:
        role = message.get("role", "?")
        text = content_text(message.get("content"))
        if message.get("tool_calls"):
            text += f"\n[tool calls: {message['tool_calls']}]"
        lines.append(f"<{role}>\n{text}\n</{role}>")
    return {
        "messages": [
            {"role": "system", "content": _JUDGE_SYSTEM.replace("{rubric}", rubric.strip() or DEFAULT_JUDGE_RUBRIC)},
            {"role": "user", "content": "<example>\n" + "\n".join(lines) + "\n</example>\n\nScore this example."},
        ],
        "temperature": 0,
        "max_tokens": 512,
    }


def score_of(text: str) -> float | None:
    """The last `Score: N` the judge wrote, or None when it wrote none."""
    found = _SCORE.findall(text)
    return float(found[-1]) if found else None
