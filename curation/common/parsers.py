"""The API's JSON parser: strict, bounded in size, and able to read gzip-encoded bodies."""

import zlib
from typing import IO, Any

import orjson
from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError, UnsupportedMediaType
from rest_framework.parsers import BaseParser

from curation.logs.ingest import BodyError, body_read


class PayloadTooLarge(APIException):
    # Here, not in curation.common.apis: DRF imports this module while it builds APIView, so it must not
    # import rest_framework.views (a circular import).
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


_GZIP_ENCODINGS = {"gzip", "x-gzip"}
_CHUNK = 1 << 16


class OrjsonParser(BaseParser):
    """JSON bodies, parsed strictly: invalid UTF-8 and lone surrogates (which PostgreSQL cannot
    store) are rejected here with the position of the problem, instead of failing later.

    Every JSON endpoint goes through here, so this is where a body is held to LOGTUNE_MAX_BODY_BYTES:
    Django's DATA_UPLOAD_MAX_MEMORY_SIZE does not see the stream DRF reads. `Content-Encoding: gzip`
    (what log shippers send) is decompressed here too, and the limit holds for the decompressed size.
    """

    media_type = "application/json"

    def parse(self, stream: IO[bytes] | None, media_type: str | None = None, parser_context: Any = None) -> Any:
        request = (parser_context or {}).get("request")
        meta = request.META if request is not None else {}
        encoding = meta.get("HTTP_CONTENT_ENCODING", "").strip().lower()
        if encoding not in _GZIP_ENCODINGS | {"", "identity"}:
            raise UnsupportedMediaType(
                media_type or self.media_type,
                detail=f"Content-Encoding '{encoding}' is not supported: send the body as is, or gzip it.",
            )
        limit = settings.LOGTUNE_MAX_BODY_BYTES
        length = int(meta.get("CONTENT_LENGTH") or 0)
        if length > limit:
            raise PayloadTooLarge(f"Request body is {length} bytes; the limit is {limit}.")
        if stream is None:
            body = b""
        elif encoding in _GZIP_ENCODINGS:
            body = _gunzip(stream, limit)
        else:
            body = stream.read(limit + 1)
            if len(body) > limit:
                raise PayloadTooLarge(f"Request body is larger than {limit} bytes, the limit.")
        return self.decode(body)

    def decode(self, body: bytes) -> Any:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"Invalid JSON: {exc}") from None


class LogBatchParser(OrjsonParser):
    """The body of `POST /api/v1/logs`, read so that each log keeps its exact text (the original stored) and one
    log's invalid Unicode (a lone surrogate escape, bad UTF-8 bytes) is that log's affair: it is stored with U+FFFD
    in their place and a note, while the rest of the batch is read as usual. Returns a `curation.logs.ingest.Body`."""

    def decode(self, body: bytes) -> Any:
        try:
            return body_read(body)
        except BodyError as exc:
            raise ParseError(f"Invalid JSON: {exc}") from None


def _gunzip(stream: IO[bytes], limit: int) -> bytes:
    """The decompressed body, never holding more than `limit` + 1 bytes of it: a small gzip body can
    expand a thousandfold. Several gzip members one after the other (RFC 1952) are read as one body."""
    out = bytearray()
    decompressor = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    member_started = False
    pending = b""
    while chunk := pending or stream.read(_CHUNK):
        pending = b""
        member_started = True
        try:
            out += decompressor.decompress(chunk, limit + 1 - len(out))
        except zlib.error as exc:
            raise ParseError(f"Invalid gzip body: {exc}.") from None
        if len(out) > limit:
            raise PayloadTooLarge(f"Request body decompresses to more than {limit} bytes; the limit is {limit}.")
        if decompressor.eof:
            pending = decompressor.unused_data
            decompressor = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
            member_started = False
    if member_started:
        raise ParseError("Invalid gzip body: it ends before the compressed data does.")
    return bytes(out)
