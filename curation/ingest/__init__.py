"""Reading LLM request logs (OpenAI / Anthropic shaped) into one canonical conversation.

Pure Python, no Django: the API, the import worker and the benchmarks all call `parse_log`.
"""

from curation.ingest.canonical import IngestError
from curation.ingest.envelope import ParsedLog, parse_log

__all__ = ["IngestError", "ParsedLog", "parse_log"]
