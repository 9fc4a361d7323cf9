import orjson
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser


class OrjsonParser(BaseParser):
    """JSON bodies, parsed strictly: invalid UTF-8 and lone surrogates (which PostgreSQL cannot
    store) are rejected here with the position of the problem, instead of failing later."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        body = stream.read() if stream is not None else b""
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"Invalid JSON: {exc}") from None
