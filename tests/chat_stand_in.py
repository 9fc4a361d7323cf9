"""A stand-in OpenAI-compatible chat server on 127.0.0.1 for what Logtune calls as a client (judges, teachers,
generators): `POST /v1/chat/completions` answered by a function of the request, with failures and latency a test
sets, and a record of every request and of how many were in flight at once.

    server = start_chat_stand_in(answer=lambda body: "OK")
    ... base_url=server.url ...
    server.close()
"""

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class ChatStandIn:
    server: ThreadingHTTPServer
    answer: Callable[[dict], str]
    # Status codes to answer with before answering normally, one per request ("429 twice, then fine": [429, 429]).
    failures: list[int] = field(default_factory=list)
    delay_s: float = 0.0  # how long each answer takes
    requests: list[dict] = field(default_factory=list)  # bodies, in arrival order
    headers: list[dict] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_chat_stand_in(answer: Callable[[dict], str] = lambda body: "OK", **settings: object) -> ChatStandIn:
    stand_in: ChatStandIn

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms wait between them

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            with stand_in.lock:
                stand_in.requests.append(body)
                stand_in.headers.append({k.lower(): v for k, v in self.headers.items()})
                status = stand_in.failures.pop(0) if stand_in.failures else 200
                stand_in.in_flight += 1
                stand_in.most_in_flight = max(stand_in.most_in_flight, stand_in.in_flight)
            try:
                time.sleep(stand_in.delay_s)
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                elif status != 200:
                    self._send(status, {"error": {"message": f"stand-in failure {status}", "type": "x"}})
                else:
                    self._send(200, _completion(body, stand_in.answer(body)))
            finally:
                with stand_in.lock:
                    stand_in.in_flight -= 1

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 429:
                self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    stand_in = ChatStandIn(server=server, answer=answer, **settings)  # type: ignore[arg-type]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return stand_in


def _completion(body: dict, text: str) -> dict:
    prompt = sum(len(str(message.get("content", ""))) for message in body.get("messages", [])) // 4
    return {
        "id": "chatcmpl-standin", "object": "chat.completion", "created": 1767225600,
        "model": f"{body.get('model', '')}-2026-01-01",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": len(text) // 4 + 1,
                  "total_tokens": prompt + len(text) // 4 + 1},
    }  # fmt: skip
