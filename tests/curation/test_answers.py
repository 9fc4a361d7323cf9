"""What a call says about its answers beyond the conversation: every choice of an `n` > 1 call (the first in the
conversation, the others as alternatives an analyst can pick), the model that actually answered beside the alias
asked for, and the structured-output schema (`response_format`) kept and exported. Bodies are built from the
official SDKs' types."""

import io
import json

import pyarrow.parquet as pq
import pytest
from anthropic.types import Message
from django.core.exceptions import ValidationError
from openai.types.chat import ChatCompletion

from curation.datasets.export.services import export_preview, export_stream
from curation.datasets.services import dataset_add_logs, entry_answer_pick, entry_update
from curation.logs.ingest import parse_log
from curation.logs.reparse import logs_reparse_batch
from curation.logs.services import logs_ingest
from curation.models import AuditEvent, DatasetEntry, LogEntry
from tests.curation.test_ingest_responses import response, text_message
from tests.factories import DatasetEntryFactory, DatasetFactory

SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
JSON_SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "sum", "schema": SCHEMA, "strict": True}}


def completion(*answers: str, model: str = "gpt-4o-2024-08-06") -> dict:
    """A Chat Completions answer with one choice per answer, as the SDK would send it."""
    body = {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1767225600, "model": model,
        "choices": [
            {"index": index, "finish_reason": "stop" if index else "length", "logprobs": None,
             "message": {"role": "assistant", "content": answer, "refusal": None}}
            for index, answer in enumerate(answers)
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3 * len(answers), "total_tokens": 9 + 3 * len(answers)},
    }  # fmt: skip
    return ChatCompletion.model_validate(body).model_dump(mode="json", exclude_none=True)


def chat_log(*answers: str, **request: object) -> dict:
    return {
        "provider": "openai",
        "request": {
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "2+2?"}],
            "n": len(answers),
            **request,
        },
        "response": completion(*answers),
    }


# --- reading ------------------------------------------------------------------------------------------------------


def test_every_choice_is_kept_the_first_in_the_conversation():
    log = parse_log(chat_log("4", "four", "2+2=4"))

    assert log.messages[-1] == {"role": "assistant", "content": "4"}
    assert log.finish_reason == "length"  # the first choice's
    assert log.alternatives == [
        {"index": 1, "message": {"role": "assistant", "content": "four"}, "finish_reason": "stop"},
        {"index": 2, "message": {"role": "assistant", "content": "2+2=4"}, "finish_reason": "stop"},
    ]


def test_choices_are_ordered_by_their_index_not_their_place():
    body = chat_log("a", "b")
    body["response"]["choices"].reverse()

    log = parse_log(body)

    assert log.messages[-1]["content"] == "a"
    assert [item["message"]["content"] for item in log.alternatives] == ["b"]


def test_one_choice_has_no_alternatives():
    assert parse_log(chat_log("4")).alternatives == []


def test_the_model_that_answered_is_kept_beside_the_alias_asked_for():
    log = parse_log(chat_log("4"))

    assert (log.model, log.response_model) == ("gpt-4o", "gpt-4o-2024-08-06")


def test_without_a_requested_model_the_answering_one_names_the_log():
    body = chat_log("4")
    del body["request"]["model"]

    assert (parse_log(body).model, parse_log(body).response_model) == ("gpt-4o-2024-08-06", "gpt-4o-2024-08-06")


def test_anthropic_and_responses_calls_name_the_answering_model_too():
    message = Message.model_validate(
        {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
         "content": [{"type": "text", "text": "4"}], "stop_reason": "end_turn", "stop_sequence": None,
         "usage": {"input_tokens": 5, "output_tokens": 1}}
    ).model_dump(mode="json")  # fmt: skip
    anthropic = parse_log(
        {"request": {"model": "claude-sonnet-4-5", "max_tokens": 9, "messages": [{"role": "user", "content": "2+2?"}]},
         "response": message}
    )  # fmt: skip
    responses = parse_log({"request": {"model": "gpt-5", "input": "2+2?"}, "response": response(text_message("4"))})

    assert (anthropic.model, anthropic.response_model) == ("claude-sonnet-4-5", "claude-sonnet-4-5-20250929")
    assert (responses.model, responses.response_model) == ("gpt-5", "gpt-5-2025-08-07")


def test_a_json_schema_response_format_is_kept_as_sent():
    log = parse_log(chat_log("4", response_format=JSON_SCHEMA_FORMAT))

    assert log.options == {"response_format": JSON_SCHEMA_FORMAT}


def test_plain_text_response_format_is_the_default_and_not_kept():
    assert parse_log(chat_log("4", response_format={"type": "text"})).options == {}


def test_the_responses_api_text_format_is_kept_in_chat_shape():
    request = {
        "model": "gpt-5", "input": "2+2?",
        "text": {"format": {"type": "json_schema", "name": "sum", "schema": SCHEMA, "strict": True}},
    }  # fmt: skip

    log = parse_log({"request": request, "response": response(text_message('{"answer": 4}'))})

    assert log.options["response_format"] == JSON_SCHEMA_FORMAT


def test_anthropic_structured_output_is_kept_in_chat_shape():
    request = {
        "model": "claude-sonnet-4-5", "max_tokens": 9, "messages": [{"role": "user", "content": "2+2?"}],
        "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
    }  # fmt: skip

    log = parse_log({"provider": "anthropic", "request": request})

    assert log.options["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": SCHEMA},
    }


# --- storing, showing, picking -----------------------------------------------------------------------------------


def stored(project, body: dict) -> LogEntry:
    result = logs_ingest(project=project, items=[body])
    assert result.accepted == 1, result.rejected
    return LogEntry.objects.get(project=project)


def test_the_columns_are_stored_and_served_by_the_api(project, key_client):
    log = stored(project, chat_log("4", "four"))

    assert (log.model, log.response_model) == ("gpt-4o", "gpt-4o-2024-08-06")
    assert [item["message"]["content"] for item in log.alternatives] == ["four"]
    one = key_client.get(f"/api/v1/logs/{log.pk}", {"project": "acme"}).json()
    assert one["response_model"] == "gpt-4o-2024-08-06"
    assert one["alternatives"] == log.alternatives
    listed = key_client.get("/api/v1/logs", {"project": "acme"}).json()["results"][0]
    assert listed["response_model"] == "gpt-4o-2024-08-06"
    assert "alternatives" not in listed  # the list stays light


def test_reparsing_fills_the_columns_of_logs_stored_before_them(project):
    log = stored(project, chat_log("4", "four"))
    LogEntry.objects.filter(pk=log.pk).update(response_model="", alternatives=[])

    batch = logs_reparse_batch(project=project)

    log.refresh_from_db()
    assert batch.changed == 1
    assert log.response_model == "gpt-4o-2024-08-06"
    assert len(log.alternatives) == 1


def test_the_log_page_shows_the_other_answers_and_the_answering_model(client, project, viewer):
    log = stored(project, chat_log("4", "four", "2+2=4"))
    client.force_login(viewer)

    page = client.get(f"/p/acme/logs/{log.pk}/").content.decode()

    assert 'id="alternatives"' in page
    assert "Other answers of this call (2)" in page
    assert "four" in page and "2+2=4" in page
    assert 'id="response-model"' in page and "gpt-4o-2024-08-06" in page
    assert "Use this answer" not in page  # picked on an entry, not on the log


def test_a_one_answer_log_page_has_no_alternatives_section(client, project, viewer):
    log = stored(project, chat_log("4"))
    client.force_login(viewer)

    assert 'id="alternatives"' not in client.get(f"/p/acme/logs/{log.pk}/").content.decode()


@pytest.fixture
def picked_entry(project):
    log = stored(project, chat_log("4", "four", "2+2=4"))
    dataset = DatasetFactory(project=project, name="Sums")
    return DatasetEntryFactory(dataset=dataset, log=log, messages=log.messages, options={"parallel_tool_calls": False})


def test_picking_an_answer_makes_it_the_entry_answer_and_keeps_the_log(picked_entry, editor):
    entry = entry_answer_pick(entry=picked_entry, alternative=2, actor=editor)

    entry.refresh_from_db()
    assert entry.messages == [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "2+2=4"}]
    assert entry.edited is True
    assert entry.options == {"parallel_tool_calls": False}
    assert entry.log.messages[-1]["content"] == "4"  # the log never changes
    assert AuditEvent.objects.filter(action="entries.update").count() == 1


def test_picking_an_answer_the_log_does_not_have_is_refused(picked_entry):
    with pytest.raises(ValidationError) as caught:
        entry_answer_pick(entry=picked_entry, alternative=7)

    assert "alternative" in caught.value.message_dict


def test_the_entry_page_picks_for_editors_only(client, picked_entry, editor, viewer):
    url = f"/p/acme/datasets/{picked_entry.dataset_id}/entries/{picked_entry.pk}/"
    client.force_login(viewer)
    assert "Use this answer" not in client.get(url).content.decode()
    assert client.post(url + "pick", {"alternative": 1}).status_code in (403, 404)
    picked_entry.refresh_from_db()
    assert picked_entry.messages[-1]["content"] == "4"

    client.force_login(editor)
    page = client.get(url).content.decode()
    assert "Use this answer" in page
    answer = client.post(url + "pick", {"alternative": 1}, follow=True)

    picked_entry.refresh_from_db()
    assert picked_entry.messages[-1]["content"] == "four"
    assert "Entry saved with the answer you picked." in answer.content.decode()


def test_an_edit_keeps_the_entry_request_settings(picked_entry):
    picked_entry.options = {"parallel_tool_calls": False, "response_format": JSON_SCHEMA_FORMAT}
    picked_entry.save()

    entry_update(entry=picked_entry, messages=[*picked_entry.messages[:-1], {"role": "assistant", "content": "IV"}])

    picked_entry.refresh_from_db()
    assert picked_entry.options == {"parallel_tool_calls": False, "response_format": JSON_SCHEMA_FORMAT}


# --- exporting ----------------------------------------------------------------------------------------------------


@pytest.fixture
def structured(project):
    dataset = DatasetFactory(project=project, name="Structured")
    DatasetEntryFactory(
        dataset=dataset,
        messages=[{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": '{"answer": 4}'}],
        options={"response_format": JSON_SCHEMA_FORMAT},
    )
    DatasetEntryFactory(
        dataset=dataset, messages=[{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"}]
    )
    return dataset


def exported(dataset, format: str) -> bytes:
    return b"".join(export_stream(dataset=dataset, format=format).chunks)


def test_the_openai_export_carries_the_response_format(structured):
    lines = [json.loads(line) for line in exported(structured, "openai").splitlines()]

    assert [line.get("response_format") for line in lines] == [JSON_SCHEMA_FORMAT, None]
    assert export_preview(dataset=structured, format="openai").is_lossless


def test_the_parquet_export_has_a_response_format_column(structured):
    rows = pq.read_table(io.BytesIO(exported(structured, "parquet"))).to_pylist()

    assert [row["response_format"] for row in rows] == [json.dumps(JSON_SCHEMA_FORMAT, separators=(",", ":")), None]


def test_formats_without_a_place_for_it_say_it_is_dropped(structured):
    preview = export_preview(dataset=structured, format="alpaca")

    assert not preview.is_lossless
    assert any("response_format" in loss for loss in preview.losses)


def test_entries_are_made_with_the_log_options(project):
    stored(project, chat_log("4", response_format=JSON_SCHEMA_FORMAT))
    dataset = DatasetFactory(project=project, name="From logs")
    dataset_add_logs(dataset=dataset, logs=LogEntry.objects.filter(project=project))

    assert DatasetEntry.objects.get(dataset=dataset).options == {"response_format": JSON_SCHEMA_FORMAT}


def test_logs_filter_by_the_model_that_answered(project, key_client, client, viewer):
    stored(project, chat_log("4"))
    other = chat_log("5")
    other["response"]["model"] = "gpt-4o-2024-11-20"
    logs_ingest(project=project, items=[other])

    found = key_client.get("/api/v1/logs", {"project": "acme", "response_model": "gpt-4o-2024-11-20"}).json()
    assert [log["response_model"] for log in found["results"]] == ["gpt-4o-2024-11-20"]
    client.force_login(viewer)
    page = client.get("/p/acme/logs/", {"response_model": "gpt-4o-2024-08-06"}).content.decode()
    assert page.count('class="model"') == 2  # the header and one row
    assert 'name="response_model" value="gpt-4o-2024-08-06"' in page
    assert 'name="external_id"' in page
