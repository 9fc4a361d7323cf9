"""Storing a proxied call as a log, in the Celery task (or in the request's process when the broker is down)."""

import logging

from curation.logs.ingest import BodyError, line_read
from curation.logs.ingest.raw import value_text
from curation.logs.ingest.streams import assemble, sse_events
from curation.logs.services import logs_ingest
from curation.models import Project

logger = logging.getLogger(__name__)


def proxy_log_store(
    *,
    project_id: int,
    provider: str,
    request_body: str,
    response_body: str,
    streamed: bool,
    status_code: int,
    latency_ms: float,
    tags: list[str],
    metadata: dict,
    external_id: str,
) -> bool:
    """Store one proxied call as a log envelope; a streamed answer is first assembled into the one response
    the provider would have sent unstreamed. Returns whether a log was stored (or already was).

    Whatever the upstream answered is stored: a call our readers cannot turn into a conversation (a tool type or
    block they do not know, a body that is not JSON) is kept with status "unreadable" and the reader's reason,
    for `reparse_logs` to read again after an upgrade. The envelope's `request` is the caller's body itself,
    byte for byte; a body that is not a JSON object is kept as a string."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        logger.warning("proxy.log_skipped", extra={"project_id": project_id, "reason": "the project is gone"})
        return False
    if streamed:
        events = sse_events(response_body)
        response: object = assemble(provider, events)
        response_text = None if response is None else value_text(response)
    else:
        response_text = _json_object_text(response_body)
    if response_text is None and response_body:
        response_text = value_text(response_body)  # not JSON: kept as it came, as a string
    envelope_head = {"provider": provider}
    envelope_tail = {
        "status_code": status_code,
        "latency_ms": latency_ms,
        "metadata": {"proxy": metadata},
        "tags": tags,
        "external_id": external_id,
    }
    request_text = _json_object_text(request_body) or value_text(request_body)
    text = (
        value_text(envelope_head)[:-1]
        + f',"request":{request_text},"response":{response_text or "null"},'
        + value_text(envelope_tail)[1:]
    )
    item = line_read(text)
    result = logs_ingest(project=project, items=[item], keep_unreadable=True)
    for rejection in result.rejected:  # only what cannot be stored at all (numbers beyond 64 bits in metadata...)
        logger.error("proxy.log_lost", extra={"project_id": project_id, "error": rejection.error})
    for unreadable in result.unreadable:
        logger.warning("proxy.log_unreadable", extra={"project_id": project_id, "error": unreadable.error})
    return not result.rejected


def _json_object_text(body: str) -> str | None:
    """The body itself when it is one JSON object (its exact text, kept as the original), else None."""
    stripped = body.strip()
    if not stripped.startswith("{"):
        return None
    try:
        line_read(stripped)  # the standard library's reader, which takes lone surrogate escapes as orjson does not
    except BodyError:
        return None
    return stripped
