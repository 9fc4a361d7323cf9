"""Reading LLM request logs (OpenAI / Anthropic shaped) into one canonical conversation.

Pure Python, no Django: the API, the import worker and the benchmarks all call `parse_log`.
"""

from curation.logs.ingest.canonical import IngestError
from curation.logs.ingest.envelope import ParsedLog, log_read, parse_log, unreadable_log
from curation.logs.ingest.raw import BodyError, RawItem, body_read, item_make_storable, line_read

__all__ = [
    "BodyError",
    "IngestError",
    "ParsedLog",
    "RawItem",
    "body_read",
    "item_make_storable",
    "line_read",
    "log_read",
    "parse_log",
    "unreadable_log",
]
