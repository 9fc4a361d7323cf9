"""From JSONL conversations to token ids and labels, and from examples to batches.

Labels are built here, not by the chat template: the conversation is rendered once, and the text
each assistant turn adds (found by rendering the conversation up to that turn) is what trains,
the end-of-turn token included. An example with nothing to train is an error, never a silent zero.

Only a tokenizer is needed, never a model: the loss preview of an entry uses the same code.
"""

import contextlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IGNORE_INDEX = -100

# For tokenizers that come without a chat template (base models): plain role headers, and the
# tokenizer's own EOS after every turn, so the model learns to stop with a token it already has.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '### ' + message['role'] + '\n' }}"
    "{% if message['content'] %}{{ message['content'] }}{% endif %}"
    "{% for call in message.get('tool_calls') or [] %}"
    "{{ '\n<tool_call>' + (call['function'] | tojson) + '</tool_call>' }}"
    "{% endfor %}"
    "{{ eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### assistant\n' }}{% endif %}"
)


class DataError(ValueError):
    """An example that cannot be trained on, named by its line."""


@dataclass
class Record:
    line: int
    entry_id: int | None
    split: str
    messages: list[dict]
    tools: list[dict]


@dataclass
class Example:
    line: int
    entry_id: int | None
    split: str
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)

    def __len__(self) -> int:
        return len(self.input_ids)


# --- reading ----------------------------------------------------------------------------------------


def json_lines(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line of a JSONL file; a line that is not JSON is a DataError."""
    with open(path, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                yield number, json.loads(raw)
            except ValueError as exc:
                raise DataError(f"line {number}: not JSON ({exc})") from None


def read_records(path: str | Path) -> Iterator[Record]:
    """The conversations of a JSONL file, line by line; a malformed line is a DataError naming it."""
    for number, row in json_lines(path):
        yield _record(number, row)


def _record(number: int, row: Any) -> Record:
    if not isinstance(row, dict) or not isinstance(row.get("messages"), list) or not row["messages"]:
        raise DataError(f"line {number}: expected an object with a non-empty 'messages' list")
    split = row.get("split") or "train"
    if split not in ("train", "validation"):
        raise DataError(f"line {number}: split must be 'train' or 'validation', not {split!r}")
    tools = row.get("tools") or []
    if not isinstance(tools, list):
        raise DataError(f"line {number}: 'tools' must be a list")
    entry_id = row.get("entry_id")
    return Record(number, entry_id if isinstance(entry_id, int) else None, split, row["messages"], tools)


def template_messages(messages: Sequence[dict]) -> list[dict]:
    """Canonical messages as chat templates expect them: text content, tool-call arguments as objects."""
    out = []
    for message in messages:
        item: dict[str, Any] = {"role": message["role"], "content": content_text(message.get("content"))}
        if message.get("tool_calls"):
            item["tool_calls"] = [_tool_call(call) for call in message["tool_calls"]]
        for key in ("name", "tool_call_id"):
            if message.get(key):
                item[key] = message[key]
        out.append(item)
    return out


def content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "text":
            parts.append(part.get("text", ""))
        elif isinstance(part, dict) and part.get("type") == "refusal":
            parts.append(part.get("refusal", ""))
    return "".join(parts)


def _tool_call(call: dict) -> dict:
    kind = call.get("type") or "function"
    if kind != "function":  # a custom tool's call ({"custom": {"name", "input"}}): chat templates know functions only
        body = call.get(kind)
        body = body if isinstance(body, dict) else {}
        function = {"name": body.get("name", ""), "arguments": body.get("input", body.get("arguments", ""))}
        return {"type": "function", "id": call.get("id", ""), "function": function}
    function = dict(call.get("function") or {})
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError):  # invalid JSON is kept as written; validation reports it
            function["arguments"] = json.loads(arguments) if arguments.strip() else {}
    return {"type": "function", "id": call.get("id", ""), "function": function}


# --- encoding ---------------------------------------------------------------------------------------


def ensure_chat_template(tokenizer: Any) -> None:
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE


def stop_token_ids(tokenizer: Any, extra: Iterable[int] = ()) -> set[int]:
    """Tokens generation stops on: the tokenizer's EOS and the model's generation config EOS ids."""
    ids = {int(i) for i in extra}
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


def trained_spans(tokenizer: Any, messages: list[dict], tools: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of it that train: each assistant turn
    (unless it has `"weight": 0`) from the end of the generation prompt to the end of the turn."""
    rendered = template_messages(messages)
    full = _render(tokenizer, rendered, tools, generation_prompt=False)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant" or message.get("weight", 1) == 0:
            continue
        start = _render(tokenizer, rendered[:index], tools, generation_prompt=True)
        end = _render(tokenizer, rendered[: index + 1], tools, generation_prompt=False)
        if not (full.startswith(start) and full.startswith(end)) or len(end) <= len(start):
            raise DataError(
                "the model's chat template renders a conversation differently from its beginning "
                f"(turn {index + 1}), so the assistant tokens cannot be located"
            )
        spans.append((len(start), len(end)))
    return full, spans


def render_prompt(tokenizer: Any, messages: list[dict], tools: list[dict] | None = None) -> str:
    """The text a model answers: `messages` (as template_messages gives them) and the assistant's generation
    prompt, rendered by the tokenizer's chat template with the tools it can call."""
    return _render(tokenizer, messages, tools or [], generation_prompt=True)


def _render(tokenizer: Any, messages: list[dict], tools: list[dict], *, generation_prompt: bool) -> str:
    if not messages:
        return ""
    return tokenizer.apply_chat_template(
        messages, tools=tools or None, tokenize=False, add_generation_prompt=generation_prompt
    )


def encode(tokenizer: Any, record: Record, *, max_length: int, stop_ids: set[int]) -> Example:
    """Token ids and labels of one conversation. Raises DataError when no token would train or when an
    assistant turn does not end with a token generation stops on (the model would never stop)."""
    try:
        text, spans = trained_spans(tokenizer, record.messages, record.tools)
    except DataError as exc:
        raise DataError(f"line {record.line}: {exc}") from None
    except Exception as exc:  # the template itself raised (e.g. roles out of order)
        raise DataError(f"line {record.line}: the chat template cannot render it ({exc})") from None
    if not spans:
        raise DataError(f"line {record.line}: no assistant turn to train on (every example needs one)")
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
    labels = [IGNORE_INDEX] * len(ids)
    for start, end in spans:
        in_span = [i for i, (begin, _) in enumerate(offsets) if start <= begin < end]
        if stop_ids:
            stops = [n for n, i in enumerate(in_span) if ids[i] in stop_ids]
            if not stops:
                names = ", ".join(sorted(repr(tokenizer.convert_ids_to_tokens(i)) for i in stop_ids))
                raise DataError(
                    f"line {record.line}: the chat template does not end the assistant turn with a stop token "
                    f"({names}); a model trained on it would not learn to stop"
                )
            in_span = in_span[: stops[-1] + 1]  # what the template writes after the stop token is never generated
        for i in in_span:
            labels[i] = ids[i]
    if labels and labels[0] != IGNORE_INDEX:
        labels[0] = IGNORE_INDEX  # nothing predicts the first token
    truncated = len(ids) > max_length
    return Example(record.line, record.entry_id, record.split, ids[:max_length], labels[:max_length], truncated)


def load_examples(
    tokenizer: Any, path: str | Path, *, max_length: int, stop_ids: set[int]
) -> tuple[list[Example], list[Example], list[Example]]:
    """(train, validation, dropped): dropped are the examples that lost every trained token to truncation."""
    train, validation, dropped = [], [], []
    for record in read_records(path):
        example = encode(tokenizer, record, max_length=max_length, stop_ids=stop_ids)
        if example.trained_tokens == 0:
            dropped.append(example)
        elif example.split == "validation":
            validation.append(example)
        else:
            train.append(example)
    if not train:
        raise DataError(f"{path}: no training example (every line is in the validation split or dropped)")
    return train, validation, dropped


# --- batches ----------------------------------------------------------------------------------------


def pack(examples: Sequence[Example]) -> dict[str, list[list[int]]]:
    """Padding-free: the examples end to end in one row; positions restart at each example, which the
    attention implementation reads as boundaries (no token attends to another example)."""
    input_ids: list[int] = []
    labels: list[int] = []
    position_ids: list[int] = []
    for example in examples:
        input_ids += example.input_ids
        labels += example.labels  # its first label is always ignored: no example is predicted from the last
        position_ids += list(range(len(example)))
    return {"input_ids": [input_ids], "labels": [labels], "position_ids": [position_ids]}


def pad(examples: Sequence[Example], pad_id: int) -> dict[str, list[list[int]]]:
    """One row per example, padded on the right to the longest; pads neither attend nor train."""
    longest = max(len(example) for example in examples)
    batch: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "attention_mask": []}
    for example in examples:
        gap = longest - len(example)
        batch["input_ids"].append(example.input_ids + [pad_id] * gap)
        batch["labels"].append(example.labels + [IGNORE_INDEX] * gap)
        batch["attention_mask"].append([1] * len(example) + [0] * gap)
    return batch
