"""Answers for when the database is down: a quick, clear 503 instead of a 500 page or a hung request; and for a
page's parameters that no query or row can hold."""

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.urls import get_resolver

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 5
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Logtune is unavailable</title></head>
<body><h1>Logtune is unavailable</h1>
<p>Its database is not answering. Try again in a few seconds.</p></body></html>
"""


class DatabaseUnavailableMiddleware:
    """A view that cannot reach the database (refused, timed out, connection cut) answers 503 with Retry-After:
    JSON `{"detail": …}` under /api/, a short page elsewhere. Django drops the broken connection when the
    request ends, so the next request connects afresh and the app recovers on its own once the database is back.

    Last in MIDDLEWARE, so its process_exception sees the exception first. Nothing here renders a template
    or reads the session: both could need the database."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        # The driver's own classes too (psycopg's, sqlite3's): code on the raw cursor (COPY) gets them unwrapped.
        driver = connection.Database  # type: ignore[attr-defined]
        unavailable = (OperationalError, InterfaceError, driver.OperationalError, driver.InterfaceError)
        if not isinstance(exception, unavailable):
            return None
        logger.warning("db.unavailable method=%s path=%s: %s", request.method, request.path, exception)
        response: HttpResponse
        if request.path.startswith("/api/"):
            detail = f"The database is unavailable. Retry in {RETRY_AFTER_S} seconds."
            response = JsonResponse({"detail": detail}, status=503)
        else:
            response = HttpResponse(PAGE, status=503, content_type="text/html; charset=utf-8")
        response["Retry-After"] = str(RETRY_AFTER_S)
        return response


class NulParametersMiddleware:
    """A page's query string or form field holding a NUL character (\\u0000) is answered 400 naming it: PostgreSQL
    text cannot hold one, so a view passing it to a search or a row would fail with a 500. Forms refuse it field
    by field already; this covers the parameters views read themselves (`?q=`, `?action=`, a tag's name).

    The API refuses NUL in its own way (curation.common.apis: query parameters, JSON bodies) and the logging
    proxy keeps it as sent, so both are left alone here; their bodies are not read as forms."""

    SKIPPED = ("/api/", "/proxy/")

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view: Callable, args: tuple, kwargs: dict) -> HttpResponse | None:
        if request.path.startswith(self.SKIPPED):
            return None
        sources = [request.GET, request.POST] if request.method == "POST" else [request.GET]
        for params in sources:
            for name, values in params.lists():
                if "\x00" in name or any("\x00" in value for value in values):
                    shown = name.replace("\x00", "\\u0000")[:40]
                    return HttpResponseBadRequest(
                        f"{shown}: contains a NUL character (\\u0000).", content_type="text/plain; charset=utf-8"
                    )
        return None


class PrivatePagesMiddleware:
    """An answer to a browser with a session is that user's and changes after each action: `Cache-Control:
    no-store, private`, so Back after a delete asks the server again rather than showing a cached page whose
    buttons act on what is gone, and no shared cache keeps it. Answers that set their own Cache-Control keep it.

    The session cookie decides, not `request.user`: that would read the database, which may be down."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if settings.SESSION_COOKIE_NAME in request.COOKIES and not response.has_header("Cache-Control"):
            response["Cache-Control"] = "no-store, private"
        return response


class FriendlyNotFoundMiddleware:
    """With DEBUG on (`make run`), Django answers a 404 with its debug page, which lists every URL pattern of the
    app: anyone but staff gets templates/404.html instead, as in production. JSON 404s of the API stay as they
    are."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not (settings.DEBUG and response.status_code == 404):
            return response
        if not response.get("Content-Type", "").startswith("text/html"):  # the API's own 404s, in JSON
            return response
        user = getattr(request, "user", None)
        if user is not None and user.is_staff:
            return response
        # The 404 handler production uses (config/urls.py's handler404: JSON under /api/, templates/404.html else).
        handler: Any = get_resolver().resolve_error_handler(404)  # django-stubs types it without the exception
        return handler(request, Http404())
