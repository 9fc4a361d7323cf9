"""The body of `POST /api/v1/logs` in the OpenAPI schema: one log in any of the three shapes the readers take, a
batch, or a list of logs, each a named component, so that a client generated from the schema has a typed model.

The readers (curation/logs/ingest/) remain the judges. For the shapes described, the schema is never stricter than
they are (a body it calls invalid is refused), and where a reader checks more than a schema can say (a provider's
own body, a turn order) the readers' 400 names the path. A field that takes null takes it as absent, as the readers
do. The lines of other tools' exports the readers also take (LangSmith, Langfuse, LiteLLM, OpenAI Batch, OpenPipe,
an OTLP span) are not described: each is its tool's to define, and they come in files (docs/ingest.md).
"""

import copy
from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import Direction
from rest_framework import serializers

from curation.logs.ingest.envelope import ENVELOPE_FIELDS, MESSAGES_FIELDS, PROMPT_COMPLETION_FIELDS
from curation.logs.ingest.scores import COMMENT_MAX, NAME_PATTERN, SCORES_MAX, TEXT_VALUE_MAX

_OBJECT = {"type": "object", "additionalProperties": True}
_OBJECTS = {"type": "array", "items": _OBJECT, "nullable": True}


def _nullable(schema: dict, description: str) -> dict:
    return {**schema, "nullable": True, "description": description}


# The fields every shape shares, as curation.logs.ingest.envelope reads them.
_COMMON: dict[str, dict] = {
    "provider": _nullable({"type": "string"}, "`openai`, `anthropic`, `azure`, ...; detected when left out."),
    "status_code": _nullable(
        {"type": "integer", "minimum": 100, "maximum": 599}, "The provider's HTTP status; 400 and up is an error."
    ),
    "latency_ms": _nullable({"type": "number", "minimum": 0}, "How long the call took, in milliseconds."),
    "created_at": {
        "oneOf": [{"type": "string"}, {"type": "number"}],
        "nullable": True,
        "description": "When the call was made: ISO-8601 text with an offset, or unix seconds. Default: now.",
    },
    "metadata": _nullable(_OBJECT, "Any JSON object, filterable by key (`metadata=user.plan:pro`)."),
    "tags": _nullable({"type": "array", "items": {"type": "string"}}, "Tag names, created as needed."),
    "external_id": {
        "oneOf": [{"type": "string", "minLength": 1, "maxLength": 255}, {"type": "integer"}],
        "nullable": True,
        "description": "The caller's id of the log: a second log with the same one is a duplicate, not stored.",
    },
    "scores": {
        "type": "array",
        "nullable": True,
        "maxItems": SCORES_MAX,
        "description": "Feedback on the call: thumbs up or down, a 1-5 rating, a judge's score (docs/ingest.md).",
        "items": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "pattern": f"^{NAME_PATTERN}$"},
                "value": {
                    "oneOf": [{"type": "number"}, {"type": "string", "minLength": 1, "maxLength": TEXT_VALUE_MAX}]
                },
                "comment": {"type": "string", "nullable": True, "maxLength": COMMENT_MAX},
            },
            "required": ["name", "value"],
            "additionalProperties": False,
        },
    },
}
_MODEL = {"model": _nullable({"type": "string"}, "The model that answered.")}

CHAT_ROLES = ["system", "developer", "user", "assistant", "tool", "function"]  # the readers' (ingest/openai.py)

CHAT_MESSAGE = {
    "type": "object",
    "description": "An OpenAI chat message, as in a fine-tuning file.",
    "properties": {
        "role": {"type": "string", "enum": CHAT_ROLES},
        "content": {
            "oneOf": [{"type": "string"}, {"type": "array", "items": _OBJECT}],
            "nullable": True,
            "description": "Text, or content parts (`{type: text, text}`, `{type: image_url, image_url}`, ...).",
        },
        "name": {"type": "string", "nullable": True},
        "tool_calls": _OBJECTS,
        "tool_call_id": {"type": "string"},
        "function_call": {**_OBJECT, "nullable": True},
        "refusal": {"type": "string", "nullable": True},
        "weight": {"type": "integer", "minimum": 0, "maximum": 1, "nullable": True},
    },
    "required": ["role"],
    "additionalProperties": True,
}

ENVELOPE = {
    "type": "object",
    "description": "A provider call: its own request and response bodies (OpenAI Chat Completions or Responses, "
    "Anthropic Messages), and what Logtune stores beside them.",
    "properties": {
        "request": {**_OBJECT, "description": "The body sent to the provider, as sent."},
        "response": {
            "oneOf": [
                _OBJECT,
                {"type": "array", "items": {"oneOf": [_OBJECT, {"type": "string"}]}},
                {"type": "string", "pattern": r"^\s*(data|event):"},
            ],
            "nullable": True,
            "description": "The provider's answer, as received: its body or, for a streamed call, the stream's chunks "
            "or events (a list), or the text of its server-sent events; a stream is assembled as the SDK would.",
        },
        **_COMMON,
    },
    "required": ["request"],
    "additionalProperties": False,
}


def _messages_log() -> dict:
    return {
        "type": "object",
        "description": "A line of an OpenAI fine-tuning file: the conversation itself.",
        "properties": {
            "messages": {"type": "array", "items": _ref("ChatMessage"), "minItems": 1},
            "tools": _OBJECTS,
            "functions": _OBJECTS,
            "parallel_tool_calls": {"type": "boolean", "nullable": True},
            **_MODEL,
            **_COMMON,
        },
        "required": ["messages"],
        "additionalProperties": False,
    }


PROMPT_COMPLETION = {
    "type": "object",
    "description": "A prompt and its completion, stored as one user turn and one assistant turn.",
    "properties": {"prompt": {"type": "string"}, "completion": {"type": "string"}, **_MODEL, **_COMMON},
    "required": ["prompt", "completion"],
    "additionalProperties": False,
}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _log_shapes() -> dict[str, dict]:
    return {"IngestEnvelope": ENVELOPE, "IngestMessages": _messages_log(), "IngestPromptCompletion": PROMPT_COMPLETION}


def _components() -> dict[str, dict]:
    shapes = _log_shapes()
    log = {"oneOf": [_ref(name) for name in shapes], "description": "One log, in any of the shapes."}
    logs = {"type": "array", "items": _ref("IngestLog"), "minItems": 0, "maxItems": settings.LOGTUNE_MAX_BATCH}
    batch = {
        "type": "object",
        "description": "Up to LOGTUNE_MAX_BATCH logs; each is stored or rejected on its own.",
        "properties": {
            "logs": logs,
            "keep_unreadable": {
                "type": "boolean",
                "nullable": True,
                "description": "Store a log no reader can read as `unreadable`, with its reason (default: the "
                "project's setting).",
            },
        },
        "required": ["logs"],
        "additionalProperties": False,
    }
    # Copies: drf-spectacular's post-processing rewrites the schemas it is given (an enum becomes a $ref).
    return copy.deepcopy({"ChatMessage": CHAT_MESSAGE, **shapes, "IngestLog": log, "IngestBatch": batch})


class IngestBody(serializers.Serializer):
    """Stands for the body of `POST /api/v1/logs` in the schema; the body is read by the readers, not by it."""


class IngestBodySchema(OpenApiSerializerExtension):
    target_class = IngestBody

    def map_serializer(self, auto_schema: AutoSchema, direction: Direction) -> dict[str, Any]:
        for name, schema in _components().items():
            component = ResolvedComponent(name=name, type=ResolvedComponent.SCHEMA, object=name, schema=schema)
            auto_schema.registry.register_on_missing(component)
        return {
            "oneOf": [
                _ref("IngestLog"),
                _ref("IngestBatch"),
                {"type": "array", "items": _ref("IngestLog"), "maxItems": settings.LOGTUNE_MAX_BATCH},
            ],
            "description": "One log, a batch with options, or a list of logs.",
        }


# The schema describes the fields the readers take, no more and no fewer.
assert set(ENVELOPE["properties"]) == set(ENVELOPE_FIELDS)  # type: ignore[call-overload]
assert set(_messages_log()["properties"]) == set(MESSAGES_FIELDS)
assert set(PROMPT_COMPLETION["properties"]) == set(PROMPT_COMPLETION_FIELDS)  # type: ignore[call-overload]
