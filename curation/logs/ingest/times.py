"""The time of a log: read in UTC, and only within a range that every reader of the database can hold.

PostgreSQL stores any time from 4713 BC to 294276 AD, Python reads years 1 to 9999 only: a time sent as
"9999-12-31T23:59:59-14:00" is stored in year 10000 UTC, and from then on every query returning the row fails.
No LLM call was made before 1970 or will be logged after 2200, so a time outside that range is a mistake
(milliseconds sent as seconds, a placeholder date) and is refused.
"""

import math
from datetime import UTC, datetime

from curation.logs.ingest.canonical import IngestError, fail, short

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
_RANGE = f"between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} UTC"

__all__ = ["EARLIEST", "LATEST", "IngestError", "moment_from_iso", "moment_from_unix"]


def moment_from_iso(text: str, path: str) -> datetime:
    """An ISO-8601 date and time (no zone: UTC) in UTC; an IngestError naming `path` outside the range."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise fail(path, f"expected an ISO-8601 date and time, got {short(text)}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment_utc = moment.astimezone(UTC)
    except OverflowError:  # past year 9999 or before year 1 once in UTC
        moment_utc = None
    if moment_utc is None or not EARLIEST <= moment_utc <= LATEST:
        raise fail(path, f"must be {_RANGE}, got {short(text)}")
    return moment_utc


def moment_from_unix(seconds: float, path: str) -> datetime:
    """Unix seconds in UTC; an IngestError naming `path` outside the range (milliseconds are, by far)."""
    if not (math.isfinite(seconds) and EARLIEST.timestamp() <= seconds <= LATEST.timestamp()):
        bounds = f"{EARLIEST.timestamp():.0f} to {LATEST.timestamp():.0f}"
        raise fail(path, f"unix seconds must be {_RANGE} ({bounds}), got {short(seconds)}")
    return datetime.fromtimestamp(seconds, UTC)
