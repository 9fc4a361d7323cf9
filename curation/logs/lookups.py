"""Text lookups that use our PostgreSQL search indexes (migration 0003) whatever alias Django gives
the table, so a searched queryset can be nested in another query (pk__in=…, Exists, derived tables).

    search_text__text_match="refund policy"   words in any order (stored tsvector) or the exact substring
    search_text__trgm_icontains="退款"          case-insensitive substring through the trigram index

Elsewhere (SQLite) both fall back to a plain case-insensitive LIKE.

`queryset_sql` gives a queryset's SQL for raw statements that nest it (INSERT … SELECT, counts in one round trip).
"""

import json

from django.db.models import BigAutoField, Lookup, QuerySet, TextField
from django.db.models.lookups import IContains


class TrigramIContains(IContains):
    """`icontains` written as ILIKE on PostgreSQL: Django's UPPER(col) LIKE UPPER(…) cannot use a trigram index."""

    lookup_name = "trgm_icontains"

    def as_sql(self, compiler, connection):
        return IContains(self.lhs, self.rhs).as_sql(compiler, connection)

    def as_postgresql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} ILIKE {rhs}", [*lhs_params, *rhs_params]


class TextMatch(Lookup):
    """Words of the text (the 'simple' configuration: no stemming, any language) or its exact substring
    (CJK, code). Only valid on LogEntry.search_text, whose stored tsvector sits beside it."""

    lookup_name = "text_match"

    def as_sql(self, compiler, connection):
        substring = TrigramIContains(self.lhs, self.rhs)
        return substring.as_sql(compiler, connection)

    def as_postgresql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        if not lhs.endswith('"search_text"'):
            raise ValueError("text_match works on LogEntry.search_text only")
        vector = lhs.removesuffix('"search_text"') + '"search_vector"'
        substring, substring_params = TrigramIContains(self.lhs, self.rhs).as_postgresql(compiler, connection)
        return (
            f"({vector} @@ websearch_to_tsquery('simple', %s) OR {substring})",
            [*lhs_params, self.rhs, *substring_params],
        )


class AnyOf(Lookup):
    """`pk__any_of=[ids]`: the ids as one parameter (an array on PostgreSQL, JSON on SQLite) rather than one per id.
    `pk__in` with the 10,000 ids of a search by meaning costs more to write and parse than to run (a second on a
    million logs, bench/explore.py)."""

    lookup_name = "any_of"
    prepare_rhs = False

    def get_db_prep_lookup(self, value, connection):
        return "%s", [[int(pk) for pk in value]]

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        _, (ids,) = self.get_db_prep_lookup(self.rhs, connection)
        return f"{lhs} IN (SELECT value FROM json_each(%s))", [*lhs_params, json.dumps(ids)]  # noqa: S608 (a column Django wrote)

    def as_postgresql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        _, (ids,) = self.get_db_prep_lookup(self.rhs, connection)
        # A semi-join on the unnested array: PostgreSQL estimates it by the array's length and probes the primary key,
        # where `= ANY(array)` beside another condition led it to filter every row of the project.
        return f"{lhs} IN (SELECT unnest(%s::bigint[]))", [*lhs_params, ids]


def register() -> None:
    TextField.register_lookup(TrigramIContains)
    TextField.register_lookup(TextMatch)
    BigAutoField.register_lookup(AnyOf)


def queryset_sql(queryset: QuerySet) -> tuple[str, tuple]:
    """The SQL and parameters of `queryset`, to nest in a raw statement. Query.sql_with_params raises
    EmptyResultSet for a filter Django knows matches nothing (`min_tokens` past the column's range): a 500 where
    the ORM itself would return no rows. Here that filter is written `0 = 1`, so the statement finds no rows too."""
    return queryset.query.get_compiler(using=queryset.db, elide_empty=False).as_sql()
