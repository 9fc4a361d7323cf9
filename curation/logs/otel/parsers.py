"""The OTLP endpoint's parsers: the API's body limit and gzip (OrjsonParser), then an OTLP trace export."""

from dataclasses import dataclass
from typing import Any

import orjson
from rest_framework.exceptions import ParseError

from curation.common.parsers import OrjsonParser
from curation.logs.otel.otlp import PROTOBUF, OtlpError, export_from_json, export_from_protobuf


@dataclass(slots=True)
class OtlpBody:
    export: dict  # OTLP JSON
    protobuf: bool  # how it came, and so how the answer goes


class OtlpJsonParser(OrjsonParser):
    def decode(self, body: bytes) -> Any:
        try:
            return OtlpBody(export=export_from_json(orjson.loads(body)), protobuf=False)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"Invalid JSON: {exc}") from None
        except OtlpError as exc:
            raise ParseError(str(exc)) from None


class OtlpProtobufParser(OrjsonParser):
    media_type = PROTOBUF

    def decode(self, body: bytes) -> Any:
        try:
            return OtlpBody(export=export_from_protobuf(body), protobuf=True)
        except OtlpError as exc:
            raise ParseError(str(exc)) from None
