"""The proxy's key check: the Logtune key of X-Logtune-Key, remembered a few seconds by each process."""

import hashlib
import threading
import time

from curation.models import ApiKey
from curation.projects.services import api_key_authenticate

LOGTUNE_KEY_HEADER = "X-Logtune-Key"

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
