"""An import may name the shape of its lines (`format`): each line is then read as that shape alone, and a line in
another shape is rejected saying which it is. Without one, each line's shape is recognised."""

import orjson
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from curation.logs.imports.run import import_job_run
from curation.logs.ingest import IngestError, parse_log
from curation.models import ImportJob, ImportLineError, LogEntry
from tests.curation.test_ingest_tools import litellm_payload, openpipe_line

QA = {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}


def error_of(obj: object, format: str) -> str:
    with pytest.raises(IngestError) as caught:
        parse_log(obj, format=format)
    return str(caught.value)


def test_a_line_of_the_chosen_shape_is_read_as_it():
    assert parse_log(litellm_payload(), format="litellm").format == "litellm"
    assert parse_log(QA, format="messages").format == "messages"


def test_a_line_of_another_shape_is_refused_saying_which_it_is():
    assert error_of(QA, "litellm") == (
        ": the format chosen is litellm (LiteLLM StandardLoggingPayload), but this log is messages "
        "(OpenAI fine-tuning line)"
    )


def test_the_chosen_reader_names_the_field_a_line_lacks():
    # Recognised by its fields, this line would be no known shape at all; read as a LangSmith run, it lacks one.
    assert error_of({"id": "run-1", "inputs": {}}, "langsmith").startswith("run_type: missing required field")


def test_an_openpipe_line_without_its_split_is_read_as_one_when_chosen():
    line = openpipe_line()
    del line["split"]

    with pytest.raises(IngestError, match="tool_choice: unknown field"):
        parse_log(line)  # recognised as a plain fine-tuning line, which has no tool_choice
    assert parse_log(line, format="openpipe").format == "openpipe"


def test_an_unknown_format_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown log format"):
        parse_log(QA, format="csv")


def jsonl(*lines: dict) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def test_the_api_imports_with_a_format_and_reports_lines_of_another(key_client, project):
    upload = SimpleUploadedFile("litellm.jsonl", jsonl(litellm_payload(), QA), content_type="application/jsonl")

    answer = key_client.post("/api/v1/imports", {"file": upload, "format": "litellm"}, format="multipart")

    assert answer.status_code == 202, answer.json()
    assert answer.json()["format"] == "litellm"
    job = import_job_run(job_id=answer.json()["id"], path=None)
    assert (job.accepted, job.rejected) == (1, 1)
    assert LogEntry.objects.get(project=project).format == "litellm"
    assert "but this log is messages" in ImportLineError.objects.get(job=job, line=2).error


def test_the_api_refuses_a_format_it_does_not_know(key_client, project):
    upload = SimpleUploadedFile("a.jsonl", jsonl(QA), content_type="application/jsonl")

    answer = key_client.post("/api/v1/imports", {"file": upload, "format": "csv"}, format="multipart")

    assert answer.status_code == 400 and "format" in answer.json()
    assert not ImportJob.objects.exists()


def test_the_cli_and_the_page_take_a_format(tmp_path, project, client, editor, capsys):
    path = tmp_path / "lines.jsonl"
    path.write_bytes(jsonl(QA, litellm_payload()))

    call_command("import_logs", str(path), "--project", "acme", "--format", "messages", "--inline", "--no-progress")

    assert "Imported 1 logs (0 duplicates, 1 rejected lines) from 2 lines." in capsys.readouterr().out
    client.force_login(editor)
    page = client.get("/p/acme/").content.decode()
    assert '<option value="langsmith">LangSmith run</option>' in page
