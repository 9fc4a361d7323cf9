import json
import threading
from decimal import Decimal

import orjson
import pytest
from django.test import override_settings

from curation.logs.services import logs_ingest
from curation.models import ApiKey, LogEntry, LogStatus, Project
from curation.projects.services import api_key_create, api_key_revoke
from tests.curation.samples import anthropic_log, openai_log
from tests.curation.test_ingest_tools import litellm_payload

pytestmark = pytest.mark.django_db


def post_json(client, body, **extra):
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post("/api/v1/logs", data=raw, content_type="application/json", **extra)


def test_it_stores_an_openai_log_with_extracted_columns(key_client, project):
    sent = openai_log(external_id="req-1")
    response = post_json(key_client, sent)

    assert response.status_code == 200, response.content
    log = LogEntry.objects.get(project=project)
    assert response.json() == {
        "accepted": 1, "duplicates": 0, "rejected": [], "unreadable": [], "notes": [],
        "ids": [{"index": 0, "id": log.pk, "duplicate": False}],
    }  # fmt: skip
    assert log.original == orjson.dumps(sent).decode()
    assert log.messages[-1] == {"role": "assistant", "content": "4"}
    assert [m["role"] for m in log.messages] == ["system", "user", "assistant"]
    assert (log.model, log.provider, log.status, log.status_code) == ("gpt-4o-mini", "openai", "success", 200)
    assert (log.prompt_tokens, log.completion_tokens, log.total_tokens, log.latency_ms) == (20, 1, 21, 812)
    # gpt-4o-mini: $0.15 in, $0.60 out per million tokens
    assert log.cost_usd == Decimal("20") * Decimal("0.15") / 10**6 + Decimal("1") * Decimal("0.60") / 10**6
    assert log.created_at.isoformat() == "2026-09-01T10:00:00+00:00"
    assert log.metadata == {"env": "prod", "user_id": 42}
    assert [t.name for t in log.tags.all()] == ["math"]
    assert log.external_id == "req-1"


def test_it_turns_an_anthropic_tool_round_trip_into_openai_messages(key_client, project):
    response = post_json(key_client, anthropic_log())

    assert response.status_code == 200, response.content
    log = LogEntry.objects.get(project=project)
    roles = [m["role"] for m in log.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    call = log.messages[2]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert log.messages[3]["tool_call_id"] == call["id"] == "toolu_1"
    assert log.tools[0]["function"]["name"] == "get_weather"
    assert (log.prompt_tokens, log.completion_tokens) == (300, 12)
    assert log.cost_usd == (Decimal(300) * 3 + Decimal(12) * 15) / 10**6


def test_it_stores_the_good_items_of_a_batch_and_reports_each_bad_one(key_client, project):
    bad_role = openai_log()
    bad_role["request"]["messages"][1]["role"] = "bot"
    body = {"logs": [openai_log(), bad_role, anthropic_log(), {"request": "nope"}]}

    response = post_json(key_client, body)

    assert response.status_code == 200
    result = response.json()
    assert (result["accepted"], result["duplicates"]) == (2, 0)
    assert [r["index"] for r in result["rejected"]] == [1, 3]
    assert result["rejected"][0]["error"].startswith("request.messages.1.role: ")
    assert "bot" in result["rejected"][0]["error"]
    assert result["rejected"][1]["error"].startswith("request: ")
    assert LogEntry.objects.filter(project=project).count() == 2


def test_it_answers_400_when_every_item_is_rejected(key_client, project):
    response = post_json(key_client, {"logs": [{"request": {}, "bogus": 1}]})

    assert response.status_code == 400
    assert response.json()["accepted"] == 0
    assert response.json()["rejected"][0]["index"] == 0
    assert not LogEntry.objects.exists()


def test_it_counts_a_resent_external_id_as_a_duplicate_and_changes_nothing(key_client, project):
    post_json(key_client, openai_log(external_id="req-9", tags=["first"]))
    response = post_json(key_client, {"logs": [openai_log(external_id="req-9", tags=["second"], latency_ms=1)]})

    log = LogEntry.objects.get(project=project)
    assert response.json() == {
        "accepted": 0, "duplicates": 1, "rejected": [], "unreadable": [], "notes": [],
        "ids": [{"index": 0, "id": log.pk, "duplicate": True}],
    }  # fmt: skip
    assert log.latency_ms == 812
    assert [t.name for t in log.tags.all()] == ["first"]


def test_it_counts_a_repeated_external_id_inside_one_batch_once(key_client, project):
    response = post_json(key_client, {"logs": [openai_log(external_id="x"), openai_log(external_id="x")]})

    log = LogEntry.objects.get()
    assert response.json() == {
        "accepted": 1, "duplicates": 1, "rejected": [], "unreadable": [], "notes": [],
        "ids": [{"index": 0, "id": log.pk, "duplicate": False}, {"index": 1, "id": log.pk, "duplicate": True}],
    }  # fmt: skip


def test_it_answers_the_id_of_each_stored_log_by_index_and_none_for_a_rejected_one(key_client, project):
    body = {"logs": [openai_log(external_id="a"), {"request": "nope"}, anthropic_log(external_id="b")]}
    response = post_json(key_client, body)

    ids = {log.external_id: log.pk for log in LogEntry.objects.all()}
    assert response.json()["ids"] == [
        {"index": 0, "id": ids["a"], "duplicate": False},
        {"index": 2, "id": ids["b"], "duplicate": False},
    ]


def test_external_ids_are_unique_per_project_not_globally(key_client, project):
    other = Project.objects.create(slug="other", name="Other")
    logs_ingest(project=other, items=[openai_log(external_id="shared")])

    response = post_json(key_client, openai_log(external_id="shared"))

    assert response.json()["accepted"] == 1


def test_a_provider_error_response_is_a_log_with_error_status(key_client, project):
    sent = openai_log(
        response={"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
        status_code=429,
    )
    response = post_json(key_client, sent)

    assert response.json()["accepted"] == 1
    log = LogEntry.objects.get(project=project)
    assert log.status == LogStatus.ERROR
    assert log.status_code == 429
    assert "Rate limit reached" in log.error_message
    assert log.messages[-1]["role"] == "user"


def test_it_rejects_bad_json_with_its_position(key_client):
    response = post_json(key_client, b'{"request": {"model": "x",}}')

    assert response.status_code == 400
    assert "Invalid JSON" in response.json()["detail"]
    assert "line 1" in response.json()["detail"]


def test_it_stores_a_lone_surrogate_as_u_fffd_without_touching_the_rest_of_the_batch(key_client, project):
    body = (
        b'{"logs": [{"messages": [{"role": "user", "content": "hi \\ud800"}, {"role": "assistant", "content": "ok"}]},'
        b' {"prompt": "fine", "completion": "too"}]}'
    )

    response = post_json(key_client, body)

    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 2
    assert response.json()["notes"] == [
        {"index": 0, "note": "messages.0.content: invalid Unicode (lone surrogate or bad UTF-8) replaced by U+FFFD"}
    ]
    first, second = LogEntry.objects.order_by("id")
    assert first.messages[0]["content"] == "hi \ufffd"
    assert first.notes == [response.json()["notes"][0]["note"]]
    assert (
        first.original
        == '{"messages": [{"role": "user", "content": "hi \\ud800"}, {"role": "assistant", "content": "ok"}]}'
    )
    assert (second.original, second.notes) == ('{"prompt": "fine", "completion": "too"}', [])


def test_it_stores_invalid_utf8_as_u_fffd_in_that_log_only(key_client, project):
    response = post_json(
        key_client, b'{"logs": [{"prompt": "\xff\xfe", "completion": "x"}, {"prompt": "a", "completion": "b"}]}'
    )

    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 2
    bad = LogEntry.objects.order_by("id").first()
    assert bad.messages[0]["content"] == "\ufffd\ufffd"
    assert bad.original == '{"prompt": "\ufffd\ufffd", "completion": "x"}'
    assert bad.notes == ["prompt: invalid Unicode (lone surrogate or bad UTF-8) replaced by U+FFFD"]


def test_it_stores_a_nul_character_as_u_fffd_and_keeps_the_escape_in_the_original(key_client, project):
    response = post_json(
        key_client, {"logs": [{"prompt": "a\u0000b", "completion": "c"}, {"prompt": "p", "completion": "c"}]}
    )

    assert response.status_code == 200
    assert response.json()["accepted"] == 2
    assert response.json()["notes"] == [{"index": 0, "note": "prompt: NUL character replaced by U+FFFD"}]
    log = LogEntry.objects.order_by("id").first()
    assert log.messages[0]["content"] == "a\ufffdb"
    assert log.original == '{"prompt":"a\\u0000b","completion":"c"}'


def test_it_keeps_each_log_of_a_batch_byte_for_byte(key_client, project):
    first = '{ "prompt" : "2+2?",  "completion":"4", "metadata": {"z": 1.50, "a": 1e3, "m": "\\u00e9"} }'
    second = '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}],"x_custom":[]}'
    body = f'{{"logs": [\n  {first},\n  {second}\n]}}'.encode()

    response = post_json(key_client, body, QUERY_STRING="")

    assert response.status_code == 200, response.content
    assert response.json()["rejected"] == [{"index": 1, "error": "x_custom: unknown field (expected one of messages, "
                                             "tools, functions, parallel_tool_calls, model, provider, status_code, "
                                             "latency_ms, created_at, metadata, tags, external_id, "
                                             "scores)"}]  # fmt: skip
    assert LogEntry.objects.get().original == first


def test_it_keeps_unreadable_logs_when_asked_and_reports_them_by_index(key_client, project):
    bad = '{"request": {"messages": "not a list"}, "external_id": "u-1", "tags": ["prod"], "latency_ms": 80}'
    body = f'{{"keep_unreadable": true, "logs": [{bad}, {{"prompt": "a", "completion": "b"}}]}}'.encode()

    response = post_json(key_client, body)

    assert response.status_code == 200, response.content
    error = "request.messages: expected a list, got a string"
    assert response.json() | {"notes": [], "ids": []} == {
        "accepted": 2, "duplicates": 0, "rejected": [], "unreadable": [{"index": 0, "error": error}], "notes": [],
        "ids": [],
    }  # fmt: skip
    assert [i["index"] for i in response.json()["ids"]] == [0, 1]
    log = LogEntry.objects.get(external_id="u-1")
    assert (log.status, log.error_message, log.original, log.messages) == ("unreadable", error, bad, [])
    assert (log.latency_ms, [t.name for t in log.tags.all()]) == (80, ["prod"])
    again = post_json(key_client, body)
    assert again.json()["duplicates"] == 1  # its external_id still makes a resend a duplicate


def test_it_keeps_unreadable_logs_by_the_projects_setting(key_client, project):
    project.keep_unreadable = True
    project.save()

    response = post_json(key_client, {"request": {"messages": 5}})

    assert response.status_code == 200
    assert LogEntry.objects.get().status == "unreadable"


def test_it_refuses_a_keep_unreadable_that_is_not_a_boolean(key_client):
    response = post_json(key_client, {"logs": [], "keep_unreadable": "yes"})

    assert response.status_code == 400
    assert "keep_unreadable" in response.json()


def test_it_refuses_an_oversized_body_with_413(key_client):
    with override_settings(LOGTUNE_MAX_BODY_BYTES=1000):
        response = post_json(key_client, {"logs": [openai_log() for _ in range(5)]})

    assert response.status_code == 413
    assert "limit is 1000" in response.json()["detail"]
    assert not LogEntry.objects.exists()


def test_it_refuses_more_logs_than_the_batch_limit(key_client):
    with override_settings(LOGTUNE_MAX_BATCH=3):
        response = post_json(key_client, {"logs": [openai_log() for _ in range(4)]})

    assert response.status_code == 400
    assert "At most 3 logs" in response.json()["logs"][0]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"logs": {"a": 1}}, "logs"), ({"logs": [], "tag": ["x"]}, "tag"), ("not an object", "detail"), (42, "detail")],
)
def test_it_rejects_a_malformed_batch_envelope(key_client, body, field):
    response = post_json(key_client, body)

    assert response.status_code == 400
    assert field in response.json()


def test_it_requires_a_valid_active_key(client, project):
    key, raw = api_key_create(project=project)
    api_key_revoke(key=key)

    no_key = client.post("/api/v1/logs", data=b"{}", content_type="application/json")
    wrong = client.post("/api/v1/logs", data=b"{}", content_type="application/json", HTTP_AUTHORIZATION="Bearer lt_x")
    revoked = client.post(
        "/api/v1/logs", data=b"{}", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )

    assert (no_key.status_code, wrong.status_code, revoked.status_code) == (401, 401, 401)
    assert "revoked" in revoked.json()["detail"]


def test_it_records_when_a_key_was_last_used(key_client, project):
    post_json(key_client, openai_log())

    assert ApiKey.objects.get(project=project).last_used_at is not None


def test_session_users_send_logs_by_role(client_for, project, owner, editor, viewer, outsider):
    url = "/api/v1/logs?project=acme"
    body = orjson.dumps(openai_log())

    assert client_for(editor).post(url, body, content_type="application/json").status_code == 200
    assert client_for(owner).post(url, body, content_type="application/json").status_code == 200
    assert client_for(viewer).post(url, body, content_type="application/json").status_code == 403
    assert client_for(outsider).post(url, body, content_type="application/json").status_code == 404
    assert client_for(editor).post("/api/v1/logs", body, content_type="application/json").status_code == 400
    assert LogEntry.objects.filter(project=project).count() == 2


def test_a_key_cannot_act_in_another_project(key_client, outsider):
    response = key_client.post(
        "/api/v1/logs?project=other", orjson.dumps(openai_log()), content_type="application/json"
    )

    assert response.status_code == 404 and "belongs to 'acme'" in response.json()["detail"]
    assert not LogEntry.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_external_id_store_it_once(postgres, project):
    barrier = threading.Barrier(4)
    results = []

    def send() -> None:
        from django.db import connection

        barrier.wait()
        try:
            results.append(logs_ingest(project=project, items=[openai_log(external_id="race")]))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert LogEntry.objects.filter(project=project, external_id="race").count() == 1
    assert sorted((r.accepted, r.duplicates) for r in results) == [(0, 1), (0, 1), (0, 1), (1, 0)]


def test_it_stores_a_response_sent_as_its_stream_chunks_assembled_with_the_original_kept(key_client, project):
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1767225600, "model": "gpt-4o-mini"}
    raw = (
        b'{"request": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "2+2?"}]},\n'
        b' "response": ['
        + orjson.dumps({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "4"}}]})
        + b", "
        + orjson.dumps({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        + b', "[DONE]"]}'
    )

    response = post_json(key_client, raw)

    assert response.status_code == 200, response.content
    log = LogEntry.objects.get(project=project)
    assert log.original == raw.decode()
    assert log.messages[-1] == {"role": "assistant", "content": "4"}
    assert (log.format, log.finish_reason, log.metadata) == ("openai_chat", "stop", {"stream": True, "complete": True})


def test_it_refuses_a_response_list_that_is_no_stream_naming_the_index(key_client, project):
    response = post_json(key_client, {"request": {"model": "m", "messages": []}, "response": [{"choices": []}, 7]})

    assert response.status_code == 400
    assert response.json()["rejected"] == [
        {"index": 0, "error": "response.1: expected a stream event (an object), got a number"}
    ]


def test_it_takes_a_bare_array_as_a_batch_as_litellms_generic_logger_posts_it(key_client, project):
    payloads = [
        litellm_payload(id="chatcmpl-a"),
        litellm_payload(id="chatcmpl-b", status="failure", response=None, error_str="RateLimitError: slow down"),
        litellm_payload(id="chatcmpl-c", call_type="aembedding", messages=["hello"]),
    ]
    texts = [json.dumps(payload) for payload in payloads]  # LiteLLM writes json.dumps' spacing
    raw = ("[" + ", ".join(texts) + "]").encode()

    response = post_json(key_client, raw)

    assert response.status_code == 200, response.content
    answer = response.json()
    assert (answer["accepted"], answer["duplicates"]) == (2, 0)
    assert [r["index"] for r in answer["rejected"]] == [2]
    assert "aembedding" in answer["rejected"][0]["error"]
    stored = {log.external_id: log for log in LogEntry.objects.filter(project=project)}
    assert [i["id"] for i in answer["ids"]] == [stored["chatcmpl-a"].pk, stored["chatcmpl-b"].pk]
    assert stored["chatcmpl-a"].original == texts[0] and stored["chatcmpl-b"].original == texts[1]
    assert (stored["chatcmpl-a"].format, stored["chatcmpl-b"].status) == ("litellm", "error")


def test_a_bare_array_keeps_the_batch_limit_and_refuses_items_that_are_no_logs(key_client, project):
    with override_settings(LOGTUNE_MAX_BATCH=3):
        too_many = post_json(key_client, [openai_log() for _ in range(4)])
    not_logs = post_json(key_client, ["not", "an", "object"])

    assert too_many.status_code == 400 and "At most 3 logs" in too_many.json()["detail"]
    assert not_logs.status_code == 400
    assert [r["index"] for r in not_logs.json()["rejected"]] == [0, 1, 2]
    assert not LogEntry.objects.filter(project=project).exists()
