"""Forms of the dataset pages, and the entry editor's form: one row of fields per message."""

import re
import typing
from dataclasses import dataclass, field
from typing import Any

import orjson
from django import forms
from django.http import QueryDict

from curation.common.params import whole_number
from curation.datasets.validation import DEFAULT_MAX_TOKENS, VALID_ROLES
from curation.logs.imports.forms import validate_import_file
from curation.models import Dataset, DatasetKind, Project, Split

MAX_SELECTED = 500


class DatasetForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class DatasetEditForm(DatasetForm):
    synthetic_in_validation = forms.BooleanField(
        required=False,
        label="Synthetic entries may go to validation",
        help_text="Otherwise a split draws validation only from logged and imported entries. Changing this moves no "
        "entry: split again to apply it.",
    )


class DatasetImportForm(forms.Form):
    file = forms.FileField(
        help_text='JSONL or JSONL.gz, one training example per line: {"messages": [...]} or prompt/completion.',
        validators=[validate_import_file],
    )


class SplitForm(forms.Form):
    validation_ratio = forms.FloatField(
        min_value=0, max_value=0.99, label="Validation share", widget=forms.NumberInput(attrs={"step": "0.01"})
    )
    seed = forms.IntegerField(initial=0, min_value=-(2**31), max_value=2**31 - 1)  # stored: a 32-bit column


class ValidationForm(forms.Form):
    max_tokens = forms.IntegerField(min_value=1, max_value=10_000_000, initial=DEFAULT_MAX_TOKENS, label="Max tokens")


class EntryIdsField(forms.Field):
    """Entry ids from checkboxes (`ids` repeated)."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: object) -> list[int]:
        values = value if isinstance(value, list | tuple) else []
        ids = [whole_number(str(item)) for item in values]
        if None in ids:
            raise forms.ValidationError("Entry ids are whole numbers.")
        return typing.cast(list[int], ids)

    def validate(self, value: list[int]) -> None:
        if not value:
            raise forms.ValidationError("Select at least one entry.")
        if len(value) > MAX_SELECTED:
            raise forms.ValidationError(f"Select at most {MAX_SELECTED} entries at a time.")


class EntriesAction(forms.Form):
    """Delete the selected entries, or move them to a split."""

    action = forms.ChoiceField(
        choices=[("delete", "Delete"), (Split.TRAIN, "Move to train"), (Split.VALIDATION, "Move to validation")]
    )
    ids = EntryIdsField()


# --- the entry editor -------------------------------------------------------------------------------

# How the content of a message is edited: as text, as text that may be null (an assistant turn that
# only calls tools), or as the JSON of its content parts (images, audio, files).
TEXT, NULLABLE, PARTS = "text", "null", "parts"
# Fields with their own inputs; the others (name, weight, refusal) travel unchanged in `extra`.
EDITED_FIELDS = ("role", "content", "tool_calls", "tool_call_id")
_ERROR_PATH = re.compile(r"^messages\.(\d+)(?:\.|:)")


def _pretty(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


@dataclass(slots=True)
class MessageRow:
    """One message as the strings of its form fields."""

    role: str = "user"
    content: str = ""
    kind: str = TEXT
    tool_calls: str = ""
    tool_call_id: str = ""
    extra: str = ""
    error: str = ""

    @property
    def content_rows(self) -> int:
        return _rows(self.content)

    @property
    def tool_calls_rows(self) -> int:
        return _rows(self.tool_calls)

    @classmethod
    def from_message(cls, message: object) -> "MessageRow":
        if not isinstance(message, dict):
            return cls(content=_pretty(message), kind=PARTS)
        content = message.get("content")
        if isinstance(content, list):
            text, kind = _pretty(content), PARTS
        else:
            text, kind = content or "", NULLABLE if content is None else TEXT
        extra = {key: value for key, value in message.items() if key not in EDITED_FIELDS}
        return cls(
            role=str(message.get("role", "")),
            content=text,
            kind=kind,
            tool_calls=_pretty(message["tool_calls"]) if message.get("tool_calls") else "",
            tool_call_id=str(message.get("tool_call_id") or ""),
            extra=orjson.dumps(extra).decode() if extra else "",
        )

    def to_message(self) -> dict:
        """The message these fields describe; ValueError says which field is wrong."""
        message: dict = {"role": self.role}
        if self.kind == PARTS:
            message["content"] = _json_list(self.content, "content")
        elif self.kind == NULLABLE and not self.content:
            message["content"] = None
        else:
            message["content"] = self.content
        if self.tool_calls.strip():
            if self.role != "assistant":
                raise ValueError("tool calls: only assistant messages make tool calls")
            message["tool_calls"] = _json_list(self.tool_calls, "tool calls")
        if self.role == "tool":
            message["tool_call_id"] = self.tool_call_id.strip()
        if self.extra.strip():
            message.update(_json_object(self.extra, "other fields"))
        return message


def _rows(text: str) -> int:
    return min(max(text.count("\n") + 1, 2), 24)


def _json(text: str, name: str) -> object:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{name}: not valid JSON ({exc})") from None


def _json_list(text: str, name: str) -> list:
    value = _json(text, name)
    if not isinstance(value, list):
        raise ValueError(f"{name}: expected a JSON list")
    return value


def _json_object(text: str, name: str) -> dict:
    value = _json(text, name)
    if not isinstance(value, dict):
        raise ValueError(f"{name}: expected a JSON object")
    return value


@dataclass(slots=True)
class EntryForm:
    """The editor: rows of message fields posted as parallel lists (`m-role`, `m-content`, ...), so a
    turn is added or removed without renumbering anything, plus the entry's tools as JSON."""

    rows: list[MessageRow]
    tools: str = ""
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_entry(cls, messages: object, tools: object) -> "EntryForm":
        rows = [MessageRow.from_message(message) for message in (messages if isinstance(messages, list) else [])]
        return cls(rows=rows, tools=_pretty(tools) if tools else "")

    @classmethod
    def from_post(cls, data: QueryDict) -> "EntryForm":
        columns = [
            data.getlist(f"m-{name}") for name in ("role", "content", "kind", "tool_calls", "tool_call_id", "extra")
        ]
        if len({len(column) for column in columns}) > 1:
            return cls(rows=[], errors=["The form was incomplete; reload the page and try again."])
        rows = [
            MessageRow(role, _lf(content), kind, _lf(calls), call_id, extra)
            for role, content, kind, calls, call_id, extra in zip(*columns, strict=True)
        ]
        return cls(rows=rows, tools=_lf(data.get("tools", "")))

    @property
    def tools_rows(self) -> int:
        return _rows(self.tools)

    @property
    def roles(self) -> tuple[str, ...]:
        return VALID_ROLES

    def apply(self, op: str) -> None:
        """An edit of the form itself, before saving: add a turn, or remove turn i."""
        if op == "add":
            last = self.rows[-1].role if self.rows else "assistant"
            role = "user" if last == "assistant" else "assistant"
            self.rows.append(MessageRow(role=role, kind=NULLABLE if role == "assistant" else TEXT))
        elif op.startswith("remove:") and (index := whole_number(op[7:])) is not None and index < len(self.rows):
            del self.rows[index]

    def conversation(self) -> tuple[list[dict], list] | None:
        """(messages, tools) from the fields, or None with the problems in `errors` and on the rows."""
        messages = []
        for index, row in enumerate(self.rows):
            try:
                messages.append(row.to_message())
            except ValueError as exc:
                row.error = str(exc)
                self.errors.append(f"Message #{index + 1}: {exc}")
        tools: list = []
        if self.tools.strip():
            try:
                tools = _json_list(self.tools, "tools")
            except ValueError as exc:
                self.errors.append(str(exc))
        return None if self.errors else (messages, tools)

    def add_error(self, error: str) -> None:
        """An error of the whole conversation ("messages.2.content: ..."): shown on top and on its row."""
        self.errors.append(error)
        match = _ERROR_PATH.match(error)
        if match and int(match.group(1)) < len(self.rows):
            self.rows[int(match.group(1))].error = error


def _lf(text: str) -> str:
    # Browsers send textarea line breaks as CRLF; conversations use LF.
    return text.replace("\r\n", "\n")


class PairsForm(forms.Form):
    """Where preference pairs go: an existing dataset of pairs of the project, or a new one by name."""

    target = forms.ModelChoiceField(queryset=Dataset.objects.none(), required=False, empty_label="A new dataset")
    name = forms.CharField(max_length=200, required=False)

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["target"].queryset = Dataset.objects.filter(  # type: ignore[attr-defined]
            project=project, kind=DatasetKind.PREFERENCE
        )
