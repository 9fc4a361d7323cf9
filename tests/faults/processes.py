"""Real processes for the fault tests: the web app (gunicorn), Celery workers, a private Redis, and plain HTTP
calls to them. Every process leads its own process group, so a kill takes all of it, as a dead machine would."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import psycopg
from django.conf import settings
from django.db import connection

ROOT = Path(settings.BASE_DIR)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url(port: int | None = None) -> str:
    """The test database (pytest-django's `test_…`), directly or through a proxy on loopback `port`."""
    database = connection.settings_dict
    login = database["USER"] + (f":{database['PASSWORD']}" if database["PASSWORD"] else "")
    host = "127.0.0.1" if port else database["HOST"] or "127.0.0.1"
    return f"postgres://{login}@{host}:{port or database['PORT'] or 5432}/{database['NAME']}"


def service_env(var_dir: Path, *, database: str | None = None, broker: str | None = None, **extra: str) -> dict:
    """The environment of an app or worker process sharing this test's database, broker and media folder."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "TEST_DATABASE_URL": database or database_url(),
        "TEST_BROKER_URL": broker or settings.CELERY_BROKER_URL,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "LOGTUNE_VAR_DIR": str(var_dir),
        "LOGTUNE_INGEST_RATE": "",  # the clients of these tests send faster than a production limit allows
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


class Service:
    """A subprocess with its output in a log file, in its own process group."""

    def __init__(self, name: str, command: list[str], env: dict, log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # whatever it left behind

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- {self.name} ---\n" + "\n".join(text.splitlines()[-lines:])


def web_command(port: int, threads: int = 8) -> list[str]:
    """gunicorn as production starts it (config/gunicorn.py), one process, a short stop."""
    return [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "--bind", f"127.0.0.1:{port}",
            "--workers", "1", "--threads", str(threads), "--graceful-timeout", "5"]  # fmt: skip


def worker_command(name: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "default", "--pool", "solo", "-n",
            f"{name}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"]  # fmt: skip


def purge(app) -> None:
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("default")


def forget_unacknowledged(app) -> None:
    """Drop a dead worker's unacknowledged task: Redis would hand it out again after its visibility timeout
    (an hour), to whichever later test has a worker then. Here the reaper is what brings the job back."""
    with app.connection_for_write() as conn:
        conn.default_channel.client.delete("unacked", "unacked_index")


def raw_connection(autocommit: bool = False) -> psycopg.Connection:
    """A connection of the test's own, outside Django's: to hold a lock, or to watch the server's activity."""
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, dbname=db["NAME"], user=db["USER"],
        password=db["PASSWORD"] or None, autocommit=autocommit,
    )  # fmt: skip


def backends_waiting_on_a_lock(statement: str) -> list[int]:
    """The server processes of this database waiting for a lock in a statement that starts with `statement`."""
    with raw_connection(autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
            "AND starts_with(query, %s)",
            [statement],
        ).fetchall()
    return [row[0] for row in rows]


def backend_alive(pid: int) -> bool:
    with raw_connection(autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone() is not None


class PrivateRedis:
    """A redis-server of this test alone on a free port, without persistence: a restart forgets everything,
    queued tasks included, as a broker without a volume would. `spawn` starts (and in the end stops) it."""

    def __init__(self, spawn: Callable[..., Service]) -> None:
        self.port = free_port()
        self.spawn = spawn
        self.server: Service | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                   "no", "--daemonize", "no"]  # fmt: skip
        self.server = self.spawn(f"redis-{self.port}", command, dict(os.environ))
        wait_for(lambda: _accepts(self.port), 10, f"redis-server on port {self.port}")

    def stop(self) -> None:
        """Gone at once, as a crashed server is."""
        if self.server is not None:
            self.server.kill()
            self.server = None


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(condition: Callable[[], object], seconds: float, what: str, every: float = 0.05) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"gave up waiting for {what} after {seconds}s")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> dict:
        return orjson.loads(self.body)


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 30
) -> Answer:
    """One request, whatever its status; a connection error or timeout raises."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (loopback only)
            return Answer(response.status, dict(response.headers), response.read(), time.monotonic() - started)
    except urllib.error.HTTPError as error:
        return Answer(error.code, dict(error.headers), error.read(), time.monotonic() - started)


def post_json(url: str, payload: object, api_key: str, timeout: float = 30) -> Answer:
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    return http("POST", url, orjson.dumps(payload), headers, timeout)


def post_file(url: str, name: str, content: bytes, api_key: str, timeout: float = 30) -> Answer:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": f"multipart/form-data; boundary={boundary}"}
    return http("POST", url, body, headers, timeout)


def wait_until_serving(base_url: str, service: Service, seconds: float = 60) -> None:
    def up() -> bool:
        assert service.process.poll() is None, f"{service.name} exited\n{service.tail()}"
        try:
            return http("GET", f"{base_url}/login/", timeout=2).status == 200
        except OSError:
            return False

    wait_for(up, seconds, f"{service.name} to serve", every=0.2)
