"""An LLM judge comparing two answers to the same conversation, pairwise, against a rubric.

Judges favour a position (the first answer, or the second), so every pair is judged twice, in both orders: the
candidate wins only when the judge prefers it both times, loses only when it prefers the other both times, and
anything else (a tie, a change of mind, a verdict the judge did not state) is a tie. How often the two orders
agree is reported beside the win rate, as a measure of how much the verdicts are worth.
"""

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from training.endpoints.client import ChatAnswer, EndpointTarget, chat_many
from training.evaluation.metrics import LOSS, TIE, WIN, Estimate, WinRate, estimate, win_rate

DEFAULT_RUBRIC = """\
Judge which answer is better for the user, as a careful expert reviewer would. In order of importance:
1. Correct: facts, numbers, code and tool calls are right; nothing is made up.
2. Complete: it does what the user asked, all of it, and follows the conversation's instructions (the system
   message, the format asked for).
3. Clear and concise: no padding, no needless repetition. Do not prefer an answer for being longer.
4. Safe and honest: it declines only what it should, and says so when it does not know.
Ignore the order in which the answers are shown."""

_SYSTEM = """\
You compare two answers an assistant could give to the last turn of a conversation.

{rubric}

Think briefly, then end with one line that is exactly one of:
Verdict: A
Verdict: B
Verdict: tie"""

_USER = """\
<conversation>
{conversation}
</conversation>

<answer_a>
{a}
</answer_a>

<answer_b>
{b}
</answer_b>

Which answer is better?"""

_VERDICT = re.compile(r"verdict\s*[:：]\s*\**\s*(a|b|tie)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Pair:
    conversation: list[dict]  # the messages before the answer (OpenAI chat shape)
    candidate: str  # the answer being judged (the fine-tune's)
    other: str  # the answer it is compared with (the base model's, the logged one)


@dataclass(slots=True)
class PairVerdict:
    outcome: float  # WIN, TIE or LOSS for the candidate
    first: str  # the verdict with the candidate shown first: "candidate", "other", "tie" or "" (none stated)
    second: str  # with the candidate shown second
    error: str = ""  # a call that failed after its retries: the pair counts as not judged

    @property
    def consistent(self) -> bool:
        return self.first == self.second and self.first != ""


@dataclass(frozen=True, slots=True)
class JudgeSummary:
    win_rate: WinRate
    judged: int  # pairs with both verdicts
    failed: int  # pairs a call failed for (not in the win rate)
    position_agreement: Estimate | None  # the share of pairs whose two orders agreed


def judge_messages(pair: Pair, rubric: str, *, candidate_first: bool) -> list[dict]:
    a, b = (pair.candidate, pair.other) if candidate_first else (pair.other, pair.candidate)
    return [
        {"role": "system", "content": _SYSTEM.format(rubric=rubric.strip() or DEFAULT_RUBRIC)},
        {"role": "user", "content": _USER.format(conversation=transcript(pair.conversation), a=a, b=b)},
    ]


def transcript(messages: Sequence[dict]) -> str:
    """The conversation as the judge reads it: one block per message, its role first; tool calls as JSON."""
    blocks = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = "\n".join(part.get("text", f"[{part.get('type', 'part')}]") for part in content)
        text = content or ""
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            text += f"\n[tool call {function.get('name', '')}({function.get('arguments', '')})]"
        blocks.append(f"[{message.get('role', '?')}]\n{text.strip()}")
    return "\n\n".join(blocks)


def verdict_of(text: str) -> str:
    """ "a", "b", "tie", or "" when the judge stated none; the last stated verdict counts."""
    found = _VERDICT.findall(text)
    return found[-1].lower() if found else ""


def judge_pairs(
    target: EndpointTarget,
    pairs: Sequence[Pair],
    *,
    rubric: str = DEFAULT_RUBRIC,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[PairVerdict | None]:
    """Each pair judged in both orders (2 calls), temperature 0. None for a pair left unjudged by a stop."""
    requests = []
    for pair in pairs:
        for first in (True, False):
            requests.append({"messages": judge_messages(pair, rubric, candidate_first=first), "temperature": 0})
    done = 0

    def answered(answer: ChatAnswer) -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, len(requests))

    answers = chat_many(target, requests, on_answer=answered, should_stop=should_stop)
    return [_verdict(answers[2 * i], answers[2 * i + 1]) for i in range(len(pairs))]


def _verdict(first: ChatAnswer | None, second: ChatAnswer | None) -> PairVerdict | None:
    if first is None or second is None:
        return None
    error = first.error or second.error
    as_first = {"a": "candidate", "b": "other", "tie": "tie"}.get(verdict_of(first.text), "")
    as_second = {"a": "other", "b": "candidate", "tie": "tie"}.get(verdict_of(second.text), "")
    if error:
        return PairVerdict(TIE, as_first, as_second, error=error)
    if as_first == as_second == "candidate":
        outcome = WIN
    elif as_first == as_second == "other":
        outcome = LOSS
    else:
        outcome = TIE
    return PairVerdict(outcome, as_first, as_second)


def judge_summary(verdicts: Sequence[PairVerdict | None]) -> JudgeSummary:
    judged = [v for v in verdicts if v is not None and not v.error]
    failed = sum(1 for v in verdicts if v is not None and v.error)
    return JudgeSummary(
        win_rate=win_rate([v.outcome for v in judged]), judged=len(judged), failed=failed,
        position_agreement=estimate([float(v.consistent) for v in judged]),
    )  # fmt: skip
