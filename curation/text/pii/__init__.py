"""Personal data and secrets in text: find them, or replace them with typed placeholders such as `<EMAIL>`.

- `findings`: the kinds (`KINDS`) and what a scan returns (`Finding`, `MessageFinding`);
- `scan`: `find` and `redact` on one string, overlaps resolved;
- `conversations`: the same on every human-readable string of canonical (OpenAI chat) messages;
- `detectors`: one detector per kind.

This runs on every ingested log, so each detector starts with a cheap test that most text fails (an
"@" for e-mails, seven digits for phones and twelve for cards, a known prefix for secrets) and only
then runs its regular expression and the expensive check of each candidate (libphonenumber, the
Luhn or mod-97 checksum, `ipaddress`). Every pattern refuses to start in the middle of a run of the
characters it matches, so the engine tries each run once: the time stays linear in the length of the
text, whatever it holds. That lookbehind comes after the pattern's first character ("a digit not
preceded by a digit" is written digit, then lookbehind): `re` then skips ahead to the next possible
first character at C speed, several times faster on text with nothing to find. docs/pii.md says what
each detector finds and misses.
"""
