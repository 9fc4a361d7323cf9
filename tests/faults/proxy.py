"""A TCP proxy on loopback that a test controls, standing between the app and PostgreSQL: it forwards, refuses
(no listener: connection refused), stalls (accepts, then never answers), and cuts live connections, at once
or after a number of bytes. The machine's PostgreSQL itself is never touched."""

import contextlib
import socket
import threading

from tests.faults.processes import free_port


class TcpProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.cuts = 0  # connections cut by cut_after
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._cut_after: int | None = None
        self._forwarded = 0  # bytes towards the server since cut_after was armed

    # --- what the test does -----------------------------------------------------------------------

    def forward(self) -> None:
        """Accept connections and relay them to the server."""
        self._listen("forward")

    def stall(self) -> None:
        """Accept connections and never answer, like a server that hangs."""
        self._listen("stall")

    def refuse(self) -> None:
        """Stop listening (new connections are refused) and cut every live connection."""
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            assert self._acceptor is not None
            self._acceptor.join()  # it sees the listener is gone within its accept timeout
            listener.close()
        self.cut_all()

    def cut_all(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _close(sock)

    def cut_after(self, nbytes: int) -> None:
        """Cut every live connection once `nbytes` more bytes have gone towards the server (then disarm)."""
        with self._lock:
            self._cut_after, self._forwarded = nbytes, 0

    def close(self) -> None:
        self.refuse()

    # --- inside ----------------------------------------------------------------------------------

    def _listen(self, mode: str) -> None:
        self.refuse()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        with self._lock:
            self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, args=(listener, mode), daemon=True)
        self._acceptor.start()

    def _accept(self, listener: socket.socket, mode: str) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                self._sockets.add(client)
            if mode == "stall":
                continue  # held open, never read, never answered
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets.add(server)
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, towards_server: bool) -> None:
        try:
            while data := source.recv(65536):
                if towards_server and self._count(len(data)):
                    self.cuts += 1
                    self.cut_all()
                    return
                target.sendall(data)
        except OSError:
            pass
        _close(source)
        _close(target)

    def _count(self, nbytes: int) -> bool:
        with self._lock:
            if self._cut_after is None:
                return False
            self._forwarded += nbytes
            if self._forwarded < self._cut_after:
                return False
            self._cut_after = None
            return True


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
