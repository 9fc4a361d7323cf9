"""gunicorn's gthread worker, with each request's head (and a small body) read by the worker's event loop before a
thread takes the request. Used by config/gunicorn.py; docs/deploy.md#slow-clients says why.

gthread hands a connection to one of its few threads as soon as its first byte arrives, and that thread then
reads the request line and headers with blocking calls and no time limit: a handful of clients that send a byte
now and then hold every thread, and the site stops answering. Here the event loop, which waits on any number of
sockets at once, collects the bytes instead. A thread gets the request only once its head, and its body when that
is small, are all there; a connection that has not sent them within `request_timeout` seconds is closed. A larger
body (an ingest batch, an upload) is read by the thread, each wait for more bytes bounded by `read_timeout`.
"""

import re
import selectors
import time
from collections import deque
from functools import partial

from gunicorn import http
from gunicorn.workers.gthread import TConn, ThreadWorker

HEAD_END = b"\r\n\r\n"
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*(\d+)[ \t]*\r\n", re.IGNORECASE)
# A chunked body has no length to wait for, and a client that expects "100 Continue" sends its body only once
# answered: both go to a thread as soon as the head is in.
STREAMED = re.compile(rb"\r\n(transfer-encoding[ \t]*:|expect[ \t]*:[ \t]*100-continue)", re.IGNORECASE)


class HeadFirstWorker(ThreadWorker):
    #: Seconds a connection has to send a request's head, and its body when small, from when it connects or, kept
    #: alive, from the first byte of its next request.
    request_timeout = 10.0
    #: Bodies up to this many bytes are read by the event loop with the head: forms, logins, small API calls.
    small_body = 64 * 1024
    #: Seconds a thread waits for the next bytes of a larger body, or for the client to take the answer's.
    read_timeout = 60.0

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.reading: deque[TConn] = deque()  # oldest deadline first

    @classmethod
    def check_config(cls, cfg: object, log: object) -> None:
        super().check_config(cfg, log)
        if cfg.is_ssl or "h2" in cfg.http_protocols:  # type: ignore[attr-defined]
            raise RuntimeError("HeadFirstWorker serves plain HTTP/1.1: TLS and HTTP/2 belong to the reverse proxy")

    def enqueue_req(self, conn: TConn) -> None:
        """Every way a request reaches a thread passes here: a new connection, a kept-alive one that became
        readable, bytes of a next request already buffered. Only a complete request goes on to a thread."""
        if getattr(conn, "request_ready", False):
            conn.request_ready = False
            super().enqueue_req(conn)
            return
        held = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        conn.received = bytearray(held)
        conn.timeout = time.monotonic() + self.request_timeout
        if self._complete(conn.received):
            self._hand_over(conn)
            return
        conn.sock.setblocking(False)
        self.reading.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn: TConn, _sock: object) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._stop_reading(conn)
            self._close(conn)
            return
        conn.received += data
        # Past the limits of a head, the parser answers 400 itself.
        if self._complete(conn.received) or len(conn.received) > self._head_limit() + self.small_body:
            self._stop_reading(conn)
            self._hand_over(conn)

    def _complete(self, received: bytearray) -> bool:
        end = received.find(HEAD_END)
        if end < 0:
            return False
        head = bytes(received[: end + 2])
        length = CONTENT_LENGTH.search(head)
        if STREAMED.search(head) or length is None or int(length.group(1)) > self.small_body:
            return True
        return len(received) >= end + len(HEAD_END) + int(length.group(1))

    def _head_limit(self) -> int:
        cfg = self.cfg
        return cfg.limit_request_line + cfg.limit_request_fields * (cfg.limit_request_field_size + 2) + 4

    def _hand_over(self, conn: TConn) -> None:
        conn.sock.setblocking(True)
        if conn.parser is None:
            # What TConn.init() would do for plain HTTP/1.1, which check_config leaves as the only case.
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
            conn.initialized = True
        conn.parser.unreader.unread(bytes(conn.received))
        conn.received = None
        conn.data_ready = True
        conn.request_ready = True
        self.enqueue_req(conn)

    def _stop_reading(self, conn: TConn) -> None:
        self.poller.unregister(conn.sock)
        self.reading.remove(conn)

    def _close(self, conn: TConn) -> None:
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """Called by the worker's loop every second at least: also close the connections too slow to send a request."""
        super().murder_pending()
        now = time.monotonic()
        while self.reading and self.reading[0].timeout <= now:
            conn = self.reading.popleft()
            self.poller.unregister(conn.sock)
            self._close(conn)

    def handle_request(self, req: object, conn: TConn) -> bool:
        # The head is in; reading a large body, or writing the answer, may wait on the client so long only.
        conn.sock.settimeout(self.read_timeout)
        return super().handle_request(req, conn)
