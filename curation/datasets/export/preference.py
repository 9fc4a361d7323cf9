"""Preference pairs from edited entries: the entry's answer is the chosen one, the answer its source log gave the
rejected one, after the same prompt. Pure Python, like the other writers (`formats`).

An entry keeps its log's conversation untouched (`DatasetEntry.log`), so an edit of the last assistant turn is a
preference a person stated. The log is never redacted, so the original answer is redacted here, with every kind,
before it leaves: an edit that was only a redaction is no preference and gives no pair.
"""

from dataclasses import dataclass

import orjson

from curation.datasets.export.formats import (
    SKIPPED_NO_REPLY,
    last_reply,
    note_options,
    openai_message,
    openai_tool,
)
from curation.text.pii.conversations import conversation_redact

SKIPPED_NO_ORIGINAL = "no original answer (imported, source log deleted, or it had none): skipped"
SKIPPED_ANSWER_SAME = "answer not edited: skipped"
SKIPPED_ONLY_REDACTED = "answer changed only by redaction: skipped"
ORIGINAL_REDACTED = "personal data in the original answer replaced by placeholders"
PROMPT_EDITED = "prompt edited since the original answer was given"


@dataclass
class Pair:
    prompt: list[dict]
    chosen: dict
    rejected: dict


def preference_pair(messages: list[dict], original: list[dict] | None, lost: set[str]) -> Pair | None:
    """The entry's conversation up to its last assistant turn, that turn (chosen), and the source log's last
    assistant turn (rejected); None, with the reason in `lost`, when there is no pair to make."""
    last = last_reply(messages, lost)
    if last is None:
        lost.add(SKIPPED_NO_REPLY)
        return None
    original_last = last_reply(original, set()) if original else None
    if original is None or original_last is None:
        lost.add(SKIPPED_NO_ORIGINAL)
        return None
    chosen, rejected = messages[last], original[original_last]
    if chosen == rejected:
        lost.add(SKIPPED_ANSWER_SAME)
        return None
    redacted, found = conversation_redact([rejected])
    if found:
        if redacted[0] == chosen:
            lost.add(SKIPPED_ONLY_REDACTED)
            return None
        lost.add(ORIGINAL_REDACTED)
        rejected = redacted[0]
    if messages[:last] != original[:original_last]:
        lost.add(PROMPT_EDITED)
    return Pair(prompt=messages[:last], chosen=chosen, rejected=rejected)


def to_trl_preference(pair: Pair, tools: list[dict], lost: set[str], options: dict | None = None) -> dict:
    """TRL's conversational preference row: `prompt`, `chosen` and `rejected` lists of messages, and `tools` as
    JSON text (DPOTrainer parses it), present when the entry has tools."""
    note_options(options, lost)
    row: dict = {
        "prompt": [openai_message(m) for m in pair.prompt],
        "chosen": [openai_message(pair.chosen)],
        "rejected": [openai_message(pair.rejected)],
    }
    if tools:
        row["tools"] = orjson.dumps([openai_tool(t) for t in tools]).decode()
    return row


def to_openai_preference(pair: Pair, tools: list[dict], lost: set[str], options: dict | None = None) -> dict:
    """OpenAI's preference fine-tuning line: `input` (messages, tools, parallel_tool_calls), `preferred_output`
    and `non_preferred_output`, one assistant message each."""
    request: dict = {"messages": [openai_message(m) for m in pair.prompt]}
    if tools:
        request["tools"] = [openai_tool(t) for t in tools]
    if options and "parallel_tool_calls" in options:
        request["parallel_tool_calls"] = options["parallel_tool_calls"]
    note_options(options, lost, keeps=("parallel_tool_calls",))
    return {
        "input": request,
        "preferred_output": [openai_message(pair.chosen)],
        "non_preferred_output": [openai_message(pair.rejected)],
    }


PREFERENCE_WRITERS = {"preference": to_trl_preference, "openai_preference": to_openai_preference}
