"""A stand-in for a model server (vLLM's OpenAI-compatible API with runtime LoRA updates) on 127.0.0.1: in a thread of
the test (`start_engine`), or as the program the supervisor starts in place of vLLM
(`python tests/serving/engine.py serve WEIGHTS --port N --served-model-name NAME [--enable-lora ...]`).

It answers `<model>: <last user message>`; the last user message steers it: "fail" answers 500, "slow" waits
`SLOW_S` before answering, "not-json" answers plain text, "bad-tool" calls a tool the request did not give.
Requests are recorded (path, headers, body); as a program, to the file named by STANDIN_ENGINE_RECORD.
"""

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLOW_S = 3.0


@dataclass
class Engine:
    served_name: str
    adapters: dict[str, str] = field(default_factory=dict)  # name -> path
    requests: list[dict] = field(default_factory=list)
    record_path: str = ""
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    def record(self, entry: dict) -> None:
        self.requests.append(entry)
        if self.record_path:
            with open(self.record_path, "a") as out:
                out.write(json.dumps(entry) + "\n")


def _answer_text(model: str, body: dict) -> str:
    users = [m for m in body.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
    text = users[-1].get("content", "") if users else ""
    if "not-json" in str(text):
        return "this is not JSON"
    if (body.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
        return json.dumps({"answer": f"{model}: {text}"})
    return f"{model}: {text}"


def _handler(engine: Engine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms wait between them

        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: object, content_type: str = "application/json") -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, b"", "text/plain")
            elif self.path == "/v1/models":
                names = [engine.served_name, *engine.adapters]
                self._send(200, {"object": "list", "data": [{"id": n, "object": "model"} for n in names]})
            else:
                self._send(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            engine.record({"path": self.path, "headers": dict(self.headers), "body": body})
            if self.path == "/v1/load_lora_adapter":
                if body["lora_name"] in engine.adapters:
                    self._send(
                        400, {"error": {"message": f"The lora adapter '{body['lora_name']}' has already been loaded."}}
                    )
                    return
                engine.adapters[body["lora_name"]] = body["lora_path"]
                self._send(200, b"Success", "text/plain")
            elif self.path == "/v1/unload_lora_adapter":
                engine.adapters.pop(body["lora_name"], None)
                self._send(200, b"Success", "text/plain")
            elif self.path == "/v1/chat/completions":
                self._chat(body)
            else:
                self._send(404, {"error": {"message": "not found"}})

        def _chat(self, body: dict) -> None:
            model = body.get("model", "")
            if model not in engine.adapters and model != engine.served_name:
                self._send(404, {"error": {"message": f"The model `{model}` does not exist.", "type": "NotFoundError",
                                           "param": None, "code": 404}})  # fmt: skip
                return
            last = str((body.get("messages") or [{}])[-1].get("content", ""))
            if "fail" in last:
                self._send(500, {"error": {"message": "engine failure", "type": "InternalServerError", "code": 500}})
                return
            if "slow" in last:
                time.sleep(SLOW_S)
            text = _answer_text(model, body)
            message: dict = {"role": "assistant", "content": text}
            if "bad-tool" in last:
                call = {"id": "call_1", "type": "function", "function": {"name": "rm_rf", "arguments": "{}"}}
                message = {"role": "assistant", "content": None, "tool_calls": [call]}
            usage = {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}
            if not body.get("stream"):
                choice = {"index": 0, "message": message, "finish_reason": "stop"}
                self._send(200, {"id": "chatcmpl-engine", "object": "chat.completion", "created": 1767225600,
                                 "model": model, "choices": [choice], "usage": usage})  # fmt: skip
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            base = {"id": "chatcmpl-engine", "object": "chat.completion.chunk", "created": 1767225600, "model": model}
            chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
            if message.get("tool_calls"):
                call = message["tool_calls"][0]
                chunks.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, **call}]}}]})
            else:
                chunks += [{**base, "choices": [{"index": 0, "delta": {"content": word}}]}
                           for word in text.split(" ") if word for word in (word + " ",)]  # fmt: skip
            chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            if (body.get("stream_options") or {}).get("include_usage"):
                chunks.append({**base, "choices": [], "usage": usage})
            for chunk in chunks:
                self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    return Handler


def start_engine(served_name: str = "base", port: int = 0, record_path: str = "") -> Engine:
    engine = Engine(served_name=served_name, record_path=record_path)
    engine.server = ThreadingHTTPServer(("127.0.0.1", port), _handler(engine))
    engine.server.daemon_threads = True
    threading.Thread(target=engine.server.serve_forever, daemon=True).start()
    return engine


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    parser.add_argument("weights")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--served-model-name", required=True)
    args, rest = parser.parse_known_args()
    record = os.environ.get("STANDIN_ENGINE_RECORD", "")
    if record:
        with open(record, "a") as out:
            out.write(json.dumps({"argv": sys.argv[1:], "env": {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": os.environ.get(
                "VLLM_ALLOW_RUNTIME_LORA_UPDATING")}}) + "\n")  # fmt: skip
    served = start_engine(args.served_model_name, args.port, record)
    assert served.server is not None
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
