"""What a generation job sends and how it reads the answers. No Django: the templates, the requests built from
them, and the parsing of a model's JSON answer into rows, tolerant of fences and prose around the JSON, exact about
what it returns.

A template names its slots in braces: `{chunk}`, `{document}`, `{heading}`, `{n}` for documents; `{prompt}`,
`{style}`, `{n}` for variations. Only these names are replaced, so a template may hold other braces (a JSON
example) as they are.
"""

import hashlib
import re
from dataclasses import dataclass

import orjson

DOCUMENTS_TEMPLATE = """\
You write training data for an assistant that answers questions about the documents of a team.

Below is an excerpt of the document "{document}" (section: {heading}).

<excerpt>
{chunk}
</excerpt>

Write {n} different questions a user could ask that this excerpt answers, each with a complete, correct answer
that uses only facts stated in the excerpt. Vary the questions: facts, procedures, comparisons, edge cases. Do not
mention "the excerpt" or "the document" in the questions or answers.

Reply with JSON only, in this shape:
{"pairs": [{"question": "...", "answer": "..."}]}"""

VARIATIONS_TEMPLATE = """\
Here is a request a user sent to an assistant:

<request>
{prompt}
</request>

Write {n} new requests that are {style} of it. Each must stand on its own and be something a real user of the same
product could send.

Reply with JSON only, in this shape:
{"prompts": ["..."]}"""

# Teacher re-answers send the seed's own conversation, up to its last user turn: no template.
DEFAULT_TEMPLATES = {"documents": DOCUMENTS_TEMPLATE, "variations": VARIATIONS_TEMPLATE, "teacher": ""}

# What each style asks for, in the `{style}` slot.
STYLES = {
    "paraphrase": "paraphrases (the same need in other words)",
    "harder": "harder versions (more constraints, more steps or rarer cases)",
}
LANGUAGE_STYLE = "language:"

SLOTS = {"documents": ("chunk", "document", "heading", "n"), "variations": ("prompt", "style", "n")}


def template_sha256(template: str) -> str:
    return hashlib.sha256(template.encode()).hexdigest()


def style_text(style: str) -> str:
    """The words the `{style}` slot gets; raises ValueError for a style that is not known."""
    if style in STYLES:
        return STYLES[style]
    if style.startswith(LANGUAGE_STYLE) and style[len(LANGUAGE_STYLE) :].strip():
        return f"translations into {style[len(LANGUAGE_STYLE) :].strip()} (the same request, written in that language)"
    raise ValueError(f"unknown style '{style}': paraphrase, harder or language:<name>")


def template_problem(kind: str, template: str) -> str:
    """Why the template cannot be used, or "": it must hold the slot of the text it works on."""
    needed = {"documents": "chunk", "variations": "prompt"}.get(kind)
    if needed and "{" + needed + "}" not in template:
        return f"The template must contain {{{needed}}}, where the text goes."
    return ""


def render(template: str, values: dict[str, object]) -> str:
    """The template with its known slots filled; other braces left as they are."""
    return re.sub(r"\{(\w+)\}", lambda m: str(values[m[1]]) if m[1] in values else m[0], template)


@dataclass(frozen=True, slots=True)
class Parsed:
    items: list  # [(question, answer)] for documents; [prompt] for variations
    problem: str = ""  # why nothing (or not everything) could be read; "" when all was read


def parse_pairs(text: str) -> Parsed:
    """The question/answer pairs of a documents answer: `{"pairs": [{"question", "answer"}]}`, a bare list of
    such objects, or the same with `q`/`a` or `prompt`/`completion`. Items that are not pairs are counted in
    `problem`; a reply with no JSON at all gives none, with the reason."""
    value, problem = _json_in(text)
    if problem:
        return Parsed([], problem)
    items = value.get("pairs", value.get("questions")) if isinstance(value, dict) else value
    if not isinstance(items, list):
        return Parsed([], "the JSON has no list of pairs")
    pairs: list[tuple[str, str]] = []
    bad = 0
    for item in items:
        question = _first_text(item, ("question", "q", "prompt", "user"))
        answer = _first_text(item, ("answer", "a", "completion", "assistant"))
        if question is None or answer is None:
            bad += 1
            continue
        pairs.append((question, answer))
    return Parsed(pairs, f"{bad} item(s) of the list are not question/answer pairs" if bad else "")


def parse_prompts(text: str) -> Parsed:
    """The new requests of a variations answer: `{"prompts": [...]}` or a bare list of strings."""
    value, problem = _json_in(text)
    if problem:
        return Parsed([], problem)
    items = value.get("prompts", value.get("requests")) if isinstance(value, dict) else value
    if not isinstance(items, list):
        return Parsed([], "the JSON has no list of prompts")
    prompts = [item.strip() for item in items if isinstance(item, str) and item.strip()]
    bad = len(items) - len(prompts)
    return Parsed(prompts, f"{bad} item(s) of the list are not text" if bad else "")


def _first_text(item: object, names: tuple[str, ...]) -> str | None:
    if not isinstance(item, dict):
        return None
    for name in names:
        value = item.get(name)
        if isinstance(value, str):
            return value.strip()
    return None


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


def _json_in(text: str) -> tuple[object, str]:
    """The JSON value an answer holds: the whole text, a fenced block, or the outermost {...} / [...] in prose."""
    candidates = [text.strip(), *(match.strip() for match in _FENCE.findall(text))]
    spans = []
    for opening, closing in (("{", "}"), ("[", "]")):
        start, end = text.find(opening), text.rfind(closing)
        if 0 <= start < end:
            spans.append((start, end))
    candidates += [text[start : end + 1] for start, end in sorted(spans)]  # the outermost, the one opened first
    for candidate in candidates:
        try:
            return orjson.loads(candidate), ""
        except orjson.JSONDecodeError:
            continue
    if not text.strip():
        return None, "the answer is empty"
    return None, "the answer holds no readable JSON"
