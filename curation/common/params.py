"""Whole numbers from query strings, forms and paths: one reading for the API and the pages alike.

`str.isdigit` is not the test: it takes '²' and other Unicode digits, which int() refuses (a 500), and any
number of digits, where int() refuses more than 4,300 and a bigint column more than 18 or 19.
"""

import re

_WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")
ID_MAX = 10**18 - 1  # the largest whole number read here, and so the largest id the API and the pages take


def is_whole_number(raw: str) -> bool:
    """Digits 0-9, at most 18 of them: a value int() reads and a bigint column (an id) holds."""
    return _WHOLE_NUMBER.fullmatch(raw) is not None


def whole_number(raw: str) -> int | None:
    """`raw` (surrounding blanks aside) as an int when it is a whole number as above, else None."""
    raw = raw.strip()
    return int(raw) if is_whole_number(raw) else None
