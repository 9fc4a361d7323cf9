"""Lines of an OpenAI Batch API output file, with the request of their input line merged in.

An output line is `{"id": "batch_req_…", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}`:
the answer alone. The request is in the input file (`{"custom_id", "method", "url", "body"}`), so a line is read
when it carries both, the way tools that merge the two files by `custom_id` write them: the input line's `body`
(or the whole input line under `request`) beside the output line's `response` and `error`.
"""

from curation.logs.ingest.canonical import MISSING_REASON, describe, fail
from curation.logs.ingest.exported import ExportedCall, an_object, string

BATCH_KEY = "custom_id"
NO_REQUEST = (
    "an OpenAI Batch output line holds the answer but not the request: give each line its input line's 'body' "
    "(merge the input file into the output file by custom_id)"
)
_URLS = ("/v1/chat/completions", "/v1/responses")


def is_batch_line(obj: dict) -> bool:
    return BATCH_KEY in obj and ("response" in obj or "body" in obj or "url" in obj)


def batch_call(obj: dict) -> ExportedCall:
    """The call a Batch line records. Raises IngestError naming the line's field."""
    custom_id = string(obj, BATCH_KEY)
    request, path = _request(obj)
    output = an_object(obj, "response")
    response, status_code = None, None
    if output is not None:
        response = an_object(output, "body", "response")
        code = output.get("status_code")
        status_code = code if isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599 else None
    error = obj.get("error")
    if response is None and error is not None:
        response = {"error": error}  # the batch could not make the call at all (expired, failed validation)
    metadata = {key: value for key, value in (("batch_request_id", obj.get("id")),
                ("request_id", (output or {}).get("request_id"))) if isinstance(value, str)}  # fmt: skip
    return ExportedCall(
        request=request, response=response, external_id=custom_id, status_code=status_code, provider="openai",
        metadata=metadata, paths={"external_id": "custom_id", "request": path, "response": "response.body"},
    )  # fmt: skip


def _request(obj: dict) -> tuple[dict, str]:
    """The request body and where it is in the line."""
    if "body" in obj:
        _check_url(obj, "")
        body = an_object(obj, "body")
        if body is None:
            raise fail("body", MISSING_REASON)
        return body, "body"
    line = obj.get("request")
    if line is None:
        raise fail("", NO_REQUEST)
    if not isinstance(line, dict):
        raise fail("request", f"expected the input line (an object), got {describe(line)}")
    if "body" not in line:
        return line, "request"  # the request body itself
    _check_url(line, "request")
    body = an_object(line, "body", "request")
    if body is None:
        raise fail("request.body", MISSING_REASON)
    return body, "request.body"


def _check_url(line: dict, path: str) -> None:
    url = string(line, "url", path)
    if url is not None and url not in _URLS:
        where = f"{path}.url" if path else "url"
        raise fail(where, f"a batch of {url!r} calls holds no conversation (expected one of {', '.join(_URLS)})")
