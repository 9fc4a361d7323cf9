"""The logging proxy's endpoints (docs/proxy.md): programs call them, with a Logtune key in X-Logtune-Key.

CSRF protection is off because no browser session is accepted here: the key header is the only credential,
and a cross-site form cannot set a header. A call without a valid editor key is answered in the provider's
error shape and forwards nothing.
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from curation.logs.throttling import ingest_rate_spend_for_key
from curation.models import Role
from curation.proxy.hooks import Refusal, proxy_router
from curation.proxy.keys import LOGTUNE_KEY_HEADER, proxy_key_authenticate
from curation.proxy.services import ProxyCall, proxy_call_finish, proxy_call_open, proxy_call_read, proxy_call_relay
from curation.proxy.upstreams import ANTHROPIC, OPENAI, OPENAI_RESPONSES, Provider


class _OnClose:
    """Calls `on_close` once the server has sent the answer and closes the response (WSGI's close()): after
    the last byte of a streamed answer was written, or when the caller went away."""

    def __init__(self, *args: object, on_close: Callable[[], None], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._on_close = on_close

    def close(self) -> None:
        try:
            super().close()  # type: ignore[misc]
        finally:
            self._on_close()


class _LoggedResponse(_OnClose, HttpResponse):
    pass


class _LoggedStreamingResponse(_OnClose, StreamingHttpResponse):
    pass


def _refusal(provider: Provider, status: int, message: str, kind: str) -> HttpResponse:
    return HttpResponse(provider.error_body(message, kind), status=status, content_type="application/json")


def _proxy(request: HttpRequest, provider: Provider) -> HttpResponse:
    raw = request.headers.get(LOGTUNE_KEY_HEADER, "").strip()
    key = proxy_key_authenticate(raw=raw) if raw else None
    if key is None:
        message = f"Missing {LOGTUNE_KEY_HEADER} header." if not raw else "Invalid or revoked Logtune API key."
        return _refusal(provider, 401, message, "authentication_error")
    if Role.rank(key.role) < Role.rank(Role.EDITOR):
        return _refusal(
            provider, 403, "This Logtune API key cannot send logs (it needs the editor role).", "permission_error"
        )
    limited = ingest_rate_spend_for_key(api_key=key)  # each call is a log: it counts as one ingest request
    if limited is not None:
        refusal = _refusal(provider, 429, str(limited.detail), "rate_limit_error")
        refusal["Retry-After"] = str(int(getattr(limited, "wait", None) or 1))
        return refusal
    router = proxy_router()
    routing = (
        router.route(
            project_id=key.project_id, provider=provider.name, path=provider.path, body=request.body,
            headers=request.headers,
        )
        if router is not None
        else None
    )  # fmt: skip
    if isinstance(routing, Refusal):
        return _refusal(provider, routing.status, routing.message, routing.kind)
    call = proxy_call_open(
        project=key.project,
        provider=provider,
        body=request.body,
        headers=request.headers,
        query=request.META.get("QUERY_STRING", ""),
        routing=routing,
    )
    return _answer(call)


def _answer(call: ProxyCall) -> HttpResponse:
    def finish() -> None:
        proxy_call_finish(call=call)

    response: HttpResponse
    if call.streamed:
        response = _LoggedStreamingResponse(proxy_call_relay(call=call), status=call.status_code, on_close=finish)  # type: ignore[assignment]
    else:
        response = _LoggedResponse(proxy_call_read(call=call), status=call.status_code, on_close=finish)
    for name, value in call.headers.items():
        response[name] = value
    if call.streamed:
        response["X-Accel-Buffering"] = "no"  # nginx in front must pass each event on as it comes
    return response


@csrf_exempt
@require_POST
def openai_chat_completions(request: HttpRequest) -> HttpResponse:
    return _proxy(request, OPENAI)


@csrf_exempt
@require_POST
def openai_responses(request: HttpRequest) -> HttpResponse:
    return _proxy(request, OPENAI_RESPONSES)


@csrf_exempt
@require_POST
def anthropic_messages(request: HttpRequest) -> HttpResponse:
    return _proxy(request, ANTHROPIC)


urlpatterns = [
    path("openai/v1/chat/completions", openai_chat_completions, name="proxy-openai-chat"),
    path("openai/v1/responses", openai_responses, name="proxy-openai-responses"),
    path("anthropic/v1/messages", anthropic_messages, name="proxy-anthropic-messages"),
]
