"""Values no reader knows yet are kept verbatim: in the conversation, on the log's page, in the personal data
scan, and in the exports that have a place for them (the others count them as lost)."""

import json

from curation.datasets.export import export_preview, export_stream
from curation.datasets.services import dataset_add_logs
from curation.logs.ingest import parse_log
from curation.logs.services import logs_ingest
from curation.models import Dataset, LogEntry

SEARCH_RESULT = {
    "type": "search_result",
    "source": "https://kb.example/returns",
    "title": "Returns, ask bob@example.com",
    "content": [{"type": "text", "text": "Returns within 30 days."}],
}
SERVER_TOOL = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
ANTHROPIC = {
    "provider": "anthropic",
    "request": {
        "model": "claude-sonnet-4-5",
        "tools": [SERVER_TOOL],
        "messages": [
            {"role": "user", "content": "Can I return shoes?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "kb", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [SEARCH_RESULT]}]},
        ],
    },
    "response": {
        "type": "message",
        "content": [
            {"type": "server_tool_use", "id": "s1", "name": "web_search", "input": {"query": "returns"}},
            {"type": "text", "text": "Yes, within 30 days."},
        ],
        "stop_reason": "pause_turn",
    },
}
GPT5 = {
    "request": {
        "model": "gpt-5",
        "messages": [{"role": "user", "content": "Print 4", "x_client_trace": {"span": "a1"}}],
        "tools": [{"type": "custom", "custom": {"name": "code_exec", "format": {"type": "text"}}}],
    },
    "response": {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "custom", "custom": {"name": "code_exec", "input": "print(4)"}}
                    ],
                    "annotations": [{"type": "url_citation", "url_citation": {"url": "https://x.example"}}],
                },
                "finish_reason": "tool_calls",
            }
        ]
    },
}


def test_the_readers_keep_unknown_parts_tools_blocks_and_fields_verbatim():
    anthropic, gpt5 = parse_log(ANTHROPIC), parse_log(GPT5)

    assert anthropic.tools == [SERVER_TOOL]
    assert anthropic.messages[2] == {"role": "tool", "tool_call_id": "t1", "content": [SEARCH_RESULT]}
    assert anthropic.messages[-1]["content"] == [
        {"type": "server_tool_use", "id": "s1", "name": "web_search", "input": {"query": "returns"}},
        {"type": "text", "text": "Yes, within 30 days."},
    ]
    assert anthropic.finish_reason == "pause_turn"
    assert gpt5.messages[0]["x_client_trace"] == {"span": "a1"}
    assert gpt5.messages[-1]["annotations"][0]["type"] == "url_citation"
    assert gpt5.messages[-1]["tool_calls"][0]["custom"]["input"] == "print(4)"
    assert "print(4)" in gpt5.search_text and "Returns within 30 days." in anthropic.search_text


def test_personal_data_in_a_verbatim_part_is_found(project):
    logs_ingest(project=project, items=[ANTHROPIC])

    assert LogEntry.objects.get().pii == ["EMAIL"]


def test_the_log_page_shows_custom_calls_server_tools_and_verbatim_parts(client, viewer, project):
    logs_ingest(project=project, items=[ANTHROPIC, GPT5])
    anthropic, gpt5 = LogEntry.objects.order_by("id")
    client.force_login(viewer)

    gpt5_page = client.get(f"/p/{project.slug}/logs/{gpt5.pk}/").content.decode()
    anthropic_page = client.get(f"/p/{project.slug}/logs/{anthropic.pk}/").content.decode()

    assert "Tool call <strong>code_exec</strong>" in gpt5_page and "print(4)" in gpt5_page
    assert "<strong>web_search</strong>" in anthropic_page and "web_search_20250305 tool" in anthropic_page
    assert "<summary>search_result</summary>" in anthropic_page


def test_the_openai_export_carries_them_and_the_text_formats_count_them(project):
    logs_ingest(project=project, items=[ANTHROPIC, GPT5])
    dataset = Dataset.objects.create(project=project, name="New shapes")
    dataset_add_logs(dataset=dataset, logs=LogEntry.objects.all())

    first, second = (json.loads(line) for line in b"".join(export_stream(dataset=dataset, format="openai").chunks)
                     .splitlines())  # fmt: skip

    assert first["tools"] == [SERVER_TOOL] and first["messages"][2]["content"] == [SEARCH_RESULT]
    assert second["messages"][-1]["tool_calls"][0]["type"] == "custom"
    losses = export_preview(dataset=dataset, format="sharegpt").losses
    assert losses["tools other than functions dropped"] == 2
    assert losses["search_result parts dropped"] == 1
    assert losses["other message fields dropped"] == 1
