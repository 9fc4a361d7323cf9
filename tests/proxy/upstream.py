"""A stand-in for the OpenAI (Chat Completions, Responses) and Anthropic APIs on 127.0.0.1: fixed answers,
streamed and not, and errors.

It records every request it gets (path, headers, body), so a test can tell what was forwarded, and it
can hold a stream after its first event until the test lets it go on, so a test can tell that the
proxy passes events on as they come rather than after the last one. bench/proxy.py uses it too.

What it answers is chosen by the request's `model`: "error-429" and "error-400" answer that error in
the provider's shape; "tools" (OpenAI, both APIs) streams a tool call; the models of SHAPES answer with what
2026's APIs send (a GPT-5 custom tool call, Anthropic server tool blocks) or what no reader can read (a wrong
type, a body that is not JSON); anything else answers normally.
"""

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OPENAI_ANSWER = {
    "id": "chatcmpl-standin1",
    "object": "chat.completion",
    "created": 1767225600,
    "model": "gpt-4o-mini",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hello from the stand-in."}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
}
ANTHROPIC_ANSWER = {
    "id": "msg_standin1",
    "type": "message",
    "role": "assistant",
    "model": "claude-3-5-haiku-20241022",
    "content": [{"type": "text", "text": "Hello from the stand-in."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 9, "output_tokens": 5},
}
RESPONSES_ANSWER = {
    "id": "resp_standin1", "object": "response", "created_at": 1767225600, "status": "completed", "error": None,
    "incomplete_details": None, "instructions": None, "metadata": {}, "model": "gpt-5-mini",
    "output": [
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "A greeting."}]},
        {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Hello from the stand-in.", "annotations": []}]},
    ],
    "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "temperature": 1.0, "top_p": 1.0,
    "usage": {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
              "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 14},
}  # fmt: skip
# Answers in shapes that came after the readers were first written, and two no reader can turn into a conversation.
SHAPES: dict[str, bytes] = {
    "gpt-5-custom": json.dumps(
        {
            "id": "chatcmpl-custom1", "object": "chat.completion", "created": 1767225600, "model": "gpt-5",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant", "content": None, "refusal": None, "annotations": [],
                        "tool_calls": [{"id": "call_c1", "type": "custom", "custom": {"name": "code_exec",
                                                                                         "input": "print(2 + 2)"}}],
                    },
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42},
        }
    ).encode(),
    "claude-web-search": json.dumps(
        {
            "id": "msg_search1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "tides"}},
                {
                    "type": "web_search_tool_result", "tool_use_id": "srvtoolu_1",
                    "content": [{"type": "web_search_result", "url": "https://tides.example/brest", "title": "Brest",
                                 "encrypted_content": "abc", "page_age": None}],
                },
                {"type": "text", "text": "High tide in Brest is at 14:02.",
                 "citations": [{"type": "web_search_result_location", "url": "https://tides.example/brest",
                                "title": "Brest", "encrypted_index": "x", "cited_text": "14:02"}]},
            ],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 50, "output_tokens": 20, "server_tool_use": {"web_search_requests": 1}},
        }
    ).encode(),
    "wrong-type": b'{"object": "chat.completion", "choices": "none today"}',
    "not-json": b"upstream hiccup: <html>502</html>",
}  # fmt: skip

OPENAI_ERRORS = {
    "error-429": (
        429,
        {"error": {"message": "Rate limit reached", "type": "requests", "param": None, "code": "rate_limit_exceeded"}},
    ),
    "error-400": (
        400,
        {
            "error": {
                "message": "Invalid 'messages'",
                "type": "invalid_request_error",
                "param": "messages",
                "code": None,
            }
        },
    ),
}
ANTHROPIC_ERRORS = {
    "error-429": (429, {"type": "error", "error": {"type": "rate_limit_error", "message": "Too many tokens"}}),
    "error-400": (
        400,
        {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: required"}},
    ),
}


def openai_chunks(model: str, *, tools: bool, usage: bool) -> list[dict]:
    base = {"id": "chatcmpl-standin2", "object": "chat.completion.chunk", "created": 1767225600, "model": model}

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    if tools:
        chunks += [
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "lookup_order", "arguments": ""},
                        }
                    ]
                }
            ),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"order_id": '}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"48213"}'}}]}),
            chunk({}, "tool_calls"),
        ]
    else:
        chunks += [chunk({"content": word}) for word in ("Hello", " from", " the", " stand-in.")]
        chunks.append(chunk({}, "stop"))
    if usage:
        chunks.append(
            {**base, "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}}
        )
    return chunks


def responses_events(model: str, *, tools: bool) -> list[tuple[str, dict]]:
    """A Responses API stream as the API sends it: the response in progress, each output item added, its deltas and
    done events, and `response.completed` with the whole response."""
    in_progress = {**RESPONSES_ANSWER, "model": model, "status": "in_progress", "output": [], "usage": None}
    if tools:
        item = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "lookup_order", "arguments": "",
                "status": "in_progress"}  # fmt: skip
        done = {**item, "arguments": '{"order_id": "48213"}', "status": "completed"}
        deltas = [
            {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 0, "delta": piece}
            for piece in ('{"order_id": ', '"48213"}')
        ]
        middle = [*deltas, {"type": "response.function_call_arguments.done", "item_id": "fc_1", "output_index": 0,
                            "arguments": done["arguments"], "name": "lookup_order"}]  # fmt: skip
    else:
        item = {"type": "message", "id": "msg_1", "role": "assistant", "status": "in_progress", "content": []}
        text = "Hello from the stand-in."
        done = {**item, "status": "completed", "content": [{"type": "output_text", "text": text, "annotations": []}]}
        where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
        middle = [
            {"type": "response.content_part.added", **where,
             "part": {"type": "output_text", "text": "", "annotations": []}},
            *({"type": "response.output_text.delta", **where, "delta": word, "logprobs": []}
              for word in ("Hello", " from", " the", " stand-in.")),
            {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
            {"type": "response.content_part.done", **where, "part": done["content"][0]},
        ]  # fmt: skip
    completed = {**RESPONSES_ANSWER, "model": model, "output": [done]}
    events = [
        {"type": "response.created", "response": in_progress},
        {"type": "response.in_progress", "response": in_progress},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        *middle,
        {"type": "response.output_item.done", "output_index": 0, "item": done},
        {"type": "response.completed", "response": completed},
    ]
    return [(event["type"], {**event, "sequence_number": number}) for number, event in enumerate(events)]


def anthropic_events(model: str) -> list[tuple[str, dict]]:
    message = {**ANTHROPIC_ANSWER, "id": "msg_standin2", "model": model, "content": [], "stop_reason": None}
    message["usage"] = {"input_tokens": 9, "output_tokens": 1}
    tool = {"type": "tool_use", "id": "toolu_1", "name": "lookup_order", "input": {}}
    return [
        ("message_start", {"type": "message_start", "message": message}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        ("ping", {"type": "ping"}),
        *[
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}},
            )
            for word in ("Let me", " look", " that up.")
        ],
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": tool}),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"order_id": '},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '"48213"}'},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 12},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class StandIn:
    """The server, what it saw, and what it sent (the exact bytes of each answer, in order)."""

    server: ThreadingHTTPServer
    seen: list[Seen] = field(default_factory=list)
    sent: list[bytes] = field(default_factory=list)
    # Cleared by a test to hold streams after their first event; set to let them go on.
    go_on: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.server.server_address[0]}:{self.port}"

    def close(self) -> None:
        self.go_on.set()
        self.server.shutdown()
        self.server.server_close()


def start_stand_in() -> StandIn:
    stand_in: StandIn

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs: the proxy's pool reuses connections
        disable_nagle_algorithm = True  # each event leaves when written, as from the real APIs

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            stand_in.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            request = json.loads(body or b"{}")
            anthropic = self.path.startswith("/v1/messages")
            responses = self.path.startswith("/v1/responses")
            model = request.get("model", "")
            errors = ANTHROPIC_ERRORS if anthropic else OPENAI_ERRORS
            if model in SHAPES:
                self._send(200, SHAPES[model], {})
            elif model in errors:
                status, error = errors[model]
                self._send(status, json.dumps(error).encode(), {"retry-after": "7"} if status == 429 else {})
            elif request.get("stream"):
                if anthropic or responses:
                    named = anthropic_events(model) if anthropic else responses_events(model, tools=model == "tools")
                    events = [f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in named]
                else:
                    usage = bool((request.get("stream_options") or {}).get("include_usage"))
                    chunks = openai_chunks(model, tools=model == "tools", usage=usage)
                    events = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks] + ["data: [DONE]\n\n"]
                self._stream([event.encode() for event in events])
            else:
                standard = ANTHROPIC_ANSWER if anthropic else RESPONSES_ANSWER if responses else OPENAI_ANSWER
                answer = {**standard, "model": model or "unknown"}
                self._send(200, json.dumps(answer).encode(), {})

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("x-request-id", f"req_{len(stand_in.seen)}")
            self.send_header("Set-Cookie", "upstream=1")  # belongs to the upstream's host: not passed back
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            stand_in.sent.append(body)  # before it is sent: the caller may look as soon as it has the answer
            self.wfile.write(body)

        def _stream(self, events: list[bytes]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("x-request-id", f"req_{len(stand_in.seen)}")
            self.end_headers()
            stand_in.sent.append(b"".join(events))
            try:
                for number, event in enumerate(events):
                    if number == 1:
                        stand_in.go_on.wait(timeout=10)
                    self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the proxy went away mid-stream, as a test made it

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    stand_in = StandIn(server=server)
    stand_in.go_on.set()
    threading.Thread(target=server.serve_forever, name="stand-in-upstream", daemon=True).start()
    return stand_in
