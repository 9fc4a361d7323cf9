"""Speed of the personal data detectors (curation/text/pii/) on the text of realistic logs, in this process.

    .venv/bin/python bench/pii.py [--logs 5000] [--long 50] [--repeats 3] [--seed 7]

Four sets, generated from a seed before anything is timed:
  - chat logs without personal data: the strings of bench/common.py's logs (questions, answers,
    tool calls and results, with order numbers, counts and amounts that look like numbers to check);
  - the same logs, each with one or two findings (e-mail, phone, card, IBAN, IP, key) added to a
    user turn: every one must be found, or the run fails;
  - tool results with tables of numbers (ids, timestamps, amounts, versions): the worst case for
    the phone and card prefilters;
  - long prompts of about 50 KB (documentation, code, JSON, hashes) with a few findings in some.
Each set is scanned --repeats times and the best pass is kept (the machine may be busy). Prints MB/s
of UTF-8 text, microseconds per log (mean and 95th percentile of the best pass), and the findings.
No database and no network: only this process.
"""

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator

from common import LogMaker, code_version, percentile, warn_if_busy

from curation.text.pii import scan

# Findings added to "chat with PII", built from pieces so that this file holds no string a secret scanner flags.
PLANTED = (
    "bob.smith@example.com",
    "jane_doe+billing@mail.example.co.uk",
    "+44 20 7946 0958",
    "(650) 253-0000",
    "+49 30 12345678",
    "4111 1111 1111 1111",
    "5555-5555-5555-4444",
    "DE89 3704 0044 0532 0130 00",
    "GB82 WEST 1234 5698 7654 32",
    "8.8.4.4",
    "2a00:1450:4001:82a::200e",
    "sk-" + "proj-" + "Xq3vB7nL2mK9pR4tW8yZ1aC5dF6gH0jE",
    "AKIA" + "IOSFODNN7EXAMPLE",
    "ghp" + "_" + "16C7e42F292c6912E7710c838347Ae178B4a",
)
SENTENCES = (
    "You can reach me at {} if anything is unclear.",
    "My details: {}. Please update the account.",
    "The customer wrote from {} yesterday.",
    "Use {} for the test, then remove it.",
)
DOC_PARAGRAPHS = (
    "The export job streams rows in batches of 2000 and writes one JSONL line per entry; a snapshot "
    "records the SHA-256 of the file (e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855).",
    "Release 2.14.3 fixed the retry loop: requests that failed with 429 are retried after Retry-After "
    "seconds, at most 5 times, and the p95 latency dropped from 1840 ms to 612 ms on 2026-03-14.",
    "def score(rows: list[dict]) -> float:\n    total = sum(r['tokens'] for r in rows)\n    return total / max(1, "
    "len(rows))  # 183204 tokens over 1500 rows\n",
    '{"id": "550e8400-e29b-41d4-a716-446655440000", "created": 1735689600, "amount": 1299.00, '
    '"currency": "EUR", "items": [{"sku": "A-1042", "qty": 3}, {"sku": "B-2210", "qty": 1}]}',
    "Server logs show GET /api/v1/logs?cursor=eyJpZCI6MTIzfQ 200 in 38 ms from 10.0.3.17, and "
    "std::vector<int> buffers of 65536 bytes; build 20240115.3 ran on node ip-10-0-3-17.",
    "Quarterly numbers: revenue 4,582,310.55 USD, 12.4% up; churn 1.8%; 2,431 new seats; "
    "ticket INC-2024-000123 closed on 15.01.2024 at 10:30:45.",
)


def main() -> None:
    args = _parse_args()
    warn_if_busy()
    rng = random.Random(args.seed)
    print(f"Generating {args.logs:,} logs per set and {args.long} long prompts...")
    sets = {
        "chat, no PII": [_log_strings(log) for log in _logs(args.logs, seed=args.seed)],
        "chat with PII": [],
        "tables of numbers": [[_number_table(rng)] for _ in range(args.logs)],
        "long prompts (~50 KB)": [[_long_prompt(rng, planted=index % 5 == 0)] for index in range(args.long)],
    }
    expected = []
    for strings in sets["chat, no PII"]:
        planted = rng.sample(PLANTED, rng.choice((1, 2)))
        expected.append(planted)
        sets["chat with PII"].append([*strings, " ".join(rng.choice(SENTENCES).format(p) for p in planted)])
    _check_planted(sets["chat with PII"], expected)

    print(f"Scanning each set {args.repeats} times, best pass kept...")
    rows = [("set", "logs", "KB/log", "MB/s", "µs/log", "p95 µs", "findings")]
    for name, logs in sets.items():
        rows.append(_measure(name, logs, scan=_find_all, repeats=args.repeats))
    # Without the prefilters and candidate windows, libphonenumber alone over every string:
    rows.append(_measure("  phone matcher alone, chat", sets["chat, no PII"], scan=_phones_only, repeats=args.repeats))
    _print_rows(rows)
    print(f"  commit {code_version()}, Python {sys.version.split()[0]}")


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", type=int, default=5000, help="logs in each of the chat and table sets")
    parser.add_argument("--long", type=int, default=50, help="long prompts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args()


# --- the sets -------------------------------------------------------------------------------------


def _logs(count: int, *, seed: int) -> Iterator[dict]:
    maker = LogMaker(seed=seed)
    for index in range(count):
        yield maker.log(index)


def _log_strings(log: dict) -> list[str]:
    """The strings a scan of the stored conversation would see: messages, system prompt, answer, tool calls."""
    strings: list[str] = []
    _collect(log["request"].get("messages"), strings)
    _collect(log["request"].get("system"), strings)
    _collect((log.get("response") or {}).get("choices") or (log.get("response") or {}).get("content"), strings)
    return strings


def _collect(value: object, strings: list[str]) -> None:
    if isinstance(value, str):
        if value:
            strings.append(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in ("id", "type", "role", "tool_call_id", "tool_use_id", "finish_reason"):
                _collect(item, strings)
    elif isinstance(value, list):
        for item in value:
            _collect(item, strings)


def _number_table(rng: random.Random) -> str:
    lines = ["| order | created | amount | items | client | build |", "| --- | --- | --- | --- | --- | --- |"]
    for _ in range(rng.randint(8, 30)):
        lines.append(
            f"| {rng.randint(10**9, 10**10 - 1)} | 2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} "
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} "
            f"| {rng.randint(1, 99_999):,}.{rng.randint(0, 99):02d} | {rng.randint(1, 40)} "
            f"| {rng.randint(100_000, 999_999)} | {rng.randint(1, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 99)} |"
        )
    return "\n".join(lines)


def _long_prompt(rng: random.Random, *, planted: bool) -> str:
    parts: list[str] = []
    size = 0
    while size < 50_000:
        paragraph = rng.choice(DOC_PARAGRAPHS)
        if planted and rng.random() < 0.01:
            paragraph += " " + rng.choice(SENTENCES).format(rng.choice(PLANTED))
        parts.append(paragraph)
        size += len(paragraph) + 2
    return "\n\n".join(parts)


def _check_planted(logs: list[list[str]], expected: list[list[str]]) -> None:
    for strings, planted in zip(logs, expected, strict=True):
        found = {finding.text for finding in scan.find(strings[-1])}
        if missing := set(planted) - found:
            raise SystemExit(f"not found: {sorted(missing)} in {strings[-1]!r}")


# --- measuring ------------------------------------------------------------------------------------


def _find_all(strings: list[str]) -> int:
    return sum(len(scan.find(string)) for string in strings)


def _phones_only(strings: list[str]) -> int:
    import phonenumbers

    return sum(
        1 for string in strings for _ in phonenumbers.PhoneNumberMatcher(string, "US", phonenumbers.Leniency.VALID)
    )


def _measure(name: str, logs: list[list[str]], *, scan: Callable[[list[str]], int], repeats: int) -> tuple:
    size = sum(len(string.encode()) for strings in logs for string in strings)
    best: list[float] = []
    findings = 0
    for _ in range(repeats):
        times = []
        findings = 0
        for strings in logs:
            started = time.perf_counter()
            findings += scan(strings)
            times.append(time.perf_counter() - started)
        if not best or sum(times) < sum(best):
            best = times
    total = sum(best)
    return (
        name,
        f"{len(logs):,}",
        f"{size / len(logs) / 1e3:.1f}",
        f"{size / total / 1e6:.1f}",
        f"{statistics.fmean(best) * 1e6:,.0f}",
        f"{percentile(best, 0.95) * 1e6:,.0f}",
        f"{findings:,}",
    )


def _print_rows(rows: list[tuple]) -> None:
    widths = [max(len(str(row[column])) for row in rows) for column in range(len(rows[0]))]
    print()
    for row in rows:
        cells = [f"{cell:>{width}}" for cell, width in zip(row[1:], widths[1:], strict=True)]
        print("  " + "  ".join([f"{row[0]:<{widths[0]}}", *cells]))
    print()


if __name__ == "__main__":
    main()
