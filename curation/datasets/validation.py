"""Pre-flight checks of a dataset, before it is exported or trained on.

One streaming pass over the entries, in batches, keeps per entry only what the checks need: two
64-bit hashes of the conversation (exact, and normalised: case, whitespace and punctuation folded)
for duplicates and train/validation overlap. Memory grows with the number of distinct hashes, not
with the size of the conversations; a second pass, over the validation entries only, runs when
the splits overlap, to name the overlapping entries.
"""

import hashlib
import string
import sys
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache

import orjson

from curation.models import Dataset, DatasetEntry, Split
from curation.text.pii import scan
from curation.text.pii.conversations import conversation_find

ERROR = "error"
WARNING = "warning"
VALID_ROLES = ("system", "user", "assistant", "tool")
MIN_TRAIN_EXAMPLES = 200
DEFAULT_MAX_TOKENS = 4096
ENTRY_IDS_CAP = 200  # ids kept per finding: enough to link to them, flat memory on a million bad entries
BATCH = 2000

# Codes, in the order the panel lists them (errors first).
LAST_NOT_ASSISTANT = "last_not_assistant"
INVALID_ROLE = "invalid_role"
EMPTY_MESSAGE = "empty_message"
TOOL_ARGUMENTS = "tool_arguments_invalid"
TOO_LONG = "too_long"
SPLIT_OVERLAP = "split_overlap"
EMPTY_DATASET = "empty_dataset"
DUPLICATE_EXACT = "duplicate_exact"
DUPLICATE_NORMALISED = "duplicate_normalised"
FEW_EXAMPLES = "few_examples"
PERSONAL_DATA = "personal_data"

CHECK_TITLES = {
    LAST_NOT_ASSISTANT: "ends with an assistant turn",
    INVALID_ROLE: "valid roles",
    EMPTY_MESSAGE: "no empty messages",
    TOOL_ARGUMENTS: "tool-call arguments are JSON",
    TOO_LONG: "within max tokens",
    SPLIT_OVERLAP: "no train/validation overlap",
    DUPLICATE_EXACT: "no exact duplicates",
    DUPLICATE_NORMALISED: "no normalised duplicates",
    PERSONAL_DATA: "no personal data left",
    FEW_EXAMPLES: f"at least {MIN_TRAIN_EXAMPLES} training examples",
}


@dataclass(frozen=True, slots=True)
class ValidationFinding:
    code: str
    severity: str  # ERROR: training would fail or learn the wrong thing; WARNING: worth a look
    message: str
    entry_ids: list[int]  # the first ENTRY_IDS_CAP offending entries, by id
    count: int  # all offending entries (for FEW_EXAMPLES: the training examples there are)

    @property
    def truncated(self) -> bool:
        return len(self.entry_ids) < self.count and bool(self.entry_ids)


@dataclass(slots=True)
class ValidationReport:
    entries: int
    max_tokens: int
    findings: list[ValidationFinding]

    @property
    def errors(self) -> list[ValidationFinding]:
        return [finding for finding in self.findings if finding.severity == ERROR]

    @property
    def warnings(self) -> list[ValidationFinding]:
        return [finding for finding in self.findings if finding.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def passed(self) -> list[str]:
        """What was checked and found fine, for the panel to say so."""
        if not self.entries:
            return []
        return [title for code, title in CHECK_TITLES.items() if self.get(code) is None]

    def get(self, code: str) -> ValidationFinding | None:
        return next((finding for finding in self.findings if finding.code == code), None)


@dataclass(slots=True)
class _Hits:
    ids: list[int] = field(default_factory=list)
    count: int = 0

    def add(self, entry_id: int, cap: int) -> None:
        self.count += 1
        if len(self.ids) < cap:
            self.ids.append(entry_id)


# --- one conversation ---------------------------------------------------------------------------


def conversation_problems(messages: object) -> list[str]:
    """The structural problems of one canonical conversation, as codes."""
    if not isinstance(messages, list) or not messages:
        return [LAST_NOT_ASSISTANT]
    problems = []
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "assistant":
        problems.append(LAST_NOT_ASSISTANT)
    if any(not isinstance(message, dict) or message.get("role") not in VALID_ROLES for message in messages):
        problems.append(INVALID_ROLE)
    if any(isinstance(message, dict) and _is_empty(message) for message in messages):
        problems.append(EMPTY_MESSAGE)
    if any(isinstance(message, dict) and not _arguments_valid(message) for message in messages):
        problems.append(TOOL_ARGUMENTS)
    return problems


def _is_empty(message: dict) -> bool:
    """No text, no other content part, no tool call and no refusal: nothing to learn from."""
    if message.get("tool_calls") or message.get("refusal"):
        return False
    content = message.get("content")
    if isinstance(content, str):
        return not content.strip()
    if isinstance(content, list):
        return not any(
            not isinstance(part, dict)
            or part.get("type") != "text"
            or (isinstance(part.get("text"), str) and part["text"].strip())
            for part in content
        )
    return True


def _arguments_valid(message: dict) -> bool:
    for call in message.get("tool_calls") or ():
        if isinstance(call, dict) and call.get("type", "function") != "function":
            continue  # a custom tool's input is free text by design
        function = call.get("function") if isinstance(call, dict) else None
        arguments = function.get("arguments") if isinstance(function, dict) else None
        if not isinstance(arguments, str):
            return False
        try:
            orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return False
    return True


# --- hashing ------------------------------------------------------------------------------------

_ASCII_FOLDED = (string.punctuation + string.whitespace).encode()


@cache
def _unicode_folded() -> dict[int, None]:
    return {
        code: None
        for code in range(sys.maxunicode + 1)
        if unicodedata.category(chr(code)).startswith("P") or chr(code).isspace()
    }


def fold(text: str) -> bytes:
    """Text with case, whitespace and punctuation folded: "Hello, World!" and "hello world" match."""
    if text.isascii():  # the common case, about 60 times faster through bytes.translate
        return text.lower().encode().translate(None, _ASCII_FOLDED)
    return text.casefold().translate(_unicode_folded()).encode()


def _texts(message: dict) -> Iterable[str]:
    content = message.get("content")
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                yield str(part.get("text") or part.get("refusal") or orjson.dumps(part).decode())
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            yield str(function.get("name", ""))
            yield str(function.get("arguments", ""))


def exact_hash(messages: object, tools: object) -> int:
    digest = hashlib.blake2b(orjson.dumps([messages, tools], option=orjson.OPT_SORT_KEYS), digest_size=8)
    return int.from_bytes(digest.digest())


def normalised_hash(messages: object) -> int:
    """The same for two conversations that differ only in case, whitespace or punctuation (roles and
    the order of turns still count)."""
    digest = hashlib.blake2b(digest_size=8)
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, dict):
            continue
        digest.update(str(message.get("role")).encode() + b"\x1f")
        for text in _texts(message):
            digest.update(fold(text) + b"\x1f")
        digest.update(b"\x1e")
    return int.from_bytes(digest.digest())


# --- a whole dataset ----------------------------------------------------------------------------


def dataset_validate(
    *, dataset: Dataset, max_tokens: int = DEFAULT_MAX_TOKENS, cap: int = ENTRY_IDS_CAP
) -> ValidationReport:
    """Run every pre-flight check over the dataset; findings carry the offending entry ids (the first
    `cap`) and their full count. Only checks that found something are listed."""
    hits: dict[str, _Hits] = {}
    exact_seen: set[int] = set()
    train_seen: set[int] = set()
    validation_seen: set[int] = set()
    entries = train = 0

    def hit(code: str, entry_id: int) -> None:
        hits.setdefault(code, _Hits()).add(entry_id, cap)

    rows = (
        DatasetEntry.objects.filter(dataset=dataset)
        .order_by("id")
        .values_list("id", "split", "messages", "tools", "est_tokens")
        .iterator(chunk_size=BATCH)
    )
    for entry_id, split, messages, tools, tokens in rows:
        entries += 1
        train += split == Split.TRAIN
        for code in conversation_problems(messages):
            hit(code, entry_id)
        if tokens > max_tokens:
            hit(TOO_LONG, entry_id)
        if _has_personal_data(messages, tools):
            hit(PERSONAL_DATA, entry_id)
        exact, normalised = exact_hash(messages, tools), normalised_hash(messages)
        if exact in exact_seen:
            hit(DUPLICATE_EXACT, entry_id)
        elif normalised in train_seen or normalised in validation_seen:
            hit(DUPLICATE_NORMALISED, entry_id)
        exact_seen.add(exact)
        (validation_seen if split == Split.VALIDATION else train_seen).add(normalised)

    overlap = train_seen & validation_seen
    del exact_seen, train_seen, validation_seen
    if overlap:
        for entry_id, messages in (
            DatasetEntry.objects.filter(dataset=dataset, split=Split.VALIDATION)
            .order_by("id")
            .values_list("id", "messages")
            .iterator(chunk_size=BATCH)
        ):
            if normalised_hash(messages) in overlap:
                hit(SPLIT_OVERLAP, entry_id)

    findings = [_finding(code, hits[code], max_tokens) for code in _MESSAGES if code in hits]
    if not entries:
        findings.append(ValidationFinding(EMPTY_DATASET, ERROR, "The dataset has no entries.", [], 0))
    elif train < MIN_TRAIN_EXAMPLES:
        message = f"Only {train} training examples: fine-tuning usually needs at least {MIN_TRAIN_EXAMPLES}."
        findings.append(ValidationFinding(FEW_EXAMPLES, WARNING, message, [], train))
    findings.sort(key=lambda finding: finding.severity != ERROR)  # stable: errors first, each in check order
    return ValidationReport(entries=entries, max_tokens=max_tokens, findings=findings)


_MESSAGES = {
    LAST_NOT_ASSISTANT: (ERROR, "Does not end with an assistant turn, so there is no answer to learn."),
    INVALID_ROLE: (ERROR, f"A message has a role other than {', '.join(VALID_ROLES)}."),
    EMPTY_MESSAGE: (ERROR, "A message is empty (no text, content part or tool call)."),
    TOOL_ARGUMENTS: (ERROR, "Tool-call arguments are not valid JSON."),
    TOO_LONG: (ERROR, "Longer than {max_tokens} tokens (estimated at 4 characters a token)."),
    SPLIT_OVERLAP: (ERROR, "In validation and also in train (same normalised conversation): the score would flatter."),
    DUPLICATE_EXACT: (WARNING, "An exact duplicate of an earlier entry."),
    DUPLICATE_NORMALISED: (
        WARNING,
        "A duplicate of an earlier entry once case, whitespace and punctuation are folded.",
    ),
    PERSONAL_DATA: (WARNING, "Personal data left (e-mail, phone, card, IBAN, IP address or secret): redact it."),
}


def _has_personal_data(messages: object, tools: object) -> bool:
    """What the redaction of the dataset page would still change (curation/datasets/redaction/services.py)."""
    dicts = [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
    if dicts and conversation_find(dicts):
        return True
    return any(scan.find(text) for text in _strings(tools))


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def _finding(code: str, found: _Hits, max_tokens: int) -> ValidationFinding:
    severity, message = _MESSAGES[code]
    return ValidationFinding(code, severity, message.format(max_tokens=max_tokens), found.ids, found.count)
