"""A small OpenAI-compatible model server on transformers, with vLLM's API for LoRA adapters loaded at run time:

    python -m training.trainer.serve --model PATH --port N [--lora-modules NAME=PATH ...] [--max-loras N]

It answers what Logtune asks of vLLM's server (`vllm serve BASE --enable-lora`, with
VLLM_ALLOW_RUNTIME_LORA_UPDATING=True): GET /health, GET /v1/models, POST /v1/chat/completions (streamed or not),
POST /v1/load_lora_adapter and /v1/unload_lora_adapter, so that whatever starts an engine or calls one need not
know which runs. One model answers one request at a time, with no batching: for a machine without vLLM or a GPU,
and the demo (docs/serving.md). SIGTERM stops accepting, lets the requests under way finish, and exits 0.

Only the standard library's HTTP server; the model side is serve_models.py, the bodies serve_api.py.
"""

import argparse
import json
import select
import signal
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from training.trainer.serve_api import (
    ApiError,
    TextFilter,
    chat_request,
    chunk,
    completion,
    completion_id,
    read_json,
    split_tool_calls,
    usage,
    usage_chunk,
)
from training.trainer.serve_models import Models

MAX_BODY_BYTES = 32 * 1024 * 1024
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.trainer.serve",
        description="An OpenAI-compatible chat server for one model and its LoRA adapters, with vLLM's API "
        "(the options vLLM also has keep its names). SIGTERM: finish the requests under way, exit 0.",
    )
    parser.add_argument("--model", required=True, help="folder of the base model (transformers' from_pretrained)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    parser.add_argument("--served-model-name", nargs="+", metavar="NAME",
                        help="the base model's name(s) in requests and /v1/models; the first is the one answers "
                             "carry (default: the --model argument)")  # fmt: skip
    parser.add_argument("--lora-modules", nargs="+", default=[], metavar="NAME=PATH", type=lora_module,
                        help="adapters to serve from the start, as NAME=PATH or a JSON object "
                             '{"name": NAME, "path": PATH}; a folder without adapter_config.json is a full '
                             "fine-tune, loaded as a model of its own")  # fmt: skip
    parser.add_argument("--max-loras", type=int, default=4,
                        help="how many adapters may be loaded at once (default: %(default)s); "
                             "/v1/load_lora_adapter answers 400 beyond")  # fmt: skip
    parser.add_argument("--max-lora-rank", type=int, default=None,
                        help="refuse adapters of a higher rank (default: no limit)")  # fmt: skip
    parser.add_argument(
        "--max-model-len",
        type=int,
        default=None,
        help="tokens of prompt and answer together (default: the model's max_position_embeddings)",
    )
    parser.add_argument("--enable-lora", action="store_true",
                        help="accepted for vLLM's command line; adapters are always enabled here")  # fmt: skip
    args = parser.parse_args(argv)
    if args.max_loras < 0:
        parser.error("--max-loras must be 0 or more")
    if len(args.lora_modules) > args.max_loras:
        parser.error(f"--lora-modules names {len(args.lora_modules)} adapters, more than --max-loras {args.max_loras}")
    args.served_model_name = args.served_model_name or [args.model]
    return args


def lora_module(text: str) -> tuple[str, str]:
    """NAME=PATH or {"name": NAME, "path": PATH}, as vLLM's --lora-modules takes them."""
    if text.lstrip().startswith("{"):
        try:
            item = json.loads(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
        if not isinstance(item, dict) or not item.get("name") or not item.get("path"):
            raise argparse.ArgumentTypeError('a JSON module needs "name" and "path"')
        return str(item["name"]), str(item["path"])
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, not {text!r}")
    return name, path


def log(event: str, **fields: Any) -> None:
    """One line on stderr: the event's dotted name and its fields (never a request's messages)."""
    print(" ".join([event, *(f"{key}={value}" for key, value in fields.items())]), file=sys.stderr, flush=True)


class Server(ThreadingHTTPServer):
    """The HTTP server: a thread per connection; `models` is None while the base model loads (answers 503)."""

    daemon_threads = True  # an idle keep-alive connection never holds up the exit; requests under way do (drain)

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, Handler)
        self.models: Models | None = None
        self.stopping = False
        self.active = 0
        self.idle = threading.Condition()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away between requests is no error of ours; anything else is printed."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def begin(self) -> bool:
        with self.idle:
            if self.stopping:
                return False
            self.active += 1
            return True

    def end(self) -> None:
        with self.idle:
            self.active -= 1
            self.idle.notify_all()

    def drain(self) -> None:
        """Refuse new requests and wait for those under way to finish."""
        with self.idle:
            self.stopping = True
            self.idle.wait_for(lambda: self.active == 0)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; streams are sent chunked
    server_version = "logtune-serve"
    timeout = 300  # seconds a connection may sit idle (or a client take to read or send) before it is closed
    server: Server

    def do_GET(self) -> None:
        routes = {"/health": self.health, "/v1/models": self.list_models}
        self.serve(routes.get(self.path.split("?", 1)[0]))

    def do_POST(self) -> None:
        routes = {"/v1/chat/completions": self.chat, "/v1/load_lora_adapter": self.load_adapter,
                  "/v1/unload_lora_adapter": self.unload_adapter}  # fmt: skip
        self.serve(routes.get(self.path.split("?", 1)[0]))

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: each request is logged once by `serve`, with its model and tokens."""

    def serve(self, route: Any) -> None:
        started = time.monotonic()
        self.status, self.sent_head, self.fields = 0, False, {"model": "-", "tokens": "-"}
        self.body_read = self.command != "POST"
        admitted = self.server.begin()  # logged before it ends, so that a drained server has logged every request
        try:
            self.answer(route if admitted else None, admitted)
            ms = round((time.monotonic() - started) * 1000)
            log("serve.request", method=self.command, path=self.path, status=self.status, **self.fields, ms=ms)
        finally:
            if admitted:
                self.server.end()

    def answer(self, route: Any, admitted: bool) -> None:
        try:
            if not admitted:
                self.close_connection = True
                raise ApiError(503, "The server is shutting down.")
            if route is None:
                raise ApiError(404, f"Not found: {self.command} {self.path}")
            if self.server.models is None:
                raise ApiError(503, "The model is loading.")
            route(self.server.models)
        except ApiError as exc:
            self.send_json(exc.status, exc.body())
        except Exception as exc:
            traceback.print_exc()
            if not self.sent_head:
                self.send_json(500, ApiError(500, f"{type(exc).__name__}: {exc}").body())
            self.close_connection = True

    # --- routes ---------------------------------------------------------------------------------------

    def health(self, models: Models) -> None:
        self.reply(200, b"", "text/plain")

    def list_models(self, models: Models) -> None:
        self.send_json(200, {"object": "list", "data": models.listing()})

    def load_adapter(self, models: Models) -> None:
        body = self.body()
        name, path = body.get("lora_name"), body.get("lora_path")
        self.fields["model"] = name if isinstance(name, str) and name else "-"
        models.load(str(name or ""), str(path or ""), inplace=body.get("load_inplace") is True)
        log("serve.adapter_loaded", name=name, path=path)
        self.reply(200, f"Success: LoRA adapter '{name}' added successfully.".encode(), "text/plain")

    def unload_adapter(self, models: Models) -> None:
        name = self.body().get("lora_name")
        self.fields["model"] = name if isinstance(name, str) and name else "-"
        models.unload(str(name or ""))
        log("serve.adapter_unloaded", name=name)
        self.reply(200, f"Success: LoRA adapter '{name}' removed successfully.".encode(), "text/plain")

    def chat(self, models: Models) -> None:
        request = chat_request(self.body())
        name = request.model or models.names[0]
        self.fields["model"] = name
        ident, text = completion_id(), TextFilter(request.stop, tools=bool(request.tools))
        gone = threading.Event()

        def should_stop() -> bool:
            if not gone.is_set() and self.client_gone():
                gone.set()
            return gone.is_set()

        def start(prompt_tokens: int) -> None:
            if request.stream:
                self.start_stream(gone)
                self.event(chunk(ident=ident, model=name, delta={"role": "assistant", "content": ""},
                                 usage_field=request.include_usage), gone)  # fmt: skip

        def on_text(piece: str) -> None:
            out = text.feed(piece)
            if request.stream and out:
                self.event(chunk(ident=ident, model=name, delta={"content": out},
                                 usage_field=request.include_usage), gone)  # fmt: skip

        try:
            result = models.generate(request, on_start=start, on_text=on_text, should_stop=should_stop)
        except ApiError:
            raise
        except Exception as exc:
            if not request.stream or not self.sent_head:
                raise
            traceback.print_exc()
            self.event(ApiError(500, f"{type(exc).__name__}: {exc}").body(), gone)
            self.event("[DONE]", gone)
            self.end_stream(gone)
            return
        finish = "stop" if text.stopped else result.finish
        counts = usage(result.prompt_tokens, result.completion_tokens)
        self.fields.update(tokens=f"{result.prompt_tokens}+{result.completion_tokens}", finish=finish)
        if not request.stream:
            answer = completion(ident=ident, model=name, text=text.text, tools=bool(request.tools), finish=finish,
                                counts=counts)  # fmt: skip
            self.send_json(200, answer)
            self.fields["finish"] = answer["choices"][0]["finish_reason"]
            return
        self.finish_stream(request, ident, name, text.rest(), finish, counts, gone)

    def finish_stream(self, request: Any, ident: str, name: str, rest: str, finish: str, counts: dict,
                      gone: threading.Event) -> None:  # fmt: skip
        """The held-back text and tool calls, the last chunk with the finish reason, the usage, [DONE]."""
        content, calls = split_tool_calls(rest) if request.tools else (rest, [])
        extra = request.include_usage
        if content:
            self.event(chunk(ident=ident, model=name, delta={"content": content}, usage_field=extra), gone)
        if calls:
            delta = {"tool_calls": [{"index": index, **call} for index, call in enumerate(calls)]}
            self.event(chunk(ident=ident, model=name, delta=delta, usage_field=extra), gone)
            finish = self.fields["finish"] = "tool_calls"
        self.event(chunk(ident=ident, model=name, delta={}, finish=finish, usage_field=extra), gone)
        if extra:
            self.event(usage_chunk(ident=ident, model=name, counts=counts), gone)
        self.event("[DONE]", gone)
        self.end_stream(gone)

    # --- reading and writing --------------------------------------------------------------------------

    def body(self) -> dict:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise ApiError(411, "Send the body with a Content-Length.")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            raise ApiError(413 if length > 0 else 400, f"The body must have a Content-Length of at most "
                                                       f"{MAX_BODY_BYTES} bytes.")  # fmt: skip
        self.body_read = True
        return read_json(self.rfile.read(length))

    def reply(self, status: int, data: bytes, content_type: str) -> None:
        self.status, self.sent_head = status, True
        if not self.body_read:  # refused before its body was read: the connection cannot carry another request
            self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def send_json(self, status: int, body: dict) -> None:
        self.reply(status, json.dumps(body).encode(), "application/json")

    def start_stream(self, gone: threading.Event) -> None:
        self.status, self.sent_head = 200, True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        try:
            self.end_headers()
        except OSError:
            gone.set()

    def event(self, body: dict | str, gone: threading.Event) -> None:
        """One server-sent event, as one chunk; a client that has gone away is marked, not raised."""
        data = f"data: {body if isinstance(body, str) else json.dumps(body)}\n\n".encode()
        self.write_chunk(data, gone)

    def end_stream(self, gone: threading.Event) -> None:
        self.write_chunk(b"", gone)
        if gone.is_set():
            self.close_connection = True

    def write_chunk(self, data: bytes, gone: threading.Event) -> None:
        if gone.is_set():
            return
        try:
            self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
        except OSError:
            gone.set()

    def client_gone(self) -> bool:
        """Whether the client has closed its connection (readable, with nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Blocked before any thread starts (threads inherit the mask), then waited for: a SIGTERM that comes while the
    # model loads takes effect once it is loaded.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        server = Server((args.host, args.port))
    except OSError as exc:
        log("serve.failed", error=f"cannot listen on {args.host}:{args.port}: {exc}")
        return 1
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    log("serve.loading", model=args.model, host=args.host, port=server.server_address[1])
    try:
        server.models = load_models(args)
    except Exception as exc:
        log("serve.failed", error=f"{type(exc).__name__}: {exc}")
        server.shutdown()
        return 1
    log("serve.ready", port=server.server_address[1], adapters=len(args.lora_modules))
    received = signal.sigwait(STOP_SIGNALS)
    log("serve.stopping", signal=signal.Signals(received).name, requests=server.active)
    server.shutdown()
    server.server_close()
    server.drain()
    log("serve.stopped")
    return 0


def load_models(args: argparse.Namespace) -> Models:
    models = Models(args.model, names=args.served_model_name, max_loras=args.max_loras,
                    max_lora_rank=args.max_lora_rank, max_model_len=args.max_model_len)  # fmt: skip
    for name, path in args.lora_modules:
        try:
            models.load(name, path)
        except ApiError as exc:
            raise ValueError(f"--lora-modules {name}={path}: {exc.message}") from None
    return models


if __name__ == "__main__":
    sys.exit(main())
