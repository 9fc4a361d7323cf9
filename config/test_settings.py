"""Settings for the test suite: real PostgreSQL and Redis on this machine unless told otherwise."""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "tests-only-Q7v2Lm9xR4kT8wZp1nB6yH3cJ5sD0fG-not-a-production-secret")
os.environ["DATABASE_URL"] = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ["CELERY_BROKER_URL"] = os.environ.get("TEST_BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("LOGTUNE_VAR_DIR", tempfile.mkdtemp(prefix="logtune-test-var-"))

from config.settings import *  # noqa: F403

# The shared fixtures train on a few sums (tests/conftest.py's Math has three); the tests of the minimum set it back
# to the default (tests/training/test_estimate.py).
LOGTUNE_FINETUNE_MIN_TRAIN_ENTRIES = 1
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file rather than Django's default shared-cache in-memory database: tests with a Celery worker thread
    # write from two connections, and shared-cache tables answer "table is locked" instead of waiting.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-embedded.sqlite3")}  # noqa: F405
