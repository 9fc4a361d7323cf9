"""OpenTelemetry in: the OTLP/HTTP traces endpoint, driven by the OpenTelemetry SDK's own exporter."""

import gzip
import json

import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from curation.logs.ingest import parse_log
from curation.models import LogEntry

pytestmark = pytest.mark.django_db

URL = "/api/v1/otel/v1/traces"
PROTOBUF = "application/x-protobuf"

NEW_INPUT = [
    {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
    {"role": "assistant",
     "parts": [{"type": "tool_call", "id": "call_1", "name": "weather", "arguments": {"city": "Paris"}}]},
    {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "sunny, 21C"}]},
]  # fmt: skip
NEW_OUTPUT = [{"role": "assistant", "parts": [{"type": "text", "content": "Sunny, 21C."}], "finish_reason": "stop"}]


def emit_spans(provider: TracerProvider) -> None:
    """One request of an app: a non-GenAI parent span around three model calls, one per encoding, and a failure."""
    tracer = provider.get_tracer("app.llm")
    with tracer.start_as_current_span("handle /ask"):
        with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as span:  # newer: JSON attributes
            span.set_attributes({
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
                "gen_ai.usage.input_tokens": 42, "gen_ai.usage.output_tokens": 7,
                "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}]),
                "gen_ai.input.messages": json.dumps(NEW_INPUT),
                "gen_ai.output.messages": json.dumps(NEW_OUTPUT),
            })  # fmt: skip
        with tracer.start_as_current_span("chat claude", kind=SpanKind.CLIENT) as span:  # older: one event a message
            span.set_attributes({
                "gen_ai.operation.name": "chat", "gen_ai.system": "anthropic",
                "gen_ai.request.model": "claude-sonnet-4", "gen_ai.usage.input_tokens": 10,
                "gen_ai.usage.output_tokens": 3, "gen_ai.response.finish_reasons": ("end_turn",),
            })  # fmt: skip
            span.add_event("gen_ai.system.message", {"content": "You add numbers."})
            span.add_event("gen_ai.user.message", {"content": "2+2?"})
            span.add_event("gen_ai.choice", {"index": 0, "finish_reason": "end_turn", "message": '{"content": "4"}'})
        with tracer.start_as_current_span("openai.chat", kind=SpanKind.CLIENT) as span:  # OpenLLMetry
            span.set_attributes({
                "llm.request.type": "chat", "gen_ai.system": "OpenAI", "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "Capital of France?",
                "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "Paris.",
                "gen_ai.completion.0.finish_reason": "stop",
                "gen_ai.usage.prompt_tokens": 5, "gen_ai.usage.completion_tokens": 2,
            })  # fmt: skip
        with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as span:  # a failed call
            span.set_attributes({
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
                "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]),
                "error.type": "RateLimitError",
            })  # fmt: skip
            span.set_status(Status(StatusCode.ERROR, "Rate limit reached for gpt-4o"))


def recorded_spans() -> list:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "ask-app"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    emit_spans(provider)
    return list(memory.get_finished_spans())


def post_protobuf(client, spans, **extra):
    body = encode_spans(spans).SerializeToString()
    return client.post(URL, data=body, content_type=PROTOBUF, **extra)


def by_name(project) -> dict[str, LogEntry]:
    return {log.metadata["span_name"] + ":" + log.model: log for log in LogEntry.objects.filter(project=project)}


@pytest.mark.django_db(transaction=True)
def test_an_exporter_configured_by_the_documented_env_vars_stores_each_genai_span_as_a_log(
    live_server, project, api_key, monkeypatch
):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"{live_server.url}/api/v1/otel")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{api_key}")
    provider = TracerProvider(resource=Resource.create({"service.name": "ask-app"}))
    exporter = OTLPSpanExporter()  # http/protobuf, reading the env vars; it appends /v1/traces
    assert exporter._endpoint == f"{live_server.url}/api/v1/otel/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(exporter))
    emit_spans(provider)
    assert provider.force_flush(10_000)
    provider.shutdown()

    logs = by_name(project)
    assert sorted(logs) == ["chat claude:claude-sonnet-4", "chat gpt-4o:gpt-4o", "openai.chat:gpt-4o-mini"]
    assert LogEntry.objects.filter(project=project).count() == 4  # the two gpt-4o calls; the parent left out
    new = LogEntry.objects.get(project=project, status="success", model="gpt-4o")
    assert new.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"},
        {"role": "assistant", "content": "Sunny, 21C."},
    ]  # fmt: skip
    assert (new.provider, new.format, new.finish_reason) == ("openai", "otel_genai", "stop")
    assert (new.prompt_tokens, new.completion_tokens, new.total_tokens) == (42, 7, 49)
    assert new.latency_ms is not None and new.latency_ms >= 0
    trace_id, span_id = new.external_id.split(":")
    assert len(trace_id) == 32 and len(span_id) == 16
    assert new.metadata["trace_id"] == trace_id and new.metadata["span_id"] == span_id
    assert new.metadata["service_name"] == "ask-app" and len(new.metadata["parent_span_id"]) == 16
    original = orjson.loads(new.original)
    span = original["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert (span["traceId"], span["spanId"], span["name"]) == (trace_id, span_id, "chat gpt-4o")

    older = logs["chat claude:claude-sonnet-4"]
    assert older.messages == [
        {"role": "system", "content": "You add numbers."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
    ]
    assert (older.provider, older.finish_reason, older.prompt_tokens, older.completion_tokens) == (
        "anthropic", "end_turn", 10, 3,
    )  # fmt: skip
    indexed = logs["openai.chat:gpt-4o-mini"]
    assert indexed.messages == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
    ]
    assert (indexed.provider, indexed.prompt_tokens, indexed.completion_tokens) == ("openai", 5, 2)
    failed = LogEntry.objects.get(project=project, status="error")
    assert failed.error_message == "Rate limit reached for gpt-4o"
    assert failed.messages == [{"role": "user", "content": "hi"}]


def test_the_answer_says_how_many_spans_were_left_out_and_a_span_sent_again_is_a_duplicate(key_client, project):
    spans = recorded_spans()

    first = post_protobuf(key_client, spans)
    again = post_protobuf(key_client, spans)

    assert first.status_code == again.status_code == 200, first.content
    assert first["Content-Type"] == PROTOBUF
    answer = ExportTraceServiceResponse.FromString(first.content)
    assert answer.partial_success.rejected_spans == 0
    assert answer.partial_success.error_message == "1 of 5 spans are not GenAI model calls and were not stored"
    assert ExportTraceServiceResponse.FromString(again.content) == answer
    assert LogEntry.objects.filter(project=project).count() == 4


def test_a_genai_span_that_cannot_be_read_is_rejected_by_count_and_reason(key_client, project):
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("chat gpt-4o") as span:  # content capture off: nothing to train on
        span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"})
    with tracer.start_as_current_span("embeddings") as span:
        span.set_attributes({"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "text-embedding-3"})

    response = post_protobuf(key_client, memory.get_finished_spans())

    assert response.status_code == 200
    answer = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert answer.rejected_spans == 1
    assert answer.error_message.startswith("1 of 2 spans are not GenAI model calls and were not stored. 1 GenAI")
    assert "no input messages in the span" in answer.error_message
    assert not LogEntry.objects.filter(project=project).exists()


def test_a_project_that_keeps_unreadable_logs_keeps_such_a_span_once(key_client, project):
    project.keep_unreadable = True
    project.save()
    body = otlp_json()
    attributes = body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]
    attributes[:] = [attribute for attribute in attributes if "messages" not in attribute["key"]]

    for _ in range(2):
        response = key_client.post(URL, data=orjson.dumps(body), content_type="application/json")
        assert response.status_code == 200
        said = response.json()["partialSuccess"]
        assert "rejectedSpans" not in said  # stored all the same
        assert said["errorMessage"].startswith("1 GenAI spans kept as unreadable logs: span 5b8efff7")

    log = LogEntry.objects.get(project=project)
    assert (log.status, log.model, log.latency_ms) == ("unreadable", "gpt-4o-mini", 812)
    assert log.external_id == "5b8efff798038103d269b633813fc60c:eee19b7ec3c1b174"
    assert "no input messages in the span" in log.error_message


def otlp_json() -> dict:
    """An OTLP JSON body as the specification writes it: hex ids, lowerCamelCase, 64-bit integers as strings."""
    attributes = [
        {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
        {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
        {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "9"}},
        {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 1}},
        {"key": "gen_ai.input.messages",
         "value": {"stringValue": '[{"role":"user","parts":[{"type":"text","content":"2+2?"}]}]'}},
        {"key": "gen_ai.output.messages",
         "value": {"stringValue": '[{"role":"assistant","parts":[{"type":"text","content":"4"}],'
                                  '"finish_reason":"stop"}]'}},
    ]  # fmt: skip
    span = {
        "traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174", "name": "chat gpt-4o-mini",
        "kind": 3, "startTimeUnixNano": "1756720800000000000", "endTimeUnixNano": "1756720800812000000",
        "attributes": attributes, "status": {},
    }  # fmt: skip
    return {
        "resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"scope": {"name": "x"}, "spans": [span]}]}]
    }


def test_it_reads_otlp_json_gzipped_and_answers_in_json(key_client, project):
    body = gzip.compress(orjson.dumps(otlp_json()))

    response = key_client.post(URL, data=body, content_type="application/json", HTTP_CONTENT_ENCODING="gzip")

    assert response.status_code == 200, response.content
    assert response.json() == {}
    log = LogEntry.objects.get(project=project)
    assert log.external_id == "5b8efff798038103d269b633813fc60c:eee19b7ec3c1b174"
    assert log.messages == [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    assert (log.model, log.prompt_tokens, log.completion_tokens, log.latency_ms) == ("gpt-4o-mini", 9, 1, 812)
    assert log.created_at.isoformat() == "2025-09-01T10:00:00+00:00"
    # The original is read again like any other log (reparse_logs), and gives the same conversation.
    assert parse_log(log.original_value).messages == log.messages


def test_a_json_answer_carries_partial_success(key_client, project):
    body = otlp_json()
    body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"] = []

    response = key_client.post(URL, data=orjson.dumps(body), content_type="application/json")

    assert response.status_code == 200
    assert response.json() == {
        "partialSuccess": {"errorMessage": "1 of 1 spans are not GenAI model calls and were not stored"}
    }


def test_it_refuses_a_wrong_key(client, project):
    response = client.post(URL, data=b"", content_type=PROTOBUF, HTTP_AUTHORIZATION="Bearer lt_00000000_nope")

    assert response.status_code == 401


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (PROTOBUF, b"\xff\xff\xff not protobuf"),
        ("application/json", b'{"resourceSpans": "no"}'),
        ("application/json", b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}'),
        ("application/json", b"not json"),
        ("application/json", b"[]"),
    ],
)
def test_a_body_that_is_not_an_otlp_export_is_a_400(key_client, project, content_type, body):
    response = key_client.post(URL, data=body, content_type=content_type)

    assert response.status_code == 400, response.content
    assert response.json()["detail"]


def test_another_content_type_is_a_415(key_client, project):
    response = key_client.post(URL, data=b"hello", content_type="text/plain")

    assert response.status_code == 415


def test_the_body_limit_of_logs_holds(key_client, project, settings):
    settings.LOGTUNE_MAX_BODY_BYTES = 100
    body = gzip.compress(orjson.dumps(otlp_json()))  # small compressed, over the limit once decompressed

    response = key_client.post(URL, data=body, content_type="application/json", HTTP_CONTENT_ENCODING="gzip")

    assert response.status_code == 413


def test_it_keeps_the_protobuf_json_mapping_out_of_stored_ids(key_client, project):
    spans = recorded_spans()[:1]
    mapped = json_format.MessageToDict(encode_spans(spans))  # base64 ids: what a careless JSON sender would send

    response = key_client.post(URL, data=orjson.dumps(mapped), content_type="application/json")

    assert response.status_code == 400
    assert "must be hex" in response.json()["detail"]


def test_the_older_events_carry_tool_calls_and_results_in_attributes_or_as_json():
    def text(value: str) -> dict:
        return {"stringValue": value}

    events = [
        {"name": "gen_ai.user.message", "attributes": [{"key": "content", "value": text("Weather?")}]},
        {"name": "gen_ai.assistant.message", "attributes": [{"key": "tool_calls", "value": text(
            '[{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": {"city": "Paris"}}}]'
        )}]},
        {"name": "gen_ai.tool.message",
         "attributes": [{"key": "gen_ai.event.content", "value": text('{"content": "sunny", "id": "c1"}')}]},
        {"name": "gen_ai.choice", "attributes": [
            {"key": "message", "value": {"kvlistValue": {"values": [{"key": "content", "value": text("Sunny.")}]}}},
            {"key": "finish_reason", "value": text("stop")},
        ]},
    ]  # fmt: skip
    span = {
        "traceId": "0af7651916cd43dd8448eb211c80319c",
        "spanId": "b7ad6b7169203331",
        "name": "chat",
        "events": events,
    }

    log = parse_log({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})

    assert log.messages == [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "assistant", "content": "Sunny."},
    ]  # fmt: skip
    assert (log.finish_reason, log.external_id) == ("stop", "0af7651916cd43dd8448eb211c80319c:b7ad6b7169203331")
