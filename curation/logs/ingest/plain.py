"""Logs that are already a conversation: a line of an OpenAI fine-tuning file, or a prompt/completion pair."""

from typing import Annotated, NotRequired

from pydantic import Field, TypeAdapter
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from curation.logs.ingest.canonical import Exchange, validate
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


def read_prompt_completion(obj: dict) -> Exchange:
    pair = validate(PROMPT_COMPLETION, obj, "")
    messages = [{"role": "user", "content": pair["prompt"]}, {"role": "assistant", "content": pair["completion"]}]
    return Exchange(messages=messages, tools=[])
