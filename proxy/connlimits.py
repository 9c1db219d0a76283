"""Limits on client connections, where uvicorn's httptools protocol sets none.

What uvicorn (httptools) does not cover, read from its source: its keep-alive timer is armed only after
a response, so a connection that never sends a byte, or sends its headers one byte at a time (slowloris),
stays open for ever; llhttp buffers a request line and headers of any size (the size option is for h11
only); ``limit_concurrency`` answers 503 to *requests* once connections reach it, idle ones included, so
a pile of idle connections would lock real beacons out, and it closes nothing; the listen ``backlog``
bounds the kernel's queue only. This subclass, passed as uvicorn's ``http=``, adds, per
process:

* a connection cap: at the cap a new connection replaces the one that has waited longest without a
  request in progress (idle, between requests, or still sending headers); when every connection is
  busy in a request, the new one gets 503 with Retry-After and is closed;
* an idle timeout for a new connection's first byte (one sweep per process, not a timer each), a header
  timeout (a request's first byte to the end of its headers) and a body timeout (end of headers to end
  of body), each closing the connection, with 408 where a request was begun and nothing answered yet;
* a header size limit: a request line and headers over ``max_header_bytes`` get 431 and the connection
  is closed before the read that crosses the limit reaches the parser.

A request that arrives in one read (a beacon) arms no timer and searches nothing: the parser callbacks
are uvicorn's, and a read and an answer cost a few attribute checks and two dict updates. Between
requests uvicorn's own keep-alive timeout applies. :func:`uvicorn_options` also raises the open-file
limit and fits the cap and the listen backlog under it, so a flood of connections cannot take the file
descriptors that the store, the spool and the logs need.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import resource
import socket
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from config.settings import ServerSettings

log = logging.getLogger("beaconproxy")

BACKLOG = 2048  # uvicorn's default, and proxy.supervisor's
# Files, sockets and pipes a process needs besides client connections: the embedded store's files and
# threads, spool segments, GeoIP files, logs, the workers' sockets.
FD_RESERVE = 512
DRAIN_LINGER_SECONDS = 1.0  # on a graceful stop, how long an idle kept-alive connection waits (shutdown)
LOG_EVERY_SECONDS = 10.0

# Where a connection's last read left its request: answered or with the app, in its headers, in its body.
_IDLE, _HEADERS, _BODY = 0, 1, 2


def _answer(status: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 " + status + b"\r\n" + extra + b"content-length: 0\r\nconnection: close\r\n\r\n"


BUSY = _answer(b"503 Service Unavailable", b"retry-after: 1\r\n")
TIMED_OUT = _answer(b"408 Request Timeout")
HEADERS_TOO_LARGE = _answer(b"431 Request Header Fields Too Large")


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    idle_timeout: float
    header_timeout: float
    body_timeout: float
    max_header_bytes: int


class ConnectionGuard:
    """One process's connections that wait for a request, longest waiting first, and why connections
    were closed. The event loop is the only caller: no locks.

    New connections that send nothing are found by a sweep every quarter of the idle timeout rather than
    by a timer each: a timer per connection cost more than everything else here."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        # Insertion-ordered, so the first has waited longest. The value is when a connection was accepted,
        # while it has sent nothing; 0.0 once it has had a request (then uvicorn's keep-alive timeout runs).
        self.waiting: dict[LimitedHttpToolsProtocol, float] = {}
        self.closed: Counter[str] = Counter()  # reason -> connections, since start
        self.sweeping: asyncio.TimerHandle | None = None
        self._next_log = 0.0

    def make_room(self) -> bool:
        """At the cap: close the connection that has waited longest; False if every one is busy."""
        if not self.waiting:
            self.note("refused")
            return False
        oldest = next(iter(self.waiting))
        del self.waiting[oldest]
        oldest.close_for("evicted")
        return True

    def sweep_later(self, loop: asyncio.AbstractEventLoop) -> None:
        self.sweeping = loop.call_later(self.limits.idle_timeout / 4, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        accepted_before = loop.time() - self.limits.idle_timeout
        idle = []
        for conn, accepted in self.waiting.items():
            if not accepted:
                continue  # between requests
            if accepted > accepted_before:
                break  # new connections are added in order: the rest are younger still
            if conn.phase == _IDLE:  # not a byte since (with bytes, the header timeout runs)
                idle.append(conn)
        for conn in idle:
            del self.waiting[conn]
            conn.close_for("idle_timeout")
        if self.waiting:
            self.sweep_later(loop)
        else:
            self.sweeping = None  # the next new connection starts it again

    def note(self, reason: str) -> None:
        """Count a closed connection; log the counts (never an address) at most every few seconds. New
        connections that are never used are normal (browsers open spare ones), so they only count."""
        self.closed[reason] += 1
        if reason == "idle_timeout":
            return
        now = time.monotonic()
        if now >= self._next_log:
            self._next_log = now + LOG_EVERY_SECONDS
            counts = ", ".join(f"{reason} {n}" for reason, n in sorted(self.closed.items()))
            log.warning("connections closed by the connection limits so far: %s", counts)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above; ``guard`` is shared by a process's connections.

    Overrides call the base class directly, not through ``super()``: they run for every connection."""

    phase = _IDLE  # where the last read left this connection's request
    header_bytes = 0  # of the request begun, in reads that ended inside its headers
    deadline: asyncio.TimerHandle | None = None  # the header or body timeout, when armed
    deadline_phase = _IDLE
    draining = False  # the server is stopping: answer what arrives, then close (see shutdown)

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        guard: ConnectionGuard,
    ) -> None:
        HttpToolsProtocol.__init__(self, config, server_state, app_state, _loop)
        self.guard = guard
        self.waiting = guard.waiting
        self.limits = guard.limits

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        HttpToolsProtocol.connection_made(self, transport)
        if self.draining:  # taken from the listen queue while the server stops (DrainingServer)
            self.loop.call_later(DRAIN_LINGER_SECONDS, self._drain_close)
        guard = self.guard
        if len(self.connections) > self.limits.max_connections and not guard.make_room():
            transport.write(BUSY)
            transport.close()
            return
        self.waiting[self] = self.loop.time()
        if guard.sweeping is None:
            guard.sweep_later(self.loop)

    def connection_lost(self, exc: Exception | None) -> None:
        HttpToolsProtocol.connection_lost(self, exc)
        if exc is not None:
            self._unset_keepalive_if_required()  # uvicorn does it only for a clean close
        if self.deadline is not None:
            self._disarm()
        self.waiting.pop(self, None)

    def data_received(self, data: bytes) -> None:
        if self.phase != _BODY and self.header_bytes + len(data) > self.limits.max_header_bytes:
            # Rare (a beacon's read is smaller than the limit): do the headers end in time, in this read?
            end = data.find(b"\r\n\r\n")
            if end < 0 or self.header_bytes + end + 4 > self.limits.max_header_bytes:
                self._unset_keepalive_if_required()
                self.guard.note("headers_too_large")
                self._close(HEADERS_TOO_LARGE if self._nothing_in_flight() else b"")
                return
        before = self.cycle
        HttpToolsProtocol.data_received(self, data)  # (not super(): this runs for every read)
        # Where the parser stopped, from uvicorn's own state: each request's headers make a new cycle
        # around the scope begun at its first byte, and its body's end clears ``more_body``.
        cycle = self.cycle
        if cycle is not before:  # headers completed here: a request in progress is never replaced
            self.waiting.pop(self, None)
            self.header_bytes = 0
            if self.draining and cycle is not None:  # the server is stopping: the last answer here
                cycle.keep_alive = False
        if cycle is None or cycle.scope is not self.scope:
            phase = _HEADERS  # a request begun, its headers not complete
        elif cycle.more_body:
            phase = _BODY  # (also after an early answer: uvicorn leaves more_body set, and discards it)
        elif cycle.response_complete:
            phase = _HEADERS  # bytes after a finished exchange (CRLFs) that begin no request
        else:  # the usual case: the whole request was in this read, and the app has it
            self.phase = _IDLE
            if self.deadline is not None:
                self._disarm()
            return
        self.phase = phase
        if phase == _HEADERS:
            self.header_bytes += len(data)  # this read ended inside the headers: all of it counts
        if self.deadline is None or self.deadline_phase != phase:
            self._disarm()
            if phase == _HEADERS:
                self.deadline = self.loop.call_later(self.limits.header_timeout, self._header_timeout)
            else:
                self.deadline = self.loop.call_later(self.limits.body_timeout, self._body_timeout)
            self.deadline_phase = phase

    def on_response_complete(self) -> None:
        HttpToolsProtocol.on_response_complete(self)
        if self.cycle.response_complete:  # none pipelined behind it: waiting for the next request
            self.waiting[self] = 0.0

    # Graceful stop.
    def shutdown(self) -> None:
        """The server is stopping (its listener is closed already). A request in progress is answered
        and its connection closed after it, as uvicorn does. An idle kept-alive connection is not cut at
        once, as uvicorn would: its client may have sent its next request already, which a close would
        reset unanswered (the client cannot tell whether it was taken). It lingers for
        ``DRAIN_LINGER_SECONDS``: a request that arrives meanwhile is answered with ``Connection: close``;
        a connection that stays quiet is closed."""
        if self.cycle is None or self.cycle.response_complete:
            self.draining = True
            self.loop.call_later(DRAIN_LINGER_SECONDS, self._drain_close)
        else:
            self.cycle.keep_alive = False

    def _drain_close(self) -> None:
        if not self.transport.is_closing() and self._nothing_in_flight():
            self.transport.close()

    # Closing.
    def close_for(self, reason: str) -> None:
        self.guard.note(reason)
        self._close(b"")

    def _nothing_in_flight(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _close(self, answer: bytes) -> None:
        if answer:
            self.transport.write(answer)
        self.transport.close()

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _header_timeout(self) -> None:
        self.deadline = None
        if not self.transport.is_closing():
            self.guard.note("header_timeout")
            self._close(TIMED_OUT if self._nothing_in_flight() else b"")

    def _body_timeout(self) -> None:
        self.deadline = None
        if not self.transport.is_closing():
            self.guard.note("body_timeout")
            cycle = self.cycle  # the request whose body is late: answered 408 unless it was answered
            self._close(TIMED_OUT if cycle is not None and not cycle.response_started else b"")


def raise_fd_limit() -> int:
    """Raise this process's soft open-file limit to its hard limit (children inherit it); the new soft
    limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY:
        return target
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft


def fit_to_fds(max_connections: int, backlog: int, fds: int) -> tuple[int, int]:
    """(connection cap, listen backlog) that fit in ``fds`` open files with the process's own reserve.
    Connections queued in the backlog are accepted, each an open file, before the cap can close them."""
    room = fds - min(FD_RESERVE, fds // 2)
    if max_connections + backlog <= room:
        return max_connections, backlog
    cap = max(1, min(max_connections, room * 3 // 4))
    return cap, max(1, min(backlog, room - cap))


def uvicorn_options(server: ServerSettings) -> dict[str, Any]:
    """The uvicorn options that bound connections, for ``uvicorn.run``/``uvicorn.Config``. Picklable:
    ``serve --workers N`` hands them to spawned workers, where each gets its own guard."""
    fds = raise_fd_limit()
    cap, backlog = fit_to_fds(server.max_connections, BACKLOG, fds)
    if cap < server.max_connections:
        log.warning(
            "server.max_connections lowered from %d to %d to fit the open-file limit (%d); raise it with"
            " `ulimit -n` or LimitNOFILE=",
            server.max_connections,
            cap,
            fds,
        )
    limits = ConnectionLimits(
        max_connections=cap,
        idle_timeout=server.idle_timeout_seconds,
        header_timeout=server.header_timeout_seconds,
        body_timeout=server.body_timeout_seconds,
        max_header_bytes=server.max_header_bytes,
    )
    return {
        "http": functools.partial(LimitedHttpToolsProtocol, guard=ConnectionGuard(limits)),
        "ws": "none",  # an upgraded connection would leave this protocol, and its limits, behind
        "timeout_keep_alive": server.keep_alive_seconds,
        "backlog": backlog,
    }


class DrainingServer(uvicorn.Server):
    """uvicorn's server, whose graceful stop also answers the connections the kernel had completed into
    the listen queue but nobody had accepted yet: closing the listener would reset them, after their
    clients sent a request (with ``serve --workers N``, clients told to reconnect by one stopping worker
    land in another's queue just before it stops too). They are accepted first, served as draining
    connections (see LimitedHttpToolsProtocol.shutdown), and only then is the listener closed, in the
    same step, so nothing new can queue in between."""

    _drained: set[asyncio.Task[Any]]

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._drained = set()
        for server in getattr(self, "servers", ()):
            for listener in server.sockets or ():
                self._accept_queued(listener.fileno(), listener.family)
        await uvicorn.Server.shutdown(self, sockets)

    def _accept_queued(self, fd: int, family: int) -> None:
        loop = asyncio.get_running_loop()
        config = self.config
        with socket.fromfd(fd, family, socket.SOCK_STREAM) as listener:  # a duplicate: closing it is ours
            listener.setblocking(False)
            while True:
                try:
                    conn, _ = listener.accept()
                except (BlockingIOError, InterruptedError, OSError):
                    return
                conn.setblocking(False)

                def protocol() -> asyncio.Protocol:
                    proto: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
                        config=config, server_state=self.server_state, app_state=self.lifespan.state
                    )
                    if isinstance(proto, LimitedHttpToolsProtocol):
                        proto.draining = True
                    return proto

                task = loop.create_task(loop.connect_accepted_socket(protocol, conn))
                self._drained.add(task)
                task.add_done_callback(self._drained.discard)
