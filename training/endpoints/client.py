"""The one client for OpenAI-compatible chat endpoints (judges, teachers, generators): the official `openai` SDK,
with a bound on concurrent calls, retries on 408/409/429/5xx and lost connections with exponential backoff that
honours `Retry-After` (the SDK's own), and a timeout per call. One failed call is that call's error, never the
others'. No Django: a worker, a test or a script passes an `EndpointTarget`.
"""

import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import openai


@dataclass(frozen=True, slots=True)
class EndpointTarget:
    base_url: str  # up to /v1
    model: str
    api_key: str = ""  # "" for servers that take none (a local vLLM or Ollama)
    max_concurrency: int = 8
    timeout_s: float = 120
    max_retries: int = 4


@dataclass(slots=True)
class ChatAnswer:
    index: int  # the request's place in the list
    message: dict | None  # the first choice's message as the endpoint sent it; None when the call failed
    finish_reason: str
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: int
    error: str = ""  # what went wrong, after the retries; "" on success

    @property
    def text(self) -> str:
        content = (self.message or {}).get("content")
        return content if isinstance(content, str) else ""


def chat_many(
    target: EndpointTarget,
    requests: Sequence[dict],
    *,
    on_answer: Callable[[ChatAnswer], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[ChatAnswer | None]:
    """Each request (the body of a chat completion call, without `model`) sent to `target`, at most
    `max_concurrency` at a time, answers in the requests' order. `on_answer` is called as each arrives (from this
    thread); once `should_stop` says so, no new call starts and the requests not sent are None."""
    answers: list[ChatAnswer | None] = [None] * len(requests)
    if not requests:
        return answers
    # Imported where used: the SDK is large, and web processes that never call an endpoint stay small.
    import httpx2  # the HTTP library the openai SDK (3.x) is built on
    import openai

    # TCP_NODELAY: httpx writes a request's headers and body apart, and without it Nagle's algorithm holds the body
    # until the server acknowledges the headers, which it delays: about 40 ms added to every call (bench/evaluate.py).
    transport = httpx2.HTTPTransport(
        limits=httpx2.Limits(max_connections=target.max_concurrency, max_keepalive_connections=target.max_concurrency),
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )
    client = openai.OpenAI(
        base_url=target.base_url, api_key=target.api_key or "none", timeout=target.timeout_s,
        max_retries=target.max_retries, http_client=openai.DefaultHttpxClient(transport=transport),
    )  # fmt: skip
    with client, ThreadPoolExecutor(max_workers=max(1, min(target.max_concurrency, len(requests)))) as pool:
        running: set[Future[ChatAnswer]] = set()
        waiting = iter(enumerate(requests))
        while True:
            while len(running) < target.max_concurrency and not (should_stop and should_stop()):
                item = next(waiting, None)
                if item is None:
                    break
                running.add(pool.submit(_chat, client, target.model, *item))
            if not running:
                return answers
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                answer = future.result()
                answers[answer.index] = answer
                if on_answer is not None:
                    on_answer(answer)


def chat_one(target: EndpointTarget, request: dict) -> ChatAnswer:
    answer = chat_many(target, [request])[0]
    assert answer is not None  # one request, never stopped
    return answer


def _chat(client: "openai.OpenAI", model: str, index: int, request: dict) -> ChatAnswer:
    import openai

    started = time.monotonic()
    try:
        completion = client.chat.completions.create(**{**request, "model": model, "stream": False})
    except openai.APIStatusError as exc:
        return _failed(index, started, f"HTTP {exc.status_code}: {_message(exc)}")
    except openai.APITimeoutError:
        return _failed(index, started, "timed out")
    except openai.APIConnectionError as exc:
        return _failed(index, started, f"could not connect: {exc.__cause__ or exc}")
    except openai.OpenAIError as exc:  # an answer the SDK cannot read
        return _failed(index, started, f"unreadable answer: {exc}")
    latency_ms = round((time.monotonic() - started) * 1000)
    if not completion.choices:
        return _failed(index, started, "the answer has no choices")
    choice = completion.choices[0]
    usage = completion.usage
    return ChatAnswer(
        index=index, message=choice.message.model_dump(mode="json", exclude_none=True),
        finish_reason=choice.finish_reason or "", prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None, latency_ms=latency_ms,
    )  # fmt: skip


def _failed(index: int, started: float, error: str) -> ChatAnswer:
    latency_ms = round((time.monotonic() - started) * 1000)
    return ChatAnswer(index, None, "", None, None, latency_ms, error=error)


def _message(exc: Any) -> str:
    """The message of an `openai.APIStatusError`: the error body's own, else the SDK's."""
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"][:500]
    return str(exc.message)[:500]
