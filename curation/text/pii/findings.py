"""The kinds of personal data and secrets, and what a scan returns."""

from dataclasses import dataclass

EMAIL = "EMAIL"
PHONE = "PHONE"
CARD = "CARD"
IBAN = "IBAN"
IP = "IP"
SECRET = "SECRET"  # noqa: S105 (a kind, not a password)
KINDS = (EMAIL, PHONE, CARD, IBAN, IP, SECRET)


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # one of KINDS
    start: int  # offsets into the scanned string, in characters (not bytes): text[start:end] == self.text
    end: int
    text: str
    reason: str  # what exactly was found: "Visa", "DE", "IPv6", "GitHub token", ...

    @property
    def placeholder(self) -> str:
        return f"<{self.kind}>"


@dataclass(frozen=True, slots=True)
class MessageFinding:
    """A finding in one string of a conversation: `field` is the path from the message, dotted like
    ingest errors ("content", "content.1.text", "tool_calls.0.function.arguments.customer.email")."""

    message: int  # index in the messages list
    field: str
    finding: Finding
