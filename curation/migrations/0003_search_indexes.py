"""Text search on PostgreSQL: a stored tsvector ('simple' configuration: no stemming, so it works for
every language) for words, and a trigram index for substrings (CJK text, code, identifiers).
SQLite, the embedded default, searches with LIKE and needs neither."""

from django.db import migrations

FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    # left(): a tsvector is limited to 1 MB; a log longer than that is still found by its first 200k characters.
    """ALTER TABLE curation_logentry ADD COLUMN search_vector tsvector
       GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, left(search_text, 200000))) STORED""",
    "CREATE INDEX logentry_search_vector ON curation_logentry USING gin (search_vector)",
    "CREATE INDEX logentry_search_trgm ON curation_logentry USING gin (search_text gin_trgm_ops)",
    "CREATE INDEX datasetentry_search_trgm ON curation_datasetentry USING gin (search_text gin_trgm_ops)",
    # Metadata key:value filters use jsonb containment (@>).
    "CREATE INDEX logentry_metadata ON curation_logentry USING gin (metadata jsonb_path_ops)",
]
BACKWARD = [
    "DROP INDEX IF EXISTS logentry_metadata",
    "DROP INDEX IF EXISTS datasetentry_search_trgm",
    "DROP INDEX IF EXISTS logentry_search_trgm",
    "DROP INDEX IF EXISTS logentry_search_vector",
    "ALTER TABLE curation_logentry DROP COLUMN IF EXISTS search_vector",
]


# lz4 compresses the large JSON and text values several times faster than PostgreSQL's default pglz.
LZ4_COLUMNS = ("original", "messages", "search_text")
LZ4_AVAILABLE = "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"


def _run(statements: list[str], compression: str):  # noqa: ANN202
    def run(apps, schema_editor) -> None:  # noqa: ANN001
        if schema_editor.connection.vendor != "postgresql":
            return
        for statement in statements:
            schema_editor.execute(statement)
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(LZ4_AVAILABLE)
            if cursor.fetchone()[0]:
                for column in LZ4_COLUMNS:
                    schema_editor.execute(
                        f"ALTER TABLE curation_logentry ALTER COLUMN {column} SET COMPRESSION {compression}"
                    )

    return run


class Migration(migrations.Migration):
    dependencies = [("curation", "0002_datasets_views_audit")]

    operations = [migrations.RunPython(_run(FORWARD, "lz4"), _run(BACKWARD, "pglz"))]
