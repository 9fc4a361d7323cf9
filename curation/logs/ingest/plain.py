"""Logs that are already a conversation: a line of an OpenAI fine-tuning file, or a prompt/completion pair."""

from typing import Annotated, NotRequired

from pydantic import Field, TypeAdapter
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from curation.logs.ingest.canonical import Exchange, describe, fail, validate
from curation.logs.ingest.openai import (
    FunctionDef,
    Message,
    ToolDef,
    messages_to_canonical,
    options_of,
    tools_to_canonical,
)


class FineTuningLine(TypedDict):
    messages: Annotated[list[Message], Field(min_length=1)]
    tools: NotRequired[list[ToolDef] | None]
    functions: NotRequired[list[FunctionDef] | None]  # the legacy function-calling fine-tuning format
    parallel_tool_calls: NotRequired[bool | None]


class PromptCompletion(TypedDict):
    prompt: str
    completion: str


MESSAGES_LINE = TypeAdapter(FineTuningLine)
PROMPT_COMPLETION = TypeAdapter(PromptCompletion)


def read_messages(obj: dict) -> Exchange:
    validate(MESSAGES_LINE, obj, "")
    return Exchange(
        messages=messages_to_canonical(obj["messages"]),
        tools=tools_to_canonical(obj.get("tools"), obj.get("functions")),
        options=options_of(obj),
    )


def read_openpipe(obj: dict, *, known: frozenset[str]) -> Exchange:
    """A line of an OpenPipe dataset export: a fine-tuning line with its `split` ("TRAIN" / "TEST"), `tool_choice`
    and whatever else OpenPipe adds. Those go to the log's metadata as sent (the envelope's own `metadata` wins a
    clash); the fields a fine-tuning line shares with the envelope (`model`, `tags`...) are read as such."""
    split = obj.get("split")
    if split is not None and not isinstance(split, str):
        raise fail("split", f"expected a string such as 'TRAIN' or 'TEST', got {describe(split)}")
    exchange = read_messages({key: value for key, value in obj.items() if key in known})
    exchange.metadata = {key: value for key, value in obj.items() if key not in known and value is not None}
    return exchange


def read_prompt_completion(obj: dict) -> Exchange:
    pair = validate(PROMPT_COMPLETION, obj, "")
    messages = [{"role": "user", "content": pair["prompt"]}, {"role": "assistant", "content": pair["completion"]}]
    return Exchange(messages=messages, tools=[])
