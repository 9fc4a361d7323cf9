"""Nothing altered: an original comes back byte for byte, and a tool schema keeps the order production sent it in,
through ingestion, the log's page and API, datasets, every export and snapshots."""

import html
import io
import json

import pyarrow.parquet as pq
import pytest

from curation.datasets.export import export_preview, export_stream, snapshot_create
from curation.datasets.export.formats import PARALLEL_TOOL_CALLS_DROPPED, TOOL_DEFINITIONS_DROPPED, TOOL_ERRORS_DROPPED
from curation.datasets.services import dataset_add_logs
from curation.logs.services import logs_ingest
from curation.models import Dataset, LogEntry

ORDER = ["query", "max_results", "lang", "region", "safe_search"]  # jsonb would hand back lang, query, region...
TOOL_LOG = (
    '{"provider": "openai", "external_id": "k-1",\n'
    ' "request": {"model": "gpt-4o", "parallel_tool_calls": false,\n'
    '   "messages": [{"role": "user", "content": "Find tide tables, caf\\u00e9 Brest"}],\n'
    '   "tools": [{"type": "function", "function": {"name": "search", "description": "Web search", "strict": true,\n'
    '     "parameters": {"type": "object", "additionalProperties": false, "required": ["query"],\n'
    '       "properties": {"query": {"type": "string"}, "max_results": {"type": "integer", "maximum": 1.0e2},\n'
    '                      "lang": {"type": "string"}, "region": {"type": "string"},\n'
    '                      "safe_search": {"type": "boolean"}}}}}]},\n'
    ' "response": {"choices": [{"message": {"role": "assistant", "content": "Here they are."},\n'
    '                          "finish_reason": "stop"}]}}'
)  # fmt: skip
ERROR_RESULT_LOG = {
    "provider": "anthropic",
    "request": {
        "model": "claude-haiku-4-5",
        "messages": [
            {"role": "user", "content": "Read a.txt"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read", "input": {"p": "a"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ENOENT",
                                          "is_error": True}]},
        ],
    },
    "response": {"type": "message", "content": [{"type": "text", "text": "a.txt does not exist."}]},
}  # fmt: skip


def properties_order(tools: list[dict]) -> list[str]:
    return list(tools[0]["function"]["parameters"]["properties"])


@pytest.fixture
def stored(key_client, project) -> LogEntry:
    response = key_client.post("/api/v1/logs", data=TOOL_LOG.encode(), content_type="application/json")
    assert response.status_code == 200, response.content
    return LogEntry.objects.get(external_id="k-1")


def test_the_original_comes_back_byte_for_byte(stored, key_client):
    response = key_client.get(f"/api/v1/logs/{stored.pk}/original")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response.content == TOOL_LOG.encode()


def test_the_api_and_the_stored_conversation_keep_the_schema_order(stored, key_client):
    detail = key_client.get(f"/api/v1/logs/{stored.pk}").json()

    assert properties_order(detail["original"]["request"]["tools"]) == ORDER
    assert properties_order(detail["tools"]) == ORDER
    assert detail["tools"][0]["function"]["strict"] is True
    assert detail["options"] == {"parallel_tool_calls": False}
    stored.refresh_from_db()
    assert properties_order(stored.tools) == ORDER


def test_the_log_page_shows_the_original_as_sent(stored, client, owner):
    client.force_login(owner)

    page = client.get(f"/p/{stored.project.slug}/logs/{stored.pk}/").content.decode()

    assert html.escape(TOOL_LOG) in page
    assert f"/api/v1/logs/{stored.pk}/original" in page


def test_every_export_and_the_snapshot_keep_the_schema_order(stored, project):
    dataset = Dataset.objects.create(project=project, name="Search")
    assert dataset_add_logs(dataset=dataset, logs=LogEntry.objects.filter(pk=stored.pk)) == 1

    openai_line = json.loads(b"".join(export_stream(dataset=dataset, format="openai").chunks))
    assert properties_order(openai_line["tools"]) == ORDER
    assert openai_line["tools"][0]["function"]["strict"] is True
    assert openai_line["parallel_tool_calls"] is False
    sharegpt = json.loads(b"".join(export_stream(dataset=dataset, format="sharegpt").chunks))
    assert properties_order(json.loads(sharegpt["tools"])) == ORDER
    parquet = export_stream(dataset=dataset, format="parquet")
    table = pq.read_table(io.BytesIO(b"".join(parquet.chunks))).to_pylist()
    assert properties_order([json.loads(tool) for tool in table[0]["tools"]]) == ORDER
    assert table[0]["parallel_tool_calls"] is False
    for text_format in ("alpaca", "prompt_completion"):
        losses = export_preview(dataset=dataset, format=text_format).losses
        assert {TOOL_DEFINITIONS_DROPPED, PARALLEL_TOOL_CALLS_DROPPED} <= losses.keys()
    snapshot = snapshot_create(dataset=dataset)
    with snapshot.file.open("rb") as file:
        assert properties_order(json.loads(file.readline())["tools"]) == ORDER


def test_a_tool_results_error_flag_reaches_the_openai_line_and_is_counted_where_it_cannot_go(project):
    logs_ingest(project=project, items=[ERROR_RESULT_LOG])
    dataset = Dataset.objects.create(project=project, name="Errors")
    dataset_add_logs(dataset=dataset, logs=LogEntry.objects.all())

    line = json.loads(b"".join(export_stream(dataset=dataset, format="openai").chunks))

    assert line["messages"][2] == {"role": "tool", "tool_call_id": "t1", "content": "ENOENT", "is_error": True}
    for lossy in ("sharegpt", "alpaca", "prompt_completion"):
        assert export_preview(dataset=dataset, format=lossy).losses[TOOL_ERRORS_DROPPED] == 1
