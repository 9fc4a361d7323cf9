"""What a canary's answer must pass before it goes to the caller instead of the provider's: the JSON the request's
`response_format` asks for, and tool calls that name a tool the request gave, with JSON object arguments."""

import orjson

from training.evaluation.metrics import json_value, response_schema


def answer_problem(*, request_body: bytes, answer: dict, checks: tuple[str, ...]) -> str:
    """Why `answer` (a `chat.completion`) fails the checks named, or ""."""
    try:
        request = orjson.loads(request_body)
    except orjson.JSONDecodeError:
        return ""
    choices = answer.get("choices")
    message = (
        choices[0].get("message") if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
    )
    if not isinstance(message, dict):
        return "no message in the answer"
    calls = message.get("tool_calls") or []
    if "tools" in checks and calls:
        problem = _tool_calls_problem(calls, request.get("tools"))
        if problem:
            return problem
    if "json" in checks and not calls:
        return _json_problem(message.get("content"), request.get("response_format"))
    return ""


def _tool_calls_problem(calls: object, tools: object) -> str:
    names = {
        (tool.get("function") or {}).get("name")
        for tool in (tools if isinstance(tools, list) else [])
        if isinstance(tool, dict)
    }
    for call in calls if isinstance(calls, list) else [calls]:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue  # a custom tool's call, or a shape this check does not know: not ours to refuse
        if function.get("name") not in names:
            return f"tool call to {str(function.get('name'))[:60]!r}, a tool the request did not give"
        ok, value = json_value(function.get("arguments") or "")
        if not ok or not isinstance(value, dict):
            return f"tool call to {function.get('name')} with arguments that are not a JSON object"
    return ""


def _json_problem(content: object, response_format: object) -> str:
    if not isinstance(response_format, dict) or response_format.get("type") not in ("json_object", "json_schema"):
        return ""
    text = content if isinstance(content, str) else ""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return "the answer is not the JSON the request's response_format asks for"
    schema = response_schema(response_format)
    if schema is None:
        return "" if isinstance(value, dict) else "the answer is JSON but not an object"
    import jsonschema

    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    error = jsonschema.exceptions.best_match(validator(schema).iter_errors(value))
    return "" if error is None else f"the answer does not match the response_format schema: {error.message[:200]}"
