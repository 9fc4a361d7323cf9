"""Langfuse observations, as its public API (`GET /api/public/observations`) and its exports give them. A GENERATION
observation is one model call: `input` the messages sent (a list, `{"messages", "tools"}`, or a prompt string),
`output` the answer (a message, a chat completion or text), `usageDetails` / `usage` the tokens, `level` "ERROR"
with a `statusMessage` a failed call."""

from curation.logs.ingest.canonical import describe, fail
from curation.logs.ingest.exported import (
    ExportedCall,
    an_object,
    count,
    duration_ms,
    moment,
    openai_message,
    string,
)

LANGFUSE_KEY = "traceId"
MODEL_CALL = "GENERATION"
_USAGE = (("usageDetails", "input", "output", "total"), ("usage", "input", "output", "total"))


def is_langfuse_observation(obj: dict) -> bool:
    return LANGFUSE_KEY in obj and "type" in obj


def langfuse_call(obj: dict) -> ExportedCall:
    """The call a GENERATION observation records. Raises IngestError naming the observation's field."""
    kind = string(obj, "type")
    if kind != MODEL_CALL:
        raise fail("type", f"a Langfuse {kind} observation is not a model call (expected {MODEL_CALL!r})")
    request, messages_path = _request(obj.get("input"))
    model = string(obj, "model")
    if model:
        request["model"] = model
    start, end = moment(obj, "startTime"), moment(obj, "endTime")
    latency = obj.get("latency")  # seconds, in the API's answer
    latency_ms = duration_ms(start, end)
    if latency_ms is None and isinstance(latency, int | float) and not isinstance(latency, bool) and latency >= 0:
        latency_ms = latency * 1000
    return ExportedCall(
        request=request, response=_response(obj), external_id=string(obj, "id"), latency_ms=latency_ms,
        created_at=start, metadata=_metadata(obj),
        paths={"external_id": "id",
               "request.messages": messages_path, "request.tools": "input.tools", "request.model": "model",
               "response.choices.0.message": "output", "response": "output"},
    )  # fmt: skip


def _request(value: object) -> tuple[dict, str]:
    if isinstance(value, str):
        return {"messages": [{"role": "user", "content": value}]}, "input"
    if isinstance(value, list):
        return {"messages": [openai_message(message) for message in value]}, "input"
    if isinstance(value, dict) and "messages" in value:
        messages = value["messages"]
        if isinstance(messages, list):
            messages = [openai_message(message) for message in messages]
        tools = {key: item for key, item in value.items() if key in ("tools", "functions")}
        return {**tools, "messages": messages}, "input.messages"
    raise fail("input", f"expected the messages sent (a list, an object with 'messages', or a prompt string), "
               f"got {describe(value)}")  # fmt: skip


def _response(obj: dict) -> dict | None:
    if obj.get("level") == "ERROR":
        return {"error": {"message": string(obj, "statusMessage") or "ERROR"}}
    output = obj.get("output")
    if output is None:
        return None
    if isinstance(output, list) and output:  # the answer among the messages: the last one
        output = output[-1]
    if isinstance(output, dict) and "choices" in output:
        response = output
    elif isinstance(output, str):
        response = {"choices": [{"message": {"role": "assistant", "content": output}}]}
    elif isinstance(output, dict):
        response = {"choices": [{"message": openai_message(output)}]}
    else:
        raise fail("output", f"expected the answer (a message, a chat completion or text), got {describe(output)}")
    usage = _usage(obj)
    return {**response, "usage": usage} if usage else response


def _usage(obj: dict) -> dict:
    for name, given, received, total in _USAGE:
        usage = an_object(obj, name) or {}
        tokens = {"prompt_tokens": count(usage.get(given)), "completion_tokens": count(usage.get(received)),
                  "total_tokens": count(usage.get(total))}  # fmt: skip
        if any(value is not None for value in tokens.values()):
            return tokens
    tokens = {"prompt_tokens": count(obj.get("promptTokens")), "completion_tokens": count(obj.get("completionTokens")),
              "total_tokens": count(obj.get("totalTokens"))}  # fmt: skip
    return tokens if any(value is not None for value in tokens.values()) else {}


def _metadata(obj: dict) -> dict:
    """The observation's own metadata, under the ids that place it in its trace."""
    metadata = dict(an_object(obj, "metadata") or {})
    for key, name in (("trace_id", LANGFUSE_KEY), ("observation_name", "name"),
                      ("parent_observation_id", "parentObservationId"), ("session_id", "sessionId")):  # fmt: skip
        if isinstance(obj.get(name), str) and obj[name]:
            metadata[key] = obj[name]
    return metadata
