"""Model fields of our own."""

import json
from typing import Any

from django.db import models
from psycopg.types.json import Json


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class OrderedJSONField(models.JSONField):
    """JSON whose objects keep their keys in the order they were written: PostgreSQL's `json` type, which stores
    the text as given, where `jsonb` re-orders keys (shortest first). A tool's parameter schema must come back
    out of an export in the order production sent it (`query, max_results, lang`, not `lang, query, ...`).

    The price: no jsonb operators or GIN indexes on these columns, which nothing queries by content (the search
    has its own column). SQLite stores JSON as text already."""

    def db_type(self, connection: Any) -> str | None:
        return "json" if connection.vendor == "postgresql" else super().db_type(connection)

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if connection.vendor != "postgresql":
            return super().get_db_prep_value(value, connection, prepared)
        if not prepared:
            value = self.get_prep_value(value)
        return Json(value, dumps=_dumps)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        # psycopg decodes the `json` type itself (in key order); jsonb and SQLite hand over text.
        if not isinstance(value, str):
            return value
        return super().from_db_value(value, expression, connection)
