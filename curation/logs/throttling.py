"""Per-key rate limiting of ingest: LOGTUNE_INGEST_RATE requests per period, answered 429 with Retry-After."""

import logging
import math
import time

from django.conf import settings
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from curation.models import ApiKey

logger = logging.getLogger(__name__)

_PERIOD_NAMES = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}
_WARN_EVERY_S = 60.0
_last_warning = 0.0


class IngestThrottled(exceptions.Throttled):
    extra_detail_singular = "Retry in {wait} second."
    extra_detail_plural = "Retry in {wait} seconds."


class IngestRateThrottle(SimpleRateThrottle):
    """Counts the writes (POST) of one API key, or of one logged-in user, in clock-aligned windows.

    DRF's own SimpleRateThrottle reads a list of timestamps from the cache and writes it back, so
    two web processes serving the same key at once both write and one request goes uncounted. A
    counter per window (`add` then `incr`, both atomic in Redis) counts every request, whichever
    process serves it. The price of fixed windows: a sender may spend one window's budget at its
    end and the next one's at its start.

    It fails open: when the cache cannot be reached (Redis down), requests are let in and a warning says so,
    since refusing logs, or answering 500, costs more than a minute without a limit.
    """

    scope = "ingest"
    caller = "API key"
    num_requests: int  # set from the rate by SimpleRateThrottle; unused when the rate is off
    duration: int
    cache_format = "throttle_%(scope)s_%(ident)s_%(window)d"

    def get_rate(self) -> str | None:
        return settings.LOGTUNE_INGEST_RATE or None  # read per request, so a changed setting takes effect

    def get_cache_key(self, request: Request, view: object) -> str | None:
        ident = self._ident(request)
        return None if ident is None else self._key(ident)

    def _ident(self, request: Request) -> str | None:
        if request.method != "POST":
            return None  # reading logs back is not ingest
        if isinstance(request.auth, ApiKey):
            self.caller = "API key"
            return f"key{request.auth.pk}"
        if request.user and request.user.is_authenticated:
            self.caller = "user"
            return f"user{request.user.pk}"
        return None  # the permission check has answered 401 already

    def _key(self, ident: str) -> str:
        return self.cache_format % {"scope": self.scope, "ident": ident, "window": self.window_start}

    def allow_request(self, request: Request, view: object) -> bool:
        ident = self._ident(request)
        refusal = self.spend(ident) if ident is not None else None
        if refusal is not None:
            raise refusal  # raised here rather than by the view, so that the answer can name the limit
        return True

    def spend(self, ident: str) -> IngestThrottled | None:
        """Count one request of `ident` in the current window: None when it is within the limit (or there is
        none, or the cache cannot count), else the refusal to answer, with its wait."""
        if self.rate is None:
            return None
        self.now = self.timer()
        self.window_start = int(self.now // self.duration) * self.duration
        self.key = self._key(ident)
        try:
            count = self._count()
        except Exception as exc:  # the cache is down: the limit cannot count, and logs matter more than the limit
            _warn_unavailable(exc)
            return None
        if count <= self.num_requests:
            return None
        period = _PERIOD_NAMES.get(self.duration, f"{self.duration} seconds")
        return IngestThrottled(
            wait=self.wait(),
            detail=f"Rate limit reached: {self.num_requests} ingest requests per {period} for this {self.caller}.",
        )

    def _count(self) -> int:
        timeout = self.duration + 5  # outlives its window: a key that vanished mid-window would reset the count
        self.cache.add(self.key, 0, timeout)
        try:
            return self.cache.incr(self.key)
        except ValueError:  # evicted between add and incr (a full local-memory cache culls)
            self.cache.set(self.key, 1, timeout)
            return 1

    def wait(self) -> float:
        return max(1.0, math.ceil(self.window_start + self.duration - self.now))


def _warn_unavailable(exc: Exception) -> None:
    """Say so, at most once a minute per process: an outage would otherwise write a line per request."""
    global _last_warning
    now = time.monotonic()
    if now - _last_warning >= _WARN_EVERY_S:
        _last_warning = now
        logger.warning(
            "curation.ingest_rate_unavailable: the rate limit's cache is unreachable, requests are let in: %r", exc
        )


def ingest_rate_spend_for_key(*, api_key: ApiKey) -> IngestThrottled | None:
    """The ingest limit for a call that is not a DRF request (the logging proxy): the same count as the key's
    `POST /api/v1/logs` and uploads. None when the call may go on."""
    return IngestRateThrottle().spend(f"key{api_key.pk}")
