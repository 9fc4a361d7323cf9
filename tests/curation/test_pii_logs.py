"""Personal data in stored logs: the kinds found at ingestion, redaction at ingestion, pii_scan, the
explorer's filter and facet, and the highlights of the log detail page."""

import io
import json
import re

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection

from curation.logs.filters import logs_filter
from curation.logs.ingest import parse_log
from curation.logs.selectors import log_facets
from curation.logs.services import logs_ingest
from curation.models import AuditEvent, LogEntry
from curation.text import rendering
from tests.curation.samples import anthropic_log, openai_log

pytestmark = pytest.mark.django_db

EMAIL_ADDRESS = "jane.doe@example.com"
SECRET_KEY = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4"


def chat(prompt: str, *, completion: str = "ok", **fields: object) -> dict:
    return {"prompt": prompt, "completion": completion, **fields}


def tool_log() -> dict:
    """An OpenAI log whose answer is a tool call with the address in its arguments."""
    log = openai_log(metadata={"customer": EMAIL_ADDRESS})
    log["request"]["messages"][1]["content"] = f"Write to {EMAIL_ADDRESS}, my key is {SECRET_KEY}"
    arguments = json.dumps({"to": EMAIL_ADDRESS, "body": "hi"})
    log["response"]["choices"][0]["message"] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "send", "arguments": arguments}}],
    }
    log["response"]["choices"][0]["finish_reason"] = "tool_calls"
    return log


def ingest(project, *items: dict) -> list[LogEntry]:
    result = logs_ingest(project=project, items=list(items))
    assert result.accepted == len(items), result.rejected
    return list(LogEntry.objects.filter(project=project).order_by("id"))


def decoded_arguments(messages: list[dict]) -> list[dict]:
    """The messages with tool call arguments decoded, to compare them as JSON."""
    messages = json.loads(json.dumps(messages))
    for message in messages:
        for call in message.get("tool_calls") or ():
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    return messages


def row_text(log: LogEntry) -> str:
    """Every JSON and text column of the stored row, as the database holds it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM curation_logentry WHERE id = %s", [log.pk])
        return " ".join(str(value) for value in cursor.fetchone())


def test_ingest_lists_the_kinds_of_personal_data_in_the_conversation(project):
    clean, mixed, in_arguments = ingest(
        project,
        chat("What is 2 + 2?"),
        chat(f"Mail {EMAIL_ADDRESS} or call +44 20 7946 0958", completion=f"Use {SECRET_KEY}"),
        chat("ok", metadata={"who": EMAIL_ADDRESS}),
    )
    assert clean.pii == []
    assert mixed.pii == ["EMAIL", "PHONE", "SECRET"]
    # Metadata is the application's own fields, not the conversation: it is not counted.
    assert in_arguments.pii == []


def test_ingest_finds_personal_data_in_tool_call_arguments(project):
    log = openai_log()
    log["response"]["choices"][0]["message"] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"ip": "8.8.8.8"}'}}],
    }
    (stored,) = ingest(project, log)
    assert stored.pii == ["IP"]


def test_the_copy_path_writes_the_kinds(project, postgres):
    (stored,) = ingest(project, chat(f"Mail {EMAIL_ADDRESS}"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pii::text FROM curation_logentry WHERE id = %s", [stored.pk])
        assert cursor.fetchone()[0] == '["EMAIL"]'


def test_without_redaction_the_log_is_stored_as_sent(project):
    (stored,) = ingest(project, tool_log())
    assert stored.pii == ["EMAIL", "SECRET"]
    assert EMAIL_ADDRESS in stored.messages[1]["content"]
    assert stored.original_value == tool_log()


def test_redaction_at_ingestion_stores_no_personal_data_anywhere_in_the_row(project):
    project.redact_pii_on_ingest = True
    project.save()
    (stored,) = ingest(project, tool_log())

    assert stored.pii == ["EMAIL", "SECRET"]
    text = row_text(stored)
    assert EMAIL_ADDRESS not in text
    assert SECRET_KEY not in text
    assert stored.messages[1]["content"] == "Write to <EMAIL>, my key is <SECRET>"
    assert "<EMAIL>" in stored.search_text
    arguments = stored.messages[-1]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(arguments) == {"to": "<EMAIL>", "body": "hi"}
    assert stored.original_value["request"]["messages"][1]["content"] == "Write to <EMAIL>, my key is <SECRET>"
    original_arguments = stored.original_value["response"]["choices"][0]["message"]["tool_calls"][0]["function"]
    assert json.loads(original_arguments["arguments"]) == {"to": "<EMAIL>", "body": "hi"}
    assert stored.metadata == {"customer": "<EMAIL>"}
    assert decoded_arguments(parse_log(stored.original_value).messages) == decoded_arguments(stored.messages)
    # What carries no personal data is kept exactly.
    assert stored.original_value["request"]["model"] == "gpt-4o-mini"
    assert stored.original_value["latency_ms"] == 812


def test_pii_scan_fills_old_rows_and_is_idempotent(project):
    clean, with_email, with_phone = ingest(
        project, chat("hello"), chat(f"Mail {EMAIL_ADDRESS}"), chat("Call +44 20 7946 0958")
    )
    LogEntry.objects.filter(project=project).update(pii=[])  # as stored before ingestion recorded them
    out = io.StringIO()

    call_command("pii_scan", project=project.slug, batch_size=2, no_progress=True, stdout=out)

    assert "Scanned 3 logs; 2 had" in out.getvalue()
    kinds = dict(LogEntry.objects.filter(project=project).values_list("pk", "pii"))
    assert kinds == {clean.pk: [], with_email.pk: ["EMAIL"], with_phone.pk: ["PHONE"]}
    call_command("pii_scan", project=project.slug, no_progress=True, stdout=(again := io.StringIO()))
    assert "Scanned 3 logs; 0 had" in again.getvalue()
    assert AuditEvent.objects.filter(project=project, action="logs.pii_scan").count() == 2


def test_pii_scan_resumes_after_an_id(project):
    first, second = ingest(project, chat(f"Mail {EMAIL_ADDRESS}"), chat(f"Mail {EMAIL_ADDRESS}"))
    LogEntry.objects.filter(project=project).update(pii=[])

    call_command("pii_scan", project=project.slug, after_id=first.pk, no_progress=True, stdout=io.StringIO())

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.pii, second.pii) == ([], ["EMAIL"])


def test_pii_scan_refuses_an_unknown_project(db):
    with pytest.raises(CommandError, match="not found"):
        call_command("pii_scan", project="nope", no_progress=True)


@pytest.fixture
def as_owner(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def pii_logs(project):
    """Four logs: none, an e-mail, an e-mail and a phone number, a secret."""
    return ingest(
        project,
        chat("What is 2 + 2?"),
        chat(f"Mail {EMAIL_ADDRESS}"),
        chat(f"Mail {EMAIL_ADDRESS} or call +44 20 7946 0958"),
        chat(f"key {SECRET_KEY}"),
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("any", [1, 2, 3]),
        ("none", [0]),
        ("EMAIL", [1, 2]),
        ("PHONE,SECRET", [2, 3]),
        ("email", [1, 2]),
        ("", [0, 1, 2, 3]),
    ],
)
def test_the_pii_filter_selects_logs_by_the_kinds_found(project, pii_logs, value, expected):
    logs = logs_filter(project=project, params={"pii": value})
    assert sorted(logs.values_list("pk", flat=True)) == [pii_logs[i].pk for i in expected]


def test_the_pii_filter_refuses_an_unknown_kind(project, pii_logs):
    with pytest.raises(ValidationError) as caught:
        logs_filter(project=project, params={"pii": "EMAIL,NAME"})
    assert "pii" in caught.value.message_dict


def test_the_api_lists_logs_with_personal_data(key_client, project, pii_logs):
    response = key_client.get("/api/v1/logs", {"pii": "EMAIL"})
    assert response.status_code == 200, response.content
    assert sorted(row["id"] for row in response.json()["results"]) == [pii_logs[1].pk, pii_logs[2].pk]
    assert sorted(row["pii"] for row in response.json()["results"]) == [["EMAIL"], ["EMAIL", "PHONE"]]
    assert key_client.get("/api/v1/logs", {"pii": "nope"}).status_code == 400


def test_the_explorer_filters_and_badges_logs_with_personal_data(as_owner, project, pii_logs):
    response = as_owner.get(f"/p/{project.slug}/logs/", {"pii": "any"})
    assert response.status_code == 200
    page = response.content.decode()
    assert sorted(int(i) for i in re.findall(r'<tr data-id="(\d+)"', page)) == [log.pk for log in pii_logs[1:]]
    assert page.count('class="pii-badge"') == 3
    assert 'title="Personal data: EMAIL, PHONE"' in page
    clean = as_owner.get(f"/p/{project.slug}/logs/", {"pii": "none"}).content.decode()
    assert re.findall(r'<tr data-id="(\d+)"', clean) == [str(pii_logs[0].pk)]
    assert 'class="pii-badge"' not in clean


def test_the_facet_counts_logs_per_kind_within_the_filter(project, pii_logs):
    found = log_facets(project=project, logs=LogEntry.objects.filter(project=project))
    assert found is not None
    assert [(kind, count.value) for kind, count in found.pii] == [
        ("EMAIL", 2),
        ("PHONE", 1),
        ("SECRET", 1),
        ("none", 1),
    ]
    narrowed = log_facets(project=project, logs=logs_filter(project=project, params={"q": "Mail"}))
    assert narrowed is not None
    assert [(kind, count.value) for kind, count in narrowed.pii] == [("EMAIL", 2), ("PHONE", 1)]


def test_the_facet_panel_links_apply_the_filter(as_owner, project, pii_logs):
    response = as_owner.get(f"/p/{project.slug}/logs/facets/", {"pii": "EMAIL"})
    assert response.status_code == 200
    section = response.content.decode().split('id="facet-pii"')[1].split("</section>")[0]
    links = dict(re.findall(r'href="([^"]+)"[^>]*><span class="label">([^<]+)</span>', section))
    by_label = {label: href for href, label in links.items()}
    assert set(by_label) == {"e-mail", "phone number"}  # within the filter: the logs with an e-mail
    assert by_label["e-mail"] == f"/p/{project.slug}/logs/"  # active: the link takes the kind off
    assert by_label["phone number"] == f"/p/{project.slug}/logs/?pii=EMAIL%2CPHONE"
    assert 'class="active"' in section


def test_the_log_detail_marks_personal_data_and_escapes_everything_around_it(as_owner, project):
    log = openai_log()
    log["request"]["messages"][1]["content"] = f"<script>alert(1)</script> write to {EMAIL_ADDRESS} & <b>me</b>"
    log["response"]["choices"][0]["message"] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "send", "arguments": json.dumps({"to": EMAIL_ADDRESS, "key": SECRET_KEY})},
            }
        ],
    }
    (stored,) = ingest(project, log)

    page = as_owner.get(f"/p/{project.slug}/logs/{stored.pk}/").content.decode()

    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; write to " in page
    mark = f'<mark class="pii pii-email" title="EMAIL (e-mail address)">{EMAIL_ADDRESS}</mark>'
    assert f"{mark} &amp; &lt;b&gt;me&lt;/b&gt;" in page
    assert page.count(mark) == 2  # the message and the tool call's arguments
    assert f'<mark class="pii pii-secret" title="SECRET (OpenAI key)">{SECRET_KEY}</mark>' in page
    assert "Contains: e-mail ×2, secret ×1" in page


def test_a_finding_that_looks_like_html_is_escaped_inside_its_mark():
    marked = rendering.pii_marked('"><img src=x>bob@example.com<"')
    assert marked == (
        '&quot;&gt;&lt;img src=x&gt;<mark class="pii pii-email" title="EMAIL (e-mail address)">'
        "bob@example.com</mark>&lt;&quot;"
    )
    assert rendering.pii_marked("nothing here") is None


def test_a_log_without_personal_data_keeps_its_markdown_and_has_no_summary(as_owner, project):
    (stored,) = ingest(project, chat("**bold** words"))
    page = as_owner.get(f"/p/{project.slug}/logs/{stored.pk}/").content.decode()
    assert "<strong>bold</strong>" in page
    assert 'id="pii-summary"' not in page
    assert "<mark" not in page


def test_the_owner_turns_on_redaction_at_ingestion_on_the_project_page(as_owner, project, owner):
    page = as_owner.get(f"/p/{project.slug}/").content.decode()
    assert "Redact personal data when logs arrive" in page
    assert "&lt;EMAIL&gt;" in page

    response = as_owner.post(f"/p/{project.slug}/pii", {"redact_pii_on_ingest": "on"})

    assert response.status_code == 302
    project.refresh_from_db()
    assert project.redact_pii_on_ingest is True
    event = AuditEvent.objects.get(project=project, action="project.update")
    assert event.actor == owner
    assert event.detail == {"redact_pii_on_ingest": {"from": False, "to": True}}
    (stored,) = ingest(project, chat(f"Mail {EMAIL_ADDRESS}"))
    assert stored.messages[0]["content"] == "Mail <EMAIL>"
    assert re.search(
        r'<input type="checkbox" name="redact_pii_on_ingest"[^>]* checked',
        as_owner.get(f"/p/{project.slug}/").content.decode(),
    )

    as_owner.post(f"/p/{project.slug}/pii", {})  # an unticked box is not sent
    project.refresh_from_db()
    assert project.redact_pii_on_ingest is False
    assert AuditEvent.objects.filter(project=project, action="project.update").count() == 2
    as_owner.post(f"/p/{project.slug}/pii", {})  # no change, no event
    assert AuditEvent.objects.filter(project=project, action="project.update").count() == 2


def test_an_editor_can_neither_see_nor_change_the_setting(client, editor, project):
    client.force_login(editor)
    assert "Redact personal data" not in client.get(f"/p/{project.slug}/").content.decode()
    assert client.post(f"/p/{project.slug}/pii", {"redact_pii_on_ingest": "on"}).status_code in (403, 404)
    project.refresh_from_db()
    assert project.redact_pii_on_ingest is False


def test_redaction_at_ingestion_keeps_an_anthropic_tool_round_trip_consistent(project):
    project.redact_pii_on_ingest = True
    project.save()
    sent = json.loads(json.dumps(anthropic_log()).replace("Paris", f"Paris ({EMAIL_ADDRESS})"))
    assert json.dumps(sent).count(EMAIL_ADDRESS) >= 2

    (stored,) = ingest(project, sent)

    assert stored.pii == ["EMAIL"]
    assert EMAIL_ADDRESS not in row_text(stored)
    assert "Paris (<EMAIL>)" in stored.original
    # The same placeholders in the same places (tool arguments are equal as JSON, spacing aside).
    assert decoded_arguments(parse_log(stored.original_value).messages) == decoded_arguments(stored.messages)
