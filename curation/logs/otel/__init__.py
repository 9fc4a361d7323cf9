"""OpenTelemetry in: the OTLP/HTTP traces endpoint, whose GenAI spans become logs (curation/logs/ingest/otel.py)."""
