"""An OpenAI Batch API output file imported with its input file: each answer joined to its request by `custom_id`,
both lines kept byte for byte in the log's original."""

import gzip
import io

import orjson
import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from curation.logs.imports.batch_join import BatchJoinError, batch_files_join
from curation.logs.imports.run import import_job_run
from curation.models import ImportJob, LogEntry
from tests.curation.test_ingest_tools import completion


def input_line(custom_id: str, question: str) -> bytes:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}]}
    return orjson.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body})


def output_line(custom_id: str, answer: str) -> bytes:
    # As OpenAI writes them, with a space after each separator, so byte-for-byte keeping shows.
    return (
        b'{"id": "batch_req_' + custom_id.encode() + b'", "custom_id": "' + custom_id.encode() + b'", "response": '
        + orjson.dumps({"status_code": 200, "request_id": "req_1", "body": completion({"content": answer})})
        + b', "error": null}'
    )  # fmt: skip


INPUT = b"\n".join([input_line("t-1", "2+2?"), input_line("t-2", "3+3?"), input_line("t-3", "4+4?")]) + b"\n"
# Answers in another order than the requests, one request unanswered (t-3), one answer without a request (t-9).
OUTPUT = b"\n".join([output_line("t-2", "6"), output_line("t-1", "4"), output_line("t-9", "?")]) + b"\n"


def test_each_answer_is_joined_to_its_request_both_kept_byte_for_byte():
    join = batch_files_join(io.BytesIO(OUTPUT), io.BytesIO(INPUT))

    lines = join.file.read().splitlines()
    assert (join.joined, join.unanswered, join.without_request) == (2, 1, 1)
    assert lines[0] == b'{"request":' + input_line("t-2", "3+3?") + b"," + output_line("t-2", "6")[1:]
    assert lines[1] == b'{"request":' + input_line("t-1", "2+2?") + b"," + output_line("t-1", "4")[1:]
    assert lines[2] == output_line("t-9", "?")  # as it came: the reader says why it cannot be read


def test_gzip_files_are_joined_too():
    join = batch_files_join(io.BytesIO(gzip.compress(OUTPUT)), io.BytesIO(gzip.compress(INPUT)))

    assert (join.joined, join.unanswered) == (2, 1)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (b'{"custom_id": "a"}\n{"custom_id": "a"}\n', "Input file, line 2: custom_id 'a' is on an earlier line too."),
        (b'{"custom_id": "a"}\n[1]\n', "Input file, line 2: not a Batch API input line (no string custom_id)."),
    ],
)
def test_an_input_file_that_cannot_be_joined_is_refused_naming_the_line(text, error):
    with pytest.raises(BatchJoinError) as caught:
        batch_files_join(io.BytesIO(OUTPUT), io.BytesIO(text))

    assert str(caught.value) == error


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/jsonl")


def test_the_api_imports_the_answers_with_their_requests(key_client, project):
    response = key_client.post(
        "/api/v1/imports",
        {"file": upload("batch_out.jsonl", OUTPUT), "batch_input": upload("batch_in.jsonl", INPUT)},
        format="multipart",
    )

    assert response.status_code == 202, response.json()
    assert response.json()["batch_join"] == {"joined": 2, "unanswered": 1, "without_request": 1}
    assert response.json()["source_name"] == "batch_out.jsonl"
    job = import_job_run(job_id=response.json()["id"], path=None)
    assert (job.accepted, job.rejected) == (2, 1)
    log = LogEntry.objects.get(project=project, external_id="t-1")
    assert log.format == "openai_batch"
    assert log.messages == [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    assert input_line("t-1", "2+2?") in log.original.encode()
    assert output_line("t-1", "4")[1:] in log.original.encode()


def test_without_a_batch_input_the_answer_has_no_join_report(key_client, project):
    response = key_client.post("/api/v1/imports", {"file": upload("batch_out.jsonl", OUTPUT)}, format="multipart")

    assert response.status_code == 202
    assert "batch_join" not in response.json()


def test_the_api_refuses_an_input_file_that_cannot_be_joined_and_creates_nothing(key_client, project):
    bad = b'{"custom_id": "a"}\n{"custom_id": "a"}\n'
    response = key_client.post(
        "/api/v1/imports",
        {"file": upload("out.jsonl", OUTPUT), "batch_input": upload("in.jsonl", bad)},
        format="multipart",
    )

    assert response.status_code == 400
    assert "earlier line" in response.json()["batch_input"][0]
    assert not ImportJob.objects.exists()


def test_the_project_page_imports_a_batch_with_its_input(client, project, editor):
    client.force_login(editor)

    page = client.get("/p/acme/").content.decode()
    assert 'name="batch_input"' in page
    response = client.post(
        "/p/acme/imports/upload", {"file": upload("out.jsonl", OUTPUT), "batch_input": upload("in.jsonl", INPUT)}
    )

    assert response.status_code == 302
    notes = [str(message) for message in get_messages(response.wsgi_request)]
    assert notes == [
        "Importing out.jsonl with its input file (2 answers with their request; 1 request without an answer, "
        "not imported; 1 answer without a request): progress below."
    ]
    assert ImportJob.objects.get(project=project).source_name == "out.jsonl"


def test_the_cli_joins_the_input_file_before_importing(tmp_path, project, capsys):
    (tmp_path / "out.jsonl").write_bytes(OUTPUT)
    (tmp_path / "in.jsonl").write_bytes(INPUT)

    call_command(
        "import_logs", str(tmp_path / "out.jsonl"), "--batch-input", str(tmp_path / "in.jsonl"),
        "--project", "acme", "--inline", "--no-progress",
    )  # fmt: skip

    out = capsys.readouterr().out
    assert "Joined out.jsonl to in.jsonl: 2 answers with their request;" in out
    assert "Imported 2 logs (0 duplicates, 1 rejected lines) from 3 lines." in out
    assert ImportJob.objects.get(project=project).source_name == "out.jsonl"


def test_the_cli_names_an_input_file_it_cannot_join(tmp_path, project):
    (tmp_path / "out.jsonl").write_bytes(OUTPUT)
    (tmp_path / "in.jsonl").write_bytes(b"[1]\n")

    with pytest.raises(CommandError, match=r"in\.jsonl: Input file, line 1: not a Batch API input line"):
        call_command("import_logs", str(tmp_path / "out.jsonl"), "--batch-input", str(tmp_path / "in.jsonl"),
                     "--project", "acme", "--inline")  # fmt: skip
