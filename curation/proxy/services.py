"""The logging proxy: an application's provider call goes to the project's upstream and comes back unchanged;
the call is logged afterwards, off the response path (docs/proxy.md).

What the request path does is kept to the least: authenticate the Logtune key, pass the body's bytes on,
pass the answer's bytes back as they arrive (keeping a copy), and hand the copy to a Celery task once the
server has sent the last byte. Parsing the request, assembling a streamed answer and storing the log all
happen in the task (`proxy_log_store`), so they cost the caller nothing.

The caller's provider key (`Authorization`, `x-api-key`) is forwarded and never stored: no header is logged.
"""

import hashlib
import http.cookiejar
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from curation.audit.services import audit_record
from curation.logs.ingest import BodyError, line_read
from curation.logs.ingest.raw import value_text
from curation.logs.services import logs_ingest
from curation.models import ApiKey, Project
from curation.projects.services import api_key_authenticate
from curation.proxy.streams import assemble_anthropic, assemble_openai, sse_events

logger = logging.getLogger(__name__)

LOGTUNE_KEY_HEADER = "X-Logtune-Key"
LOGTUNE_TAGS_HEADER = "X-Logtune-Tags"
_MAX_TAG_LENGTH = 100  # as the ingest's


@dataclass(frozen=True, slots=True)
class Provider:
    name: str  # the envelope's `provider`
    base_url_field: str  # the Project field holding the upstream's base URL
    path: str  # appended to it

    def upstream_url(self, project: Project) -> str:
        return getattr(project, self.base_url_field).rstrip("/") + self.path

    def error_body(self, message: str, kind: str) -> bytes:
        """An error in the provider's own shape, so its SDK raises its usual exception with our message."""
        if self.name == "anthropic":
            return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})
        return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}})


OPENAI = Provider(name="openai", base_url_field="openai_base_url", path="/chat/completions")
ANTHROPIC = Provider(name="anthropic", base_url_field="anthropic_base_url", path="/v1/messages")

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


# Keys that authenticated lately, by their SHA-256: a proxied call then costs no database round trip, which is
# most of what the proxy adds (bench/proxy.py). The price: a revoked key, a changed role or upstream URL takes
# up to KEY_CACHE_SECONDS to reach the proxy. Unknown keys are not remembered; they are looked up every time.
KEY_CACHE_SECONDS = 10.0
_KEY_CACHE_SIZE = 1024
_key_cache: dict[str, tuple[float, ApiKey]] = {}
_key_cache_lock = threading.Lock()


def proxy_key_authenticate(*, raw: str) -> ApiKey | None:
    """The active key `raw`, with its project, as api_key_authenticate finds it, remembered a few seconds."""
    digest = hashlib.sha256(raw.encode()).hexdigest()
    now = time.monotonic()
    with _key_cache_lock:
        cached = _key_cache.get(digest)
    if cached is not None and now - cached[0] < KEY_CACHE_SECONDS:
        return cached[1]
    key = api_key_authenticate(raw=raw)
    with _key_cache_lock:
        if key is None:
            _key_cache.pop(digest, None)
        else:
            if len(_key_cache) >= _KEY_CACHE_SIZE:
                _key_cache.pop(next(iter(_key_cache)))  # the oldest entry: dicts keep insertion order
            _key_cache[digest] = (now, key)
    return key


def upstream_url_problem(url: str) -> str:
    """Why `url` cannot be a proxy upstream, or "" when it can.

    The server sends requests to it, so only http(s) URLs to a host and port that LOGTUNE_PROXY_UPSTREAM_HOSTS
    allows are accepted: an owner could otherwise point the server at an internal address or, on an allowed host,
    at another of its services (SSRF). An entry `host` allows that host on its scheme's default port (443, 80),
    `host:port` that port, `host:*` any port, and `*` anything. Checked when an owner saves the URL and again on
    every call, so a narrower setting applies to URLs saved before it.
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if not host:
        return "has no host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials (the caller's key is forwarded with each call)"
    allowed = settings.LOGTUNE_PROXY_UPSTREAM_HOSTS
    if "*" in allowed:
        return ""
    default = _DEFAULT_PORTS[parts.scheme]
    port = port or default
    entries = {upstream_entry_split(entry) for entry in allowed}
    if {(host, str(port)), (host, "*")} & entries or (port == default and (host, "") in entries):
        return ""
    shown = f"[{host}]" if ":" in host else host
    if any(name == host for name, _ in entries):
        return f"port {port} of {shown} is not among this server's LOGTUNE_PROXY_UPSTREAM_HOSTS ({', '.join(allowed)})"
    return f"host {shown} is not among this server's LOGTUNE_PROXY_UPSTREAM_HOSTS ({', '.join(allowed)})"


_DEFAULT_PORTS = {"http": 80, "https": 443}


def upstream_entry_split(entry: str) -> tuple[str, str]:
    """An entry of LOGTUNE_PROXY_UPSTREAM_HOSTS as (host, port): port "" for a bare host (the URL scheme's default
    port), "*" or digits. An IPv6 address takes brackets to carry a port (`[fd00::1]:8000`)."""
    entry = entry.strip().lower()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, rest.removeprefix(":")
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, port
    return entry, ""


@transaction.atomic
def project_upstreams_update(
    *, project: Project, openai_base_url: str, anthropic_base_url: str, actor: User | None = None
) -> Project:
    changed = {
        name: {"from": getattr(project, name), "to": value}
        for name, value in (("openai_base_url", openai_base_url), ("anthropic_base_url", anthropic_base_url))
        if getattr(project, name) != value
    }
    if changed:
        for name, change in changed.items():
            setattr(project, name, change["to"])
        project.save(update_fields=list(changed))
        audit_record(project=project, action="project.update", actor=actor, detail=changed)
    return project


# --- The request path -----------------------------------------------------------------------------------


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

    @property
    def streamed(self) -> bool:
        return self.headers.get("content-type", "").startswith("text/event-stream")


def proxy_call_open(
    *, project: Project, provider: Provider, body: bytes, headers: Mapping[str, str], query: str
) -> ProxyCall:
    """Send the call upstream and return once the answer's status and headers are in (its body follows).

    An upstream that cannot be reached, or times out, is answered 502 in the provider's error shape; the
    upstream's own errors (429, 400, 500…) pass through untouched like any other answer.
    """
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
    call.first_byte_ms = _elapsed_ms(call)
    call.status_code = call.response.status_code
    call.headers = {
        name.lower(): value
        for name, value in call.response.headers.items()
        if name.lower() not in _RESPONSE_HEADERS_KEPT_BACK
    }
    return call


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
    from curation.proxy.tasks import proxy_log_store_task

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


# --- The log, in the Celery task ------------------------------------------------------------------------


def proxy_log_store(
    *,
    project_id: int,
    provider: str,
    request_body: str,
    response_body: str,
    streamed: bool,
    status_code: int,
    latency_ms: float,
    tags: list[str],
    metadata: dict,
    external_id: str,
) -> bool:
    """Store one proxied call as a log envelope; a streamed answer is first assembled into the one response
    the provider would have sent unstreamed. Returns whether a log was stored (or already was).

    Whatever the upstream answered is stored: a call our readers cannot turn into a conversation (a tool type or
    block they do not know, a body that is not JSON) is kept with status "unreadable" and the reader's reason,
    for `reparse_logs` to read again after an upgrade. The envelope's `request` is the caller's body itself,
    byte for byte; a body that is not a JSON object is kept as a string."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        logger.warning("proxy.log_skipped", extra={"project_id": project_id, "reason": "the project is gone"})
        return False
    if streamed:
        events = sse_events(response_body)
        response: object = assemble_anthropic(events) if provider == "anthropic" else assemble_openai(events)
        response_text = None if response is None else value_text(response)
    else:
        response_text = _json_object_text(response_body)
    if response_text is None and response_body:
        response_text = value_text(response_body)  # not JSON: kept as it came, as a string
    envelope_head = {"provider": provider}
    envelope_tail = {
        "status_code": status_code,
        "latency_ms": latency_ms,
        "metadata": {"proxy": metadata},
        "tags": tags,
        "external_id": external_id,
    }
    request_text = _json_object_text(request_body) or value_text(request_body)
    text = (
        value_text(envelope_head)[:-1]
        + f',"request":{request_text},"response":{response_text or "null"},'
        + value_text(envelope_tail)[1:]
    )
    item = line_read(text)
    result = logs_ingest(project=project, items=[item], keep_unreadable=True)
    for rejection in result.rejected:  # only what cannot be stored at all (numbers beyond 64 bits in metadata...)
        logger.error("proxy.log_lost", extra={"project_id": project_id, "error": rejection.error})
    for unreadable in result.unreadable:
        logger.warning("proxy.log_unreadable", extra={"project_id": project_id, "error": unreadable.error})
    return not result.rejected


def _json_object_text(body: str) -> str | None:
    """The body itself when it is one JSON object (its exact text, kept as the original), else None."""
    stripped = body.strip()
    if not stripped.startswith("{"):
        return None
    try:
        line_read(stripped)  # the standard library's reader, which takes lone surrogate escapes as orjson does not
    except BodyError:
        return None
    return stripped
