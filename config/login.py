"""Login throttling (django-axes): whom a failed login counts against, and the page a locked-out login gets.

Axes counts failed logins by username and by client address (AXES_LOCKOUT_PARAMETERS) and refuses further tries
for LOGTUNE_LOGIN_COOLOFF_MINUTES after LOGTUNE_LOGIN_FAILURE_LIMIT failures, before any password is hashed.
"""

from axes.helpers import get_client_username, get_cool_off
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers


def client_ip(request: HttpRequest) -> str | None:
    """The address a login came from.

    Behind the reverse proxy (BEHIND_TLS_PROXY=1) every request comes from the proxy's address, so counting by
    REMOTE_ADDR would lock everyone out at once. The proxy appends the address it saw to X-Forwarded-For, so
    the last entry is the one to trust; those before it are whatever the client sent and could be forged.
    """
    if settings.BEHIND_TLS_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1].strip()
        if forwarded:
            return forwarded
    return request.META.get("REMOTE_ADDR")


def lockout_response(request: HttpRequest, response: HttpResponse | None, credentials: dict | None) -> HttpResponse:
    """429 with the time to try again: every try during the lockout starts the cool-off again."""
    cool_off = get_cool_off(request)
    context = {
        "username": get_client_username(request, credentials) or "",
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "cool_off_minutes": int(cool_off.total_seconds() // 60) if cool_off else None,
        "retry_at": timezone.now() + cool_off if cool_off else None,
    }
    locked = render(request, "registration/locked_out.html", context, status=429)
    if cool_off:
        locked["Retry-After"] = str(int(cool_off.total_seconds()))
    add_never_cache_headers(locked)
    return locked
