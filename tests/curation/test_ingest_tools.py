"""Other tools' export lines (OpenAI Batch, OpenPipe, LiteLLM, Langfuse, LangSmith) read into the canonical
conversation through `logs_ingest`, each detected by its shape, and a JSONL import that mixes them."""

from datetime import UTC, datetime

import orjson
import pytest
from django.core.management import call_command

from curation.logs.ingest import RawItem
from curation.logs.services import logs_ingest
from curation.models import ImportJob, ImportLineError, LogEntry

pytestmark = pytest.mark.django_db

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather", "description": "Weather of a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}  # fmt: skip
ASKED = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}]
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}


def completion(message: dict, **fields: object) -> dict:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1767225600, "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "refusal": None, **message}, "logprobs": None,
                     "finish_reason": "tool_calls" if "tool_calls" in message else "stop"}],
        "usage": {"prompt_tokens": 31, "completion_tokens": 9, "total_tokens": 40}, "system_fingerprint": "fp_1",
        **fields,
    }  # fmt: skip


def batch_line(*, request: bool = True, **fields: object) -> dict:
    line = {
        "id": "batch_req_6789", "custom_id": "task-7",
        "response": {"status_code": 200, "request_id": "req_abc", "body": completion({"content": "Sunny, 21°C."})},
        "error": None,
    }  # fmt: skip
    if request:  # merged by custom_id with its input line
        line |= {"method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4o-mini", "messages": ASKED}}
    return line | fields


def openpipe_line(**fields: object) -> dict:
    return {
        "messages": [*ASKED, {"role": "assistant", "content": None, "tool_calls": [CALL]}],
        "tools": [WEATHER_TOOL], "tool_choice": "auto", "split": "TRAIN", **fields,
    }  # fmt: skip


def litellm_payload(**fields: object) -> dict:
    return {
        "id": "chatcmpl-2f1c", "trace_id": "9c1a-trace", "call_type": "acompletion", "cache_hit": None,
        "stream": False, "status": "success", "custom_llm_provider": "openai", "saved_cache_cost": 0.0,
        "startTime": 1767225600.25, "endTime": 1767225601.5, "completionStartTime": 1767225601.5,
        "response_time": 1.25, "model": "gpt-4o-mini", "model_id": "d3f1", "model_group": "gpt-4o-mini",
        "api_base": "https://api.openai.com/v1", "metadata": {"user_api_key_hash": "88dc", "user_api_key_alias": None},
        "request_tags": ["prod"], "end_user": "", "requester_ip_address": "", "messages": ASKED,
        "response": completion({"content": None, "tool_calls": [CALL]}),
        "error_str": None, "error_information": None, "prompt_tokens": 31, "completion_tokens": 9, "total_tokens": 40,
        "response_cost": 1.2e-05, "model_parameters": {"temperature": 0.2, "tools": [WEATHER_TOOL]},
        "hidden_params": {"model_id": "d3f1", "cache_key": None, "api_base": "https://api.openai.com/v1"},
    } | fields  # fmt: skip


def langfuse_generation(**fields: object) -> dict:
    return {
        "id": "7f1e2c44-gen", "traceId": "b2a9-trace", "type": "GENERATION", "name": "OpenAI-generation",
        "startTime": "2026-01-01T00:00:00.000Z", "endTime": "2026-01-01T00:00:00.812Z",
        "completionStartTime": "2026-01-01T00:00:00.400Z", "model": "gpt-4o-mini",
        "modelParameters": {"temperature": 0},
        "input": [*ASKED], "output": {"role": "assistant", "content": "Sunny, 21°C."},
        "usage": {"input": 31, "output": 9, "total": 40, "unit": "TOKENS"},
        "usageDetails": {"input": 31, "output": 9, "total": 40}, "costDetails": {"total": 1.2e-05},
        "level": "DEFAULT", "statusMessage": None, "parentObservationId": None, "version": None,
        "metadata": {"env": "prod"}, "environment": "default", "promptId": None, "latency": 0.812,
    } | fields  # fmt: skip


def langchain(kind: str, **kwargs: object) -> dict:
    return {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", kind],
            "kwargs": {"type": {"HumanMessage": "human", "SystemMessage": "system", "AIMessage": "ai",
                                "ToolMessage": "tool"}[kind], **kwargs}}  # fmt: skip


def langsmith_run(**fields: object) -> dict:
    answer = langchain("AIMessage", content="", tool_calls=[
        {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1", "type": "tool_call"}],
        additional_kwargs={"tool_calls": [CALL]}, response_metadata={"finish_reason": "tool_calls"})  # fmt: skip
    return {
        "id": "1ef3a7c0-run", "name": "ChatOpenAI", "run_type": "llm",
        "start_time": "2026-01-01T00:00:00.000000", "end_time": "2026-01-01T00:00:01.500000",
        "extra": {"invocation_params": {"model": "gpt-4o-mini", "temperature": 0.0, "tools": [WEATHER_TOOL]},
                  "metadata": {"ls_provider": "openai", "ls_model_name": "gpt-4o-mini"}},
        "error": None, "serialized": None, "events": [{"name": "start", "time": "2026-01-01T00:00:00"}],
        "inputs": {"messages": [[langchain("SystemMessage", content="Be brief."),
                                 langchain("HumanMessage", content="Weather in Paris?")]]},
        "outputs": {"generations": [[{"text": "", "generation_info": {"finish_reason": "tool_calls"},
                                      "type": "ChatGeneration", "message": answer}]],
                    "llm_output": {"token_usage": {"prompt_tokens": 31, "completion_tokens": 9, "total_tokens": 40},
                                   "model_name": "gpt-4o-mini-2024-07-18"}},
        "tags": ["weather"], "trace_id": "1ef3a7b0-trace", "parent_run_id": "1ef3a7b0-chain",
        "dotted_order": "20260101T000000000000Z1ef3a7b0-trace.20260101T000000000000Z1ef3a7c0-run",
        "session_id": "5c2d-project", "status": "success", "prompt_tokens": 31, "completion_tokens": 9,
        "total_tokens": 40, "first_token_time": None, "reference_example_id": None,
    } | fields  # fmt: skip


def one(project, item: object, **options: object) -> LogEntry:
    result = logs_ingest(project=project, items=[item], **options)
    assert (result.accepted, result.rejected) == (1, []), result
    return LogEntry.objects.get(project=project)


def tag_names(log: LogEntry) -> list[str]:
    return [tag.name for tag in log.tags.all()]


def rejection(project, item: object) -> str:
    result = logs_ingest(project=project, items=[item], keep_unreadable=False)
    assert result.accepted == 0 and len(result.rejected) == 1
    return result.rejected[0].error


# --- OpenAI Batch ---------------------------------------------------------------------------------------------


def test_a_batch_output_line_with_its_request_is_one_conversation(project):
    log = one(project, batch_line())

    assert (log.format, log.provider, log.model, log.status) == ("openai_batch", "openai", "gpt-4o-mini", "success")
    assert log.messages == [*ASKED, {"role": "assistant", "content": "Sunny, 21°C."}]
    assert (log.external_id, log.prompt_tokens, log.completion_tokens, log.finish_reason) == ("task-7", 31, 9, "stop")
    assert log.metadata == {"batch_request_id": "batch_req_6789", "request_id": "req_abc"}
    assert log.created_at == datetime(2026, 1, 1, tzinfo=UTC)


def test_a_batch_line_may_hold_its_whole_input_line_under_request(project):
    input_line = {"custom_id": "task-7", "method": "POST", "url": "/v1/chat/completions",
                  "body": {"model": "gpt-4o-mini", "messages": ASKED}}  # fmt: skip
    line = batch_line(request=False) | {"request": input_line}

    assert one(project, line).messages[:2] == ASKED


def test_a_failed_batch_request_is_an_error_log(project):
    error = {"code": "batch_expired", "message": "This request could not be executed before the batch expired."}
    log = one(project, batch_line(response=None, error=error))

    assert (log.status, log.error_message, log.messages) == ("error", error["message"], ASKED)


def test_a_batch_output_line_alone_is_refused_saying_to_give_the_input_file_too(project):
    error = rejection(project, batch_line(request=False))

    assert error.startswith(": an OpenAI Batch output line holds the answer but not the request")
    assert "custom_id" in error


def test_a_batch_output_line_alone_is_kept_as_unreadable_with_its_custom_id(project):
    line = batch_line(request=False)
    result = logs_ingest(project=project, items=[line, line], keep_unreadable=True)

    assert (result.accepted, result.duplicates) == (1, 1)
    log = LogEntry.objects.get(project=project)
    assert (log.status, log.external_id, log.provider) == ("unreadable", "task-7", "openai")
    assert "not the request" in log.error_message


def test_a_batch_error_names_the_field_where_it_is_in_the_line(project):
    line = batch_line()
    line["body"] = {"messages": [ASKED[0], {**ASKED[1], "role": "narrator"}]}

    assert rejection(project, line).startswith("body.messages.1.role: unknown role 'narrator'")
    assert rejection(project, batch_line(url="/v1/embeddings")).startswith("url: a batch of '/v1/embeddings' calls")


# --- OpenPipe -------------------------------------------------------------------------------------------------


def test_an_openpipe_line_keeps_its_split_tool_choice_and_unknown_fields(project):
    log = one(project, openpipe_line(rejected=False, metadata={"team": "search"}))

    assert (log.format, log.status) == ("openpipe", "success")
    assert log.messages == [*ASKED, {"role": "assistant", "content": None, "tool_calls": [CALL]}]
    assert log.tools == [WEATHER_TOOL]
    assert log.metadata == {"tool_choice": "auto", "split": "TRAIN", "rejected": False, "team": "search"}


def test_a_fine_tuning_line_without_a_split_still_refuses_unknown_fields(project):
    line = openpipe_line()
    del line["split"]

    assert rejection(project, line).startswith("tool_choice: unknown field")


# --- LiteLLM --------------------------------------------------------------------------------------------------


def test_a_litellm_payload_is_read_with_its_tools_times_and_tokens(project):
    log = one(project, litellm_payload())

    assert (log.format, log.provider, log.model, log.status) == ("litellm", "openai", "gpt-4o-mini", "success")
    assert log.messages == [*ASKED, {"role": "assistant", "content": None, "tool_calls": [CALL]}]
    assert log.tools == [WEATHER_TOOL]
    assert (log.external_id, tag_names(log), log.latency_ms) == ("chatcmpl-2f1c", ["prod"], 1250)
    assert (log.prompt_tokens, log.completion_tokens, log.total_tokens, log.finish_reason) == (31, 9, 40, "tool_calls")
    assert log.created_at == datetime(2026, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)
    assert log.metadata["trace_id"] == "9c1a-trace" and log.metadata["call_type"] == "acompletion"


def test_a_failed_litellm_call_is_an_error_log_with_its_code(project):
    failed = litellm_payload(status="failure", response=None, error_str="RateLimitError: slow down",
                             error_information={"error_code": "429", "error_class": "RateLimitError"})  # fmt: skip
    log = one(project, failed)

    assert (log.status, log.status_code, log.error_message) == ("error", 429, "RateLimitError: slow down")


def test_a_litellm_embedding_call_is_refused_naming_its_call_type(project):
    error = rejection(project, litellm_payload(call_type="aembedding", messages=["hello"]))

    assert error == "call_type: a LiteLLM 'aembedding' call holds no chat conversation (expected one of " \
        "completion, acompletion)"  # fmt: skip


# --- Langfuse -------------------------------------------------------------------------------------------------


def test_a_langfuse_generation_is_one_conversation(project):
    log = one(project, langfuse_generation())

    assert (log.format, log.model, log.status, log.external_id) == (
        "langfuse",
        "gpt-4o-mini",
        "success",
        "7f1e2c44-gen",
    )
    assert log.messages == [*ASKED, {"role": "assistant", "content": "Sunny, 21°C."}]
    assert (log.prompt_tokens, log.completion_tokens, log.total_tokens, log.latency_ms) == (31, 9, 40, 812)
    assert log.metadata == {"env": "prod", "trace_id": "b2a9-trace", "observation_name": "OpenAI-generation"}


def test_a_langfuse_generation_with_tools_and_an_error(project):
    generation = langfuse_generation(input={"messages": ASKED, "tools": [WEATHER_TOOL]}, output=None, level="ERROR",
                                     statusMessage="Request timed out.")  # fmt: skip
    log = one(project, generation)

    assert (log.status, log.error_message, log.tools) == ("error", "Request timed out.", [WEATHER_TOOL])


def test_a_langfuse_span_is_refused_as_not_a_model_call(project):
    assert rejection(project, langfuse_generation(type="SPAN")) == (
        "type: a Langfuse SPAN observation is not a model call (expected 'GENERATION')"
    )
    bad = langfuse_generation(input=[{"role": "bot", "content": "hi"}])
    assert rejection(project, bad).startswith("input.0.role: unknown role 'bot'")


# --- LangSmith ------------------------------------------------------------------------------------------------


def test_a_langsmith_chat_model_run_reads_langchain_messages(project):
    log = one(project, langsmith_run())

    assert (log.format, log.provider, log.model, log.status) == ("langsmith", "openai", "gpt-4o-mini", "success")
    assert log.messages == [*ASKED, {"role": "assistant", "content": "", "tool_calls": [CALL]}]
    assert log.tools == [WEATHER_TOOL]
    assert (log.external_id, tag_names(log), log.latency_ms) == ("1ef3a7c0-run", ["weather"], 1500)
    assert log.finish_reason == "tool_calls"
    assert (log.prompt_tokens, log.completion_tokens, log.total_tokens) == (31, 9, 40)
    assert log.metadata == {"trace_id": "1ef3a7b0-trace", "parent_run_id": "1ef3a7b0-chain", "run_name": "ChatOpenAI",
                            "session_id": "5c2d-project"}  # fmt: skip


def test_a_langsmith_run_of_a_traced_openai_client_reads_the_completion(project):
    run = langsmith_run(inputs={"messages": ASKED, "model": "gpt-4o-mini"},
                        outputs=completion({"content": "Sunny."}), extra={})  # fmt: skip
    log = one(project, run)

    assert log.messages == [*ASKED, {"role": "assistant", "content": "Sunny."}]
    assert log.model == "gpt-4o-mini"


def test_a_langsmith_run_with_an_error_and_a_chain_run(project):
    log = one(project, langsmith_run(outputs=None, error="openai.APITimeoutError: Request timed out."))
    assert (log.status, log.error_message) == ("error", "openai.APITimeoutError: Request timed out.")

    assert rejection(project, langsmith_run(id="other", run_type="chain")) == (
        "run_type: a LangSmith 'chain' run is not a model call (expected 'llm')"
    )


# --- all of them in one file ----------------------------------------------------------------------------------


def test_a_jsonl_file_mixing_every_tool_is_imported_line_by_line(tmp_path, project, capsys):
    lines = [batch_line(), openpipe_line(), litellm_payload(), langfuse_generation(), langsmith_run(),
             batch_line(request=False, custom_id="task-8")]  # fmt: skip
    path = tmp_path / "exports.jsonl"
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))

    call_command("import_logs", str(path), "--project", "acme", "--inline", "--no-progress")

    job = ImportJob.objects.get(project=project)
    assert (job.accepted, job.rejected) == (5, 1)
    formats = set(LogEntry.objects.filter(project=project).values_list("format", flat=True))
    assert formats == {"openai_batch", "openpipe", "litellm", "langfuse", "langsmith"}
    error = ImportLineError.objects.get(job=job)
    assert error.line == 6 and "not the request" in error.error
    stored = LogEntry.objects.get(project=project, format="langsmith")
    assert stored.original == orjson.dumps(lines[4]).decode()  # byte for byte


def test_raw_items_keep_their_text_as_the_original(project):
    text = ' {"custom_id": "t", "body": {"messages": [{"role": "user", "content": "hi"}]},  "response": null} '
    log = one(project, RawItem(value=orjson.loads(text), text=text))

    assert (log.original, log.status, log.error_message) == (text, "error", "no response")


def test_an_id_too_long_for_external_id_is_named_as_the_tool_names_it(project):
    assert rejection(project, batch_line(custom_id="t" * 300)) == "custom_id: longer than 255 characters"
    assert rejection(project, litellm_payload(request_tags=[""])) == "request_tags.0: must not be empty"


def test_a_batch_of_responses_api_calls_is_read_as_the_responses_api(project):
    answer = {"id": "resp_1", "object": "response", "created_at": 1767225600, "status": "completed", "output": [
        {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Hello!", "annotations": []}]}]}  # fmt: skip
    line = batch_line(url="/v1/responses", body={"model": "gpt-5", "input": "Hi"})
    line["response"]["body"] = answer

    log = one(project, line)

    assert (log.format, log.status, log.external_id) == ("openai_batch", "success", "task-7")
    assert log.messages == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    assert log.metadata == {"response_id": "resp_1", "batch_request_id": "batch_req_6789", "request_id": "req_abc"}


def test_a_langfuse_generation_of_the_langchain_integration_reads_its_messages(project):
    generation = langfuse_generation(input=[langchain("HumanMessage", content="Weather in Paris?")],
                                     output=langchain("AIMessage", content="Sunny."))  # fmt: skip

    assert one(project, generation).messages == [ASKED[1], {"role": "assistant", "content": "Sunny."}]
