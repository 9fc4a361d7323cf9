"""Template filters for reading logs: `{% load logtune %}`."""

import re
from decimal import Decimal

from django import template
from django.utils.safestring import SafeString

from curation.models import LogEntry
from curation.text import rendering

register = template.Library()

_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
DEFAULT_COLOR = "#64748b"


@register.filter
def markdown(text: object) -> SafeString:
    return rendering.markdown_html(str(text or ""))


register.filter("pretty_json", rendering.pretty_json)


@register.filter
def first_user(log: LogEntry) -> str:
    return rendering.first_user_text(log.messages)


@register.filter
def reply(log: LogEntry) -> str:
    return rendering.reply_text(log.messages, log.error_message)


@register.filter
def latency(ms: float | None) -> str:
    if ms is None:
        return "—"
    ms = round(ms)  # a percentile is interpolated
    return f"{ms:,} ms" if ms < 10_000 else f"{ms / 1000:,.1f} s"


@register.filter
def thousands(value: object) -> str:
    """12345 as "12,345"; None as "—"; anything not a number (a missing key's "") as it is."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,}"


@register.filter
def duration(seconds: float | None) -> str:
    """Seconds in words for an estimate: "40 s", "12 min", "3 h 20 min"."""
    if seconds is None:
        return "—"
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60:,} h {minutes % 60} min"


@register.filter
def usd(value: Decimal | float | None) -> str:
    if value is None:
        return "—"
    return f"${value:,.2f}" if value >= 1 else f"${value:.6f}".rstrip("0").rstrip(".")


@register.filter
def percent(fraction: float | None) -> str:
    return "—" if fraction is None else f"{fraction:.1%}"


@register.filter
def tag_color(color: str) -> str:
    """A tag's colour for a style attribute: only #rrggbb gets through."""
    return color if isinstance(color, str) and _COLOR.match(color) else DEFAULT_COLOR


@register.filter
def detail_value(value: object) -> str:
    """An audit detail value in words: lists joined, the rest as text."""
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)
