"""Personal data detectors: each kind is found in the formats people write it in, look-alikes are not,
redaction writes exact placeholders, and conversations are scanned and redacted without being changed."""

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curation.text.pii import scan
from curation.text.pii.conversations import conversation_find, conversation_redact
from curation.text.pii.findings import CARD, EMAIL, IBAN, IP, PHONE, SECRET, Finding, MessageFinding

# Secrets are built from pieces so that the test file itself holds no string a secret scanner flags.
OPENAI_KEY = "sk-" + "proj-" + "Xq3vB7nL2mK9pR4tW8yZ1aC5dF6gH0jE"
OPENAI_LEGACY_KEY = "sk-" + "T3BlbkFJ" + "abcdefghijklmnopqrstuv0123456789"
ANTHROPIC_KEY = "sk-" + "ant-api03-" + "Zx9" * 30
AWS_KEY_ID = "AKIA" + "IOSFODNN7EXAMPLE"
GITHUB_TOKEN = "ghp" + "_" + "16C7e42F292c6912E7710c838347Ae178B4a"
GITHUB_PAT = "github_pat" + "_" + "11ABCDEFG0abcdefghijkl_" + "x" * 59
SLACK_TOKEN = "xoxb" + "-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
STRIPE_KEY = "sk_" + "live_" + "4eC39HqLyjWDarjtT1zdp7dc"
GOOGLE_KEY = "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"
JWT = (
    "eyJ" + "hbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJ" + "zdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PRIVATE_KEY = "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3\nxfn/ygWyF8PbnGy0AHB7MhgHcTz6==\n"
PRIVATE_KEY += "-----END RSA PRIVATE KEY-----"


def found(text: str, **kwargs) -> list[tuple[str, str]]:
    findings = scan.find(text, **kwargs)
    for finding in findings:
        assert text[finding.start : finding.end] == finding.text
    return [(finding.kind, finding.text) for finding in findings]


# --- true positives -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "bob@example.com",
        "bob.smith+newsletter@mail.example.co.uk",
        "neil_99%x@sub-domain.example.io",
        "A.B@EXAMPLE.ORG",
    ],
)
def test_it_finds_email_addresses(address):
    assert found(f"Reach me at {address}, thanks.") == [(EMAIL, address)]
    assert found(f"mailto:{address}") == [(EMAIL, address)]


def test_an_email_address_ends_before_the_sentence_does():
    assert found("Write to alice@example.com. Or to <carol@example.org>!") == [
        (EMAIL, "alice@example.com"),
        (EMAIL, "carol@example.org"),
    ]


@pytest.mark.parametrize(
    ("number", "region"),
    [
        ("+44 20 7946 0958", "GB"),
        ("+1 (650) 253-0000", "US"),
        ("+1-650-253-0000", "US"),
        ("+33 1 42 68 53 00", "FR"),
        ("+49 30 12345678", "DE"),
        ("+91 98765 43210", "IN"),
        ("+14155552671", "US"),  # E.164, without separators: the country code says what it is
    ],
)
def test_it_finds_international_phone_numbers_whatever_the_default_region(number, region):
    for default in ("US", "DE", ""):
        findings = scan.find(f"Call me on {number} tomorrow.", phone_region=default)
        assert [(f.kind, f.text, f.reason) for f in findings] == [(PHONE, number, region)]


@pytest.mark.parametrize("number", ["(650) 253-0000", "650-253-0000", "650.253.0000", "650 253 0000"])
def test_it_finds_national_phone_numbers_of_the_default_region(number):
    assert found(f"my cell is {number}", phone_region="US") == [(PHONE, number)]
    assert found(f"my cell is {number}", phone_region="") == []


def test_national_numbers_follow_the_region_setting(settings):
    settings.LOGTUNE_PII_PHONE_REGION = "GB"
    assert found("Ring 020 7946 0958 after six") == [(PHONE, "020 7946 0958")]
    settings.LOGTUNE_PII_PHONE_REGION = "DE"
    assert found("Ring 030 12345678 or 0044 20 7946 0958") == [(PHONE, "030 12345678"), (PHONE, "0044 20 7946 0958")]
    settings.LOGTUNE_PII_PHONE_REGION = ""
    assert found("Ring 030 12345678") == []


@pytest.mark.parametrize(("value", "read"), [("gb", "'GB'"), ("", "''"), ("Germany", None)])
def test_the_region_setting_is_a_country_code_or_empty(value, read):
    result = subprocess.run(
        [sys.executable, "-c", "import config.settings as s; print(repr(s.LOGTUNE_PII_PHONE_REGION))"],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "DEBUG": "1", "LOGTUNE_PII_PHONE_REGION": value},
        capture_output=True,
        text=True,
        check=False,
    )
    if read is None:
        assert "LOGTUNE_PII_PHONE_REGION='GERMANY': expected a country code" in result.stderr
    else:
        assert result.stdout.strip() == read, result.stderr


@pytest.mark.parametrize(
    ("number", "network"),
    [
        ("4111 1111 1111 1111", "Visa"),
        ("4111-1111-1111-1111", "Visa"),
        ("4111111111111111", "Visa"),
        ("5555 5555 5555 4444", "Mastercard"),
        ("2223 0031 2200 3222", "Mastercard"),
        ("3782 822463 10005", "American Express"),
        ("378282246310005", "American Express"),
        ("6011 1111 1111 1117", "Discover"),
        ("3530 1113 3330 0000", "JCB"),
    ],
)
def test_it_finds_card_numbers(number, network):
    findings = scan.find(f"card: {number}, exp 12/29")
    assert [(f.kind, f.text, f.reason) for f in findings] == [(CARD, number, network)]


@pytest.mark.parametrize(
    "iban",
    [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82 WEST 1234 5698 7654 32",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91 ABNA 0417 1643 00",
        "ES91 2100 0418 4502 0005 1332",
        "CH93 0076 2011 6238 5295 7",
        "BE71 0961 2345 6769",
        "IT60 X054 2811 1010 0000 0123 456",
        "NO93 8601 1117 947",  # the shortest there is
    ],
)
def test_it_finds_ibans(iban):
    findings = scan.find(f"Please wire it to {iban} today.")
    assert [(f.kind, f.text, f.reason) for f in findings] == [(IBAN, iban, iban[:2])]


def test_an_iban_stops_before_a_following_word_in_capitals():
    assert found("IBAN: DE89 3704 0044 0532 0130 00 EUR PAYMENT") == [(IBAN, "DE89 3704 0044 0532 0130 00")]


@pytest.mark.parametrize(
    ("address", "version"),
    [
        ("8.8.8.8", "IPv4"),
        ("203.0.114.7", "IPv4"),
        ("2a00:1450:4001:82a::200e", "IPv6"),
        ("2606:4700:4700:0000:0000:0000:0000:1111", "IPv6"),
        ("2606:4700:4700::1111", "IPv6"),
    ],
)
def test_it_finds_public_ip_addresses(address, version):
    findings = scan.find(f"request from {address}.")
    assert [(f.kind, f.text, f.reason) for f in findings] == [(IP, address, version)]


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        (OPENAI_KEY, "OpenAI key"),
        (OPENAI_LEGACY_KEY, "OpenAI key"),
        (ANTHROPIC_KEY, "Anthropic key"),
        (AWS_KEY_ID, "AWS access key id"),
        (GITHUB_TOKEN, "GitHub token"),
        (GITHUB_PAT, "GitHub token"),
        (SLACK_TOKEN, "Slack token"),
        (STRIPE_KEY, "Stripe key"),
        (GOOGLE_KEY, "Google API key"),
        (JWT, "JWT"),
        (PRIVATE_KEY, "private key block"),
    ],
)
def test_it_finds_secrets_of_well_known_shapes(secret, reason):
    for text in (f"use {secret} here", f'{{"token": "{secret}"}}', secret):
        findings = scan.find(text)
        assert [(f.kind, f.text, f.reason) for f in findings] == [(SECRET, secret, reason)]


def test_a_private_key_block_with_headers_is_found_whole():
    text = "-----BEGIN " + "RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17\n\nMIIEpA==\n"
    text += "-----END RSA PRIVATE KEY-----"
    assert found(f"key: {text} end") == [(SECRET, text)]


def test_a_truncated_private_key_block_is_still_found_from_its_first_line():
    text = "key:\n-----BEGIN " + "PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nMIIEvQIBADAN"
    assert found(text) == [(SECRET, text[5:])]


# --- true negatives -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Order 6502530000 shipped",  # an id, even if its digits would dial
        "Customer #48213 wrote in on 2024-01-15 at 10:30:45",
        "created 2026-01-15T10:30:00Z, due 12/03/2024, 15.01.2024",
        "The total is $1,299.00 (EUR 1.234.567,89) for 25 seats",
        "usage: 183204 prompt tokens, 1500 completion tokens, total 184704",
        "unix time 1735689600, latency 1234 ms",
        "release 1.2.3 then 10.4.22 and 2.20.1-rc.3",
        "pi is 3.14159265358979 and e is 2.718281828",
        "ticket INC-2024-000123 and PO 4500012345-10",
        "build 20240115.3 paid 1234567.89 on 15.01.2024 10:30",
    ],
)
def test_numbers_that_are_not_phone_numbers_are_left_alone(text):
    assert found(text, phone_region="US") == []
    assert found(text, phone_region="DE") == []


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # fails Luhn
        "4111-1111-1111-1113",
        "0000 0000 0000 0000",  # passes Luhn, no card network starts with 0
        "1234 5678 9012 3452",  # passes Luhn, unassigned prefix
        "4111 1111-1111 1111",  # mixed separators: not how a card number is written
        "9.4111111111111111",  # the decimals of a number
    ],
)
def test_card_look_alikes_are_not_cards(text):
    assert [kind for kind, _ in found(text)] == []


@pytest.mark.parametrize(
    "text",
    [
        "DE89 3704 0044 0532 0130 01",  # checksum fails
        "DE88370400440532013000",
        "GB82 WEST 1234 5698 7654",  # too short for GB
        "XX89 3704 0044 0532 0130 00",  # no such country
    ],
)
def test_iban_look_alikes_are_not_ibans(text):
    assert found(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "10.0.0.1",
        "192.168.1.20",
        "172.16.5.4",
        "127.0.0.1",
        "0.0.0.0",  # noqa: S104 (an address to look for, not to bind)
        "169.254.1.1",
        "::1",
        "fe80::1ff:fe23:4567:890a",
        "2001:db8::1",  # documentation range
        "999.1.1.1",
        "version 1.2.3.4",
        "v1.2.3.4",
        "1.2.3.4.5",
        "at 12:30:45",
        "std::vector<int> and Foo::bar and a::b::c",
        "mac 00:1a:2b:3c:4d:5e",
    ],
)
def test_private_reserved_and_look_alike_addresses_are_not_ips(text):
    assert found(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "id 550e8400-e29b-41d4-a716-446655440000",
        "md5 d41d8cd98f00b204e9800998ecf8427e sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709",
        "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "pip install scikit-learn; sk-learn is not a key; task-1234567890",
        "pk_" + "live_" + "51H8a9bCdEfGhIjKl",  # publishable: meant to be public
        "icon@2x.png, npm i @scope/pkg, pkg@1.2.3, user@localhost",
        "the eyJ prefix alone: eyJhbGciOi",
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----",
    ],
)
def test_hashes_ids_and_code_are_not_findings(text):
    assert found(text) == []


# --- redaction ------------------------------------------------------------------------------------


def test_findings_glued_to_japanese_text_are_found():
    assert found("電話番号は090-1234-5678です", phone_region="JP") == [(PHONE, "090-1234-5678")]
    assert found("カード番号4111 1111 1111 1111です、サーバー8.8.8.8から") == [
        (CARD, "4111 1111 1111 1111"),
        (IP, "8.8.8.8"),
    ]


def test_a_local_part_may_have_64_characters_not_more():
    assert found("x" * 64 + "@example.com") == [(EMAIL, "x" * 64 + "@example.com")]
    assert found("x" * 65 + "@example.com") == []


def test_redaction_replaces_each_finding_with_its_placeholder():
    text = (
        f"From bob@example.com (+44 20 7946 0958), card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, "
        f"from 8.8.8.8 with key {OPENAI_KEY}."
    )
    redacted, findings = scan.redact(text)
    assert redacted == "From <EMAIL> (<PHONE>), card <CARD>, IBAN <IBAN>, from <IP> with key <SECRET>."
    assert [f.kind for f in findings] == [EMAIL, PHONE, CARD, IBAN, IP, SECRET]


def test_redaction_can_be_limited_to_some_kinds():
    text = "bob@example.com, 8.8.8.8"
    assert scan.redact(text, kinds=[IP]) == ("bob@example.com, <IP>", [Finding(IP, 17, 24, "8.8.8.8", "IPv4")])
    with pytest.raises(ValueError, match="unknown PII kinds: NAME"):
        scan.redact(text, kinds=["NAME"])


def test_text_without_findings_comes_back_unchanged():
    text = "Thanks for reaching out. I checked order 48213: the amount includes tax."
    assert scan.redact(text) == (text, [])


def test_the_longer_of_two_overlapping_findings_wins():
    # The phone number is inside the address; the address goes as a whole.
    assert scan.redact("write to +14155552671@example.com now")[0] == "write to <EMAIL> now"


def test_at_equal_length_the_more_specific_finding_wins():
    same_span = [Finding(PHONE, 0, 10, "x" * 10, "US"), Finding(CARD, 0, 10, "x" * 10, "Visa")]
    shorter = Finding(SECRET, 2, 5, "xxx", "JWT")
    assert scan._resolve([*same_span, shorter]) == [same_span[1]]
    assert scan._resolve([shorter, *reversed(same_span)]) == [same_span[1]]


def test_offsets_count_characters_in_unicode_text():
    text = "Ünïcødé 😀 — écris à bob@example.com 😀 ou au +33 1 42 68 53 00 ✓"
    findings = scan.find(text)
    assert [(f.kind, text[f.start : f.end]) for f in findings] == [
        (EMAIL, "bob@example.com"),
        (PHONE, "+33 1 42 68 53 00"),
    ]
    assert scan.redact(text)[0] == "Ünïcødé 😀 — écris à <EMAIL> 😀 ou au <PHONE> ✓"


# --- conversations --------------------------------------------------------------------------------


@pytest.fixture
def conversation() -> list[dict]:
    arguments = json.dumps({"customer": {"email": "carol@example.org", "ids": [48213, "8.8.4.4"]}, "note": "hi"})
    return [
        {"role": "system", "content": "You are a support assistant."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "My card is 4111 1111 1111 1111."},
                {"type": "image_url", "image_url": {"url": "https://example.com/bob@example.com.png"}},
                {"type": "text", "text": "Call +44 20 7946 0958."},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": arguments}},
                {"id": "call_2", "type": "function", "function": {"name": "raw", "arguments": "{token: " + JWT}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"iban": "DE89370400440532013000"}'},
        {"role": "assistant", "content": "Done.", "refusal": "I won't repeat bob@example.com."},
    ]


def test_a_conversation_is_scanned_field_by_field(conversation):
    assert [(m.message, m.field, m.finding.kind, m.finding.text) for m in conversation_find(conversation)] == [
        (1, "content.0.text", CARD, "4111 1111 1111 1111"),
        (1, "content.2.text", PHONE, "+44 20 7946 0958"),
        (2, "tool_calls.0.function.arguments.customer.email", EMAIL, "carol@example.org"),
        (2, "tool_calls.0.function.arguments.customer.ids.1", IP, "8.8.4.4"),
        (2, "tool_calls.1.function.arguments", SECRET, JWT),
        (3, "content", IBAN, "DE89370400440532013000"),
        (4, "refusal", EMAIL, "bob@example.com"),
    ]
    first = conversation_find(conversation)[0]
    assert first == MessageFinding(1, "content.0.text", Finding(CARD, 11, 30, "4111 1111 1111 1111", "Visa"))


def test_a_redacted_conversation_is_a_new_one(conversation):
    original = copy.deepcopy(conversation)
    redacted, findings = conversation_redact(conversation)
    assert conversation == original
    assert len(findings) == 7
    assert redacted[0] == original[0]
    assert redacted[1]["content"][0]["text"] == "My card is <CARD>."
    assert redacted[1]["content"][1] == original[1]["content"][1]  # images are not text
    assert redacted[1]["content"][2]["text"] == "Call <PHONE>."
    calls = redacted[2]["tool_calls"]
    assert json.loads(calls[0]["function"]["arguments"]) == {
        "customer": {"email": "<EMAIL>", "ids": [48213, "<IP>"]},
        "note": "hi",
    }
    assert calls[1]["function"]["arguments"] == "{token: <SECRET>"
    assert redacted[3]["content"] == '{"iban": "<IBAN>"}'
    assert redacted[4] == {"role": "assistant", "content": "Done.", "refusal": "I won't repeat <EMAIL>."}


def test_tool_arguments_without_findings_keep_their_exact_text():
    arguments = '{"order_id":  "48213"}'  # odd spacing a re-encoding would lose
    messages = [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}],
        }
    ]
    redacted, findings = conversation_redact(messages)
    assert findings == []
    assert redacted == messages
    assert redacted is not messages


def test_redaction_of_an_escaped_value_keeps_the_arguments_json():
    arguments = json.dumps({"body": 'line one\nbob@example.com\n"quoted"'})
    messages = [{"role": "assistant", "content": None, "tool_calls": [{"function": {"arguments": arguments}}]}]
    redacted, _ = conversation_redact(messages)
    assert json.loads(redacted[0]["tool_calls"][0]["function"]["arguments"]) == {"body": 'line one\n<EMAIL>\n"quoted"'}


# --- speed ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "chunk",
    [
        *("a" * 50, "a." * 50, "1" * 50, "1 " * 50, "1." * 50, "a@" * 50, "1:" * 50, "A1" * 50, "eyJ." * 50),
        *("sk-" * 20, "-----BEGIN PRIVATE KEY-----a-"),
    ],
)
def test_time_stays_linear_on_adversarial_input(chunk):
    """Patterns that backtrack would take seconds (quadratic or worse) on 200 KB of these."""
    small, large = chunk * 200, chunk * 4000
    # The best of three runs each: a pause of the machine (another process, the garbage collector) is not
    # the pattern's doing, while backtracking is slow every time.
    small_s, large_s = _best_of_three(small), _best_of_three(large)
    assert large_s < max(20 * 4 * small_s, 0.5)


def _best_of_three(text: str) -> float:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        scan.find(text)
        times.append(time.perf_counter() - started)
    return min(times)
