"""Finding personal data in one string, and replacing it: the detectors of the kinds asked for run where their
gate lets them, and of overlapping findings the best one is kept."""

import bisect
from collections.abc import Iterable

from django.conf import settings

from curation.text.pii import detectors
from curation.text.pii.findings import CARD, EMAIL, IBAN, IP, KINDS, PHONE, SECRET, Finding

# When two findings overlap, the longer one wins; at equal length the kind earlier in this list does:
# a token that happens to contain a phone number is a secret first.
_PRECEDENCE = {kind: rank for rank, kind in enumerate((SECRET, IBAN, CARD, EMAIL, IP, PHONE))}
DEFAULT_PHONE_REGION = "US"


def find(text: str, *, kinds: Iterable[str] | None = None, phone_region: str | None = None) -> list[Finding]:
    """Every finding in `text`, in order, none overlapping (the longest, then the most specific, wins).

    `phone_region` is the country (ISO 3166 code) assumed for phone numbers written without a
    country code; None reads the LOGTUNE_PII_PHONE_REGION setting, "" finds only international ones.
    """
    wanted = _ALL_KINDS if kinds is None else _kinds(kinds)
    # The gates: what each detector needs at the least, tested in C over the whole text once.
    digits = detectors.digit_count(text)
    found: list[Finding] = []
    if SECRET in wanted and detectors.SECRET_GATE_RE.search(text):
        found += detectors.secrets(text)
    if IBAN in wanted and digits >= 2:
        found += detectors.ibans(text)
    if CARD in wanted and digits >= 12:
        found += detectors.cards(text)
    if EMAIL in wanted and "@" in text:
        found += detectors.emails(text)
    if IP in wanted and digits:
        found += detectors.ips(text, digits=digits)
    if PHONE in wanted and digits >= detectors.PHONE_MIN_DIGITS:
        region = _phone_region() if phone_region is None else phone_region
        found += detectors.phones(text, region=region.upper() or None, taken=found)
    return found if len(found) < 2 else _resolve(found)


def redact(
    text: str, *, kinds: Iterable[str] | None = None, phone_region: str | None = None
) -> tuple[str, list[Finding]]:
    """`text` with each finding replaced by its placeholder (`<EMAIL>`), and the findings (offsets into `text`)."""
    findings = find(text, kinds=kinds, phone_region=phone_region)
    return _replace(text, findings), findings


_ALL_KINDS = frozenset(KINDS)


def _kinds(kinds: Iterable[str]) -> frozenset[str]:
    wanted = frozenset(kinds)
    if unknown := wanted - set(KINDS):
        raise ValueError(f"unknown PII kinds: {', '.join(sorted(unknown))} (expected some of {', '.join(KINDS)})")
    return wanted


def _phone_region() -> str:
    if not settings.configured:  # outside Django (bench/pii.py, a script): the default
        return DEFAULT_PHONE_REGION
    return getattr(settings, "LOGTUNE_PII_PHONE_REGION", DEFAULT_PHONE_REGION)


def _resolve(found: list[Finding]) -> list[Finding]:
    """Drop findings that overlap a longer (or, at equal length, more specific) one."""
    starts: list[int] = []  # the chosen findings' spans, kept sorted and disjoint
    ends: list[int] = []
    chosen: list[Finding] = []
    for finding in sorted(found, key=lambda f: (f.start - f.end, _PRECEDENCE[f.kind], f.start)):
        at = bisect.bisect_right(starts, finding.start)
        if (at and ends[at - 1] > finding.start) or (at < len(starts) and starts[at] < finding.end):
            continue
        starts.insert(at, finding.start)
        ends.insert(at, finding.end)
        chosen.append(finding)
    return sorted(chosen, key=lambda f: f.start)


def _replace(text: str, findings: list[Finding]) -> str:
    parts: list[str] = []
    position = 0
    for finding in findings:
        parts += (text[position : finding.start], finding.placeholder)
        position = finding.end
    parts.append(text[position:])
    return "".join(parts)
