"""The body of `POST /api/v1/logs` is typed in the OpenAPI schema (curation/logs/schemas.py): each shape the readers
take is a component, every body the readers take is valid by it, and a body it calls invalid is refused."""

import orjson
import pytest
from drf_spectacular.generators import SchemaGenerator
from jsonschema import Draft4Validator

from curation.logs.ingest.envelope import ENVELOPE_FIELDS, MESSAGES_FIELDS, PROMPT_COMPLETION_FIELDS
from curation.models import LogEntry
from tests.curation.samples import anthropic_log, openai_log

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def components() -> dict:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    body = schema["paths"]["/api/v1/logs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/IngestBodyRequest"}
    return schema["components"]["schemas"]


def _matches(components: dict, name: str, body: object) -> bool:
    # OpenAPI 3.0 schemas are JSON Schema draft 4 with a few keywords more; the $refs resolve against `components`.
    validator = Draft4Validator({"$ref": f"#/components/schemas/{name}", "components": {"schemas": components}})
    return validator.is_valid(body)


def _post(client, body: object):
    return client.post("/api/v1/logs", data=orjson.dumps(body), content_type="application/json")


SHAPES = {
    "IngestEnvelope": openai_log(external_id="o"),
    "IngestMessages": {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
                       "model": "gpt-4o", "tags": ["chat"]},
    "IngestPromptCompletion": {"prompt": "2+2?", "completion": "4", "external_id": 7, "created_at": 1767225600},
}  # fmt: skip


def test_each_shape_is_a_component_with_the_fields_the_readers_take(components):
    assert set(components["IngestEnvelope"]["properties"]) == set(ENVELOPE_FIELDS)
    assert set(components["IngestMessages"]["properties"]) == set(MESSAGES_FIELDS)
    assert set(components["IngestPromptCompletion"]["properties"]) == set(PROMPT_COMPLETION_FIELDS)
    provider_body = components["IngestEnvelope"]["properties"]["request"]
    assert provider_body == {
        "type": "object",
        "additionalProperties": True,
        "description": provider_body["description"],
    }


@pytest.mark.parametrize("shape", SHAPES)
def test_a_log_of_each_shape_matches_that_shape_alone_and_is_stored(key_client, components, shape):
    body = SHAPES[shape]

    response = _post(key_client, body)

    assert [name for name in SHAPES if _matches(components, name, body)] == [shape]
    assert _matches(components, "IngestBodyRequest", body)
    assert response.status_code == 200 and response.json()["accepted"] == 1, response.content


def test_a_batch_with_options_is_valid_and_stored(key_client, components):
    body = {"logs": [anthropic_log(), *SHAPES.values()], "keep_unreadable": False}

    response = _post(key_client, body)

    assert _matches(components, "IngestBatch", body) and _matches(components, "IngestBodyRequest", body)
    assert response.json()["accepted"] == 4
    assert not _matches(components, "IngestLog", body)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "a", "completion": "b", "tags": "math"}, "tags"),
        ({"prompt": "a", "completion": "b", "status_code": 99}, "status_code"),
        ({"prompt": "a", "completion": "b", "tag": ["math"]}, "tag"),
        ({"request": {"model": "m"}, "messages": []}, "messages"),
        ({"logs": [], "keep_unreadable": "yes"}, "keep_unreadable"),
        ({"messages": [{"content": "no role"}]}, "role"),
    ],
)
def test_a_body_the_schema_calls_invalid_is_refused_naming_the_field(key_client, components, body, field):
    response = _post(key_client, body)

    assert not _matches(components, "IngestBodyRequest", body)
    assert response.status_code == 400 and field in response.content.decode()
    assert not LogEntry.objects.exists()


def test_a_bare_list_of_logs_and_a_streamed_response_are_valid_and_stored(key_client, components):
    chunk = {"object": "chat.completion.chunk", "model": "gpt-4o-mini"}
    streamed = {
        "request": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "2+2?"}]},
        "response": [
            {**chunk, "choices": [{"index": 0, "delta": {"content": "4"}, "finish_reason": "stop"}]},
            "[DONE]",
        ],
    }
    sse = {**streamed, "response": 'data: {"object": "chat.completion.chunk", "choices": []}\n\ndata: [DONE]\n\n'}
    body = [streamed, sse, openai_log()]

    response = _post(key_client, body)

    assert _matches(components, "IngestEnvelope", streamed) and _matches(components, "IngestEnvelope", sse)
    assert _matches(components, "IngestBodyRequest", body)
    assert not _matches(components, "IngestEnvelope", {**streamed, "response": "Sunny"})
    assert response.status_code == 200 and response.json()["accepted"] == 3, response.content
