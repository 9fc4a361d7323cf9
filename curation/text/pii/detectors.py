"""The detectors, one per kind of finding: each yields the findings of its kind in a text, overlapping or not
(scan.find keeps the best of overlapping ones). Each starts with a cheap test that most text fails and only then
runs its regular expression and the expensive check of each candidate (the package's docstring says why)."""

import ipaddress
import re
from collections.abc import Iterator

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn

from curation.text.pii.findings import CARD, EMAIL, IBAN, IP, PHONE, SECRET, Finding

# --- e-mail addresses -----------------------------------------------------------------------------

# Deliberately simpler than RFC 5322 (no quoted local parts, no IP literals): what people write. The
# scan starts from each "@" and reads the local part backwards, at most 64 characters as the RFC allows.
_EMAIL_DOMAIN_RE = re.compile(r"@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?")
_TLD_RE = re.compile(r"[A-Za-z]{2,63}")
# "icon@2x.png" is an image in web code, not an address.
_FILE_TLDS = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "avif", "ico", "bmp"})


def emails(text: str) -> Iterator[Finding]:
    if "@" not in text:
        return
    for match in _EMAIL_DOMAIN_RE.finditer(text):
        at = match.start()
        start = at
        while start > 0 and at - start < 64 and text[start - 1] in _LOCAL_CHARS:
            start -= 1
        if start > 0 and text[start - 1] in _LOCAL_CHARS:
            continue  # a local part longer than 64 characters: not an address
        while start < at and text[start] == ".":
            start += 1
        local = text[start:at]
        labels = match.group()[1:].split(".")
        while len(labels) >= 2 and not _TLD_RE.fullmatch(labels[-1]):
            labels.pop()  # "bob@example.com.5" or a sentence's "bob@example.com.-": keep the address
        if (
            not local
            or local.endswith(".")
            or ".." in local
            or len(labels) < 2
            or labels[-1].lower() in _FILE_TLDS
            or not all(_LABEL_RE.fullmatch(label) for label in labels)
        ):
            continue
        end = at + 1 + len(".".join(labels))
        yield Finding(EMAIL, start, end, text[start:end], "e-mail address")


# --- phone numbers --------------------------------------------------------------------------------

# With re.ASCII, \w and \d are ASCII here: a number glued to Japanese or Chinese text ("電話090-1234-5678")
# is still read, and the digits are those the validators know.
# A run of digits and the separators phone numbers are written with, at least PHONE_MIN_DIGITS digits
# (six after a "+" or "("), not glued to a word, also not by a dash ("INC-2024-000123", "a716-4466..."
# in a UUID): only those go to libphonenumber, with a little context for its own checks.
_PHONE_RUN_RE = re.compile(r"[+(\d](?<!\w.)(?<!\w-.)(?:[ \t().\-/\u00a0]{0,3}\d){6,}", re.ASCII)
# Runs that cannot hold a number libphonenumber would accept and _written_as_phone keep: unbroken
# digits and decimal numbers ("20240115.3"), and dates ("2026-01-15 10", "15.01.2024"), whose digits
# are not counted.
_BARE_RUN_RE = re.compile(r"\(?\d+(?:\.\d{1,3})?")
_DATE_RE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")
PHONE_MIN_DIGITS = 7
_PHONE_CONTEXT = 4  # characters around a run: libphonenumber refuses a number glued to letters or "$"
_PHONE_LENIENCY = phonenumbers.Leniency.VALID  # a valid number for its region, national prefix where required
_SEPARATED_RE = re.compile(r"\d[ \t().\-/\u00a0]+\d")


def phones(text: str, *, region: str | None, taken: list[Finding]) -> Iterator[Finding]:
    """`taken`: the findings of the other detectors. A run inside one of them (the digits of a card
    or an IBAN) would lose to it anyway, and libphonenumber is the slowest step by far."""
    for run in _PHONE_RUN_RE.finditer(text):
        raw_run = run.group()
        if (
            (_BARE_RUN_RE.fullmatch(raw_run) and not raw_run.startswith("00"))
            or digit_count(raw_run) < PHONE_MIN_DIGITS
            or (_DATE_RE.search(raw_run) and digit_count(_DATE_RE.sub("", raw_run)) < PHONE_MIN_DIGITS)
            or any(f.start <= run.start() and run.end() <= f.end for f in taken)
        ):
            continue
        offset = max(0, run.start() - _PHONE_CONTEXT)
        window = text[offset : run.end() + _PHONE_CONTEXT]
        for match in phonenumbers.PhoneNumberMatcher(window, region, leniency=_PHONE_LENIENCY):
            raw, start = match.raw_string, offset + match.start
            if raw.startswith("(") and raw.count("(") > raw.count(")"):
                raw, start = raw[1:], start + 1  # "(+44 20 7946 0958)": the bracket is the sentence's
            if not run.start() <= start < run.end() or not _written_as_phone(raw):
                continue
            number = match.number
            reason = phonenumbers.region_code_for_number(number) or f"+{number.country_code}"
            yield Finding(PHONE, start, start + len(raw), raw, reason)


def digit_count(text: str) -> int:
    return sum(map(text.count, "0123456789"))


def _written_as_phone(raw: str) -> bool:
    """An unbroken run of digits is far more often an order, account or timestamp than a phone
    number: only numbers with a country code or with separators between digit groups count."""
    return raw.startswith(("+", "00")) or _SEPARATED_RE.search(raw) is not None


# --- card numbers ---------------------------------------------------------------------------------

# 13 to 19 digits, in groups separated by single spaces or dashes (one kind per number).
_CARD_RE = re.compile(r"\d(?<![\w.,\-]\d)(?:[ \-]?\d){12,18}(?!\w|[.,\-]\d)", re.ASCII)
# Issuer prefixes (IIN ranges) and lengths of the networks whose cards people type into chats.
_CARD_NETWORKS: tuple[tuple[str, tuple[tuple[int, int], ...], frozenset[int]], ...] = (
    ("Visa", ((4, 4),), frozenset({13, 16, 19})),
    ("Mastercard", ((51, 55), (2221, 2720)), frozenset({16})),
    ("American Express", ((34, 34), (37, 37)), frozenset({15})),
    ("Discover", ((6011, 6011), (644, 649), (65, 65)), frozenset({16, 19})),
    ("Diners Club", ((300, 305), (36, 36), (38, 39)), frozenset({14, 16, 19})),
    ("JCB", ((3528, 3589),), frozenset({16, 17, 18, 19})),
    ("UnionPay", ((62, 62),), frozenset({16, 17, 18, 19})),
    ("Maestro", ((50, 50), (56, 58), (6304, 6304), (6759, 6759), (676770, 676774)), frozenset(range(12, 20))),
)


def cards(text: str) -> Iterator[Finding]:
    for match in _CARD_RE.finditer(text):
        raw = match.group()
        separators = set(raw) - set("0123456789")
        if len(separators) > 1:
            continue
        digits = raw.replace(" ", "").replace("-", "")
        network = _card_network(digits)
        if network is not None and luhn.is_valid(digits):
            yield Finding(CARD, match.start(), match.end(), raw, network)


def _card_network(digits: str) -> str | None:
    for name, ranges, lengths in _CARD_NETWORKS:
        if len(digits) not in lengths:
            continue
        for low, high in ranges:
            width = len(str(low))
            if low <= int(digits[:width]) <= high:
                return name
    return None


# --- IBANs ----------------------------------------------------------------------------------------

# Country code, check digits, then 11 to 30 letters or digits, optionally in space-separated groups.
_IBAN_RE = re.compile(r"[A-Z](?<![A-Za-z0-9].)[A-Z]\d{2}(?: ?[A-Z0-9]){11,30}")


def ibans(text: str) -> Iterator[Finding]:
    for match in _IBAN_RE.finditer(text):
        raw = match.group()
        # The pattern may run on into a following word in capitals: try the longest prefix that ends
        # where a group does and validates (each country has one length, so only one can).
        ends = [end for end in range(len(raw), 14, -1) if end == len(raw) or raw[end] == " "]
        for end in ends:
            candidate = raw[:end]
            if stdnum_iban.is_valid(candidate):
                start = match.start()
                yield Finding(IBAN, start, start + end, candidate, candidate[:2])
                break


# --- IP addresses ---------------------------------------------------------------------------------

_IPV4_RE = re.compile(r"\d(?<![\w.]\d)\d{0,2}\.(?:\d{1,3}\.){2}\d{1,3}(?!\w|\.\d)", re.ASCII)
_IPV6_RE = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:]|\.\d)",
    re.ASCII,
)
_IPV6_GATE_RE = re.compile(r"::|(?::[0-9A-Fa-f]{1,4}){3}")  # any address has one of these
# "v1.2.3.4", "version 1.2.3.4": a four-part version, not an address.
_VERSION_BEFORE_RE = re.compile(r"(?:\b[Vv]|\bversion |\brelease |\bbuild )$", re.IGNORECASE)


def ips(text: str, *, digits: int) -> Iterator[Finding]:
    if digits >= 4 and "." in text:
        for match in _IPV4_RE.finditer(text):
            if _VERSION_BEFORE_RE.search(text, max(0, match.start() - 8), match.start()) is None:
                yield from _ip_finding(match, "IPv4")
    if ":" in text and _IPV6_GATE_RE.search(text):
        for match in _IPV6_RE.finditer(text):
            # "12:30:45", "std::map" and "Ab::Cd" have colons too: an address has a digit and a group.
            raw = match.group()
            if any(char.isdigit() for char in raw) and raw.count(":") >= 2 and raw.strip(":"):
                yield from _ip_finding(match, "IPv6")


def _ip_finding(match: re.Match[str], reason: str) -> Iterator[Finding]:
    try:
        address = ipaddress.ip_address(match.group())
    except ValueError:
        return
    # Only addresses on the public internet point at someone: private, loopback, link-local,
    # documentation and other reserved ranges say nothing about a person and fill every log.
    if address.is_global and not address.is_multicast:
        yield Finding(IP, match.start(), match.end(), match.group(), reason)


# --- secrets --------------------------------------------------------------------------------------

_B = r"(?<![A-Za-z0-9_\-])"  # not in the middle of a longer token
_E = r"(?![A-Za-z0-9_\-])"
# (substrings one of which the text must hold for the pattern to run, reason, pattern)
_SECRET_PATTERNS: tuple[tuple[tuple[str, ...], str, re.Pattern[str]], ...] = tuple(
    (prefixes, reason, re.compile(pattern))
    for prefixes, reason, pattern in (
        (("sk-ant-",), "Anthropic key", _B + r"sk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_\-]{32,}" + _E),
        (("sk-",), "OpenAI key", _B + r"sk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}" + _E),
        (
            ("AKIA", "ASIA", "ABIA", "ACCA"),
            "AWS access key id",
            r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?![A-Za-z0-9])",
        ),
        (("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), "GitHub token", _B + r"gh[pousr]_[A-Za-z0-9]{36,255}" + _E),
        (("github_pat_",), "GitHub token", _B + r"github_pat_[A-Za-z0-9_]{22,255}" + _E),
        (("xox",), "Slack token", _B + r"xox[abposr]-[A-Za-z0-9\-]{10,250}" + _E),
        (
            ("hooks.slack.com",),
            "Slack webhook",
            r"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+",
        ),
        (("_live_", "_test_"), "Stripe key", _B + r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,247}" + _E),
        (("AIza",), "Google API key", _B + r"AIza[0-9A-Za-z_\-]{35}" + _E),
        (("eyJ",), "JWT", _B + r"eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]+" + _E),
        # A whole PEM block; one cut short (a truncated log) still loses its first lines of key.
        (
            ("PRIVATE KEY-----",),
            "private key block",
            r"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY)-----(?:(?:[^-]|-(?!----))*-----END \1-----|[A-Za-z0-9+/=\s\\]*)",
        ),
    )
)


SECRET_GATE_RE = re.compile("|".join(re.escape(prefix) for prefixes, _, _ in _SECRET_PATTERNS for prefix in prefixes))


def secrets(text: str) -> Iterator[Finding]:
    for prefixes, reason, pattern in _SECRET_PATTERNS:
        if any(prefix in text for prefix in prefixes):
            for match in pattern.finditer(text):
                yield Finding(SECRET, match.start(), match.end(), match.group(), reason)
