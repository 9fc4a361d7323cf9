import csv
import gzip
import io
import threading

import orjson
import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from curation.logs.imports import run
from curation.logs.imports.run import import_job_claim, import_job_run
from curation.logs.imports.services import import_job_create, import_job_create_local, import_jobs_reap
from curation.models import ImportJob, ImportLineError, JobStatus, LogEntry
from tests.curation.samples import anthropic_log, openai_log
from tests.faults.processes import wait_for
from tests.waiting import wait_until_finished

GOOD, BAD_JSON, BAD_ROLE = 0, 1, 2


def jsonl(lines: list[object]) -> bytes:
    return b"".join((line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n" for line in lines)


def mixed_file() -> bytes:
    bad_role = openai_log(external_id="bad")
    bad_role["request"]["messages"][0]["role"] = "narrator"
    return jsonl(
        [
            openai_log(external_id="l1"),
            b'{"request": ',
            anthropic_log(external_id="l3"),
            b"",
            bad_role,
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
            openai_log(external_id="l1"),
        ]
    )


def test_an_upload_is_imported_by_a_real_worker_with_a_line_error_report(celery_worker, key_client, project):
    upload = SimpleUploadedFile("prod.jsonl.gz", gzip.compress(mixed_file()), content_type="application/gzip")

    response = key_client.post("/api/v1/imports", {"file": upload}, format="multipart")

    assert response.status_code == 202, response.content
    job = wait_until_finished(ImportJob.objects.get(pk=response.json()["id"]))
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert (job.accepted, job.duplicates, job.rejected, job.lines_done) == (3, 1, 2, 7)
    assert LogEntry.objects.filter(project=project).count() == 3

    status = key_client.get(f"/api/v1/imports/{job.pk}").json()
    assert (status["status"], status["progress"], status["rejected"]) == ("succeeded", 1.0, 2)
    report = key_client.get(f"/api/v1/imports/{job.pk}/errors")
    rows = list(csv.reader(io.StringIO(b"".join(report.streaming_content).decode())))
    assert rows[0] == ["line", "error"]
    assert rows[1][0] == "2" and rows[1][1].startswith("invalid JSON")
    assert rows[2][0] == "5" and rows[2][1].startswith("request.messages.0.role: unknown role 'narrator'")
    assert len(rows) == 3


@pytest.mark.django_db
def test_the_cli_imports_inline_and_summarises(tmp_path, project, capsys):
    path = tmp_path / "logs.jsonl"
    path.write_bytes(mixed_file())

    call_command("import_logs", str(path), "--project", "acme", "--inline", "--no-progress")

    out = capsys.readouterr().out
    assert "Imported 3 logs (1 duplicates, 2 rejected lines) from 7 lines." in out
    assert "line 2: invalid JSON" in out
    assert LogEntry.objects.filter(project=project).count() == 3
    assert ImportJob.objects.get(project=project).source_name == "logs.jsonl"  # not where it lies on the server


@pytest.mark.django_db
def test_the_cli_explains_a_missing_file_or_project(tmp_path, project):
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_logs", str(tmp_path / "nope.jsonl"), "--project", "acme", "--inline")
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"")
    with pytest.raises(CommandError, match="Project 'ghost' not found"):
        call_command("import_logs", str(path), "--project", "ghost", "--inline")


@pytest.mark.django_db
def test_a_corrupt_gzip_fails_the_job_with_a_clear_error(tmp_path, project):
    path = tmp_path / "broken.jsonl.gz"
    path.write_bytes(gzip.compress(mixed_file())[:40])
    job = import_job_create_local(project=project, path=path)

    with pytest.raises(EOFError):
        import_job_run(job_id=job.pk, path=path)

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "not a valid gzip file" in job.error


@pytest.mark.django_db
@pytest.mark.parametrize("read_ahead", [True, False])
def test_a_redelivered_import_resumes_after_the_last_committed_line(
    tmp_path, project, settings, monkeypatch, read_ahead
):
    settings.LOGTUNE_IMPORT_BATCH = 2
    settings.LOGTUNE_IMPORT_READ_AHEAD = read_ahead
    path = tmp_path / "logs.jsonl"
    path.write_bytes(jsonl([{"prompt": f"p{i}", "completion": "c"} for i in range(7)]))
    job = import_job_create_local(project=project, path=path)
    real_commit = run._commit_batch
    calls = {"n": 0}

    def crash_on_third_batch(*args, **kwargs) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("worker lost")
        real_commit(*args, **kwargs)

    monkeypatch.setattr(run, "_commit_batch", crash_on_third_batch)
    with pytest.raises(RuntimeError):
        import_job_run(job_id=job.pk, path=path)
    monkeypatch.setattr(run, "_commit_batch", real_commit)
    ImportJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING)  # as if redelivered mid-run

    job = import_job_run(job_id=job.pk, path=path)

    prompts = sorted(log.messages[0]["content"] for log in LogEntry.objects.filter(project=project))
    assert prompts == [f"p{i}" for i in range(7)]
    assert (job.status, job.accepted, job.lines_done) == (JobStatus.SUCCEEDED, 7, 7)


@pytest.mark.django_db
def test_the_next_batch_is_read_in_a_thread_while_the_one_before_is_stored(tmp_path, project, settings, monkeypatch):
    settings.LOGTUNE_IMPORT_BATCH = 2
    path = tmp_path / "logs.jsonl"
    path.write_bytes(jsonl([{"prompt": f"p{i}", "completion": "c"} for i in range(7)]))
    job = import_job_create_local(project=project, path=path)
    real_read, real_commit = run._batch_read, run._commit_batch
    storing = {line: threading.Event() for line in (2, 4, 6, 7)}  # set once the batch ending there is being stored
    readers: set[str] = set()
    overlapped: list[int] = []

    def reading(job, batch):
        readers.add(threading.current_thread().name)
        before = {4: 2, 6: 4, 7: 6}.get(batch.last_line)
        if before and storing[before].wait(timeout=5):
            overlapped.append(batch.last_line)  # read while the batch before it was being stored
        return real_read(job, batch)

    def committing(job, batch) -> None:
        storing[batch.last_line].set()
        real_commit(job, batch)

    monkeypatch.setattr(run, "_batch_read", reading)
    monkeypatch.setattr(run, "_commit_batch", committing)

    job = import_job_run(job_id=job.pk, path=path)

    assert overlapped == [4, 6, 7]
    assert len(readers) == 1 and readers.pop().startswith("import-read")
    assert (job.status, job.accepted, job.lines_done) == (JobStatus.SUCCEEDED, 7, 7)


@pytest.mark.django_db
def test_a_batch_that_fails_in_the_reading_thread_fails_the_job_after_the_batches_before_it(
    tmp_path, project, settings, monkeypatch
):
    settings.LOGTUNE_IMPORT_BATCH = 2
    path = tmp_path / "logs.jsonl"
    path.write_bytes(jsonl([{"prompt": f"p{i}", "completion": "c"} for i in range(7)]))
    job = import_job_create_local(project=project, path=path)
    real_prepare = run.logs_prepare
    calls = {"n": 0}

    def failing_third(**kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("reader crashed")
        return real_prepare(**kwargs)

    monkeypatch.setattr(run, "logs_prepare", failing_third)
    with pytest.raises(RuntimeError):
        import_job_run(job_id=job.pk, path=path)

    job.refresh_from_db()
    assert (job.status, job.lines_done, job.accepted) == (JobStatus.FAILED, 4, 4)
    assert "reader crashed" in job.error
    prompts = sorted(log.messages[0]["content"] for log in LogEntry.objects.filter(project=project))
    assert prompts == ["p0", "p1", "p2", "p3"]  # the committed lines are the file's first ones, nothing after


@pytest.mark.django_db
def test_a_file_of_large_lines_is_committed_in_batches_bounded_by_bytes_not_only_lines(
    tmp_path, project, settings, monkeypatch
):
    settings.LOGTUNE_IMPORT_BATCH = 1000
    settings.LOGTUNE_IMPORT_BATCH_BYTES = 250_000
    settings.LOGTUNE_MAX_BODY_BYTES = 300_000
    big = [{"prompt": f"p{i} " + "x" * 100_000, "completion": "c"} for i in range(6)]
    overlong = {"prompt": "y" * 400_000, "completion": "c"}
    path = tmp_path / "large.jsonl"
    path.write_bytes(jsonl([*big[:5], overlong, big[5]]))
    job = import_job_create_local(project=project, path=path)
    real_commit = run._commit_batch
    batches: list[tuple[int, int, int]] = []  # (lines held, bytes of line text held, lines_done once committed)

    real_read = run._batch_read
    events: list[tuple[str, int]] = []

    def reading(job, batch):
        events.append(("read", batch.last_line))
        return real_read(job, batch)

    def counting_commit(job, batch) -> None:
        real_commit(job, batch)
        events.append(("stored", batch.last_line))
        held = sum(len(log.original_text.encode()) for log, _ in batch.logs.logs)
        batches.append((len(batch.logs.logs), held, ImportJob.objects.get(pk=job.pk).lines_done))

    monkeypatch.setattr(run, "_batch_read", reading)
    monkeypatch.setattr(run, "_commit_batch", counting_commit)

    job = import_job_run(job_id=job.pk, path=path)

    assert [(lines, done) for lines, _, done in batches] == [(2, 2), (2, 4), (2, 7)]
    # Two batches would hold more than LOGTUNE_IMPORT_BATCH_BYTES: none is read while the one before is held.
    assert events == [("read", 2), ("stored", 2), ("read", 4), ("stored", 4), ("read", 7), ("stored", 7)]
    assert all(held <= 250_000 for _, held, _ in batches)
    assert (job.status, job.accepted, job.rejected, job.lines_done) == (JobStatus.SUCCEEDED, 6, 1, 7)
    assert ImportLineError.objects.get(job=job).error == "line is longer than 300000 bytes"


@pytest.mark.django_db
def test_a_line_larger_than_the_batch_bytes_is_a_batch_of_its_own(tmp_path, project, settings, monkeypatch):
    settings.LOGTUNE_IMPORT_BATCH_BYTES = 1000
    path = tmp_path / "logs.jsonl"
    path.write_bytes(jsonl([{"prompt": "a", "completion": "c"}, {"prompt": "x" * 5000, "completion": "c"}]))
    job = import_job_create_local(project=project, path=path)
    real_commit = run._commit_batch
    done: list[int] = []

    def counting_commit(job, batch) -> None:
        real_commit(job, batch)
        done.append(job.lines_done)

    monkeypatch.setattr(run, "_commit_batch", counting_commit)

    job = import_job_run(job_id=job.pk, path=path)

    assert done == [1, 2]
    assert (job.status, job.accepted) == (JobStatus.SUCCEEDED, 2)


@pytest.mark.django_db
def test_an_overlong_line_is_reported_and_the_rest_imported(tmp_path, project, settings):
    settings.LOGTUNE_MAX_BODY_BYTES = 200
    path = tmp_path / "logs.jsonl"
    path.write_bytes(jsonl([{"prompt": "x" * 500, "completion": "c"}, {"prompt": "short", "completion": "c"}]))
    job = import_job_create_local(project=project, path=path)

    job = import_job_run(job_id=job.pk, path=path)

    assert (job.accepted, job.rejected) == (1, 1)
    assert ImportLineError.objects.get(job=job).line == 1


@pytest.mark.django_db
def test_viewers_cannot_upload_and_outsiders_cannot_see_imports(client_for, viewer, outsider, project, tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"")
    job = import_job_create_local(project=project, path=path)
    upload = SimpleUploadedFile("a.jsonl", b"{}\n")

    assert client_for(viewer).post("/api/v1/imports?project=acme", {"file": upload}).status_code == 403
    assert client_for(viewer).get(f"/api/v1/imports/{job.pk}?project=acme").status_code == 200
    assert client_for(outsider).get(f"/api/v1/imports/{job.pk}?project=other").status_code == 404
    assert client_for(outsider).get(f"/api/v1/imports/{job.pk}/errors?project=other").status_code == 404


@pytest.mark.django_db
def test_an_upload_without_a_file_names_the_field(key_client):
    response = key_client.post("/api/v1/imports", {}, format="multipart")

    assert response.status_code == 400
    assert "file" in response.json()


# --- files that are not JSONL are refused at upload -------------------------------------------------

CSV = b"id,prompt,completion\n1,What is 2+2?,4\n"
NOT_JSONL = {
    "png": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64), "it is a PNG image"),
    "csv": (CSV, "it starts with 'id,prompt,completion', not a JSON object"),
    "json-array": (
        orjson.dumps([openai_log(), openai_log()]),
        "send the array as it is to POST /api/v1/logs",
    ),
    "gzip-of-csv": (gzip.compress(CSV), "gzip-compressed, but not JSON Lines inside: it starts with 'id,prompt,"),
    "empty": (b"", "empty"),
}
not_jsonl = pytest.mark.parametrize("content, reason", NOT_JSONL.values(), ids=NOT_JSONL.keys())


@not_jsonl
def test_the_api_refuses_a_file_that_is_not_jsonl_naming_the_field(key_client, content, reason):
    upload = SimpleUploadedFile("logs.jsonl", content)

    response = key_client.post("/api/v1/imports", {"file": upload}, format="multipart")

    assert response.status_code == 400
    assert list(response.json()) == ["file"]
    assert reason in response.json()["file"][0]
    assert not ImportJob.objects.exists()


@not_jsonl
def test_the_upload_forms_refuse_a_file_that_is_not_jsonl(client, editor, dataset, content, reason):
    client.force_login(editor)

    for path in ("/p/acme/imports/upload", f"/p/acme/datasets/{dataset.pk}/imports/upload"):
        response = client.post(path, {"file": SimpleUploadedFile("logs.jsonl", content)})
        assert response.status_code == 302

    flashed = [str(message) for message in get_messages(response.wsgi_request)]  # one of each page
    assert len(flashed) == 2 and all(reason in message for message in flashed), flashed
    assert not ImportJob.objects.exists()


@not_jsonl
@pytest.mark.django_db
def test_the_cli_refuses_a_file_that_is_not_jsonl(tmp_path, project, content, reason):
    path = tmp_path / "logs.jsonl"
    path.write_bytes(content)

    with pytest.raises(CommandError, match=r"logs\.jsonl: The file") as refused:
        call_command("import_logs", str(path), "--project", "acme", "--inline", "--no-progress")

    assert reason in str(refused.value)
    assert not ImportJob.objects.exists()


@pytest.mark.django_db
def test_the_cli_refuses_before_queueing_too(tmp_path, project, monkeypatch):
    path = tmp_path / "logs.png"
    path.write_bytes(NOT_JSONL["png"][0])
    monkeypatch.setattr("time.sleep", lambda seconds: pytest.fail("the command waits for a queued import"))

    with pytest.raises(CommandError, match="it is a PNG image"):
        call_command("import_logs", str(path), "--project", "acme", "--no-progress")

    assert not ImportJob.objects.exists()


# --- an import that stored nothing failed -------------------------------------------------------------


def bad_lines_file() -> bytes:
    bad_role = openai_log(external_id="bad")
    bad_role["request"]["messages"][0]["role"] = "narrator"
    return jsonl([b'{"request": ', b"", {"prompt": "no completion"}, bad_role, b'{"logs": []}'])


def test_a_file_of_only_bad_lines_fails_with_the_first_reasons_on_the_api_and_the_page(
    key_client, client, editor, project
):
    upload = SimpleUploadedFile("bad.jsonl", bad_lines_file())
    created = key_client.post("/api/v1/imports", {"file": upload}, format="multipart")
    assert created.status_code == 202, created.content

    job = import_job_run(job_id=created.json()["id"])

    assert (job.status, job.accepted, job.rejected, job.lines_done) == (JobStatus.FAILED, 0, 4, 5)
    assert job.error.startswith("No log was stored: all 4 lines were rejected. First reasons: line 1: invalid JSON: ")
    assert "; line 3: " in job.error and "; line 4: request.messages.0.role: unknown role 'narrator'" in job.error
    assert "line 5" not in job.error  # the first three reasons; the error report has them all
    shown = key_client.get(f"/api/v1/imports/{job.pk}").json()
    assert (shown["status"], shown["error"], shown["progress"]) == ("failed", job.error, 1.0)
    client.force_login(editor)
    panel = client.get("/p/acme/imports/").content.decode()
    assert '<span class="status failed">Failed</span>' in panel
    assert "No log was stored: all 4 lines were rejected." in panel
    assert f"/api/v1/imports/{job.pk}/errors?project=acme" in panel


@pytest.mark.django_db
def test_the_cli_shows_the_counts_and_exits_with_the_reason_when_nothing_was_stored(tmp_path, project, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(bad_lines_file())

    with pytest.raises(CommandError, match=r"failed: No log was stored: all 4 lines were rejected\. First reasons"):
        call_command("import_logs", str(path), "--project", "acme", "--inline", "--no-progress")

    out = capsys.readouterr().out
    assert "Imported 0 logs (0 duplicates, 4 rejected lines) from 5 lines." in out
    assert "line 1: invalid JSON" in out
    assert ImportJob.objects.get().status == JobStatus.FAILED


@pytest.mark.django_db
def test_a_training_file_of_only_bad_lines_fails_on_the_dataset_too(dataset, client, editor):
    client.force_login(editor)
    upload = SimpleUploadedFile("train.jsonl", jsonl([{"messages": [{"role": "bot", "content": "x"}]}]))
    client.post(f"/p/acme/datasets/{dataset.pk}/imports/upload", {"file": upload})

    job = import_job_run(job_id=ImportJob.objects.get(dataset=dataset).pk)

    assert job.status == JobStatus.FAILED
    assert job.error.startswith("No entry was stored: its only line was rejected. Reason: line 1: messages.0.role")
    panel = client.get(f"/p/acme/datasets/{dataset.pk}/imports/").content.decode()
    assert "Failed" in panel and "No entry was stored" in panel


@pytest.mark.django_db
def test_a_file_of_blank_lines_fails_as_holding_no_lines(tmp_path, project):
    path = tmp_path / "blank.jsonl"
    path.write_bytes(b"\n  \n\r\n")
    job = import_job_create_local(project=project, path=path)

    job = import_job_run(job_id=job.pk, path=path)

    assert (job.status, job.error, job.lines_done) == (JobStatus.FAILED, "The file holds no lines.", 3)


@pytest.mark.django_db
def test_importing_the_same_file_again_succeeds_with_duplicates(tmp_path, project, capsys):
    path = tmp_path / "logs.jsonl"
    path.write_bytes(jsonl([openai_log(external_id=f"r{i}") for i in range(3)]))
    call_command("import_logs", str(path), "--project", "acme", "--inline", "--no-progress")

    call_command("import_logs", str(path), "--project", "acme", "--inline", "--no-progress")

    again = ImportJob.objects.order_by("pk").last()
    assert (again.status, again.error, again.accepted, again.duplicates) == (JobStatus.SUCCEEDED, "", 0, 3)
    assert "Imported 0 logs (3 duplicates, 0 rejected lines) from 3 lines." in capsys.readouterr().out
    assert LogEntry.objects.filter(project=project).count() == 3


# --- uploads: deleted once imported, and capped while they wait ---------------------------------------


def stored_uploads(media) -> list[str]:
    return sorted(str(path.relative_to(media)) for path in media.rglob("*") if path.is_file())


def test_an_upload_is_deleted_once_imported_or_failed_by_a_real_worker_and_the_report_kept(
    celery_worker, key_client, project, media
):
    good = key_client.post("/api/v1/imports", {"file": SimpleUploadedFile("good.jsonl", mixed_file())})
    bad = key_client.post(
        "/api/v1/imports", {"file": SimpleUploadedFile("bad.jsonl.gz", gzip.compress(bad_lines_file()))}
    )
    assert good.status_code == bad.status_code == 202, (good.content, bad.content)

    succeeded = wait_until_finished(ImportJob.objects.get(pk=good.json()["id"]))
    failed = wait_until_finished(ImportJob.objects.get(pk=bad.json()["id"]))
    wait_for(lambda: not ImportJob.objects.exclude(file="").exists(), 10, "the uploads to be deleted after finishing")
    succeeded.refresh_from_db()
    failed.refresh_from_db()

    assert (succeeded.status, failed.status) == (JobStatus.SUCCEEDED, JobStatus.FAILED)
    assert not succeeded.file and not failed.file
    assert stored_uploads(media) == []
    report = key_client.get(f"/api/v1/imports/{failed.pk}/errors")
    assert len(list(csv.reader(io.StringIO(b"".join(report.streaming_content).decode())))) == 1 + 4


def upload_job(project, content: bytes = b'{"prompt": "p", "completion": "c"}\n', name: str = "a.jsonl") -> ImportJob:
    return import_job_create(project=project, file=SimpleUploadedFile(name, content), source_name=name)


@pytest.mark.django_db
def test_an_import_the_reaper_requeues_keeps_its_upload_and_one_it_fails_loses_it(project, media, settings):
    settings.LOGTUNE_IMPORT_HEARTBEAT_TIMEOUT_S = 0
    settings.LOGTUNE_IMPORT_MAX_ATTEMPTS = 2
    job = upload_job(project)
    assert import_job_claim(job_id=job.pk, worker="gone@host")

    assert import_jobs_reap() == 1  # re-queued, to resume: it needs its file
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.file and stored_uploads(media) == [job.file.name]

    assert import_job_claim(job_id=job.pk, worker="gone-again@host")
    assert import_jobs_reap() == 1  # its last attempt: failed for good
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "at most 2" in job.error
    assert not job.file and stored_uploads(media) == []


@pytest.mark.django_db
def test_the_reaper_sends_no_import_whose_upload_is_gone_and_deletes_those_left_by_finished_ones(
    project, media, monkeypatch
):
    from curation.logs.imports.tasks import import_logs_run

    sent: list[int] = []
    monkeypatch.setattr(import_logs_run, "delay", sent.append)
    lost, waiting, finished, done = upload_job(project), upload_job(project), upload_job(project), upload_job(project)
    lost.file.storage.delete(lost.file.name)  # a media volume that lost a file
    ImportJob.objects.filter(pk__in=[lost.pk, waiting.pk]).update(enqueued_at=None)  # the broker was down
    # Finished before uploads were deleted on finishing: its file is still there.
    ImportJob.objects.filter(pk=finished.pk).update(status=JobStatus.SUCCEEDED)
    import_job_run(job_id=done.pk)  # finished now: its upload is gone, as it should be

    assert import_jobs_reap() == 2

    assert sent == [waiting.pk]
    lost.refresh_from_db()
    assert lost.status == JobStatus.FAILED and not lost.file
    assert lost.error == f"The uploaded file is gone from storage ({lost.source_name}): upload it again."
    assert not ImportJob.objects.get(pk=finished.pk).file and not ImportJob.objects.get(pk=done.pk).file
    assert stored_uploads(media) == [ImportJob.objects.get(pk=waiting.pk).file.name]


@pytest.mark.django_db
def test_uploads_past_the_projects_pending_bytes_are_refused_naming_the_limit(
    key_client, client, editor, dataset, settings, tmp_path
):
    content = jsonl([{"prompt": f"p{i}", "completion": "c"} for i in range(20)])
    settings.LOGTUNE_MAX_PENDING_IMPORT_BYTES = 2 * len(content) + 10
    client.force_login(editor)

    def api_upload():
        return key_client.post("/api/v1/imports", {"file": SimpleUploadedFile("a.jsonl", content)})

    assert api_upload().status_code == 202
    assert api_upload().status_code == 202
    refused = api_upload()
    for path in ("/p/acme/imports/upload", f"/p/acme/datasets/{dataset.pk}/imports/upload"):
        page = client.post(path, {"file": SimpleUploadedFile("a.jsonl", content)})
        assert page.status_code == 302
    flashed = [str(message) for message in get_messages(page.wsgi_request)]

    assert refused.status_code == 413
    limit = f"{settings.LOGTUNE_MAX_PENDING_IMPORT_BYTES:,} bytes (LOGTUNE_MAX_PENDING_IMPORT_BYTES)"
    assert limit in refused.json()["detail"] and f"{2 * len(content):,} bytes" in refused.json()["detail"]
    assert len(flashed) == 2 and all(limit in message for message in flashed), flashed
    path = tmp_path / "a.jsonl"
    path.write_bytes(content)
    with pytest.raises(
        CommandError, match=r"\(LOGTUNE_MAX_PENDING_IMPORT_BYTES\)\. .* Or import it here with --inline"
    ):
        call_command("import_logs", str(path), "--project", "acme", "--no-progress")
    assert ImportJob.objects.count() == 2

    import_job_run(job_id=ImportJob.objects.order_by("pk").first().pk)  # imported: its bytes are no longer pending

    assert api_upload().status_code == 202
    assert ImportJob.objects.count() == 3


def test_a_jsonl_line_whose_response_is_its_stream_is_imported_assembled(tmp_path, project):
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1767225600, "model": "gpt-4o-mini"}
    line = {
        "request": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "2+2?"}]},
        "response": [
            {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "4"}}]},
            {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        ],
    }
    not_a_stream = {**line, "response": [1, 2]}
    path = tmp_path / "streams.jsonl"
    path.write_bytes(orjson.dumps(line) + b"\n" + orjson.dumps(not_a_stream) + b"\n")

    call_command("import_logs", str(path), "--project", project.slug, "--inline", "--no-progress")

    job = ImportJob.objects.get(project=project)
    assert (job.accepted, job.rejected) == (1, 1)
    log = LogEntry.objects.get(project=project)
    assert log.original == orjson.dumps(line).decode()
    assert (log.messages[-1], log.metadata) == (
        {"role": "assistant", "content": "4"},
        {"stream": True, "complete": True},
    )
    assert ImportLineError.objects.get(job=job).error.startswith("response.0: expected a stream event")
