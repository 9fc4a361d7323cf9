"""The slow-client mode of bench/load.py (`--slow N`): N connections to 127.0.0.1 that send a request's head, or a
login form's body, one byte every --slow-every seconds (opening a new connection whenever the server closes one),
while a prober asks for /healthz and for one log through the API four times a second and times the answers.

It measures whether a few clients that send slowly can stop the server answering everyone else. Everything
is bounded: each probe by --probe-timeout, the run by --seconds, and only 127.0.0.1 is contacted.
"""

import argparse
import http.client
import socket
import threading
import time
from dataclasses import dataclass, field

from common import percentile

PROBE_EVERY_S = 0.25
RECONNECT_PAUSE_S = 0.1

# What a slow client sends: what goes at once, then what goes a byte at a time (repeated for as long as the run).
SLOW_REQUESTS = {
    "headers": (b"GET /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"X-Slow: " + b"a" * 4000),
    "body": (
        b"POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 4000\r\n\r\n",
        b"username=" + b"a" * 3991,
    ),
}


@dataclass
class SlowRun:
    probes: dict[str, list[float | None]] = field(default_factory=lambda: {"healthz": [], "api read": []})
    connections: int = 0
    closed_by_server: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def slow_run(*, port: int, key: str, args: argparse.Namespace) -> SlowRun:
    run = SlowRun()
    stop = threading.Event()
    first, rest = SLOW_REQUESTS[args.slow_kind]
    slow = [
        threading.Thread(target=_slow_client, args=(port, first, rest, args.slow_every, stop, run), daemon=True)
        for _ in range(args.slow)
    ]
    for thread in slow:
        thread.start()
    time.sleep(1.0)  # every slow client connected and sending before the first probe
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        run.probes["healthz"].append(_probe(port, "/healthz", {}, args.probe_timeout))
        run.probes["api read"].append(
            _probe(port, "/api/v1/logs?limit=1", {"Authorization": f"Bearer {key}"}, args.probe_timeout)
        )
        time.sleep(PROBE_EVERY_S)
    stop.set()
    for thread in slow:
        thread.join(timeout=args.slow_every + 5)
    return run


def _slow_client(port: int, first: bytes, rest: bytes, every: float, stop: threading.Event, run: SlowRun) -> None:
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                with run.lock:
                    run.connections += 1
                sock.sendall(first)
                for byte in rest:
                    if stop.wait(every):
                        return
                    sock.sendall(bytes([byte]))
        except OSError:
            with run.lock:
                run.closed_by_server += 1
            stop.wait(RECONNECT_PAUSE_S)


def _probe(port: int, path: str, headers: dict[str, str], timeout: float) -> float | None:
    """Seconds until a 200 came back on a new connection; None for a timeout, an error or another status."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    return time.perf_counter() - started if response.status == 200 else None


def slow_table(run: SlowRun, args: argparse.Namespace, *, server: str, code: str) -> list[tuple[str, str]]:
    rows = [
        ("code", code),
        ("server", server),
        ("slow clients", f"{args.slow} sending their {args.slow_kind} a byte every {args.slow_every:g} s"),
        ("seconds", f"{args.seconds}"),
        ("slow connections opened", f"{run.connections:,}"),
        ("closed by the server", f"{run.closed_by_server:,}"),
    ]
    for name, probes in run.probes.items():
        answered = sorted(seconds * 1e3 for seconds in probes if seconds is not None)
        ms = " / ".join(f"{percentile(answered, share):,.0f}" for share in (0.5, 0.95)) if answered else "-"
        rows += [
            (f"{name}: answered 200", f"{len(answered)} of {len(probes)}"),
            (f"{name}: p50 / p95 ms", ms),
            (f"{name}: max ms", f"{answered[-1]:,.0f}" if answered else "-"),
        ]
    return rows


def slow_problems(run: SlowRun, args: argparse.Namespace) -> list[str]:
    problems = []
    for name, probes in run.probes.items():
        failed = sum(seconds is None for seconds in probes)
        if failed:
            problems.append(f"{failed} of {len(probes)} {name} probes got no 200 within {args.probe_timeout:g} s")
    return problems
