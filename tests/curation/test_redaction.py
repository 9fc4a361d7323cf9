"""Redacting a dataset: the preview names exactly the entries with personal data and their diffs, the
redaction rewrites entries (never logs), is idempotent, respects the kinds, is audited, and the
validation panel warns until it has run. A large dataset is redacted by a worker in committed batches,
with progress on the page and in the API, resumable, one job per dataset at a time."""

import copy
from datetime import timedelta

import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnavailable

from curation.datasets.redaction import services as redaction
from curation.datasets.redaction.services import (
    dataset_redact,
    dataset_redact_or_queue,
    redaction_job_create,
    redaction_job_run,
    redaction_jobs_reap,
    redaction_preview,
)
from curation.datasets.redaction.tasks import dataset_redact_task
from curation.datasets.services import dataset_add_logs, dataset_create, dataset_entries_ingest
from curation.datasets.validation import PERSONAL_DATA, dataset_validate
from curation.models import AuditEvent, Dataset, DatasetEntry, JobStatus, LogEntry, RedactionJob
from curation.text.tokens import est_tokens
from tests.factories import LogEntryFactory
from tests.waiting import wait_until_finished

pytestmark = pytest.mark.django_db

MAIL = "Write to bob@example.com please."
CARD_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "charge", "arguments": '{"card": "4111 1111 1111 1111", "amount": 5}'},
}


def qa(question: str, answer: str = "Done.") -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


CONVERSATIONS = [
    qa(MAIL),  # e-mail
    qa("What is 2 + 2?", "4."),  # clean
    [
        {"role": "user", "content": "Charge my card."},
        {"role": "assistant", "content": None, "tool_calls": [CARD_CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        {"role": "assistant", "content": "Charged."},
    ],  # card, in JSON arguments
    qa("Call me at +44 20 7946 0958 or mail alice@example.org."),  # phone and e-mail
    qa("Nothing personal here.", "Good."),  # clean
]


@pytest.fixture
def logs_with_pii(project) -> list[LogEntry]:
    """The CONVERSATIONS, in order: three of the five hold personal data."""
    items = [{"messages": copy.deepcopy(m), "model": "gpt-4o"} for m in CONVERSATIONS]
    return LogEntryFactory.ingest(project=project, items=items)


@pytest.fixture
def dataset_with_pii(project, logs_with_pii) -> Dataset:
    """Support: a copy of each of the logs_with_pii."""
    dataset = dataset_create(project=project, name="Support")
    dataset_add_logs(dataset=dataset, logs=LogEntry.objects.filter(project=project))
    return dataset


def entries(dataset: Dataset) -> list[DatasetEntry]:
    return list(DatasetEntry.objects.filter(dataset=dataset).order_by("id"))


def by_log(dataset: Dataset, log: LogEntry) -> DatasetEntry:
    return DatasetEntry.objects.get(dataset=dataset, log=log)


# --- the preview ----------------------------------------------------------------------------------


def test_the_preview_lists_exactly_the_entries_with_findings_and_their_diffs(dataset_with_pii, logs_with_pii):
    preview = redaction_preview(dataset=dataset_with_pii)

    expected = [by_log(dataset_with_pii, logs_with_pii[i]).pk for i in (0, 2, 3)]
    assert [sample.entry_id for sample in preview.samples] == expected
    assert (preview.entries, preview.changed) == (5, 3)
    assert preview.counts == {"EMAIL": 2, "PHONE": 1, "CARD": 1, "IBAN": 0, "IP": 0, "SECRET": 0}
    first = preview.samples[0]
    assert [(f.field, f.kind, f.text) for f in first.findings] == [("message 1 content", "EMAIL", "bob@example.com")]
    assert [(line.kind, line.text) for line in first.diff.lines if line.kind in ("added", "removed")] == [
        ("removed", MAIL),
        ("added", "Write to <EMAIL> please."),
    ]
    card = preview.samples[1]
    assert [(f.field, f.kind) for f in card.findings] == [("message 2 tool_calls.0.function.arguments.card", "CARD")]


def test_the_preview_is_limited_but_counts_the_whole_dataset_and_changes_nothing(dataset_with_pii):
    before = [(e.messages, e.updated_at) for e in entries(dataset_with_pii)]

    preview = redaction_preview(dataset=dataset_with_pii, kinds=["EMAIL"], limit=1)

    assert (preview.changed, len(preview.samples), preview.truncated) == (2, 1, True)
    assert preview.counts == {"EMAIL": 2}
    assert [(e.messages, e.updated_at) for e in entries(dataset_with_pii)] == before


def test_an_unknown_kind_is_refused(dataset_with_pii):
    with pytest.raises(ValueError, match="NAME"):
        redaction_preview(dataset=dataset_with_pii, kinds=["NAME"])


# --- the redaction --------------------------------------------------------------------------------


def test_redacting_changes_the_entries_only_and_updates_what_an_edit_updates(dataset_with_pii, logs_with_pii, editor):
    originals = [(log.messages, log.original) for log in LogEntry.objects.order_by("id")]
    mail = by_log(dataset_with_pii, logs_with_pii[0])

    changed = dataset_redact(dataset=dataset_with_pii, actor=editor)

    assert changed == 3
    mail.refresh_from_db()
    assert mail.messages == qa("Write to <EMAIL> please.")
    assert mail.search_text == "Write to <EMAIL> please.\nDone."
    assert mail.est_tokens == est_tokens(mail.search_text)
    assert mail.edited is True
    card = by_log(dataset_with_pii, logs_with_pii[2])
    arguments = card.messages[1]["tool_calls"][0]["function"]["arguments"]
    assert arguments == '{"card": "<CARD>", "amount": 5}'
    assert "4111" not in card.search_text
    assert by_log(dataset_with_pii, logs_with_pii[3]).messages[0]["content"] == "Call me at <PHONE> or mail <EMAIL>."
    assert by_log(dataset_with_pii, logs_with_pii[1]).edited is False  # clean entries are left alone
    assert [(log.messages, log.original) for log in LogEntry.objects.order_by("id")] == originals
    assert "bob@example.com" in LogEntry.objects.get(pk=logs_with_pii[0].pk).search_text


def test_redacting_twice_changes_nothing_the_second_time(dataset_with_pii):
    assert dataset_redact(dataset=dataset_with_pii) == 3
    after = [(e.messages, e.search_text, e.updated_at) for e in entries(dataset_with_pii)]

    assert dataset_redact(dataset=dataset_with_pii) == 0

    assert [(e.messages, e.search_text, e.updated_at) for e in entries(dataset_with_pii)] == after
    assert redaction_preview(dataset=dataset_with_pii).changed == 0


def test_only_the_chosen_kinds_are_redacted(dataset_with_pii, logs_with_pii):
    assert dataset_redact(dataset=dataset_with_pii, kinds=["PHONE"]) == 1

    assert (
        by_log(dataset_with_pii, logs_with_pii[3]).messages[0]["content"]
        == "Call me at <PHONE> or mail alice@example.org."
    )
    assert by_log(dataset_with_pii, logs_with_pii[0]).messages == qa(MAIL)
    assert by_log(dataset_with_pii, logs_with_pii[0]).edited is False


def test_an_imported_entry_and_its_tool_definitions_are_redacted(project):
    dataset = dataset_create(project=project, name="Imported")
    tools = [{"type": "function", "function": {"name": "mail", "description": "Sends to ops@example.com"}}]
    dataset_entries_ingest(dataset=dataset, items=[{"messages": qa("Hi."), "tools": tools}])

    assert redaction_preview(dataset=dataset).samples[0].findings[0].field == "tool 1 function.description"
    assert dataset_redact(dataset=dataset) == 1

    entry = entries(dataset)[0]
    assert entry.tools[0]["function"]["description"] == "Sends to <EMAIL>"
    assert entry.edited is True


def test_a_redaction_is_audited_with_its_kinds(dataset_with_pii, editor):
    dataset_redact(dataset=dataset_with_pii, kinds=["EMAIL", "CARD"], actor=editor)

    event = AuditEvent.objects.get(action="entries.redact")
    assert (event.count, event.actor, event.detail["kinds"]) == (3, editor, ["EMAIL", "CARD"])
    assert event.detail["dataset_id"] == dataset_with_pii.pk


def test_redaction_works_in_batches(dataset_with_pii, monkeypatch):
    from curation.datasets.redaction import services as redaction

    monkeypatch.setattr(redaction, "BATCH", 2)

    assert redaction.redaction_preview(dataset=dataset_with_pii).changed == 3
    assert redaction.dataset_redact(dataset=dataset_with_pii) == 3
    assert redaction.redaction_preview(dataset=dataset_with_pii).changed == 0


# --- validation -----------------------------------------------------------------------------------


def test_the_validation_warns_of_personal_data_until_it_is_redacted(dataset_with_pii, logs_with_pii):
    finding = dataset_validate(dataset=dataset_with_pii).get(PERSONAL_DATA)

    assert finding is not None and finding.severity == "warning"
    assert (finding.entry_ids, finding.count) == (
        [by_log(dataset_with_pii, logs_with_pii[i]).pk for i in (0, 2, 3)],
        3,
    )

    dataset_redact(dataset=dataset_with_pii)

    report = dataset_validate(dataset=dataset_with_pii)
    assert report.get(PERSONAL_DATA) is None
    assert "no personal data left" in report.passed


def test_the_validation_panel_shows_the_warning_with_a_hint_to_the_redaction(client, dataset_with_pii, viewer):
    client.force_login(viewer)
    url = f"/p/acme/datasets/{dataset_with_pii.pk}/validation"

    page = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'data-code="personal_data"' in page
    assert "#personal-data" in page

    dataset_redact(dataset=dataset_with_pii)
    assert 'data-code="personal_data"' not in client.get(url, HTTP_HX_REQUEST="true").content.decode()


# --- the page -------------------------------------------------------------------------------------


def page_url(dataset: Dataset, rest: str = "") -> str:
    return f"/p/acme/datasets/{dataset.pk}/{rest}"


def test_the_dataset_page_loads_the_personal_data_card(client, dataset_with_pii, viewer):
    client.force_login(viewer)

    page = client.get(page_url(dataset_with_pii)).content.decode()

    assert f'hx-get="{page_url(dataset_with_pii, "pii")}"' in page


def test_a_viewer_sees_the_counts_only(client, dataset_with_pii, viewer):
    client.force_login(viewer)

    panel = client.get(page_url(dataset_with_pii, "pii")).content.decode()

    assert '<tr data-kind="EMAIL"><td><code>&lt;EMAIL&gt;</code></td><td class="num">2</td></tr>' in panel
    assert "3 of 5 entries" in panel
    assert "pii/preview" not in panel and 'name="kinds"' not in panel


def test_a_viewer_is_refused_the_preview_and_the_redaction(client, dataset_with_pii, viewer):
    client.force_login(viewer)

    assert client.post(page_url(dataset_with_pii, "pii/preview"), {"kinds": ["EMAIL"]}).status_code == 403
    assert client.post(page_url(dataset_with_pii, "pii/redact"), {"kinds": ["EMAIL"]}).status_code == 403
    assert redaction_preview(dataset=dataset_with_pii).changed == 3


def test_an_editor_previews_then_redacts_from_the_page(client, dataset_with_pii, editor):
    client.force_login(editor)
    panel = client.get(page_url(dataset_with_pii, "pii")).content.decode()
    assert 'hx-post="' + page_url(dataset_with_pii, "pii/preview") + '"' in panel and "csrfmiddlewaretoken" in panel

    preview = client.post(
        page_url(dataset_with_pii, "pii/preview"), {"kinds": ["EMAIL", "PHONE"]}, HTTP_HX_REQUEST="true"
    )

    html = preview.content.decode()
    assert preview.status_code == 200
    assert 'data-redaction-changed="2"' in html
    assert '<mark class="pii">&lt;EMAIL&gt;</mark>' in html and '<mark class="pii">&lt;PHONE&gt;</mark>' in html
    assert "Redact 2 entries" in html and "data-confirm=" in html
    assert html.count('<input type="hidden" name="kinds"') == 2

    done = client.post(page_url(dataset_with_pii, "pii/redact"), {"kinds": ["EMAIL", "PHONE"]}, follow=True)

    assert "Redacted EMAIL, PHONE in 2 entries" in done.content.decode()
    assert redaction_preview(dataset=dataset_with_pii, kinds=["EMAIL", "PHONE"]).changed == 0
    assert redaction_preview(dataset=dataset_with_pii).changed == 1  # the card was not chosen


def test_a_preview_without_kinds_is_refused(client, dataset_with_pii, editor):
    client.force_login(editor)

    response = client.post(page_url(dataset_with_pii, "pii/preview"), {"kinds": ["NAME"]})

    assert response.status_code == 400
    assert "Choose at least one kind" in response.content.decode()


def test_the_preview_escapes_the_conversation(client, project, editor):
    dataset = dataset_create(project=project, name="Hostile")
    dataset_entries_ingest(dataset=dataset, items=[{"messages": qa("<script>alert(1)</script> eve@example.com")}])
    client.force_login(editor)

    html = client.post(page_url(dataset, "pii/preview"), {"kinds": ["EMAIL"]}).content.decode()

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; eve@example.com" in html
    assert '&lt;script&gt;alert(1)&lt;/script&gt; <mark class="pii">&lt;EMAIL&gt;</mark>' in html


# --- the API --------------------------------------------------------------------------------------


def api_url(dataset: Dataset) -> str:
    return f"/api/v1/datasets/{dataset.pk}/redact"


def test_the_api_dry_run_previews_and_changes_nothing(key_client, dataset_with_pii, logs_with_pii):
    response = key_client.post(api_url(dataset_with_pii), {"kinds": ["EMAIL"], "dry_run": True}, format="json")

    body = response.json()
    assert response.status_code == 200
    assert (body["dry_run"], body["kinds"], body["changed"], body["entries"]) == (True, ["EMAIL"], 2, 5)
    assert body["counts"] == {"EMAIL": 2}
    assert [s["entry_id"] for s in body["samples"]] == [by_log(dataset_with_pii, logs_with_pii[i]).pk for i in (0, 3)]
    assert {"kind": "added", "text": "Write to <EMAIL> please."} in body["samples"][0]["diff"]
    assert body["samples"][0]["findings"] == [
        {"field": "message 1 content", "kind": "EMAIL", "reason": "e-mail address"}
    ]
    assert not AuditEvent.objects.filter(action="entries.redact").exists()
    assert redaction_preview(dataset=dataset_with_pii).changed == 3


def test_the_api_applies_the_redaction_audited_with_the_key(key_client, dataset_with_pii):
    response = key_client.post(
        api_url(dataset_with_pii), {"kinds": ["EMAIL", "CARD"], "dry_run": False}, format="json"
    )

    assert response.status_code == 200
    assert response.json() == {"dry_run": False, "kinds": ["EMAIL", "CARD"], "changed": 3}
    event = AuditEvent.objects.get(action="entries.redact")
    assert event.api_key is not None and event.actor is None
    assert redaction_preview(dataset=dataset_with_pii).changed == 1  # the phone number is left


def test_the_api_refuses_unknown_kinds(key_client, dataset_with_pii):
    response = key_client.post(api_url(dataset_with_pii), {"kinds": ["NAME"]}, format="json")

    assert response.status_code == 400
    assert redaction_preview(dataset=dataset_with_pii).changed == 3


def test_a_viewer_is_refused_by_the_api(client_for, dataset_with_pii, viewer):
    response = client_for(viewer).post(api_url(dataset_with_pii) + "?project=acme", {"dry_run": False}, format="json")

    assert response.status_code == 403
    assert redaction_preview(dataset=dataset_with_pii).changed == 3


def test_another_projects_dataset_is_not_found(client_for, dataset_with_pii, outsider):
    response = client_for(outsider).post(
        api_url(dataset_with_pii) + "?project=other", {"dry_run": True}, format="json"
    )

    assert response.status_code == 404


# --- large datasets: the job ----------------------------------------------------------------------


@pytest.fixture
def large(monkeypatch):
    """The five entries count as a large dataset, redacted two at a time."""
    monkeypatch.setattr(redaction, "INLINE_LIMIT", 4)
    monkeypatch.setattr(redaction, "BATCH", 2)


class WorkerKilled(BaseException):
    """What a worker killed in the middle of a batch looks like to the code: nothing it catches."""


def test_a_dataset_up_to_the_limit_is_redacted_in_the_request(dataset_with_pii, monkeypatch):
    monkeypatch.setattr(redaction, "INLINE_LIMIT", 5)

    assert dataset_redact_or_queue(dataset=dataset_with_pii, kinds=["EMAIL"]) == 2
    assert not RedactionJob.objects.exists()


def test_a_larger_dataset_is_redacted_by_a_job_in_batches_with_progress(
    dataset_with_pii, logs_with_pii, editor, large
):
    job = dataset_redact_or_queue(dataset=dataset_with_pii, kinds=["EMAIL", "PHONE"], actor=editor)

    assert isinstance(job, RedactionJob)
    assert (job.status, job.total, job.done, job.kinds) == (JobStatus.QUEUED, 5, 0, ["EMAIL", "PHONE"])
    assert redaction_preview(dataset=dataset_with_pii).changed == 3  # nothing changed before the worker runs
    seen: list[tuple[int, int]] = []

    done = redaction_job_run(job_id=job.pk, on_progress=lambda job: seen.append((job.done, job.changed)))

    assert done is not None
    assert (done.status, done.done, done.changed, done.progress) == (JobStatus.SUCCEEDED, 5, 2, 1.0)
    assert seen == [(2, 1), (4, 2), (5, 2)]
    assert by_log(dataset_with_pii, logs_with_pii[3]).messages[0]["content"] == "Call me at <PHONE> or mail <EMAIL>."
    assert redaction_preview(dataset=dataset_with_pii).changed == 1  # the card was not chosen
    event = AuditEvent.objects.get(action="entries.redact")
    assert (event.count, event.actor, event.detail["kinds"]) == (2, editor, ["EMAIL", "PHONE"])


def test_a_job_stopped_halfway_resumes_after_its_last_committed_batch_counting_nothing_twice(dataset_with_pii, large):
    job = redaction_job_create(dataset=dataset_with_pii)

    def killed(job: RedactionJob) -> None:
        raise WorkerKilled

    with pytest.raises(WorkerKilled):
        redaction_job_run(job_id=job.pk, on_progress=killed)

    job.refresh_from_db()
    first_two = entries(dataset_with_pii)[:2]
    assert (job.status, job.done, job.changed, job.last_id) == (JobStatus.RUNNING, 2, 1, first_two[1].pk)
    assert first_two[0].messages == qa("Write to <EMAIL> please.")
    assert not AuditEvent.objects.filter(action="entries.redact").exists()

    again = redaction_job_run(job_id=job.pk)  # the redelivered task

    assert again is not None
    assert (again.status, again.done, again.changed) == (JobStatus.SUCCEEDED, 5, 3)
    assert redaction_preview(dataset=dataset_with_pii).changed == 0
    assert AuditEvent.objects.get(action="entries.redact").count == 3


def test_a_task_delivered_again_after_the_job_finished_does_nothing(dataset_with_pii, large):
    job = redaction_job_create(dataset=dataset_with_pii)
    redaction_job_run(job_id=job.pk)
    after = [(e.messages, e.updated_at) for e in entries(dataset_with_pii)]

    dataset_redact_task(job.pk)

    job.refresh_from_db()
    assert (job.done, job.changed) == (5, 3)
    assert [(e.messages, e.updated_at) for e in entries(dataset_with_pii)] == after
    assert AuditEvent.objects.filter(action="entries.redact").count() == 1


def test_a_job_whose_dataset_was_deleted_meanwhile_is_gone(dataset_with_pii, large):
    job = redaction_job_create(dataset=dataset_with_pii)
    dataset_with_pii.delete()

    assert redaction_job_run(job_id=job.pk) is None


def test_a_failing_batch_fails_the_job_with_its_error(dataset_with_pii, large, monkeypatch):
    job = redaction_job_create(dataset=dataset_with_pii)

    def broken(batch: list, kinds: list) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(redaction, "_batch_redact", broken)
    with pytest.raises(RuntimeError):
        redaction_job_run(job_id=job.pk)

    job.refresh_from_db()
    assert (job.status, job.error, job.done) == (JobStatus.FAILED, "RuntimeError: disk full", 0)
    assert job.finished_at is not None


def test_a_second_redaction_while_a_job_is_queued_or_running_returns_that_job(dataset_with_pii, large):
    first = dataset_redact_or_queue(dataset=dataset_with_pii, kinds=["EMAIL"])
    assert isinstance(first, RedactionJob)

    assert dataset_redact_or_queue(dataset=dataset_with_pii, kinds=["CARD"]) == first
    RedactionJob.objects.filter(pk=first.pk).update(status=JobStatus.RUNNING)
    assert redaction_job_create(dataset=dataset_with_pii) == first
    assert RedactionJob.objects.count() == 1

    redaction_job_run(job_id=first.pk)
    second = dataset_redact_or_queue(dataset=dataset_with_pii, kinds=["CARD"])
    assert isinstance(second, RedactionJob) and second != first


def test_the_task_is_sent_once_the_request_commits(
    dataset_with_pii, large, monkeypatch, django_capture_on_commit_callbacks
):
    sent: list[int] = []
    monkeypatch.setattr(dataset_redact_task, "delay", sent.append)

    with django_capture_on_commit_callbacks(execute=True):
        job = redaction_job_create(dataset=dataset_with_pii)
        assert sent == []

    assert sent == [job.pk]


def test_with_the_broker_down_the_job_is_kept_unsent_and_the_reaper_sends_it(
    dataset_with_pii, large, monkeypatch, django_capture_on_commit_callbacks
):
    def down(job_id: int) -> None:
        raise BrokerUnavailable("Connection refused")

    monkeypatch.setattr(dataset_redact_task, "delay", down)
    with django_capture_on_commit_callbacks(execute=True):
        job = redaction_job_create(dataset=dataset_with_pii)

    job.refresh_from_db()
    assert (job.status, job.enqueued_at) == (JobStatus.QUEUED, None)
    sent: list[int] = []
    monkeypatch.setattr(dataset_redact_task, "delay", sent.append)

    assert redaction_jobs_reap() == 1
    assert redaction_jobs_reap() == 0  # and only once
    assert sent == [job.pk]


def test_the_reaper_sends_a_running_job_again_once_no_batch_was_committed_for_a_while(
    dataset_with_pii, large, monkeypatch
):
    sent: list[int] = []
    monkeypatch.setattr(dataset_redact_task, "delay", sent.append)
    long_ago = timezone.now() - redaction.RESEND_AFTER - timedelta(seconds=1)
    stalled = redaction_job_create(dataset=dataset_with_pii)
    RedactionJob.objects.filter(pk=stalled.pk).update(status=JobStatus.RUNNING, heartbeat_at=long_ago,
                                                      enqueued_at=long_ago)  # fmt: skip
    other = dataset_create(project=dataset_with_pii.project, name="Other")
    dataset_entries_ingest(dataset=other, items=[{"messages": qa(MAIL)}])
    busy = redaction_job_create(dataset=other)
    RedactionJob.objects.filter(pk=busy.pk).update(status=JobStatus.RUNNING, heartbeat_at=timezone.now(),
                                                   enqueued_at=long_ago)  # fmt: skip

    assert redaction_jobs_reap() == 1

    assert sent == [stalled.pk]
    stalled.refresh_from_db()
    assert stalled.enqueued_at is not None and stalled.enqueued_at > long_ago


def test_a_real_worker_runs_the_job(celery_worker, dataset_with_pii, large):
    job = dataset_redact_or_queue(dataset=dataset_with_pii)
    assert isinstance(job, RedactionJob)

    job = wait_until_finished(job, seconds=60)

    assert (job.status, job.done, job.changed) == (JobStatus.SUCCEEDED, 5, 3), job.error
    assert redaction_preview(dataset=dataset_with_pii).changed == 0


# --- large datasets: the page and the API ---------------------------------------------------------


def test_an_editor_redacts_a_large_dataset_from_the_page_and_follows_its_progress(
    client, dataset_with_pii, editor, large
):
    client.force_login(editor)
    preview = client.post(page_url(dataset_with_pii, "pii/preview"), {"kinds": ["EMAIL"]}).content.decode()
    assert "a worker redacts them" in preview

    done = client.post(page_url(dataset_with_pii, "pii/redact"), {"kinds": ["EMAIL"]}, follow=True).content.decode()

    assert "Redacting EMAIL in 5 entries: progress below." in done
    job = RedactionJob.objects.get(dataset=dataset_with_pii)
    card = client.get(page_url(dataset_with_pii, "pii")).content.decode()
    assert 'data-status="queued"' in card and 'hx-trigger="every 2s"' in card
    assert f'hx-get="{page_url(dataset_with_pii, "pii/job")}"' in card
    assert "0 of 5 entries" in card and "waiting for a worker" in card
    assert "Preview the redaction" not in card  # no second redaction while this one runs
    redaction_job_run(job_id=job.pk)

    polled = client.get(page_url(dataset_with_pii, "pii/job"), HTTP_HX_REQUEST="true").content.decode()

    assert 'data-status="succeeded"' in polled and "every 2s" not in polled
    assert "The last redaction of EMAIL changed 2 of 5 entries" in polled
    assert f'hx-get="{page_url(dataset_with_pii, "pii")}" hx-trigger="load"' in polled  # the counts are reloaded once
    card = client.get(page_url(dataset_with_pii, "pii")).content.decode()
    assert "Preview the redaction" in card and 'hx-trigger="load"' not in card
    assert "The last redaction of EMAIL changed 2 of 5 entries" in card


def test_a_redaction_asked_for_while_another_runs_is_refused_on_the_page(client, dataset_with_pii, editor, large):
    redaction_job_create(dataset=dataset_with_pii, kinds=["CARD"])
    client.force_login(editor)

    done = client.post(page_url(dataset_with_pii, "pii/redact"), {"kinds": ["EMAIL"]}, follow=True).content.decode()

    assert "A redaction of CARD is already running" in done
    assert RedactionJob.objects.count() == 1


def test_a_failed_job_shows_its_error_on_the_card(client, dataset_with_pii, viewer, large):
    job = redaction_job_create(dataset=dataset_with_pii)
    RedactionJob.objects.filter(pk=job.pk).update(status=JobStatus.FAILED, error="RuntimeError: disk full", done=2)
    client.force_login(viewer)

    card = client.get(page_url(dataset_with_pii, "pii")).content.decode()

    assert 'class="error"' in card and "failed after 2 of 5 entries: RuntimeError: disk full" in card
    assert "every 2s" not in card


def test_a_viewer_follows_the_progress_but_sees_no_form(client, dataset_with_pii, viewer, large):
    redaction_job_create(dataset=dataset_with_pii)
    client.force_login(viewer)

    card = client.get(page_url(dataset_with_pii, "pii")).content.decode()
    polled = client.get(page_url(dataset_with_pii, "pii/job")).content.decode()

    assert "every 2s" in card and "every 2s" in polled
    assert 'name="kinds"' not in card
    assert client.post(page_url(dataset_with_pii, "pii/job")).status_code == 405


def test_the_api_answers_202_with_a_job_to_follow_on_a_large_dataset(key_client, dataset_with_pii, large):
    response = key_client.post(
        api_url(dataset_with_pii), {"kinds": ["EMAIL", "CARD"], "dry_run": False}, format="json"
    )

    assert response.status_code == 202, response.content
    body = response.json()
    job = RedactionJob.objects.get(dataset=dataset_with_pii)
    assert (body["id"], body["status"], body["done"], body["total"], body["changed"]) == (job.pk, "queued", 0, 5, 0)
    assert body["kinds"] == ["EMAIL", "CARD"]
    assert body["url"] == f"/api/v1/datasets/{dataset_with_pii.pk}/redaction-jobs/{job.pk}?project=acme"
    again = key_client.post(api_url(dataset_with_pii), {"kinds": ["PHONE"], "dry_run": False}, format="json")
    assert (again.status_code, again.json()["id"]) == (202, job.pk)
    redaction_job_run(job_id=job.pk)

    status = key_client.get(body["url"]).json()

    assert (status["status"], status["done"], status["changed"], status["progress"]) == ("succeeded", 5, 3, 1.0)
    event = AuditEvent.objects.get(action="entries.redact")
    assert event.api_key is not None and event.actor is None


def test_a_viewer_reads_a_job_but_another_project_does_not_find_it(
    client_for, dataset_with_pii, viewer, outsider, large
):
    job = redaction_job_create(dataset=dataset_with_pii)
    url = f"/api/v1/datasets/{dataset_with_pii.pk}/redaction-jobs/{job.pk}"

    assert client_for(viewer).get(url + "?project=acme").json()["status"] == "queued"
    assert client_for(outsider).get(url + "?project=other").status_code == 404
    other = dataset_create(project=dataset_with_pii.project, name="Other")
    assert (
        client_for(viewer).get(f"/api/v1/datasets/{other.pk}/redaction-jobs/{job.pk}?project=acme").status_code == 404
    )
