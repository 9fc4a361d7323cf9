"""One bad item never takes the others down: lone surrogates, bad UTF-8 and NUL characters sprinkled in a batch
of 1,000 (PostgreSQL, the COPY path) and in a file import cost nothing but a U+FFFD and a note in their own log."""

import pytest

from curation.logs.imports.run import import_job_run
from curation.logs.imports.services import import_job_create_local
from curation.models import ImportJob, LogEntry

pytestmark = pytest.mark.usefixtures("postgres")


def sprinkled(count: int) -> tuple[list[bytes], int]:
    """`count` log lines, one in seven holding a lone surrogate escape, a NUL escape or raw invalid UTF-8."""
    lines, bad = [], 0
    for number in range(count):
        text = f"question {number}".encode()
        if number % 21 == 3:
            text += b" cut emoji \\ud83d"
        elif number % 21 == 10:
            text += b" nul \\u0000 here"
        elif number % 21 == 17:
            text += b" latin-1 caf\xe9"
        bad += number % 21 in (3, 10, 17)
        lines.append(
            b'{"prompt": "' + text + b'", "completion": "ok", "external_id": "e' + str(number).encode() + b'"}'
        )
    return lines, bad


def test_a_batch_of_1000_with_bad_unicode_stores_every_log(key_client, project):
    lines, bad = sprinkled(1000)

    response = key_client.post("/api/v1/logs", data=b'{"logs": [' + b",".join(lines) + b"]}",
                               content_type="application/json")  # fmt: skip

    assert response.status_code == 200, response.content[:300]
    body = response.json()
    assert (body["accepted"], body["rejected"], len(body["notes"])) == (1000, [], bad)
    assert LogEntry.objects.filter(project=project).count() == 1000
    assert LogEntry.objects.exclude(notes=[]).count() == bad
    cut = LogEntry.objects.get(external_id="e3")
    assert cut.messages[0]["content"] == "question 3 cut emoji \ufffd"
    assert cut.original == lines[3].decode()  # the escape is plain text: kept as sent
    latin = LogEntry.objects.get(external_id="e17")
    assert latin.messages[0]["content"] == "question 17 latin-1 caf\ufffd"
    assert latin.original == lines[17].decode("utf-8", "replace")  # bytes text cannot hold: U+FFFD there too


def test_an_import_with_bad_unicode_stores_every_line(tmp_path, project):
    lines, bad = sprinkled(300)
    path = tmp_path / "logs.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    job = import_job_run(job_id=import_job_create_local(project=project, path=path).pk, path=path)

    assert (job.status, job.accepted, job.rejected) == ("succeeded", 300, 0)
    assert LogEntry.objects.exclude(notes=[]).count() == bad
    assert ImportJob.objects.get().line_errors.count() == 0


def test_an_import_keeps_lines_that_are_not_json_when_the_project_keeps_unreadable_logs(tmp_path, project):
    project.keep_unreadable = True
    project.save()
    path = tmp_path / "logs.jsonl"
    path.write_bytes(b'{"prompt": "a", "completion": "b"}\n{"prompt": "cut off\n{"request": {"messages": 3}}\n')

    job = import_job_run(job_id=import_job_create_local(project=project, path=path).pk, path=path)

    assert (job.status, job.accepted, job.rejected) == ("succeeded", 3, 0)
    cut, wrong = LogEntry.objects.filter(status="unreadable").order_by("id")
    assert cut.original == '{"prompt": "cut off' and cut.error_message.startswith("invalid JSON: ")
    assert wrong.error_message == "request.messages: expected a list, got a number"
