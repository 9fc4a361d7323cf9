"""LiteLLM's StandardLoggingPayload: what its proxy and SDK callbacks log for every call (litellm/types/utils.py,
docs/my-website/docs/proxy/logging_spec.md): `messages` as sent, `response` the OpenAI-shaped answer, the request
settings in `model_parameters`, unix-second `startTime` / `endTime`, `status` "success" or "failure"."""

from curation.logs.ingest.canonical import MISSING_REASON, describe, fail
from curation.logs.ingest.exported import ExportedCall, an_object, count, duration_ms, moment, string

LITELLM_KEY = "call_type"
# Calls whose payload is a chat conversation; embeddings, images, speech, Responses or Anthropic pass-through calls
# carry other shapes.
CHAT_CALLS = ("completion", "acompletion")
_REQUEST_SETTINGS = ("tools", "functions", "parallel_tool_calls")


def is_litellm_payload(obj: dict) -> bool:
    return LITELLM_KEY in obj and "id" in obj


def litellm_call(obj: dict) -> ExportedCall:
    """The call a StandardLoggingPayload records. Raises IngestError naming the payload's field."""
    call_type = string(obj, LITELLM_KEY)
    if call_type is None:
        raise fail(
            LITELLM_KEY, f"{MISSING_REASON} (a LiteLLM payload's; a chat call's is one of {', '.join(CHAT_CALLS)})"
        )
    if call_type not in CHAT_CALLS:
        raise fail(LITELLM_KEY, f"a LiteLLM {call_type!r} call holds no chat conversation (expected one of "
                   f"{', '.join(CHAT_CALLS)})")  # fmt: skip
    messages = obj.get("messages")
    if isinstance(messages, str):  # a prompt given as text
        messages = [{"role": "user", "content": messages}]
    request: dict = {"messages": messages}
    model = string(obj, "model")
    if model:
        request["model"] = model
    settings = an_object(obj, "model_parameters") or {}
    request.update({name: settings[name] for name in _REQUEST_SETTINGS if settings.get(name) is not None})
    start, end = moment(obj, "startTime"), moment(obj, "endTime")
    response = _response(obj)
    return ExportedCall(
        request=request, response=response, external_id=string(obj, "id"), status_code=_error_code(obj),
        provider=string(obj, "custom_llm_provider") or "", latency_ms=duration_ms(start, end), created_at=start,
        metadata=_metadata(obj, call_type), tags=_tags(obj),
        paths={"external_id": "id", "tags": "request_tags",
               "request.messages": "messages", "request.tools": "model_parameters.tools",
               "request.functions": "model_parameters.functions", "request.model": "model", "response": "response"},
    )  # fmt: skip


def _response(obj: dict) -> dict | None:
    """The answer, with the payload's own token counts; a failed call's error as an error body."""
    status = obj.get("status")
    if status == "failure" or obj.get("error_str"):
        return {"error": {"message": obj.get("error_str") or "failure"}}
    response = obj.get("response")
    if response is None:
        return None
    if not isinstance(response, dict):
        raise fail("response", f"expected the chat completion (an object), got {describe(response)}")
    counted = {name: count(obj.get(name)) for name in ("prompt_tokens", "completion_tokens", "total_tokens")}
    usage = {name: tokens for name, tokens in counted.items() if tokens is not None}
    if usage:
        response = {**response, "usage": {**(response.get("usage") or {}), **usage}}
    return response


def _tags(obj: dict) -> list[str]:
    tags = obj.get("request_tags")
    return [tag for tag in tags if isinstance(tag, str)] if isinstance(tags, list) else []


def _error_code(obj: dict) -> int | None:
    information = obj.get("error_information")
    code = information.get("error_code") if isinstance(information, dict) else None
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    return code if isinstance(code, int) and 100 <= code <= 599 else None


def _metadata(obj: dict, call_type: str) -> dict:
    """Which call this was, for filtering: the trace it belongs to, the deployment and the end user. The rest of
    LiteLLM's metadata (key hashes, team ids, headers) stays in the original."""
    metadata: dict = {"call_type": call_type}
    for name in ("trace_id", "model_group", "model_id", "end_user", "api_base", "cache_hit", "response_cost"):
        if obj.get(name) not in (None, ""):
            metadata[name] = obj[name]
    return metadata
