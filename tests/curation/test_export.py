"""Exports: each format's exact lines and what it reports lost, batching, splits, snapshots and the CLI."""

import hashlib
import io
import json

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command

from curation.datasets.export import export_preview, export_stream, snapshot_build, snapshot_create
from curation.datasets.export import services as export_service
from curation.datasets.export import snapshots as snapshot_service
from curation.datasets.export.columns import MESSAGE_FIELDS, message_from_columns
from curation.datasets.export.preference import ORIGINAL_REDACTED, PROMPT_EDITED
from curation.datasets.export.preference import SKIPPED_ANSWER_SAME as ANSWER_SAME
from curation.datasets.export.preference import SKIPPED_NO_ORIGINAL as NO_ORIGINAL
from curation.datasets.export.preference import SKIPPED_ONLY_REDACTED as ONLY_REDACTED
from curation.datasets.services import dataset_add_logs, entry_update
from curation.logs.services import logs_ingest
from curation.models import AuditEvent, Dataset, DatasetEntry, DatasetSnapshot, LogEntry
from tests.factories import DatasetEntryFactory, DatasetFactory

pytestmark = pytest.mark.django_db

CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather by city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
# A system prompt, a user turn with an image, a tool call round trip (the call's turn not trained on),
# and the final answer.
WEATHER = [
    {"role": "system", "content": "You are a weather bot."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is the weather where this was taken?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/paris.jpg"}},
        ],
    },
    {"role": "assistant", "content": None, "tool_calls": [CALL], "weight": 0},
    {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"},
    {"role": "assistant", "content": "It is 18 °C and sunny in Paris."},
]
CALL_TEXT = '<tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call>'


def line(row: dict) -> str:
    """A JSONL line as the exporter writes it: compact, UTF-8, keys in the given order."""
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


def export_lines(dataset: Dataset, format: str, split: str | None = None) -> tuple[list[str], dict]:
    export = export_stream(dataset=dataset, format=format, split=split)
    body = b"".join(export.chunks).decode()
    return body.splitlines(), export.report.as_dict()


@pytest.fixture
def weather_bot(project) -> Dataset:
    """The dataset named Weather bot, empty: each test adds the entries it exports."""
    return DatasetFactory(project=project, name="Weather bot")


@pytest.fixture
def weather(weather_bot) -> DatasetEntry:
    """The WEATHER conversation with its TOOLS, in the Weather bot dataset."""
    return DatasetEntryFactory(dataset=weather_bot, messages=WEATHER, tools=TOOLS)


def test_openai_keeps_tool_calls_images_and_weights(weather_bot, weather):
    lines, report = export_lines(weather_bot, "openai")

    assert lines == [line({"messages": WEATHER, "tools": TOOLS})]
    assert report == {
        "format": "openai", "rows_read": 1, "rows_written": 1, "rows_skipped": 0, "lossless": True, "losses": {},
    }  # fmt: skip


def test_openai_leaves_tools_out_when_there_are_none(weather_bot):
    DatasetEntryFactory(dataset=weather_bot, messages=[{"role": "user", "content": "hi"}])

    lines, _ = export_lines(weather_bot, "openai")

    assert lines == ['{"messages":[{"role":"user","content":"hi"}]}']


def test_sharegpt_turns_tool_calls_into_function_call_and_observation_turns(weather_bot, weather):
    lines, report = export_lines(weather_bot, "sharegpt")

    conversations = [
        {"from": "system", "value": "You are a weather bot."},
        {"from": "human", "value": "What is the weather where this was taken?"},
        {"from": "function_call", "value": '{"name":"get_weather","arguments":{"city":"Paris"}}'},
        {"from": "observation", "value": "18 C, sunny"},
        {"from": "gpt", "value": "It is 18 °C and sunny in Paris."},
    ]
    assert lines == [line({"conversations": conversations, "tools": line(TOOLS)})]
    assert report["losses"] == {"images dropped": 1, "message weights dropped": 1}
    assert report["rows_written"] == 1


def test_alpaca_puts_the_turns_between_instruction_and_output_into_input(weather_bot, weather):
    lines, report = export_lines(weather_bot, "alpaca")

    assert lines == [
        line(
            {
                "instruction": "What is the weather where this was taken?",
                "input": f"Assistant: {CALL_TEXT}\n\nTool: 18 C, sunny",
                "output": "It is 18 °C and sunny in Paris.",
                "system": "You are a weather bot.",
            }
        )
    ]
    assert report["losses"] == {
        "extra turns merged into input": 1,
        "images dropped": 1,
        "message weights dropped": 1,
        "tool calls written as text": 1,
        "tool definitions dropped": 1,
    }


def test_prompt_completion_renders_the_conversation_before_the_last_reply_as_labelled_text(weather_bot, weather):
    lines, report = export_lines(weather_bot, "prompt_completion")

    prompt = (
        "System: You are a weather bot.\n\nUser: What is the weather where this was taken?\n\n"
        f"Assistant: {CALL_TEXT}\n\nTool: 18 C, sunny\n\nAssistant:"
    )
    assert lines == [line({"prompt": prompt, "completion": " It is 18 °C and sunny in Paris."})]
    assert report["losses"] == {
        "earlier assistant turns moved into the prompt": 1,
        "images dropped": 1,
        "message weights dropped": 1,
        "tool calls written as text": 1,
        "tool definitions dropped": 1,
    }


def parquet_rows(weather_bot: Dataset, tmp_path) -> tuple[list[dict], dict]:
    export = export_stream(dataset=weather_bot, format="parquet")
    path = tmp_path / export.filename
    path.write_bytes(b"".join(export.chunks))
    return pq.read_table(path).to_pylist(), export.report.as_dict()


def test_parquet_holds_one_row_per_entry_with_messages_as_structs_and_a_list_of_tools(weather_bot, weather, tmp_path):
    rows, report = parquet_rows(weather_bot, tmp_path)

    empty = dict.fromkeys(MESSAGE_FIELDS)
    assert [row["id"] for row in rows] == [weather.pk]
    assert rows[0]["split"] == "train"
    assert rows[0]["messages"] == [
        {**empty, "role": "system", "content": "You are a weather bot."},
        # Parts: their text in `content`, for trainers that read text; all of them, exactly, in `parts`.
        {**empty, "role": "user", "content": "What is the weather where this was taken?",
         "parts": line(WEATHER[1]["content"])},
        {**empty, "role": "assistant", "tool_calls": [{**CALL, "extra": None}], "weight": 0,
         "extra": '{"content":null}'},
        {**empty, "role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"},
        {**empty, "role": "assistant", "content": "It is 18 °C and sunny in Paris."},
    ]  # fmt: skip
    assert rows[0]["tools"] == [line(tool) for tool in TOOLS]  # JSON, one per tool: pyarrow reads it as text
    assert rows[0]["parallel_tool_calls"] is None
    assert report["lossless"] is True


# What no struct column holds: a custom tool's call, a provider's own fields, an error flag, a part of a type no
# reader knows, a refusal, a name, and a null where a string goes.
ODD = [
    {"role": "user", "name": "ann", "content": [{"type": "text", "text": "Look"}, {"type": "search_result", "x": 1}]},
    {"role": "assistant", "content": "", "refusal": None, "annotations": [{"type": "url"}],
     "tool_calls": [{"id": "c1", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}}, CALL]},
    {"role": "tool", "tool_call_id": "c1", "content": "boom", "is_error": True},
    {"role": "assistant", "content": None, "refusal": "I can't."},
]  # fmt: skip


def test_parquet_gives_back_every_conversation_exactly(weather_bot, weather, tmp_path):
    DatasetEntry.objects.create(dataset=weather_bot, messages=ODD, options={"parallel_tool_calls": False})

    rows, report = parquet_rows(weather_bot, tmp_path)
    openai_lines, _ = export_lines(weather_bot, "openai")

    for row, openai_line in zip(rows, openai_lines, strict=True):
        expected = json.loads(openai_line)
        messages = [message_from_columns(message) for message in row["messages"]]
        assert line(messages) == line(expected["messages"])  # key for key, in the same order
        assert [json.loads(tool) for tool in row["tools"]] == expected.get("tools", [])
        assert row["parallel_tool_calls"] == expected.get("parallel_tool_calls")
    assert report["lossless"] is True
    assert export_preview(dataset=weather_bot, format="parquet").is_lossless


def test_a_multi_turn_chat_in_alpaca_counts_its_extra_turns(weather_bot):
    DatasetEntryFactory(
        dataset=weather_bot,
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
        ],
    )
    DatasetEntryFactory(
        dataset=weather_bot, messages=[{"role": "user", "content": "3+3?"}, {"role": "assistant", "content": "6"}]
    )

    lines, report = export_lines(weather_bot, "alpaca")

    assert lines == [
        line({"instruction": "Hi", "input": "Assistant: Hello!\n\nUser: 2+2?", "output": "4"}),
        line({"instruction": "3+3?", "input": "", "output": "6"}),
    ]
    assert report["losses"] == {"extra turns merged into input": 1}


def test_a_conversation_without_reply_is_skipped_and_counted(weather_bot):
    DatasetEntryFactory(dataset=weather_bot, messages=[{"role": "user", "content": "anyone?"}])
    DatasetEntryFactory(
        dataset=weather_bot, messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    )

    for format in ("sharegpt", "alpaca", "prompt_completion"):
        lines, report = export_lines(weather_bot, format)

        assert len(lines) == 1, format
        assert (report["rows_read"], report["rows_skipped"]) == (2, 1)
        assert report["losses"] == {"no assistant reply: skipped": 1}


def test_sharegpt_merges_parallel_tool_results_and_lists_parallel_calls(weather_bot):
    second = {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}
    DatasetEntryFactory(
        dataset=weather_bot,
        messages=[
            {"role": "user", "content": "Paris and Rome?"},
            {"role": "assistant", "content": "Checking both.", "tool_calls": [CALL, second]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
            {"role": "tool", "tool_call_id": "call_2", "content": "24 C"},
            {"role": "assistant", "content": "Paris 18 C, Rome 24 C."},
            {"role": "user", "content": "Thanks"},
        ],
    )

    lines, report = export_lines(weather_bot, "sharegpt")

    calls = '[{"name":"get_weather","arguments":{"city":"Paris"}},{"name":"get_weather","arguments":{"city":"Rome"}}]'
    assert json.loads(lines[0])["conversations"] == [
        {"from": "human", "value": "Paris and Rome?"},
        {"from": "function_call", "value": calls},
        {"from": "observation", "value": "18 C\n24 C"},
        {"from": "gpt", "value": "Paris 18 C, Rome 24 C."},
    ]
    assert report["losses"] == {
        "assistant text beside tool calls dropped": 1,
        "parallel tool results merged into one turn": 1,
        "turns after the last reply dropped": 1,
    }


def test_files_and_audio_the_text_formats_cannot_hold_are_counted(weather_bot):
    parts = [
        {"type": "text", "text": "Summarise these"},
        {"type": "file", "file": {"file_id": "file-1"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    ]
    DatasetEntryFactory(
        dataset=weather_bot, messages=[{"role": "user", "content": parts}, {"role": "assistant", "content": "Done."}]
    )

    lines, report = export_lines(weather_bot, "sharegpt")

    assert json.loads(lines[0])["conversations"][0] == {"from": "human", "value": "Summarise these"}
    assert report["losses"] == {"audio dropped": 1, "files dropped": 1}


def test_the_split_filter_exports_one_split_and_no_filter_all_in_id_order(weather_bot):
    for index in range(6):
        DatasetEntryFactory(
            dataset=weather_bot,
            messages=[{"role": "user", "content": f"q{index}"}],
            split="validation" if index in (1, 2, 4) else "train",
        )

    validation, _ = export_lines(weather_bot, "openai", split="validation")
    everything, _ = export_lines(weather_bot, "openai")

    assert [json.loads(row)["messages"][0]["content"] for row in validation] == ["q1", "q2", "q4"]
    assert [json.loads(row)["messages"][0]["content"] for row in everything] == [f"q{i}" for i in range(6)]


def test_an_entry_of_another_dataset_is_never_exported(project, weather_bot):
    DatasetEntryFactory(dataset__project=project, messages=[{"role": "user", "content": "not mine"}])

    lines, _ = export_lines(weather_bot, "openai")

    assert lines == []


@pytest.mark.parametrize("format", ["openai", "sharegpt", "alpaca", "prompt_completion"])
def test_streaming_in_small_batches_gives_the_same_bytes_as_one_batch(weather_bot, weather, monkeypatch, format):
    for index in range(6):
        DatasetEntryFactory(
            dataset=weather_bot,
            messages=[{"role": "user", "content": f"q{index}"}, {"role": "assistant", "content": f"a{index}"}],
            split="validation" if index % 3 == 0 else "train",
        )
    whole = list(export_stream(dataset=weather_bot, format=format).chunks)
    monkeypatch.setattr(export_service, "BATCH_SIZE", 2)

    batched = export_stream(dataset=weather_bot, format=format)
    chunks = list(batched.chunks)

    assert len(whole) == 1 and len(chunks) == 4
    assert b"".join(chunks) == b"".join(whole)
    assert batched.report.rows_read == 7


def test_parquet_in_small_batches_writes_a_row_group_per_batch(weather_bot, monkeypatch, tmp_path):
    for index in range(5):
        DatasetEntryFactory(dataset=weather_bot, messages=[{"role": "user", "content": f"q{index}"}])
    monkeypatch.setattr(export_service, "BATCH_SIZE", 2)

    path = tmp_path / "out.parquet"
    path.write_bytes(b"".join(export_stream(dataset=weather_bot, format="parquet").chunks))

    parquet = pq.ParquetFile(path)
    assert parquet.metadata.num_row_groups == 3
    assert [m[0]["content"] for m in parquet.read().column("messages").to_pylist()] == [f"q{i}" for i in range(5)]


def test_the_preview_counts_losses_without_writing(weather_bot, weather):
    DatasetEntryFactory(dataset=weather_bot, messages=[{"role": "user", "content": "anyone?"}])

    alpaca = export_preview(dataset=weather_bot, format="alpaca").as_dict()
    openai = export_preview(dataset=weather_bot, format="openai").as_dict()

    assert (alpaca["rows_read"], alpaca["rows_written"]) == (2, 1)
    assert alpaca["losses"]["no assistant reply: skipped"] == 1
    assert alpaca["losses"]["tool calls written as text"] == 1
    assert (openai["rows_read"], openai["rows_written"], openai["losses"]) == (2, 2, {})


def test_the_preview_agrees_with_the_export(weather_bot, weather):
    DatasetEntryFactory(dataset=weather_bot, messages=[{"role": "user", "content": "a"}])

    for format in ("sharegpt", "alpaca", "prompt_completion"):
        _, exported = export_lines(weather_bot, format)

        assert export_preview(dataset=weather_bot, format=format).as_dict() == {**exported, "rows_total": 2}


def test_a_preview_of_a_large_dataset_reads_only_its_first_entries(weather_bot, weather):
    for _ in range(2):
        DatasetEntryFactory(dataset=weather_bot, messages=[{"role": "user", "content": "a"}])

    report = export_preview(dataset=weather_bot, format="sharegpt", limit=1)

    assert (report.rows_read, report.rows_total) == (1, 3)
    assert report.losses == {"images dropped": 1, "message weights dropped": 1}


def test_an_unknown_format_or_split_is_refused_by_name(weather_bot):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as bad_format:
        export_stream(dataset=weather_bot, format="csv")
    with pytest.raises(ValidationError) as bad_split:
        export_stream(dataset=weather_bot, format="openai", split="test")

    assert "format" in bad_format.value.message_dict
    assert "split" in bad_split.value.message_dict


# --- snapshots ------------------------------------------------------------------------------------


def test_a_snapshot_is_hashed_counted_and_audited(weather_bot, weather, owner):
    validation = DatasetEntryFactory(
        dataset=weather_bot, messages=[{"role": "user", "content": "q"}], split="validation"
    )
    weather_bot.split_seed, weather_bot.validation_ratio = 7, 0.5
    weather_bot.save()

    snapshot = snapshot_create(dataset=weather_bot, created_by=owner)

    content = snapshot.file.open("rb").read()
    assert snapshot.sha256 == hashlib.sha256(content).hexdigest()
    assert content.decode().splitlines() == [
        line({"messages": WEATHER, "tools": TOOLS, "split": "train", "entry_id": weather.pk}),
        line({"messages": [{"role": "user", "content": "q"}], "split": "validation", "entry_id": validation.pk}),
    ]
    assert (snapshot.rows_total, snapshot.rows_train, snapshot.rows_validation) == (2, 1, 1)
    assert (snapshot.split_seed, snapshot.validation_ratio, snapshot.created_by) == (7, 0.5, owner)
    event = AuditEvent.objects.get(action="dataset.snapshot")
    assert (event.count, event.actor, event.detail["sha256"]) == (2, owner, snapshot.sha256)


def test_the_same_content_gives_the_same_hash_and_an_edit_a_new_one(weather_bot, weather):
    first = snapshot_create(dataset=weather_bot)
    second = snapshot_create(dataset=weather_bot)
    DatasetEntry.objects.filter(pk=weather.pk).update(split="validation")
    third = snapshot_create(dataset=weather_bot)

    assert first.sha256 == second.sha256 != third.sha256
    assert first.file.name != second.file.name  # each snapshot keeps its own file
    assert DatasetSnapshot.objects.filter(dataset=weather_bot).count() == 3


def test_a_failed_snapshot_keeps_its_error_and_leaves_no_file(weather_bot, weather, monkeypatch, settings):
    def fail(**kwargs):
        raise RuntimeError("database down")

    monkeypatch.setattr(snapshot_service, "audit_record", fail)

    with pytest.raises(RuntimeError):
        snapshot_create(dataset=weather_bot)

    assert list((settings.MEDIA_ROOT / "snapshots").rglob("*.jsonl")) == []
    snapshot = DatasetSnapshot.objects.get()
    assert (snapshot.status, snapshot.error, snapshot.file.name, snapshot.sha256) == (
        "failed",
        "RuntimeError: database down",
        "",
        "",
    )
    assert not AuditEvent.objects.filter(action="dataset.snapshot").exists()


def test_a_finished_snapshot_is_not_written_again(weather_bot, weather):
    snapshot = snapshot_create(dataset=weather_bot)
    DatasetEntry.objects.filter(pk=weather.pk).update(split="validation")

    again = snapshot_build(snapshot_id=snapshot.pk)

    assert (again.sha256, again.file.name, again.rows_validation) == (snapshot.sha256, snapshot.file.name, 0)


# --- the command ----------------------------------------------------------------------------------


def test_the_command_writes_a_file_and_reports_what_was_lost(weather_bot, weather, tmp_path):
    out = io.StringIO()
    target = tmp_path / "weather.jsonl"

    call_command(
        "export_dataset", "Weather bot", project="acme", format="alpaca", output=str(target), no_progress=True,
        stdout=out,
    )  # fmt: skip

    assert target.read_text().splitlines()[0].startswith('{"instruction":"What is the weather')
    assert not (tmp_path / "weather.jsonl.part").exists()
    assert "1 of 1 rows written as alpaca." in out.getvalue()
    assert "1 rows: tool calls written as text" in out.getvalue()
    event = AuditEvent.objects.get(action="dataset.export")
    assert (event.count, event.detail["format"], event.detail["via"]) == (1, "alpaca", "cli")


def test_the_command_finds_a_dataset_by_id_and_writes_one_split_to_stdout(weather_bot, weather, capsysbinary):
    DatasetEntryFactory(dataset=weather_bot, messages=[{"role": "user", "content": "v"}], split="validation")

    call_command("export_dataset", str(weather_bot.pk), project="acme", split="validation", output="-")

    captured = capsysbinary.readouterr()
    assert captured.out == b'{"messages":[{"role":"user","content":"v"}]}\n'
    assert b"1 of 1 rows written as openai." in captured.err


def test_the_command_freezes_a_snapshot(weather_bot, weather):
    out = io.StringIO()

    call_command("export_dataset", "Weather bot", project="acme", snapshot=True, no_progress=True, stdout=out)

    snapshot = DatasetSnapshot.objects.get(dataset=weather_bot)
    assert f"sha256 {snapshot.sha256}" in out.getvalue()
    assert snapshot.rows_total == 1


def test_the_command_refuses_a_dataset_of_another_project(outsider, weather):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No dataset 'Weather bot'"):
        call_command("export_dataset", "Weather bot", project="other", output="-")


# --- preference pairs of edited entries -----------------------------------------------------------

QUESTION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
ORIGINAL = {"role": "assistant", "content": "The capital of France is Paris, a city of about two million people."}
EDITED = {"role": "assistant", "content": "Paris."}


@pytest.fixture
def logged_entries(project, weather_bot):
    """Three entries copied from logs: one whose answer was edited, one not touched, one whose log is gone."""
    logs_ingest(project=project, items=[{"messages": [*QUESTION, ORIGINAL]} for _ in range(3)])
    dataset_add_logs(dataset=weather_bot, logs=LogEntry.objects.filter(project=project))
    edited, untouched, orphan = weather_bot.entries.order_by("id")
    entry_update(entry=edited, messages=[*QUESTION, EDITED])
    entry_update(entry=orphan, messages=[*QUESTION, {"role": "assistant", "content": "Paris!"}])
    orphan.log.delete()
    return edited, untouched, orphan


def test_the_preference_format_pairs_the_edited_answer_with_the_logs_original(weather_bot, logged_entries):
    lines, report = export_lines(weather_bot, "preference")

    assert lines == [line({"prompt": QUESTION, "chosen": [EDITED], "rejected": [ORIGINAL]})]
    assert report["rows_read"] == 2  # the edited entries
    assert report["losses"] == {NO_ORIGINAL: 1}


def test_the_openai_preference_format_puts_the_prompt_in_input(weather_bot, logged_entries):
    lines, _ = export_lines(weather_bot, "openai_preference")

    assert lines == [
        line({"input": {"messages": QUESTION}, "preferred_output": [EDITED], "non_preferred_output": [ORIGINAL]})
    ]


def test_a_pair_keeps_the_tools_and_counts_an_edited_prompt(project, weather_bot):
    logs_ingest(project=project, items=[{"messages": [*QUESTION, ORIGINAL], "tools": TOOLS}])
    dataset_add_logs(dataset=weather_bot, logs=LogEntry.objects.filter(project=project))
    entry = weather_bot.entries.get()
    entry_update(entry=entry, messages=[QUESTION[0], {"role": "user", "content": "France's capital?"}, EDITED],
                 tools=TOOLS)  # fmt: skip

    (trl,), report = export_lines(weather_bot, "preference")
    (openai,), _ = export_lines(weather_bot, "openai_preference")

    assert json.loads(json.loads(trl)["tools"]) == TOOLS
    assert json.loads(openai)["input"]["tools"] == TOOLS
    assert report["losses"] == {PROMPT_EDITED: 1}


def test_an_edit_of_the_prompt_alone_or_a_redaction_alone_is_no_preference(project, weather_bot):
    email = {"role": "assistant", "content": "Write to ann@example.com."}
    logs_ingest(project=project, items=[{"messages": [*QUESTION, ORIGINAL]}, {"messages": [*QUESTION, email]}])
    dataset_add_logs(dataset=weather_bot, logs=LogEntry.objects.filter(project=project))
    prompt_only, redacted = weather_bot.entries.order_by("id")
    entry_update(entry=prompt_only, messages=[{"role": "user", "content": "Capital?"}, ORIGINAL])
    entry_update(entry=redacted, messages=[*QUESTION, {"role": "assistant", "content": "Write to <EMAIL>."}])

    lines, report = export_lines(weather_bot, "preference")

    assert lines == []
    assert report["losses"] == {ANSWER_SAME: 1, ONLY_REDACTED: 1}


def test_personal_data_of_the_original_answer_never_leaves(project, weather_bot):
    email = {"role": "assistant", "content": "Ask ann@example.com, she knows it is Paris."}
    logs_ingest(project=project, items=[{"messages": [*QUESTION, email]}])
    dataset_add_logs(dataset=weather_bot, logs=LogEntry.objects.filter(project=project))
    entry_update(entry=weather_bot.entries.get(), messages=[*QUESTION, EDITED])

    (pair,), report = export_lines(weather_bot, "preference")

    assert json.loads(pair)["rejected"] == [{"role": "assistant", "content": "Ask <EMAIL>, she knows it is Paris."}]
    assert report["losses"] == {ORIGINAL_REDACTED: 1}


def test_the_preference_preview_agrees_with_the_export(weather_bot, logged_entries):
    _, report = export_lines(weather_bot, "preference")
    preview = export_preview(dataset=weather_bot, format="preference").as_dict()

    assert preview == {**report, "rows_total": 2}


def test_the_command_writes_the_preference_pairs(weather_bot, logged_entries, tmp_path):
    out = io.StringIO()
    target = tmp_path / "pairs.jsonl"

    call_command("export_dataset", "Weather bot", project="acme", format="preference", output=str(target),
                 no_progress=True, stdout=out)  # fmt: skip

    assert [json.loads(row)["chosen"] for row in target.read_text().splitlines()] == [[EDITED]]
    assert "1 of 2 rows written as preference." in out.getvalue()
    assert AuditEvent.objects.get(action="dataset.export").count == 2  # the edited entries
