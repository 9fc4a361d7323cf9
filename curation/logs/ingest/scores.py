"""Scores sent with a log (`scores: [{name, value, comment?}]`): feedback such as thumbs up or down, a 1-5 rating or
a judge's score. Pure Python: the readers, the API and the log page check a score with the same rules."""

import math
import re
from dataclasses import dataclass

from curation.logs.ingest.canonical import describe, fail, join

NAME_PATTERN = r"[a-z0-9][a-z0-9_-]{0,49}"  # short and slug-like: thumbs, quality, helpfulness
NAME = re.compile(NAME_PATTERN)
TEXT_VALUE_MAX = 100  # a categorical value: "up", "down", "good"
COMMENT_MAX = 2000
SCORES_MAX = 100  # scores one log may carry in one request
SOURCES = ("user", "api", "judge")


@dataclass(frozen=True, slots=True)
class ScoreIn:
    """A checked score: exactly one of `number` and `text`; `source` None lets the caller decide."""

    name: str
    number: float | None
    text: str | None
    comment: str = ""
    source: str | None = None

    @property
    def value(self) -> float | str:
        return self.number if self.number is not None else self.text  # type: ignore[return-value]


def name_problem(name: object) -> str:
    """Why `name` is not a score name; "" when it is one."""
    if not isinstance(name, str):
        return f"expected a string, got {describe(name)}"
    if not NAME.fullmatch(name):
        return "1 to 50 lower-case letters, digits, _ or -, starting with a letter or digit"
    return ""


def value_problem(value: object) -> str:
    """Why `value` is not a score's value (a finite number, or a string of 1 to 100 characters); "" when it is."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return f"expected a number or a string, got {describe(value)}"
    if isinstance(value, str):
        if not value or len(value) > TEXT_VALUE_MAX:
            return f"a string of 1 to {TEXT_VALUE_MAX} characters"
        return "must not contain a NUL character (\\u0000)" if "\x00" in value else ""
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer past what a float holds
        finite = False
    return "" if finite else "a finite number (a float holds it)"


def score_read(obj: object, path: str, *, with_source: bool = False) -> ScoreIn:
    """One score object (`{name, value, comment?}`, and `source?` when `with_source`), or IngestError naming the
    field under `path` (`scores.0.value: ...`)."""
    if not isinstance(obj, dict):
        raise fail(path, f"expected an object with name and value, got {describe(obj)}")
    allowed = ("name", "value", "comment", "source") if with_source else ("name", "value", "comment")
    for key in obj:
        if key not in allowed:
            raise fail(join(path, key), f"unknown field (expected one of {', '.join(allowed)})")
    for key in ("name", "value"):
        if key not in obj:
            raise fail(join(path, key), "required")
    if problem := name_problem(obj["name"]):
        raise fail(join(path, "name"), problem)
    value = obj["value"]
    if problem := value_problem(value):
        raise fail(join(path, "value"), problem)
    comment = obj.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > COMMENT_MAX or "\x00" in comment):
        raise fail(join(path, "comment"), f"expected a string of at most {COMMENT_MAX} characters, without NUL")
    source = obj.get("source")
    if source is not None and source not in SOURCES:
        raise fail(join(path, "source"), f"one of {', '.join(SOURCES)}")
    is_text = isinstance(value, str)
    return ScoreIn(
        name=obj["name"],
        number=None if is_text else float(value),
        text=value if is_text else None,
        comment=comment or "",
        source=source,
    )


def scores_read(value: object, path: str = "scores") -> list[ScoreIn]:
    """The `scores` field of a log: null or a list of score objects."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(path, f"expected a list of score objects, got {describe(value)}")
    if len(value) > SCORES_MAX:
        raise fail(path, f"at most {SCORES_MAX} scores per log (got {len(value)})")
    return [score_read(item, join(path, index)) for index, item in enumerate(value)]
