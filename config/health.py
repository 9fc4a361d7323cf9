"""`GET /healthz`: can this process reach the database and the Celery broker? For container health checks and
load balancers, so it needs no login and says nothing beyond "ok" or "unavailable" for each.

The check comes from inside the container (`http://127.0.0.1:8000/healthz`) or from a load balancer that
addresses the backend by its IP, while ALLOWED_HOSTS holds the public host name only: through the normal
stack that request would be refused as a bad Host (400), or redirected to HTTPS by SECURE_SSL_REDIRECT. So
`HealthCheckMiddleware`, first in MIDDLEWARE, answers the health path itself before anything reads the Host
header. Nothing else is served that way, and the answer never depends on the Host.
"""

import logging
from collections.abc import Callable

from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
BROKER_TIMEOUT_S = 2.0  # a broker that does not answer this fast counts as down; the probe's own timeout is 5 s


def healthz(request: HttpRequest) -> HttpResponse:
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    body = {name: "ok" if ok else "unavailable" for name, ok in checks.items()}
    response = JsonResponse(body, status=200 if all(checks.values()) else 503)
    response["Cache-Control"] = "no-store"
    return response


def _database_ok() -> bool:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        logger.warning("health.database_unavailable", exc_info=True)
        return False
    return True


def _broker_ok() -> bool:
    from config.celery import app

    try:
        # socket_timeout bounds the PING of a server that accepts the connection and then says nothing.
        options = {**app.conf.broker_transport_options, "socket_timeout": BROKER_TIMEOUT_S}
        with app.connection_for_write(connect_timeout=BROKER_TIMEOUT_S, transport_options=options) as connection:
            connection.ensure_connection(max_retries=0)  # one attempt: a probe does not wait out retries
            connection.default_channel  # noqa: B018 (opening the channel sends Redis a PING)
    except Exception:
        logger.warning("health.broker_unavailable", exc_info=True)
        return False
    return True


class HealthCheckMiddleware:
    """Answers GET/HEAD /healthz before host validation, the HTTPS redirect and sessions (see the module's doc)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == HEALTH_PATH and request.method in ("GET", "HEAD"):
            return healthz(request)
        return self.get_response(request)
