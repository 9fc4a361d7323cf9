"""A rough count of tokens for limits and histograms, the same on every path: about four characters a token."""

CHARS_PER_TOKEN = 4


def est_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN
