"""Slow clients straight at gunicorn, started as production starts it (config/gunicorn.py): connections that send
their request's head, or a small body, a byte at a time hold no thread, so /healthz and the API keep answering;
and a connection that never finishes its request is closed after the worker's request timeout."""

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from config.gunicorn_worker import HeadFirstWorker
from curation.projects.services import api_key_create
from tests.faults.processes import Service, free_port, http, service_env, wait_until_serving, web_command

pytestmark = pytest.mark.django_db(transaction=True)

SLOW_CLIENTS = 16


class SlowClients:
    """Connections that send `first`, then one byte of `rest` every `every` seconds until stopped, each in a thread;
    `closed` counts those the server closed."""

    def __init__(self, port: int, first: bytes, rest: bytes, every: float = 0.5) -> None:
        self.port, self.first, self.rest, self.every = port, first, rest, every
        self.stop = threading.Event()
        self.closed = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(SLOW_CLIENTS)]

    def start(self) -> "SlowClients":
        for thread in self.threads:
            thread.start()
        return self

    def _run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            try:
                sock.sendall(self.first)
                for byte in self.rest:
                    if self.stop.wait(self.every):
                        return
                    sock.sendall(bytes([byte]))
            except OSError:
                with self.lock:
                    self.closed += 1

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)


@pytest.fixture
def web(spawn: Callable[..., Service], tmp_path) -> Iterator[int]:
    port = free_port()
    # One process of 4 threads, as docker/Dockerfile starts it with WEB_CONCURRENCY=1: 16 slow clients are 4 times
    # its threads.
    server = spawn("web", web_command(port, threads=4), service_env(tmp_path / "var"))
    wait_until_serving(f"http://127.0.0.1:{port}", server)
    yield port


SLOW_HEAD = (b"GET /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"X-Slow: " + b"a" * 200 + b"\r\n\r\n")
SLOW_LOGIN = (
    b"POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: 200\r\n\r\n",
    b"username=" + b"a" * 191,
)


@pytest.mark.parametrize("slow", [SLOW_HEAD, SLOW_LOGIN], ids=["headers", "login body"])
def test_slow_clients_leave_the_health_check_and_the_api_answering(web, project, slow):
    key = api_key_create(project=project, name="reader")[1]
    clients = SlowClients(web, *slow).start()
    try:
        time.sleep(1.5)  # every slow client connected and sending
        answers = []
        for _ in range(5):
            health = http("GET", f"http://127.0.0.1:{web}/healthz", timeout=2)
            logs = http(
                "GET",
                f"http://127.0.0.1:{web}/api/v1/logs?limit=1",
                headers={"Authorization": f"Bearer {key}"},
                timeout=2,
            )
            answers.append((health.status, logs.status, max(health.seconds, logs.seconds)))
            time.sleep(0.2)
    finally:
        clients.close()

    assert [(health, logs) for health, logs, _ in answers] == [(200, 200)] * 5
    assert max(seconds for *_, seconds in answers) < 2


def test_a_request_never_finished_is_closed_after_the_request_timeout(web):
    with socket.create_connection(("127.0.0.1", web), timeout=HeadFirstWorker.request_timeout + 5) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")

        assert sock.recv(1024) == b""  # closed by the server, with no answer

    assert HeadFirstWorker.request_timeout - 1 < time.monotonic() - started < HeadFirstWorker.request_timeout + 3


def test_a_kept_alive_connection_serves_requests_one_after_another_and_a_small_body_whole(web, project):
    body = b"username=nobody&password=x"
    with socket.create_connection(("127.0.0.1", web), timeout=5) as sock:
        for _ in range(3):
            sock.sendall(b"GET /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert _response(sock).startswith(b"HTTP/1.1 200")
        # A body split over two sends, the second after a pause: the request waits for the whole of it.
        sock.sendall(
            b"POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        )
        sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
        time.sleep(0.5)
        sock.sendall(body[10:])
        assert _response(sock).startswith(b"HTTP/1.1 403")  # read whole, then refused for its missing CSRF token


def _response(sock: socket.socket) -> bytes:
    """One answer with a Content-Length, read whole."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    return head
