"""OTLP/HTTP trace bodies, protobuf or JSON, as one OTLP JSON value: what the span reader reads and a log keeps.

Both encodings go through the protobuf message, so a body that is not an ExportTraceServiceRequest is refused
whichever way it came, and what is kept is the OTLP JSON encoding either way: lowerCamelCase field names, trace and
span ids as hex, enums as integers, 64-bit integers as strings.
"""

import base64
import binascii
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

PROTOBUF = "application/x-protobuf"
_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


class OtlpError(ValueError):
    """The body is not an OTLP trace export; str(err) says why."""


def export_from_protobuf(body: bytes) -> dict:
    message = ExportTraceServiceRequest()
    try:
        message.ParseFromString(body)
    except DecodeError as exc:
        raise OtlpError(f"Invalid OTLP protobuf body: {exc}") from None
    return _as_json(message)


def export_from_json(value: object) -> dict:
    """An OTLP JSON body (decoded), checked against the protobuf message; unknown fields are ignored, as OTLP asks."""
    if not isinstance(value, dict):
        raise OtlpError("Invalid OTLP JSON body: expected an object with 'resourceSpans'.")
    message = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(_ids(value, _hex_to_base64), message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise OtlpError(f"Invalid OTLP JSON body: {exc}") from None
    return _as_json(message)


def _as_json(message: ExportTraceServiceRequest) -> dict:
    return _ids(json_format.MessageToDict(message, use_integers_for_enums=True), _base64_to_hex)


def response_body(*, rejected: int, message: str, protobuf: bool) -> bytes | dict:
    """The ExportTraceServiceResponse: `partial_success` only when something was rejected or there is a warning."""
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    return response.SerializeToString() if protobuf else json_format.MessageToDict(response)


# --- ids: bytes in protobuf (base64 in its JSON mapping), hex in OTLP JSON --------------------------------------


def _ids(export: dict, convert: Any) -> dict:
    for resource_spans in _dicts(export.get("resourceSpans", export.get("resource_spans"))):
        for scope_spans in _dicts(resource_spans.get("scopeSpans", resource_spans.get("scope_spans"))):
            for span in _dicts(scope_spans.get("spans")):
                _convert(span, convert)
                for link in _dicts(span.get("links")):
                    _convert(link, convert)
    return export


def _dicts(items: object) -> list[dict]:
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _convert(obj: dict, convert: Any) -> None:
    for name in _ID_FIELDS:
        if isinstance(obj.get(name), str):
            obj[name] = convert(obj[name], name)


def _hex_to_base64(value: str, name: str) -> str:
    try:
        return base64.b64encode(bytes.fromhex(value)).decode()
    except ValueError:
        raise OtlpError(f"Invalid OTLP JSON body: {name} must be hex, got {value[:40]!r}.") from None


def _base64_to_hex(value: str, name: str) -> str:
    try:
        return base64.b64decode(value).hex()
    except binascii.Error:  # cannot happen for what MessageToDict wrote
        return value
