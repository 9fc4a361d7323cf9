"""A caller that goes away in the middle of a stream: the upstream call is closed and the log keeps what came."""

import json

import pytest
from django.core.signals import request_finished
from django.db import close_old_connections

from curation.models import LogEntry
from curation.proxy.logs import proxy_log_store
from curation.proxy.tasks import proxy_log_store_task
from curation.proxy.views import openai_chat_completions
from tests.proxy.conftest import PROVIDER_KEY

pytestmark = pytest.mark.django_db


def test_a_stream_the_caller_leaves_is_logged_as_incomplete(rf, proxied, stand_in, editor_key, monkeypatch):
    queued: list[dict] = []
    monkeypatch.setattr(proxy_log_store_task, "apply_async", lambda args, **options: queued.append(args[0]))
    stand_in.go_on.clear()  # the stand-in sends one event, then waits
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "stream": True}

    request = rf.post(
        "/proxy/openai/v1/chat/completions", json.dumps(body), content_type="application/json",
        HTTP_X_LOGTUNE_KEY=editor_key, HTTP_AUTHORIZATION=f"Bearer {PROVIDER_KEY}",
    )  # fmt: skip
    response = openai_chat_completions(request)
    first = next(iter(response.streaming_content))  # type: ignore[attr-defined]
    # What the server does when the caller has gone; without closing the database connection with it (as
    # the test client does too): the test's transaction lives on that connection.
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)

    assert first.startswith(b"data: ")
    (log,) = queued
    assert log["metadata"]["complete"] is False
    assert log["response_body"] == first.decode()
    assert proxy_log_store(**log)
    stored = LogEntry.objects.get(project=proxied)
    assert stored.metadata["proxy"]["complete"] is False
    assert stored.original_value["response"]["choices"][0]["message"]["role"] == "assistant"
