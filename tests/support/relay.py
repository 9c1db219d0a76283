"""A TCP relay a test can cut: put it between one proxy replica and the store, then ``cut()`` to make
the store unreachable for that replica only (open connections are reset, new ones refused) and
``restore()`` to let it through again. Test code only.

It listens on 127.0.0.1 on a port of its own and forwards every connection to ``target``; it runs on
threads in the test process, so it works in front of any store (the ClickHouse-HTTP fixture or a real
server given by ``CLICKHOUSE_TEST_DSN``).
"""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
from urllib.parse import urlsplit, urlunsplit


class Relay:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = threading.Event()
        self._stop = threading.Event()
        self.connections = 0  # accepted and forwarded, since the start
        self._thread = threading.Thread(target=self._accept, name="relay", daemon=True)
        self._thread.start()

    @classmethod
    def for_dsn(cls, dsn: str) -> Relay:
        parts = urlsplit(dsn)
        default = 8443 if parts.scheme == "https" else 8123
        return cls(parts.hostname or "127.0.0.1", parts.port or default)

    def dsn(self, dsn: str) -> str:
        """``dsn`` with its host and port replaced by the relay's (user, password and path kept)."""
        parts = urlsplit(dsn)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    @property
    def is_cut(self) -> bool:
        return self._cut.is_set()

    def cut(self) -> None:
        """Reset every open connection and refuse new ones until ``restore``."""
        self._cut.set()
        with self._lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            _reset(conn)

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self._thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut.is_set():
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
                self.connections += 1
            done = threading.Barrier(2, action=functools.partial(self._forget, client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, done), daemon=True).start()

    def _forget(self, *conns: socket.socket) -> None:
        with self._lock:
            self._open.difference_update(conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()

    def _pump(self, source: socket.socket, sink: socket.socket, done: threading.Barrier) -> None:
        """One direction; once both have ended, both sockets are closed."""
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with contextlib.suppress(threading.BrokenBarrierError):
            done.wait()


def _reset(conn: socket.socket) -> None:
    """Close with an RST rather than a FIN: to the client, the connection broke."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        conn.close()
