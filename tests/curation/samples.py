"""Provider-shaped log bodies, as applications send them."""

import copy


def openai_log(**overrides: object) -> dict:
    log = {
        "provider": "openai",
        "request": {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "You are a math tutor."},
                {"role": "user", "content": "What is 2 + 2?"},
            ],
            "temperature": 0.2,
        },
        "response": {
            "id": "chatcmpl-abc",
            "object": "chat.completion",
            "created": 1756720800,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 1, "total_tokens": 21},
        },
        "status_code": 200,
        "latency_ms": 812,
        "created_at": "2026-09-01T10:00:00Z",
        "metadata": {"env": "prod", "user_id": 42},
        "tags": ["math"],
    }
    log.update(copy.deepcopy(overrides))
    return log


def anthropic_log(**overrides: object) -> dict:
    log = {
        "provider": "anthropic",
        "request": {
            "model": "claude-3-5-sonnet-20241022",
            "max_tokens": 1024,
            "system": "You are a weather bot.",
            "tools": [
                {
                    "name": "get_weather",
                    "description": "Current weather",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
                }
            ],
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18°C, sunny"}],
                },
            ],
        },
        "response": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-3-5-sonnet-20241022",
            "content": [{"type": "text", "text": "It is 18°C and sunny in Paris."}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 300, "output_tokens": 12},
        },
        "status_code": 200,
        "latency_ms": 1500,
        "tags": ["weather"],
    }
    log.update(copy.deepcopy(overrides))
    return log
