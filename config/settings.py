"""Logtune settings, read from environment variables (docker/.env.example lists them all).

Embedded defaults run the whole app on one machine with nothing else installed: SQLite and a
file-system Celery broker under ./var. DATABASE_URL and CELERY_BROKER_URL switch to PostgreSQL and Redis.
"""

import json
import re
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_file_load, env_float, env_int, env_list, env_str
from config.local_env import local_env_path

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("LOGTUNE_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)
# `make run` writes a random SECRET_KEY there, so the README's `manage.py` commands work as written; the
# environment overrides it, and a machine without the file (a Docker image) needs a real key (docs/deploy.md).
env_file_load(local_env_path())

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "")
# The value docker/.env.example ships with: a copied file that was never filled in must not reach production.
_SECRET_KEY_PLACEHOLDER = "change-me-to-a-long-random-string"  # noqa: S105
_NEW_KEY_HINT = "Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'"
if not DEBUG:
    # The same bar as Django's `check --deploy` (security.W009), enforced at start-up rather than only warned about.
    if not SECRET_KEY:
        raise ImproperlyConfigured(
            f"SECRET_KEY is not set (for local use, `make run` writes one to var/local.env, or set DEBUG=1). "
            f"{_NEW_KEY_HINT}"
        )
    if SECRET_KEY == _SECRET_KEY_PLACEHOLDER:
        raise ImproperlyConfigured(f"SECRET_KEY is still the placeholder from docker/.env.example. {_NEW_KEY_HINT}")
    if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY.startswith("django-insecure-"):
        raise ImproperlyConfigured(
            f"SECRET_KEY is too weak: it needs at least 50 characters, 5 of them different, and no 'django-insecure-' "
            f"prefix (it has {len(SECRET_KEY)} characters, {len(set(SECRET_KEY))} different). {_NEW_KEY_HINT}"
        )
elif not SECRET_KEY:
    SECRET_KEY = "insecure-local-development-key-do-not-use-in-production"  # noqa: S105

# Earlier SECRET_KEYs, newest first, while sessions and secrets made with them are moved to the new key (Django's
# own rotation; endpoint keys: `manage.py rotate_encryption_keys`, docs/evaluation.md).
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", [])
# Fernet keys for secrets stored in the database (model endpoints' API keys), newest first: the first encrypts,
# all decrypt. Empty: keys derived from SECRET_KEY and SECRET_KEY_FALLBACKS (training/endpoints/secrets.py).
LOGTUNE_ENCRYPTION_KEYS = env_list("LOGTUNE_ENCRYPTION_KEYS", [])

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "csp",
    "curation",
    "training",
]

MIDDLEWARE = [
    # First: answers /healthz before host validation and the HTTPS redirect (see config/health.py).
    "config.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns a login refused by django-axes (config/login.py) into the lockout page.
    "axes.middleware.AxesMiddleware",
    "config.middleware.NulParametersMiddleware",  # pages: a NUL character in a parameter is a 400
    "config.middleware.PrivatePagesMiddleware",  # pages with a session: never served stale from a browser's cache
    "config.middleware.FriendlyNotFoundMiddleware",  # DEBUG's 404 page lists every URL: not for non-staff
    # Last, so it is the first to see a view's exception: a database that is down answers 503, not 500.
    "config.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'logtune.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A server that does not answer fails the connection after this many seconds (libpq waits forever by
    # default), so a request answers 503 (config/middleware.py) instead of hanging.
    DATABASES["default"]["OPTIONS"] = {
        **DATABASES["default"].get("OPTIONS", {}),
        "connect_timeout": env_int("DATABASE_CONNECT_TIMEOUT", 5),
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the worker write at the same time: WAL lets readers go on during a write,
    # IMMEDIATE transactions queue writers instead of failing with "database is locked".
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth, i18n, static ---------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# django-axes first: a locked-out login is refused before any password is hashed.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Security (production) ------------------------------------------------------------------------
# With DEBUG off, cookies and HSTS default to HTTPS-only; `manage.py check --deploy` then has nothing to report
# once SECURE_SSL_REDIRECT=1 (docker/.env.example sets it). The redirect stays an explicit switch because the
# test suite and the benchmarks run these settings over plain HTTP on loopback.
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Behind a proxy that terminates TLS, Django sees plain HTTP: trust the proxy's X-Forwarded-Proto to tell it the
# client used HTTPS (else every request would be redirected again). Only when the proxy sets or strips that header
# on every request, since a client could otherwise claim HTTPS itself.
BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY", False)
if BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy on every answer (django-csp): scripts, styles, images, fonts and requests from this
# origin only, no inline script, no eval, no <style> element, no plugin, no framing. Style *attributes* stay
# allowed (style-src-attr): the templates set a tag's colour and a bar's width with them; they run no script, load
# nothing img-src and font-src do not allow, and cannot select other elements. Markdown from logs is sanitised
# with no style attribute allowed (curation/text/rendering.py). The API docs page relaxes styles (config/urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "style-src-attr": [UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- Login throttling (django-axes; config/login.py, docs/security.md) ----------------------------------
# After this many failed logins for one username, or from one address, logging in is refused (429) for the
# cool-off, counted from the last try: guessing stops at a few passwords per quarter hour, none of them hashed.
AXES_FAILURE_LIMIT = env_int("LOGTUNE_LOGIN_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGTUNE_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "config.login.client_ip"
AXES_LOCKOUT_CALLABLE = "config.login.lockout_response"
AXES_DISABLE_ACCESS_LOG = True  # failed attempts are kept (to count them), successful logins are not
if AXES_FAILURE_LIMIT < 1 or AXES_COOLOFF_TIME.total_seconds() < 60:
    raise ImproperlyConfigured("LOGTUNE_LOGIN_FAILURE_LIMIT and LOGTUNE_LOGIN_COOLOFF_MINUTES must be at least 1")

# --- Celery ---------------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
CELERY_TASK_IGNORE_RESULT = True  # progress and results live on our own rows (ImportJob, FineTuneJob)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    # The reaper watches the GPU workers, so it must not wait behind them: it runs on the default queue.
    "training.tasks.finetune_reap_task": {"queue": "default"},
    "training.tasks.loss_preview_task": {"queue": "default"},  # a tokenizer, no GPU
    "training.tasks.evaluation_score_task": {"queue": "default"},  # metrics and judge calls, no GPU
    "training.tasks.routed_call_store_task": {"queue": "default"},  # a routed proxy call's log
    # A shadowed call waits for the fine-tune's whole answer: its own queue, served by a worker with many threads.
    "training.tasks.routed_shadow_task": {"queue": "shadow"},
    "training.tasks.route_pairs_judge_task": {"queue": "default"},  # judge calls on shadow pairs, no GPU
    "training.tasks.data_generation_run_task": {"queue": "default"},  # calls to an endpoint; embeddings on the CPU
    "training.tasks.data_generation_reap_task": {"queue": "default"},
    "training.*": {"queue": "gpu"},
}
CELERY_BEAT_SCHEDULE = {
    "finetunes-reap": {"task": "training.tasks.finetune_reap_task", "schedule": 60.0},
    "imports-reap": {"task": "curation.tasks.import_reap_task", "schedule": 60.0},
    "redactions-reap": {"task": "curation.tasks.redaction_reap_task", "schedule": 60.0},
    "pii-pending-reap": {"task": "curation.tasks.logs_pii_pending_reap_task", "schedule": 60.0},
    "bulk-jobs-reap": {"task": "curation.tasks.bulk_reap_task", "schedule": 60.0},
    "data-generation-reap": {"task": "training.tasks.data_generation_reap_task", "schedule": 60.0},
}
# A running import whose worker has written no heartbeat (one per committed batch) for this long is re-queued
# to resume after its last committed line, up to LOGTUNE_IMPORT_MAX_ATTEMPTS runs, then failed.
LOGTUNE_IMPORT_HEARTBEAT_TIMEOUT_S = env_int("LOGTUNE_IMPORT_HEARTBEAT_TIMEOUT_S", 120)
LOGTUNE_IMPORT_MAX_ATTEMPTS = env_int("LOGTUNE_IMPORT_MAX_ATTEMPTS", 5)
# A queued import still not started this long after its task was sent is sent again: a broker restarted
# without persistence loses its queued tasks. A second delivery of a task does nothing.
LOGTUNE_IMPORT_RESEND_AFTER_S = env_int("LOGTUNE_IMPORT_RESEND_AFTER_S", 900)
# The same for bulk jobs (tag, untag, delete or add to a dataset every log matching a filter), whose heartbeat is
# one per committed chunk of LOGTUNE_BULK_CHUNK logs.
LOGTUNE_BULK_CHUNK = env_int("LOGTUNE_BULK_CHUNK", 10_000)
LOGTUNE_BULK_HEARTBEAT_TIMEOUT_S = env_int("LOGTUNE_BULK_HEARTBEAT_TIMEOUT_S", 120)
LOGTUNE_BULK_MAX_ATTEMPTS = env_int("LOGTUNE_BULK_MAX_ATTEMPTS", 5)
LOGTUNE_BULK_RESEND_AFTER_S = env_int("LOGTUNE_BULK_RESEND_AFTER_S", 900)
# A running generation job whose worker has written nothing for this long (it writes after every answer, and
# while embedding its rows) is failed, its rows kept: calls are paid for, so a job is never run twice by itself.
LOGTUNE_GENERATION_HEARTBEAT_TIMEOUT_S = env_int("LOGTUNE_GENERATION_HEARTBEAT_TIMEOUT_S", 900)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Cache ----------------------------------------------------------------------------------------
# Holds the ingest rate-limit counters, so every web process must see the same one: redis://… in
# production. The default, a cache in this process's memory, suits the embedded single-process setup.
CACHE_URL = env_str("CACHE_URL", "locmem://")


def _cache_settings(url: str) -> dict:
    if url.startswith(("redis://", "rediss://", "unix://")):
        # Short timeouts: a Redis that hangs must not hold requests; the rate limit then lets them in.
        options = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}
        return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url, "OPTIONS": options}
    if url in ("locmem://", ""):
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "logtune"}
    raise ImproperlyConfigured(f"CACHE_URL={url!r}: expected redis://host:port/db or locmem://")


CACHES = {"default": _cache_settings(CACHE_URL)}

# --- REST API -------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "curation.common.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON bodies only: a form-encoded body turns every value into text that each field would coerce back
    # ("5" for 5, "0" for false). File uploads (POST /api/v1/imports) declare the multipart parser themselves.
    "DEFAULT_PARSER_CLASSES": ["curation.common.parsers.OrjsonParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "curation.common.apis.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Logtune API",
    "DESCRIPTION": "Ingest LLM request logs, curate them into datasets, fine-tune models.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Fine-tunes, merges and playground answers share one status set (JobStatus's, plus "cancelled").
    "ENUM_NAME_OVERRIDES": {
        "FineTuneStatusEnum": "training.models.FineTuneStatus",
        # Imports, bulk jobs and snapshots share JobStatus; logs have their own: named, not hashed (Status232Enum).
        "JobStatusEnum": "curation.models.JobStatus",
        "LogStatusEnum": "curation.models.LogStatus",
        "ChatRoleEnum": "curation.logs.schemas.CHAT_ROLES",  # a chat message's role, in a log sent
        "ScoreSourceEnum": "curation.models.scores.ScoreSource",  # who gave a score, in and out
        "DatasetKindEnum": "curation.models.DatasetKind",  # conversations or preference pairs
        "GenerationKindEnum": "training.models.GenerationKind",  # documents, teacher or variations
        "GeneratedRowStatusEnum": "training.models.RowStatus",
    },
}

# --- Logtune --------------------------------------------------------------------------------------
LOGTUNE_MAX_BATCH = env_int("LOGTUNE_MAX_BATCH", 1000)
# Finding personal data in a request to POST /api/v1/logs stops after this many seconds, and skips logs of more
# than this many characters (a text of phone-like digits costs about 10 µs a character): those are stored at once
# and scanned by a worker, or refused by index to be sent again when the project redacts at ingestion.
LOGTUNE_PII_INLINE_SECONDS = env_float("LOGTUNE_PII_INLINE_SECONDS", 2.0)
LOGTUNE_PII_INLINE_LOG_CHARS = env_int("LOGTUNE_PII_INLINE_LOG_CHARS", 200_000)
# A full batch of 1,000 logs of a few KB each fits comfortably; anything larger is answered 413.
LOGTUNE_MAX_BODY_BYTES = env_int("LOGTUNE_MAX_BODY_BYTES", 32 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = LOGTUNE_MAX_BODY_BYTES
LOGTUNE_MAX_IMPORT_BYTES = env_int("LOGTUNE_MAX_IMPORT_BYTES", 10 * 1024**3)
# Uploads wait on disk until imported (then they are deleted): a project's uploads not yet imported may hold at most
# this many bytes, so no editor can fill the disk with queued files. Two of the largest uploads by default.
LOGTUNE_MAX_PENDING_IMPORT_BYTES = env_int("LOGTUNE_MAX_PENDING_IMPORT_BYTES", 2 * LOGTUNE_MAX_IMPORT_BYTES)
# A .jsonl.gz import stops once it has decompressed this much: a small upload cannot expand without bound.
# Logs compress about 5-15x; 20x the upload limit leaves room for repetitive ones.
LOGTUNE_MAX_IMPORT_EXPANDED_BYTES = env_int("LOGTUNE_MAX_IMPORT_EXPANDED_BYTES", 20 * LOGTUNE_MAX_IMPORT_BYTES)
LOGTUNE_IMPORT_BATCH = env_int("LOGTUNE_IMPORT_BATCH", 1000)
# An import's batch also ends once it holds this many bytes of line text: a file of lines near
# LOGTUNE_MAX_BODY_BYTES commits a line or two at a time instead of holding a thousand of them (tens of GB) at once.
LOGTUNE_IMPORT_BATCH_BYTES = env_int("LOGTUNE_IMPORT_BATCH_BYTES", 16 * 1024 * 1024)
# An import reads the next batch (JSON, readers, personal data) in a thread while PostgreSQL stores the one before;
# off, it does one after the other. On: about a third faster on two cores, for up to twice a batch's memory.
LOGTUNE_IMPORT_READ_AHEAD = env_bool("LOGTUNE_IMPORT_READ_AHEAD", True)
# Ingest requests (POST /api/v1/logs and /api/v1/imports) per API key, or per user for session callers,
# in DRF's "N/period" form (period: s, min, hour, day). Empty: no limit.
LOGTUNE_INGEST_RATE = env_str("LOGTUNE_INGEST_RATE", "600/min").strip()
if LOGTUNE_INGEST_RATE and not re.fullmatch(r"[1-9]\d*/(s|sec|m|min|h|hour|d|day)", LOGTUNE_INGEST_RATE):
    raise ImproperlyConfigured(
        f"LOGTUNE_INGEST_RATE={LOGTUNE_INGEST_RATE!r}: expected requests/period, e.g. 600/min (s, min, hour, day)"
    )

# Country (ISO 3166 code) assumed for phone numbers written without a country code when looking for personal
# data (curation/text/pii.py); empty: only numbers written with one (+44 ..., 0044 ...) are found.
LOGTUNE_PII_PHONE_REGION = env_str("LOGTUNE_PII_PHONE_REGION", "US").strip().upper()
if LOGTUNE_PII_PHONE_REGION and not re.fullmatch(r"[A-Z]{2}", LOGTUNE_PII_PHONE_REGION):
    raise ImproperlyConfigured(
        f"LOGTUNE_PII_PHONE_REGION={LOGTUNE_PII_PHONE_REGION!r}: expected a country code, e.g. US"
    )

# Hosts and ports a project's proxy upstreams (Project.openai_base_url, anthropic_base_url) may name: the server
# sends requests there, so a project owner must not be able to point it at internal addresses, nor at another port
# of an allowed host. `host`: its scheme's default port (443, 80) only; `host:8000`: that port; `host:*`: any
# port; `[fd00::1]:8000` for IPv6; "*" alone allows anything (docs/proxy.md).
LOGTUNE_PROXY_UPSTREAM_HOSTS = env_list("LOGTUNE_PROXY_UPSTREAM_HOSTS", ["api.openai.com", "api.anthropic.com"])
# The same, for the model endpoints a project's owner adds (judges, teachers, generators): OpenAI-compatible chat
# APIs. Add the hosts of your own model servers (`vllm:8000`, `ollama:11434`); docs/evaluation.md.
LOGTUNE_ENDPOINT_HOSTS = env_list(
    "LOGTUNE_ENDPOINT_HOSTS",
    ["api.openai.com", "api.anthropic.com", "openrouter.ai", "api.together.xyz", "api.groq.com", "api.mistral.ai",
     "api.fireworks.ai", "api.deepseek.com", "generativelanguage.googleapis.com"],
)  # fmt: skip
_UPSTREAM_ENTRY = re.compile(
    r"\*"  # anything
    r"|(\[[0-9a-fA-F:.]+\]|[^\s:/\[\]@*]+)(:([1-9]\d{0,4}|\*))?"  # host, [v6], with :port or :* or not
    r"|[0-9a-fA-F]*:[0-9a-fA-F:.]+"  # a bare IPv6 address: its default ports
)
for _setting, _entries in (
    ("LOGTUNE_PROXY_UPSTREAM_HOSTS", LOGTUNE_PROXY_UPSTREAM_HOSTS),
    ("LOGTUNE_ENDPOINT_HOSTS", LOGTUNE_ENDPOINT_HOSTS),
):
    for _entry in _entries:
        if not _UPSTREAM_ENTRY.fullmatch(_entry):
            raise ImproperlyConfigured(f"{_setting}: {_entry!r} is not host, host:port, host:* or * (docs/proxy.md)")

# "More like this" in the explorer searches the embeddings of a project's newest logs, at most this many
# (about 1.5 KB each); embedding them takes 20-25 minutes per 50,000 on two CPU cores.
LOGTUNE_SIMILAR_LOGS_MAX = env_int("LOGTUNE_SIMILAR_LOGS_MAX", 50_000)
# Where a machine keeps each project's indexed log vectors as one file, for the searches that score them all (search
# by meaning, `similar_to`): a cache of the database, rewritten when the index changes (logs/similar/matrix.py).
LOGTUNE_INDEX_DIR = Path(env_str("LOGTUNE_INDEX_DIR", "") or VAR_DIR / "index")

# Embeddings (docs/dedup.md). The precision the model runs in: `auto` is bfloat16 on a CPU that computes it natively
# (about twice float32's speed, vectors within cosine 0.99 of float32's), float32 on other CPUs, float16 on a GPU;
# `float32` turns the reduced precision off. curation/text/embeddings.py reads the variable itself (it has no
# Django); it is checked here so that a typo stops the start. LOGTUNE_EMBED_THREADS (read there too): torch threads,
# by default the CPUs the process may use, at most 4.
LOGTUNE_EMBED_PRECISION = env_str("LOGTUNE_EMBED_PRECISION", "auto").strip().lower() or "auto"
if LOGTUNE_EMBED_PRECISION not in ("auto", "float32", "bfloat16", "float16"):
    raise ImproperlyConfigured(
        f"LOGTUNE_EMBED_PRECISION={LOGTUNE_EMBED_PRECISION!r}: expected auto, float32, bfloat16 or float16"
    )
# Where embedding jobs are sent: `auto` sends them to the gpu queue while a GPU worker with a free slot says so
# (a heartbeat in the cache, so CACHE_URL must be shared: Redis), else to the default queue; `default` or `gpu` always.
LOGTUNE_EMBED_QUEUE = env_str("LOGTUNE_EMBED_QUEUE", "auto")
if LOGTUNE_EMBED_QUEUE not in ("auto", "default", "gpu"):
    raise ImproperlyConfigured(f"LOGTUNE_EMBED_QUEUE={LOGTUNE_EMBED_QUEUE!r}: expected auto, default or gpu")

# USD per million tokens: (input, output). The longest matching model-name prefix wins.
# LOGTUNE_PRICES_FILE points at a JSON object of the same shape to replace this table.
LOGTUNE_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o1-mini": (1.10, 4.40),
    "o1": (15.00, 60.00),
    "o3-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
    "claude-3-haiku": (0.25, 1.25),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-3-opus": (15.00, 75.00),
    "claude-opus-4": (15.00, 75.00),
}
_prices_file = env_str("LOGTUNE_PRICES_FILE", "")
if _prices_file:
    try:
        LOGTUNE_PRICES = {k: (float(v[0]), float(v[1])) for k, v in json.loads(Path(_prices_file).read_text()).items()}
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise ImproperlyConfigured(f"LOGTUNE_PRICES_FILE={_prices_file}: {exc}") from exc

# --- Fine-tuning ----------------------------------------------------------------------------------
# Base models offered besides those registered in the database: a JSON list of hub ids or folders that
# the GPU workers can read, e.g. ["Qwen/Qwen2.5-0.5B-Instruct", "/models/llama-3.2-1b"].
_base_models = env_str("LOGTUNE_BASE_MODELS", "[]")
try:
    LOGTUNE_BASE_MODELS: list[str] = json.loads(_base_models)
    if not isinstance(LOGTUNE_BASE_MODELS, list) or not all(isinstance(m, str) for m in LOGTUNE_BASE_MODELS):
        raise ValueError("expected a JSON list of strings")
except ValueError as exc:
    raise ImproperlyConfigured(f"LOGTUNE_BASE_MODELS={_base_models!r}: {exc}") from exc
# Trainer processes per job (accelerate --num_processes); 0: one per GPU the worker sees, at least 1.
LOGTUNE_GPU_PROCESSES = env_int("LOGTUNE_GPU_PROCESSES", 0)
# An accelerate config file (accelerate launch --config_file) for multi-GPU jobs, e.g. docker/accelerate/ddp.yaml;
# empty: accelerate's defaults. Read on the GPU workers, so the path is theirs.
LOGTUNE_ACCELERATE_CONFIG = env_str("LOGTUNE_ACCELERATE_CONFIG", "")
# Whether the GPU workers have CUDA. The web process cannot see their hardware, and QLoRA needs it.
LOGTUNE_GPU_CUDA = env_bool("LOGTUNE_GPU_CUDA", False)
# A running job whose worker has not written a heartbeat for this long is re-queued or failed by the reaper.
LOGTUNE_FINETUNE_HEARTBEAT_TIMEOUT_S = env_int("LOGTUNE_FINETUNE_HEARTBEAT_TIMEOUT_S", 180)
# Runs of one job, the first included: after a worker died, the job resumes from its last checkpoint until then.
LOGTUNE_FINETUNE_MAX_ATTEMPTS = env_int("LOGTUNE_FINETUNE_MAX_ATTEMPTS", 2)
# A queued job sent this long ago is sent again by the reaper, in case the broker lost it (a second delivery
# finds the job taken and does nothing); one the broker never got is sent at the reaper's next run.
LOGTUNE_FINETUNE_RESEND_AFTER_S = env_int("LOGTUNE_FINETUNE_RESEND_AFTER_S", 3600)
# A fine-tune of fewer train entries is refused (the form, the API); under 200 it starts with a warning.
LOGTUNE_FINETUNE_MIN_TRAIN_ENTRIES = env_int("LOGTUNE_FINETUNE_MIN_TRAIN_ENTRIES", 10)
# What an hour of one GPU worker's process costs, in USD: the fine-tune estimate shows a cost with it (0: none).
LOGTUNE_GPU_HOUR_USD = env_float("LOGTUNE_GPU_HOUR_USD", 0.0)
# After a cancel, the trainer has this long to stop at the end of its step before it is terminated.
LOGTUNE_FINETUNE_CANCEL_GRACE_S = env_int("LOGTUNE_FINETUNE_CANCEL_GRACE_S", 10)
# Where `create_demo_model` builds the tiny demo model (a folder the GPU workers must be able to read).
LOGTUNE_MODELS_DIR = VAR_DIR / "models"
# Merges and playground generations that take longer than this are stopped and reported.
LOGTUNE_GPU_TASK_TIMEOUT_S = env_int("LOGTUNE_GPU_TASK_TIMEOUT_S", 1800)
# General eval sets for the forgetting check: `<name>.jsonl` files (OpenAI chat lines) an operator places here;
# every evaluation run with a retention set answers them too (docs/evaluation.md).
LOGTUNE_EVAL_SETS_DIR = Path(env_str("LOGTUNE_EVAL_SETS_DIR", "") or VAR_DIR / "eval-sets")
# A llama.cpp checkout on the GPU workers (the folder holding convert_lora_to_gguf.py and convert_hf_to_gguf.py):
# with it, and the `gguf` package importable (or llama.cpp's own gguf-py beside them), fine-tunes can be exported
# as GGUF. Empty: GGUF is not offered.
LOGTUNE_LLAMA_CPP_DIR = env_str("LOGTUNE_LLAMA_CPP_DIR", "")
# Serving (docs/serving.md). The engine `manage.py serve_models` runs on a GPU worker: "vllm", "transformers" (the
# small server, for machines without vLLM or a GPU) or "auto" (vLLM when it is installed).
LOGTUNE_SERVING_ENGINE = env_str("LOGTUNE_SERVING_ENGINE", "auto")
if LOGTUNE_SERVING_ENGINE not in ("auto", "vllm", "transformers"):
    raise ImproperlyConfigured(f"LOGTUNE_SERVING_ENGINE={LOGTUNE_SERVING_ENGINE!r}: auto, vllm or transformers")
# The command that starts vLLM (its `serve` subcommand and options are added), e.g. `/opt/vllm/bin/vllm`.
LOGTUNE_VLLM_COMMAND = env_str("LOGTUNE_VLLM_COMMAND", "vllm")
# More options for `vllm serve`, appended as they are: `--tensor-parallel-size 2 --gpu-memory-utilization 0.85`.
LOGTUNE_VLLM_ARGS = env_str("LOGTUNE_VLLM_ARGS", "")
# The host the proxy reaches this machine's model servers at (each GPU worker's own name when there are many), the
# address they listen on, and the first of the ports they take.
LOGTUNE_SERVING_HOST = env_str("LOGTUNE_SERVING_HOST", "127.0.0.1")
LOGTUNE_SERVING_BIND = env_str("LOGTUNE_SERVING_BIND", "127.0.0.1")
LOGTUNE_SERVING_FIRST_PORT = env_int("LOGTUNE_SERVING_FIRST_PORT", 8300)
# Adapters one model server holds at once (vLLM's --max-loras), and the highest LoRA rank it takes.
LOGTUNE_SERVING_MAX_LORAS = env_int("LOGTUNE_SERVING_MAX_LORAS", 8)
LOGTUNE_SERVING_MAX_LORA_RANK = env_int("LOGTUNE_SERVING_MAX_LORA_RANK", 64)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"kombu_no_hostname": {"()": "config.logfilters.KombuNoHostname"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # On the logger, not a handler: the Celery workers log through handlers of their own.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "kombu.connection": {"filters": ["kombu_no_hostname"]}},
}
