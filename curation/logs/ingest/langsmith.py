"""LangSmith runs, as its API and exports give them (langsmith-sdk `schemas.Run`). A run of `run_type` "llm" is one
model call. LangChain chat models record `inputs.messages` (a list of message lists, one per prompt: the first is
read) and `outputs.generations`; traced OpenAI clients (`wrap_openai`) record the request's `messages` and the chat
completion itself. `extra.invocation_params` holds the request settings, `extra.metadata.ls_provider` the provider."""

from curation.logs.ingest.canonical import MISSING_REASON, describe, fail
from curation.logs.ingest.exported import (
    ExportedCall,
    an_object,
    count,
    duration_ms,
    inner,
    moment,
    openai_message,
    string,
)

LANGSMITH_KEY = "run_type"
MODEL_CALL = "llm"
_TOKENS = ("prompt_tokens", "completion_tokens", "total_tokens")


def is_langsmith_run(obj: dict) -> bool:
    return LANGSMITH_KEY in obj and ("inputs" in obj or "outputs" in obj)


def langsmith_call(obj: dict) -> ExportedCall:
    """The call an "llm" run records. Raises IngestError naming the run's field."""
    kind = string(obj, LANGSMITH_KEY)
    if kind is None:
        raise fail(LANGSMITH_KEY, f"{MISSING_REASON} (a LangSmith run's type; a model call's is {MODEL_CALL!r})")
    if kind != MODEL_CALL:
        raise fail(LANGSMITH_KEY, f"a LangSmith {kind!r} run is not a model call (expected {MODEL_CALL!r})")
    extra = an_object(obj, "extra") or {}
    settings, about = inner(extra, "invocation_params"), inner(extra, "metadata")
    inputs = an_object(obj, "inputs") or {}
    request, messages_path = _request(inputs)
    for name in ("tools", "functions", "parallel_tool_calls"):
        if name not in request and settings.get(name) is not None:
            request[name] = settings[name]
    model = settings.get("model") or settings.get("model_name") or inputs.get("model") or about.get("ls_model_name")
    if isinstance(model, str) and model:
        request["model"] = model
    start, end = moment(obj, "start_time"), moment(obj, "end_time")
    provider = about.get("ls_provider")
    return ExportedCall(
        request=request, response=_response(obj), external_id=string(obj, "id"),
        provider=provider if isinstance(provider, str) else "", latency_ms=duration_ms(start, end), created_at=start,
        metadata=_metadata(obj), tags=_tags(obj),
        paths={"external_id": "id",
               "request.messages": messages_path, "request.tools": "extra.invocation_params.tools",
               "response.choices.0.message": "outputs", "response": "outputs"},
    )  # fmt: skip


def _request(inputs: dict) -> tuple[dict, str]:
    messages = inputs.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[0], list):  # one list per prompt
        return {"messages": [openai_message(message) for message in messages[0]]}, "inputs.messages.0"
    if isinstance(messages, list):
        request = {name: inputs[name] for name in ("tools", "functions", "parallel_tool_calls") if name in inputs}
        return {**request, "messages": [openai_message(message) for message in messages]}, "inputs.messages"
    prompts = inputs.get("prompts")
    if isinstance(prompts, list) and prompts and isinstance(prompts[0], str):
        return {"messages": [{"role": "user", "content": prompts[0]}]}, "inputs.prompts"
    raise fail("inputs", f"expected 'messages' or 'prompts' in the inputs, got {describe(messages)} messages")


def _response(obj: dict) -> dict | None:
    if obj.get("error"):
        return {"error": {"message": obj["error"] if isinstance(obj["error"], str) else describe(obj["error"])}}
    outputs = an_object(obj, "outputs")
    if outputs is None:
        return None
    if "choices" in outputs:
        response = dict(outputs)  # a copy: the run itself is the original, unchanged
    elif "generations" in outputs:
        response = _generations(outputs)
    else:
        response = {"choices": [{"message": openai_message(outputs)}]}
    tokens = {name: count(obj.get(name)) for name in _TOKENS}
    if any(value is not None for value in tokens.values()):
        response["usage"] = tokens
    return response


def _generations(outputs: dict) -> dict:
    generations = outputs["generations"]
    if isinstance(generations, list) and generations and isinstance(generations[0], list):
        generations = generations[0]  # one list per prompt
    if not (isinstance(generations, list) and generations and isinstance(generations[0], dict)):
        raise fail("outputs.generations", f"expected a list of generations, got {describe(generations)}")
    generation = generations[0]
    message = generation.get("message")
    if isinstance(message, dict):
        message = openai_message(message)
    else:
        message = {"role": "assistant", "content": generation.get("text")}
    info, llm_output = inner(generation, "generation_info"), inner(outputs, "llm_output")
    response: dict = {"choices": [{"message": message, "finish_reason": info.get("finish_reason")}]}
    usage = llm_output.get("token_usage")
    if isinstance(usage, dict):
        response["usage"] = {name: count(usage.get(name)) for name in _TOKENS}
    if isinstance(llm_output.get("model_name"), str):
        response["model"] = llm_output["model_name"]
    return response


def _tags(obj: dict) -> list[str]:
    tags = obj.get("tags")
    return [tag for tag in tags if isinstance(tag, str)] if isinstance(tags, list) else []


def _metadata(obj: dict) -> dict:
    metadata: dict = {}
    for key, name in (("trace_id", "trace_id"), ("parent_run_id", "parent_run_id"), ("run_name", "name"),
                      ("session_id", "session_id")):  # fmt: skip
        if isinstance(obj.get(name), str) and obj[name]:
            metadata[key] = obj[name]
    return metadata
