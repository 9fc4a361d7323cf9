"""The logging proxy: an application's provider call goes to the project's upstream and comes back unchanged;
the call is logged afterwards, off the response path (docs/proxy.md).

What the request path does is kept to the least: authenticate the Logtune key, pass the body's bytes on,
pass the answer's bytes back as they arrive (keeping a copy), and hand the copy to a Celery task once the
server has sent the last byte. Parsing the request, assembling a streamed answer and storing the log all
happen in the task (`proxy_log_store`, logs.py), so they cost the caller nothing.

The caller's provider key (`Authorization`, `x-api-key`) is forwarded and never stored: no header is logged.

Here: a call's forwarding, from its request to the queued log. keys.py checks the Logtune key, upstreams.py where a
project's calls go.
"""

import contextlib
import http.cookiejar
import logging
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from curation.logs.ingest.streams import assemble, sse_events
from curation.models import Project
from curation.proxy.hooks import Routing, proxy_router
from curation.proxy.logs import proxy_log_store
from curation.proxy.tasks import proxy_log_store_task
from curation.proxy.upstreams import Provider, upstream_url_problem

logger = logging.getLogger(__name__)

LOGTUNE_TAGS_HEADER = "X-Logtune-Tags"
_MAX_TAG_LENGTH = 100  # as the ingest's

# Not forwarded: hop-by-hop headers (RFC 9110 7.6.1), those httpx sets for its own connection, the browser's
# cookies, and Logtune's own. Accept-Encoding is ours to choose: identity, so the bytes pass through as they are
# (an upstream that compresses anyway is decoded by httpx, and Content-Encoding is dropped with it).
_REQUEST_HEADERS_KEPT_BACK = frozenset(
    {
        "host", "connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer",
        "transfer-encoding", "upgrade", "content-length", "accept-encoding", "cookie", "forwarded",
    }
)  # fmt: skip
# Not passed back: hop-by-hop headers, what the server in front of the caller sets itself (length, date,
# server), what belongs to the upstream's host and not to ours (cookies, HSTS, Alt-Svc).
_RESPONSE_HEADERS_KEPT_BACK = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "te", "trailer", "transfer-encoding", "upgrade",
        "content-length", "content-encoding", "date", "server", "set-cookie", "strict-transport-security",
        "alt-svc",
    }
)  # fmt: skip

# One pooled client per process: keep-alive connections to the upstreams are what keeps the overhead low.
# Reads wait up to ten minutes, as a long non-streamed generation can; connecting is quick or it fails.
# Created at import, before gunicorn forks, it holds no connection yet: each worker opens its own.
# TCP_NODELAY: httpx writes a request's headers and body apart, and without it Nagle's algorithm holds the body
# until the upstream acknowledges the headers, which it delays: about 40 ms added to every call (bench/proxy.py).
# No cookie jar: one caller's upstream cookies (a gateway's session, a load balancer's affinity) must never be sent
# with another caller's call. A policy that allows no domain keeps the shared client's jar empty.
_NO_COOKIES = http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
_client = httpx.Client(
    cookies=_NO_COOKIES,
    transport=httpx.HTTPTransport(
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=60.0),
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    ),
    timeout=httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=30.0),
    follow_redirects=False,
)


@dataclass(slots=True)
class ProxyCall:
    """One call through the proxy, from the caller's request to the log it leaves."""

    project_id: int
    provider: Provider
    upstream_url: str
    request_body: bytes
    tags: str  # the caller's X-Logtune-Tags, comma-separated
    started: float = field(default_factory=time.perf_counter)
    response: httpx.Response | None = None
    status_code: int = 502
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)
    first_byte_ms: float | None = None
    latency_ms: float | None = None
    complete: bool = False  # the whole answer arrived and went on to the caller
    finished: bool = False
    routing: Routing | None = None  # a route (or the call's `model`) sent it to a deployed fine-tune too
    routed: dict = field(default_factory=dict)  # what the fine-tune's side did: served_by, fallback, status, ms…

    @property
    def streamed(self) -> bool:
        return self.headers.get("content-type", "").startswith("text/event-stream")


def proxy_call_open(
    *,
    project: Project,
    provider: Provider,
    body: bytes,
    headers: Mapping[str, str],
    query: str,
    routing: Routing | None = None,
) -> ProxyCall:
    """Send the call upstream and return once the answer's status and headers are in (its body follows).

    An upstream that cannot be reached, or times out, is answered 502 in the provider's error shape; the
    upstream's own errors (429, 400, 500…) pass through untouched like any other answer.

    With a `routing` that serves (a call naming a deployment, or one a canary route picked), the deployed fine-tune
    is asked first; a canary falls back to the upstream when it fails (_finetune_open).
    """
    started = time.perf_counter()
    routed: dict[str, Any] = {}
    if routing is not None and routing.serve:
        served = _finetune_open(project=project, provider=provider, body=body, headers=headers, routing=routing)
        if served.status_code != 0:
            return served
        routed = served.routed  # the canary fell back: why, and what the fine-tune answered
    call = _upstream_open(project=project, provider=provider, body=body, headers=headers, query=query)
    if routing is not None:
        call.started = started  # the caller waited for the fine-tune's try too
        call.routing = routing
        call.routed = {**routed, "served_by": "provider"}
    return call


# Request headers a deployed fine-tune gets: the model server is Logtune's own, so the caller's provider key
# (Authorization, x-api-key) and other headers meant for the provider stay behind.
_FINETUNE_HEADERS = {"Content-Type": "application/json", "Accept-Encoding": "identity"}


def _finetune_open(
    *, project: Project, provider: Provider, body: bytes, headers: Mapping[str, str], routing: Routing
) -> ProxyCall:
    """Ask the deployed fine-tune. A direct call gets its answer whatever it is. A canary call gets it only when it
    came in time and passed the route's checks: otherwise the returned call has status_code 0 and `routed` says why,
    for the caller to fall back to the upstream (the fine-tune's failed answer is kept for its own log)."""
    call = ProxyCall(
        project_id=project.pk, provider=provider, upstream_url=routing.url, request_body=body,
        tags=headers.get(LOGTUNE_TAGS_HEADER, ""), routing=routing, routed={"served_by": "finetune"},
    )  # fmt: skip
    canary = routing.mode == "canary"
    if not routing.url:  # the route's deployment is not serving (loading, failed): nowhere to send it
        return _fallback(call, "not serving", status=None)
    timeout = httpx.Timeout(routing.timeout_s if canary else 600.0, connect=min(routing.timeout_s, 10.0))
    request = _client.build_request(
        "POST", routing.url, content=routing.body, headers=_FINETUNE_HEADERS, timeout=timeout
    )
    try:
        call.response = _client.send(request, stream=True)
    except httpx.HTTPError as exc:
        reason = "timeout" if isinstance(exc, httpx.TimeoutException) else f"unreachable ({type(exc).__name__})"
        logger.warning("proxy.finetune_failed", extra={"model": routing.served_name, "error": repr(exc)})
        if canary:
            return _fallback(call, reason, status=None)
        _fail(call, f"The fine-tune {routing.served_name} could not be reached: {type(exc).__name__}.", "proxy_error")
        return call
    _headers_in(call)
    if not canary:
        return call
    if call.status_code != 200:
        return _fallback(call, f"status {call.status_code}", status=call.status_code)
    if not routing.checks:
        return call
    return _finetune_checked(call, routing)


def _finetune_checked(call: ProxyCall, routing: Routing) -> ProxyCall:
    """The canary's answer read whole (streamed or not) and checked before any byte goes to the caller."""
    assert call.response is not None
    try:
        call.chunks = list(call.response.iter_bytes())
    except httpx.HTTPError as exc:
        return _fallback(call, f"broke off ({type(exc).__name__})", status=call.status_code)
    finally:
        call.response.close()
    call.response = None  # read: relaying and reading now hand on the chunks kept
    text = b"".join(call.chunks).decode("utf-8", "replace")
    answer = assemble("openai", sse_events(text)) if call.streamed else _json_or_none(text)
    router = proxy_router()
    if not isinstance(answer, dict):
        problem = "not an answer"
    else:
        problem = (
            router.answer_problem(routing=routing, request_body=call.request_body, answer=answer) if router else ""
        )
    if problem:
        return _fallback(call, problem, status=call.status_code)
    call.complete = True
    call.latency_ms = _elapsed_ms(call)
    return call


def _fallback(call: ProxyCall, reason: str, *, status: int | None) -> ProxyCall:
    body = b"".join(call.chunks)
    if call.response is not None:
        with contextlib.suppress(httpx.HTTPError):
            body = call.response.read()
        call.response.close()
    call.routed = {
        "served_by": "provider",
        "fallback": reason,
        "finetune_status": status,
        "finetune_ms": round(_elapsed_ms(call), 1),
        "finetune_response": body.decode("utf-8", "replace"),
        "finetune_streamed": call.streamed,
    }
    call.status_code = 0
    return call


def _json_or_none(text: str) -> object:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _upstream_open(
    *, project: Project, provider: Provider, body: bytes, headers: Mapping[str, str], query: str
) -> ProxyCall:
    url = provider.upstream_url(project)
    call = ProxyCall(
        project_id=project.pk,
        provider=provider,
        upstream_url=url,
        request_body=body,
        tags=headers.get(LOGTUNE_TAGS_HEADER, ""),
    )
    problem = upstream_url_problem(url)
    if problem:
        _fail(call, f"The project's {provider.name} upstream {problem}.", "proxy_error", log=False)
        return call
    forwarded = {
        name: value
        for name, value in headers.items()
        if name.lower() not in _REQUEST_HEADERS_KEPT_BACK and not name.lower().startswith("x-logtune-")
    }
    forwarded["Accept-Encoding"] = "identity"
    request = _client.build_request("POST", f"{url}?{query}" if query else url, content=body, headers=forwarded)
    try:
        call.response = _client.send(request, stream=True)
    except httpx.HTTPError as exc:
        logger.warning("proxy.upstream_unreachable", extra={"upstream": url, "error": repr(exc)})
        _fail(call, f"The {provider.name} upstream could not be reached: {type(exc).__name__}.", "proxy_error")
        return call
    _headers_in(call)
    return call


def _headers_in(call: ProxyCall) -> None:
    """The answer's status and headers have arrived (its body follows): keep those the caller gets."""
    assert call.response is not None
    call.first_byte_ms = _elapsed_ms(call)
    call.status_code = call.response.status_code
    call.headers = {
        name.lower(): value
        for name, value in call.response.headers.items()
        if name.lower() not in _RESPONSE_HEADERS_KEPT_BACK
    }


def _fail(call: ProxyCall, message: str, kind: str, *, log: bool = True) -> None:
    call.status_code = 502
    call.headers = {"content-type": "application/json"}
    call.chunks = [call.provider.error_body(message, kind)]
    call.latency_ms = _elapsed_ms(call)
    call.complete = True
    call.finished = not log  # nothing was sent upstream: nothing to log


def proxy_call_read(*, call: ProxyCall) -> bytes:
    """The whole answer of a call that is not streamed."""
    if call.response is not None:
        try:
            call.chunks = [call.response.read()]
            call.complete = True
        except httpx.HTTPError as exc:
            logger.warning("proxy.upstream_broke_off", extra={"upstream": call.upstream_url, "error": repr(exc)})
            _fail(call, f"The {call.provider.name} upstream broke off: {type(exc).__name__}.", "proxy_error")
        finally:
            call.response.close()
        call.latency_ms = _elapsed_ms(call)
    return b"".join(call.chunks)


def proxy_call_relay(*, call: ProxyCall) -> Iterator[bytes]:
    """A streamed answer's bytes as they arrive, unchanged, keeping a copy for the log.

    A caller that goes away mid-stream closes this generator: the upstream connection is closed with it
    and the log keeps what had arrived, marked incomplete.
    """
    if call.response is None:
        yield from call.chunks
        return
    try:
        for chunk in call.response.iter_bytes():
            call.chunks.append(chunk)
            yield chunk
        call.complete = True
    except httpx.HTTPError as exc:
        # The status line is gone already: the caller sees the stream end early, the log says why.
        logger.warning("proxy.upstream_broke_off", extra={"upstream": call.upstream_url, "error": repr(exc)})
    finally:
        call.response.close()
        call.latency_ms = _elapsed_ms(call)


def proxy_call_finish(*, call: ProxyCall) -> None:
    """Queue the call's log, once the server has handed the answer on (the response's close hook calls this).

    The broker being down must not fail a call that already succeeded, nor lose its log: the log is then stored
    here, still after the answer was handed on, and a warning says so.
    """
    if call.finished:
        return
    call.finished = True
    if call.response is not None:
        call.response.close()  # a response closed before its body was read hands its connection back
    if call.latency_ms is None:
        call.latency_ms = _elapsed_ms(call)
    log: dict[str, Any] = {
        "project_id": call.project_id,
        "provider": call.provider.name,
        "request_body": call.request_body.decode("utf-8", "replace"),
        "response_body": b"".join(call.chunks).decode("utf-8", "replace"),
        "streamed": call.streamed,
        "status_code": call.status_code,
        "latency_ms": round(call.latency_ms, 1),
        "tags": _tags(call.tags),
        "metadata": {
            "upstream": call.upstream_url,
            "stream": call.streamed,
            "complete": call.complete,
            "first_byte_ms": None if call.first_byte_ms is None else round(call.first_byte_ms, 1),
            "request_id": call.headers.get("x-request-id") or call.headers.get("request-id"),
        },
        # The task may be delivered twice: the second delivery is a duplicate of the first and stores nothing.
        "external_id": f"proxy-{uuid.uuid4().hex}",
    }
    router = proxy_router() if call.routing is not None else None
    if router is not None and call.routing is not None:
        log["tags"] = [*log["tags"], *call.routing.tags]
        router.store(log=log, routed={**call.routing.as_dict(), **call.routed})
        return
    try:
        proxy_log_store_task.apply_async(
            args=[log], retry=True, retry_policy={"max_retries": 1, "interval_start": 0.1, "interval_max": 0.1}
        )
    except Exception as exc:  # whatever the broker raises, the call itself has succeeded
        logger.warning("proxy.log_not_queued", extra={"project_id": call.project_id, "error": repr(exc)})
        try:
            proxy_log_store(**log)
        except Exception as store_exc:  # the database too: nothing left to keep the log in
            logger.error("proxy.log_lost", extra={"project_id": call.project_id, "error": repr(store_exc)})
        else:
            logger.warning("proxy.log_stored_in_process", extra={"project_id": call.project_id})


def _tags(header: str) -> list[str]:
    # A tag the ingest would refuse (over 100 characters) is dropped here: it must not cost the call its log.
    return [tag for tag in (part.strip() for part in header.split(",")) if 0 < len(tag) <= _MAX_TAG_LENGTH]


def _elapsed_ms(call: ProxyCall) -> float:
    return (time.perf_counter() - call.started) * 1000
