"""Conversations for reading: message text for list snippets, markdown turned into safe HTML, and the
canonical messages (OpenAI chat shape) laid out as chat turns for the log detail page.

Text in a log was written by users and models, never by us: raw HTML in it is shown as text, links may
only be http(s) or mailto, and remote images are never loaded (they become links).

Personal data (curation.text.pii) is marked in the turns: the findings are computed on the raw text and each
piece is escaped on its own, so a mark is never put inside HTML that was already rendered. A text with
findings is therefore shown as plain text with its marks, not as markdown.
"""

import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field

import markdown
import nh3
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from curation.logs.ingest.canonical import call_name_arguments
from curation.text.pii import scan
from curation.text.pii.conversations import conversation_find
from curation.text.pii.findings import CARD, EMAIL, IBAN, IP, KINDS, PHONE, SECRET

# Python-Markdown is slow on very large inputs; past this a text is shown as it is, preformatted.
MARKDOWN_LIMIT = 50_000
SNIPPET_LENGTH = 160

_TAGS = {
    "p", "br", "hr", "strong", "em", "b", "i", "del", "code", "pre", "blockquote", "a",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
_ATTRIBUTES = {"a": {"href", "title"}, "code": {"class"}, "th": {"align"}, "td": {"align"}}
_URL_SCHEMES = {"http", "https", "mailto"}

_local = threading.local()

PII_LABELS = {
    EMAIL: "e-mail", PHONE: "phone number", CARD: "card number", IBAN: "IBAN",
    IP: "IP address", SECRET: "secret",
}  # fmt: skip


def _markdown() -> markdown.Markdown:
    """One converter per thread (a Markdown instance keeps state between calls)."""
    md = getattr(_local, "md", None)
    if md is None:
        md = markdown.Markdown(extensions=["fenced_code", "tables", "sane_lists", "nl2br"])
        # Raw HTML in a message is something someone wrote: show it as text, never interpret it.
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")
        # ![alt](url) would make the reader's browser fetch a URL from a log: keep it a plain link.
        md.inlinePatterns.deregister("image_link")
        md.inlinePatterns.deregister("image_reference")
        md.inlinePatterns.deregister("short_image_ref")
        _local.md = md
    md.reset()
    return md


def markdown_html(text: str) -> SafeString:
    """Markdown as HTML that is safe to put in a page."""
    if len(text) > MARKDOWN_LIMIT:
        return mark_safe(f'<pre class="plain">{escape(text)}</pre>')  # noqa: S308 (escaped)
    html = _markdown().convert(text)
    cleaned = nh3.clean(
        html, tags=_TAGS, attributes=_ATTRIBUTES, url_schemes=_URL_SCHEMES, link_rel="noopener noreferrer nofollow"
    )
    return mark_safe(cleaned)  # noqa: S308 (sanitised by nh3)


def pretty_json(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


# --- text of messages, for the list --------------------------------------------------------------------


def _part_label(part: dict) -> str:
    kind = part.get("type")
    if kind == "image_url":
        return "[image]"
    if kind == "file":
        filename = (part.get("file") or {}).get("filename")
        return f"[file {filename}]" if filename else "[file]"
    if kind == "input_audio":
        return "[audio]"
    return f"[{kind}]" if kind else ""


def content_text(content: object) -> str:
    """The readable text of a message's content: a string, or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        pieces = []
        for part in content:
            if isinstance(part, dict):
                pieces.append(part["text"] if part.get("type") == "text" else _part_label(part))
        return " ".join(piece for piece in pieces if piece)
    return ""


def snippet(text: str, limit: int = SNIPPET_LENGTH) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def first_user_text(messages: object) -> str:
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict) and message.get("role") == "user":
            return snippet(content_text(message.get("content")))
    return ""


def _call_summary(calls: list) -> str:
    names = [call_name_arguments(call)[0] or "?" for call in calls if isinstance(call, dict)]
    return "→ " + ", ".join(f"{name}()" for name in names)


def reply_text(messages: object, error_message: str = "") -> str:
    """The last assistant turn (its text, else the tools it called); for a failed call, the error."""
    if error_message:
        return snippet(error_message)
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "assistant":
            text = content_text(message.get("content")) or message.get("refusal") or ""
            if not text and message.get("tool_calls"):
                text = _call_summary(message["tool_calls"])
            return snippet(text)
    return ""


# --- messages as chat turns, for the detail page -------------------------------------------------------


@dataclass(slots=True)
class Part:
    kind: str  # text | code | image | file | audio | other
    html: SafeString | None = None
    text: str = ""
    url: str = ""
    label: str = ""
    marked: SafeString | None = None  # `text` escaped with its personal data marked; None: nothing found


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # pretty JSON when the arguments parse, else as sent
    arguments_marked: SafeString | None = None


@dataclass(slots=True)
class Turn:
    role: str
    name: str = ""
    parts: list[Part] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str = ""
    refusal: str = ""
    refusal_marked: SafeString | None = None
    weight: object = None
    is_error: bool = False  # a tool result the tool reported as an error (Anthropic's is_error)


def pii_marked(text: str) -> SafeString | None:
    """`text` as HTML with each finding of personal data in a `<mark class="pii pii-email" title="EMAIL">`,
    or None when there is none. Every piece of the raw text is escaped, the findings included."""
    findings = scan.find(text)
    if not findings:
        return None
    pieces: list[str] = []
    position = 0
    for finding in findings:
        pieces.append(escape(text[position : finding.start]))
        kind = escape(finding.kind)
        title = f"{kind} ({escape(finding.reason)})" if finding.reason else kind
        pieces.append(f'<mark class="pii pii-{kind.lower()}" title="{title}">{escape(finding.text)}</mark>')
        position = finding.end
    pieces.append(escape(text[position:]))
    return mark_safe("".join(pieces))  # noqa: S308 (every piece escaped)


def pii_summary(messages: object) -> str:
    """The detail page's line counting each kind of personal data in canonical messages; "" when none."""
    if not isinstance(messages, list):
        return ""
    counts = Counter(found.finding.kind for found in conversation_find(messages))
    if not counts:
        return ""
    return "Contains: " + ", ".join(f"{PII_LABELS[kind]} ×{counts[kind]}" for kind in KINDS if counts[kind])


def _maybe_json(text: str) -> str | None:
    """`text` pretty-printed when it is a JSON object or list (tool arguments and results often are)."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "[{":
        return None
    try:
        return pretty_json(json.loads(stripped))
    except ValueError:
        return None


def _data_url_label(url: str) -> str:
    mime = url[5:].split(";", 1)[0].split(",", 1)[0] or "data"
    size = len(url.split(",", 1)[-1]) * 3 // 4
    return f"inline {mime}, {size / 1024:,.0f} KB" if size >= 1024 else f"inline {mime}, {size} bytes"


def _media_part(part: dict) -> Part:
    kind = part.get("type")
    if kind == "image_url":
        image = part.get("image_url") or {}
        url = str(image.get("url", "")) if isinstance(image, dict) else ""
        if url.startswith(("http://", "https://")):
            return Part(kind="image", url=url, label=url)
        # A data URL is the image itself: name it rather than link a megabyte of base64.
        return Part(kind="image", label=_data_url_label(url) if url.startswith("data:") else "image")
    if kind == "file":
        file = part.get("file") or {}
        return Part(kind="file", label=str(file.get("filename") or file.get("file_id") or "file"))
    if kind == "input_audio":
        audio = part.get("input_audio") or {}
        return Part(kind="audio", label=f"audio ({audio.get('format', '?')})")
    return Part(kind="other", text=pretty_json(part), label=str(kind or "part"))


def _text_part(text: str, *, as_data: bool) -> Part:
    if as_data:
        pretty = _maybe_json(text)
        shown = pretty if pretty is not None else text
        return Part(kind="code", text=shown, marked=pii_marked(shown))
    marked = pii_marked(text)
    if marked is not None:
        html = mark_safe(f'<div class="plain-text">{marked}</div>')  # noqa: S308 (escaped)
        return Part(kind="text", html=html, text=text, marked=marked)
    return Part(kind="text", html=markdown_html(text), text=text)


def _parts(content: object, *, as_data: bool) -> list[Part]:
    if isinstance(content, str):
        return [_text_part(content, as_data=as_data)] if content else []
    parts = []
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            parts.append(_text_part(str(part.get("text", "")), as_data=as_data))
        else:
            parts.append(_media_part(part))
    return parts


def _tool_calls(calls: object) -> list[ToolCall]:
    result = []
    for call in calls if isinstance(calls, list) else []:
        if not isinstance(call, dict):
            continue
        name, arguments = call_name_arguments(call)  # a function's JSON arguments, or a custom tool's input
        text = arguments if isinstance(arguments, str) else pretty_json(arguments)
        shown = _maybe_json(text) or text
        result.append(
            ToolCall(id=str(call.get("id", "")), name=name or "?", arguments=shown, arguments_marked=pii_marked(shown))
        )
    return result


def conversation_turns(messages: object) -> list[Turn]:
    """Canonical messages as turns to render: markdown for people's and models' text, pretty JSON
    for tool results, tool calls with their arguments, media parts as links or labels."""
    turns = []
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        role = str(message.get("role", "?"))
        refusal = str(message.get("refusal") or "")
        turns.append(
            Turn(
                role=role,
                name=str(message.get("name") or ""),
                parts=_parts(message.get("content"), as_data=role == "tool"),
                tool_calls=_tool_calls(message.get("tool_calls")),
                tool_call_id=str(message.get("tool_call_id") or ""),
                refusal=refusal,
                refusal_marked=pii_marked(refusal) if refusal else None,
                weight=message.get("weight"),
                is_error=message.get("is_error") is True,
            )
        )
    return turns


def tool_definitions(tools: object) -> list[dict]:
    """Tools offered to the model: name, description and the parameters as pretty JSON (in the order sent); a
    tool of another type (a custom tool, a provider's server tool) shows its type and its definition as sent."""
    result = []
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        kind = str(tool.get("type") or "function")
        body = tool.get(kind)
        if not isinstance(body, dict):
            body = tool  # Anthropic server tools hold their fields at the top
        if kind == "function":
            description, shown = body.get("description"), body.get("parameters") or {}
        else:
            description, shown = f"{kind} tool", tool
        result.append(
            {
                "name": str(body.get("name", "?")),
                "description": str(description or ""),
                "parameters": pretty_json(shown),
            }
        )
    return result


def alternative_answers(alternatives: object) -> list[dict]:
    """A log's other answers (`LogEntry.alternatives`) to render: `{"index", "finish_reason", "turns"}` each."""
    return [
        {
            "index": alternative.get("index"),
            "finish_reason": alternative.get("finish_reason") or "",
            "turns": conversation_turns([alternative.get("message")]),
        }
        for alternative in (alternatives if isinstance(alternatives, list) else [])
        if isinstance(alternative, dict)
    ]


# --- where a search matched, for the list ------------------------------------------------------------------

MATCH_CONTEXT = 70  # characters shown on each side of the first match


@dataclass(slots=True)
class Match:
    turn: int  # 1-based position of the message in the conversation
    role: str
    first_user: bool  # the match is in the first user message, which the list shows anyway
    html: SafeString  # a snippet around the first match, every match in it marked


def search_terms(query: str) -> list[str]:
    """The words and "quoted phrases" of a free-text search as websearch_to_tsquery reads it, without OR and the
    -excluded words; the whole text too, which the search also finds as a substring."""
    terms = [phrase for phrase in re.findall(r'"([^"]+)"', query) if phrase.strip()]
    rest = re.sub(r'"[^"]*"', " ", query)
    terms += [word for word in rest.split() if word.lower() != "or" and not word.startswith("-")]
    whole = " ".join(query.split())
    return sorted({term.lower() for term in [whole, *terms] if term}, key=len, reverse=True)


def search_match(messages: object, query: str) -> Match | None:
    """The first message of `messages` holding a term of `query` (case-insensitive), with a marked snippet."""
    terms = search_terms(query)
    if not terms:
        return None
    pattern = re.compile("|".join(re.escape(term) for term in terms), re.IGNORECASE)
    first_user = True
    for turn, message in enumerate(messages if isinstance(messages, list) else [], start=1):
        if not isinstance(message, dict):
            continue
        role = str(message.get("role") or "")
        text = " ".join(content_text(message.get("content")).split())
        found = pattern.search(text)
        if found:
            return Match(turn=turn, role=role, first_user=first_user and role == "user", html=_marked(text, pattern))
        first_user = first_user and role != "user"
    return None


def _marked(text: str, pattern: re.Pattern) -> SafeString:
    first = pattern.search(text)
    assert first is not None
    start = max(0, first.start() - MATCH_CONTEXT)
    end = min(len(text), first.end() + MATCH_CONTEXT)
    window = text[start:end]
    pieces: list[str] = []
    at = 0
    for found in pattern.finditer(window):
        pieces.append(escape(window[at : found.start()]))
        pieces.append(f"<mark>{escape(found.group())}</mark>")
        at = found.end()
    pieces.append(escape(window[at:]))
    return mark_safe(("…" if start else "") + "".join(pieces) + ("…" if end < len(text) else ""))  # noqa: S308 (escaped)
