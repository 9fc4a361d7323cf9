"""Answers for when the database is down: a quick, clear 503 instead of a 500 page or a hung request; and for a
page's parameters that no query or row can hold."""

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

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
