"""manage.py reparse_logs: stored logs read again from their originals, only the reader's columns changing."""

import io

import pytest
from django.core.management import CommandError, call_command

from curation.logs.reparse import logs_reparse_batch
from curation.logs.services import logs_ingest
from curation.models import AuditEvent, LogEntry
from tests.curation.samples import openai_log

TOOL_LOG = {
    "request": {
        "model": "gpt-5",
        "messages": [{"role": "user", "content": "Run ls"}],
        "tools": [{"type": "custom", "custom": {"name": "shell", "description": "Runs a command"}}],
    },
    "response": {"choices": [{"message": {"role": "assistant", "content": "Done."}, "finish_reason": "stop"}]},
    "tags": ["prod"],
    "external_id": "t-1",
}


def as_an_older_version_stored_it(log: LogEntry, reason: str) -> None:
    """What a version whose readers refused custom tools left: the original, the reason, no conversation."""
    LogEntry.objects.filter(pk=log.pk).update(status="unreadable", messages=[], tools=[], error_message=reason,
                                              search_text="", model="")  # fmt: skip


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("reparse_logs", *args, "--no-progress", stdout=out)
    return out.getvalue()


def test_it_reads_an_unreadable_log_again_and_keeps_its_original_and_tags(project):
    logs_ingest(project=project, items=[TOOL_LOG])
    log = LogEntry.objects.get()
    original = log.original
    as_an_older_version_stored_it(log, "request.tools.0.type: unknown type 'custom'")

    out = run("--project", project.slug, "--status", "unreadable")

    log.refresh_from_db()
    assert (log.status, log.error_message, log.model) == ("success", "", "gpt-5")
    assert log.messages[-1] == {"role": "assistant", "content": "Done."}
    assert log.tools == [{"type": "custom", "custom": {"name": "shell", "description": "Runs a command"}}]
    assert "Run ls" in log.search_text
    assert log.original == original
    assert [t.name for t in log.tags.all()] == ["prod"] and log.external_id == "t-1"
    assert "1 unreadable logs are now readable, 0 are still unreadable" in out
    assert AuditEvent.objects.get(action="logs.reparse").count == 1


def test_a_log_still_unreadable_keeps_its_status_with_todays_reason(project):
    logs_ingest(project=project, items=[{"request": {"messages": "no"}}], keep_unreadable=True)
    log = LogEntry.objects.get()
    LogEntry.objects.filter(pk=log.pk).update(error_message="an older reason")

    out = run("--project", project.slug)

    log.refresh_from_db()
    assert (log.status, log.error_message) == ("unreadable", "request.messages: expected a list, got a string")
    assert "1 are still unreadable" in out


def test_running_it_again_changes_nothing(project):
    logs_ingest(project=project, items=[openai_log(), TOOL_LOG])
    as_an_older_version_stored_it(LogEntry.objects.get(external_id="t-1"), "old")

    first = logs_reparse_batch(project=project)
    second = logs_reparse_batch(project=project)

    assert (first.read, first.changed, first.now_readable) == (2, 1, 1)
    assert (second.read, second.changed) == (2, 0)


def test_it_reads_only_the_status_asked_for_and_resumes_after_an_id(project):
    logs_ingest(project=project, items=[openai_log(), TOOL_LOG])
    first, second = LogEntry.objects.order_by("pk")

    batch = logs_reparse_batch(project=project, status="unreadable")
    assert batch.read == 0
    assert logs_reparse_batch(project=project, after_id=first.pk).last_id == second.pk


def test_it_names_an_unknown_project(db):
    with pytest.raises(CommandError, match="Project 'nope' not found"):
        run("--project", "nope")


def test_an_owner_turns_keeping_unreadable_logs_on_and_it_is_audited(client, owner, project):
    client.force_login(owner)

    response = client.post(f"/p/{project.slug}/unreadable", {"keep_unreadable": "on"})

    assert response.status_code == 302
    project.refresh_from_db()
    assert project.keep_unreadable is True
    assert AuditEvent.objects.get(action="project.update").detail == {"keep_unreadable": {"from": False, "to": True}}
    logs_ingest(project=project, items=[{"request": {"messages": 1}}])
    page = client.get(f"/p/{project.slug}/").content.decode()
    assert "1 unreadable log</a>" in page and f"/p/{project.slug}/logs/?status=unreadable" in page


def test_an_editor_cannot_change_it(client, editor, project):
    client.force_login(editor)

    assert client.post(f"/p/{project.slug}/unreadable", {"keep_unreadable": "on"}).status_code in (403, 404)
    project.refresh_from_db()
    assert project.keep_unreadable is False


def test_the_log_page_shows_why_a_log_is_unreadable_and_opens_its_original(client, viewer, project):
    logs_ingest(project=project, items=[{"request": {"messages": "x"}}], keep_unreadable=True)
    log = LogEntry.objects.get()
    client.force_login(viewer)

    page = client.get(f"/p/{project.slug}/logs/{log.pk}/").content.decode()

    assert "No reader could turn this log into a conversation" in page
    assert "request.messages: expected a list, got a string" in page
    assert '<details class="block" id="raw" open>' in page
    listed = client.get(f"/p/{project.slug}/logs/?status=unreadable").content.decode()
    assert f'data-id="{log.pk}"' in listed
