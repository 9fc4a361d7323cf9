"""The benchmark's logs as OpenTelemetry GenAI spans: one OTLP/HTTP `ExportTraceServiceRequest` (protobuf) per batch.

Each Chat Completions or Anthropic Messages log of `LogMaker` becomes the span an instrumented client records for
that call, with the GenAI semantic conventions' JSON attributes: `gen_ai.system_instructions`,
`gen_ai.input.messages` and `gen_ai.output.messages` (messages of typed parts: text, tool calls, tool results),
`gen_ai.tool.definitions`, the models, the token counts and the finish reason; an error answer is a span with
status ERROR. Times come from the log's `created_at` and `latency_ms`.
"""

import random
from datetime import datetime

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

_START = int(datetime(2026, 1, 1).timestamp() * 1e9)


def export_request(logs: list[dict], *, rng: random.Random) -> bytes:
    """One export of the logs' spans, as an instrumented service would send them, serialised."""
    resource = Resource(attributes=[_attribute("service.name", "bench-app")])
    scope = InstrumentationScope(name="opentelemetry.instrumentation.genai", version="0.1")
    spans = [_span(log, rng) for log in logs]
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(scope=scope, spans=spans)])]
    ).SerializeToString()


def _span(log: dict, rng: random.Random) -> Span:
    request, response = log["request"], log.get("response") or {}
    anthropic = log["provider"] == "anthropic"
    start = _START + rng.randint(0, 90 * 86400) * 10**9
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic" if anthropic else "openai",
        "gen_ai.request.model": request["model"],
    }
    system, messages = _anthropic_input(request) if anthropic else _openai_input(request)
    if system:
        attributes["gen_ai.system_instructions"] = orjson.dumps([{"type": "text", "content": system}]).decode()
    attributes["gen_ai.input.messages"] = orjson.dumps(messages).decode()
    if request.get("tools"):
        attributes["gen_ai.tool.definitions"] = orjson.dumps(_tools(request["tools"], anthropic)).decode()
    status = Status()
    if "error" in response:
        status = Status(code=Status.STATUS_CODE_ERROR, message=response["error"]["message"])
        attributes["http.response.status_code"] = log["status_code"]
    else:
        output, finish = _anthropic_output(response) if anthropic else _openai_output(response)
        attributes["gen_ai.output.messages"] = orjson.dumps(
            [{"role": "assistant", "parts": output, "finish_reason": finish}]
        ).decode()
        attributes["gen_ai.response.model"] = response["model"]
        attributes["gen_ai.response.finish_reasons"] = [finish]
        usage = response["usage"]
        attributes["gen_ai.usage.input_tokens"] = usage.get("prompt_tokens", usage.get("input_tokens"))
        attributes["gen_ai.usage.output_tokens"] = usage.get("completion_tokens", usage.get("output_tokens"))
    return Span(
        trace_id=rng.randbytes(16), span_id=rng.randbytes(8), name=f"chat {request['model']}",
        kind=Span.SPAN_KIND_CLIENT, start_time_unix_nano=start,
        end_time_unix_nano=start + log["latency_ms"] * 10**6,
        attributes=[_attribute(key, value) for key, value in attributes.items()], status=status,
    )  # fmt: skip


def _openai_input(request: dict) -> tuple[str, list[dict]]:
    system, messages = "", []
    for message in request["messages"]:
        if message["role"] == "system":
            system = message["content"]
        elif message["role"] == "tool":
            part = {"type": "tool_call_response", "id": message["tool_call_id"], "response": message["content"]}
            messages.append({"role": "tool", "parts": [part]})
        elif message.get("tool_calls"):
            messages.append({"role": "assistant", "parts": [_call(call) for call in message["tool_calls"]]})
        else:
            messages.append({"role": message["role"], "parts": [{"type": "text", "content": message["content"]}]})
    return system, messages


def _call(call: dict) -> dict:
    function = call["function"]
    return {
        "type": "tool_call",
        "id": call["id"],
        "name": function["name"],
        "arguments": orjson.loads(function["arguments"]),
    }


def _openai_output(response: dict) -> tuple[list[dict], str]:
    choice = response["choices"][0]
    message = choice["message"]
    if message.get("tool_calls"):
        return [_call(call) for call in message["tool_calls"]], choice["finish_reason"]
    return [{"type": "text", "content": message["content"]}], choice["finish_reason"]


def _anthropic_input(request: dict) -> tuple[str, list[dict]]:
    messages = []
    for message in request["messages"]:
        content = message["content"]
        if isinstance(content, str):
            messages.append({"role": message["role"], "parts": [{"type": "text", "content": content}]})
            continue
        parts, role = [], message["role"]
        for block in content:
            if block["type"] == "tool_use":
                parts.append(
                    {"type": "tool_call", "id": block["id"], "name": block["name"], "arguments": block["input"]}
                )
            elif block["type"] == "tool_result":
                parts.append({"type": "tool_call_response", "id": block["tool_use_id"], "response": block["content"]})
                role = "tool"
        messages.append({"role": role, "parts": parts})
    return request.get("system", ""), messages


def _anthropic_output(response: dict) -> tuple[list[dict], str]:
    parts = []
    for block in response["content"]:
        if block["type"] == "text":
            parts.append({"type": "text", "content": block["text"]})
        else:
            parts.append({"type": "tool_call", "id": block["id"], "name": block["name"], "arguments": block["input"]})
    return parts, response["stop_reason"]


def _tools(tools: list[dict], anthropic: bool) -> list[dict]:
    if anthropic:
        return [{"type": "function", "name": t["name"], "parameters": t["input_schema"]} for t in tools]
    return [{"type": "function", **tool["function"]} for tool in tools]


def _attribute(key: str, value: object) -> KeyValue:
    if isinstance(value, bool) or not isinstance(value, int | str | list):
        raise TypeError(f"{key}: {value!r}")
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, list):
        return KeyValue(key=key, value=AnyValue(array_value={"values": [AnyValue(string_value=v) for v in value]}))
    return KeyValue(key=key, value=AnyValue(string_value=value))
