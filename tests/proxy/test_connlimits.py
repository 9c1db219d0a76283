"""The connection limits uvicorn's httptools protocol lacks: cap, idle/header/body timeouts, header size.

Each test serves a small ASGI app through :class:`LimitedHttpToolsProtocol` on a real socket in this
process and talks raw HTTP/1.1 to it. Timeouts are short; waits for a close are generous, and no test
asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import pickle
import resource
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from config.settings import ServerSettings
from proxy.connlimits import (
    BACKLOG,
    ConnectionGuard,
    ConnectionLimits,
    DrainingServer,
    LimitedHttpToolsProtocol,
    fit_to_fds,
    uvicorn_options,
)

WAIT = 10.0  # seconds to wait for something that must happen; never asserted as a duration
FAST = ConnectionLimits(
    max_connections=8, idle_timeout=0.3, header_timeout=0.3, body_timeout=0.3, max_header_bytes=2048
)
SLOW = ConnectionLimits(
    max_connections=8,
    idle_timeout=WAIT * 3,
    header_timeout=WAIT * 3,
    body_timeout=WAIT * 3,
    max_header_bytes=2048,
)


@dataclass
class App:
    """Echoes the body with 200; ``/wait`` holds the answer until ``gate`` is set."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    disconnects: int = 0
    requests: int = 0

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        assert scope["type"] == "http"
        self.requests += 1
        if scope["path"] == "/early":  # answers without reading the body (as a 413 or 503 does)
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnects += 1
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        if scope["path"] == "/wait":
            await self.gate.wait()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@dataclass
class Served:
    port: int
    guard: ConnectionGuard
    app: App
    state: ServerState


@contextlib.asynccontextmanager
async def serve(limits: ConnectionLimits, keep_alive: float = 5.0) -> AsyncIterator[Served]:
    app = App()
    guard = ConnectionGuard(limits)
    config = uvicorn.Config(app, lifespan="off", log_config=None, timeout_keep_alive=keep_alive)  # type: ignore[arg-type]
    state = ServerState()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: LimitedHttpToolsProtocol(config, state, {}, loop, guard=guard), "127.0.0.1", 0
    )
    try:
        yield Served(server.sockets[0].getsockname()[1], guard, app, state)
    finally:
        server.close()
        app.gate.set()
        for conn in list(state.connections):
            conn.transport.close()
        await server.wait_closed()
        await asyncio.sleep(0.05)  # let the transports finish closing


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@contextlib.asynccontextmanager
async def connect(port: int) -> AsyncIterator[Conn]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def post(body: bytes, path: str = "/", extra: bytes = b"") -> bytes:
    head = b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n" % (path.encode(), len(body))
    return head + extra + b"\r\n" + body


async def response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    status_line, *lines = head[:-4].split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(b":", 1) for line in lines)}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get(b"content-length", b"0"))), WAIT)
    return int(status_line.split()[1]), headers, body


async def rest(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server closes the connection (a reset counts as closed)."""
    try:
        return await asyncio.wait_for(reader.read(), WAIT)
    except ConnectionResetError:
        return b""


async def still_open(reader: asyncio.StreamReader) -> bool:
    try:
        await asyncio.wait_for(reader.read(1), 0.2)
    except TimeoutError:
        return True
    return False


def test_a_connection_that_never_sends_a_byte_is_closed_after_the_idle_timeout() -> None:
    async def run() -> None:
        async with serve(FAST) as s, connect(s.port) as (reader, _):
            assert await rest(reader) == b""  # closed, nothing said
            assert s.guard.closed == {"idle_timeout": 1}

    asyncio.run(run())


def test_the_idle_sweep_closes_only_new_connections_that_sent_nothing() -> None:
    async def run() -> None:
        limits = ConnectionLimits(
            64, idle_timeout=0.3, header_timeout=0.6, body_timeout=WAIT * 3, max_header_bytes=2048
        )
        async with serve(limits, keep_alive=WAIT * 3) as s, contextlib.AsyncExitStack() as stack:
            used_r, used_w = await stack.enter_async_context(connect(s.port))
            used_w.write(post(b"x"))  # had a request: kept alive (uvicorn's keep-alive timeout)
            assert (await response(used_r))[0] == 200
            idle = [await stack.enter_async_context(connect(s.port)) for _ in range(5)]
            _, partial_w = await stack.enter_async_context(connect(s.port))
            partial_w.write(b"GET / HTTP/1.1\r\n")  # sent something: the header timeout, not the idle one
            assert [await rest(r) for r, _ in idle] == [b""] * 5
            assert s.guard.closed == {"idle_timeout": 5}
            for _ in range(100):
                if s.guard.closed["header_timeout"]:
                    break
                await asyncio.sleep(0.05)
            assert s.guard.closed == {"idle_timeout": 5, "header_timeout": 1}
            assert await still_open(used_r)
            used_w.write(post(b"again"))
            assert (await response(used_r))[2] == b"again"

    asyncio.run(run())


def test_headers_that_stop_arriving_get_408_and_are_closed_while_a_normal_request_is_answered() -> None:
    async def run() -> None:
        async with serve(FAST) as s, connect(s.port) as (slow_r, slow_w):
            slow_w.write(b"POST / HTTP/1.1\r\nHost: t\r\n")
            async with connect(s.port) as (reader, writer):
                writer.write(post(b"hello"))
                assert await response(reader) == (200, {b"content-length": b"5"}, b"hello")
            assert (await rest(slow_r)).startswith(b"HTTP/1.1 408 Request Timeout\r\n")
            assert s.guard.closed == {"header_timeout": 1}
            assert s.app.requests == 1  # the slow request never reached the app

    asyncio.run(run())


def test_slowloris_dribbling_header_lines_is_closed_at_the_header_timeout() -> None:
    async def run() -> None:
        async with serve(FAST) as s, connect(s.port) as (reader, writer):
            writer.write(b"POST / HTTP/1.1\r\nHost: t\r\n")
            for i in range(200):  # a header line every 50 ms: each read is small, none ends the headers
                if s.guard.closed:
                    break
                with contextlib.suppress(ConnectionError):
                    writer.write(b"X-%d: y\r\n" % i)
                    await writer.drain()
                await asyncio.sleep(0.05)
            await rest(reader)  # closed (the 408 may be lost to a reset: the client was still sending)
            assert s.guard.closed == {"header_timeout": 1}
            assert s.app.requests == 0

    asyncio.run(run())


@pytest.mark.parametrize("piece", [8192, 100], ids=["in one read", "dribbled"])
def test_headers_over_the_limit_get_431_and_the_connection_is_closed(piece: int) -> None:
    big = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 4096 + b"\r\n\r\n"

    async def run() -> None:
        async with serve(SLOW) as s, connect(s.port) as (reader, writer):
            sent = 0
            while sent <= SLOW.max_header_bytes:  # stop once past the limit: nothing unread at the close
                writer.write(big[sent : sent + piece])
                await writer.drain()
                sent += piece
                await asyncio.sleep(0.01)
            assert (await rest(reader)).startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
            assert s.guard.closed == {"headers_too_large": 1}
            assert s.app.requests == 0

    asyncio.run(run())


def test_headers_under_the_limit_and_a_body_over_several_reads_are_served() -> None:
    near = b"b" * (SLOW.max_header_bytes - 200)
    body = b"x" * 300_000  # more than one read, sent in pieces

    async def run() -> None:
        async with serve(SLOW) as s, connect(s.port) as (reader, writer):
            writer.write(post(b"1", extra=b"X-Near: " + near + b"\r\n"))
            assert (await response(reader))[0] == 200
            writer.write(post(body)[:-250_000])
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(body[-250_000:])
            status, _, echoed = await response(reader)
            assert (status, len(echoed)) == (200, len(body))
            writer.write(post(b"again"))  # the same connection, the next request
            assert (await response(reader))[2] == b"again"
            assert not s.guard.closed

    asyncio.run(run())


def test_a_body_that_stops_arriving_gets_408_and_the_app_sees_a_disconnect() -> None:
    async def run() -> None:
        async with serve(FAST) as s, connect(s.port) as (reader, writer):
            writer.write(post(b"0123456789" * 10)[:-90])  # headers and 10 of 100 bytes
            assert (await rest(reader)).startswith(b"HTTP/1.1 408 Request Timeout\r\n")
            for _ in range(100):
                if s.app.disconnects:
                    break
                await asyncio.sleep(0.02)
            assert s.app.disconnects == 1
            assert s.guard.closed == {"body_timeout": 1}

    asyncio.run(run())


@pytest.mark.parametrize("after_a_request", [False, True], ids=["new connection", "after a request"])
def test_bytes_that_begin_no_request_do_not_keep_a_connection_open(after_a_request: bool) -> None:
    async def run() -> None:
        async with serve(FAST) as s, connect(s.port) as (reader, writer):
            if after_a_request:
                writer.write(post(b"x"))
                assert (await response(reader))[0] == 200
            for _ in range(200):  # an empty line every 50 ms: llhttp skips them between requests
                if s.guard.closed:
                    break
                with contextlib.suppress(ConnectionError):
                    writer.write(b"\r\n")
                    await writer.drain()
                await asyncio.sleep(0.05)
            await rest(reader)
            assert s.guard.closed == {"header_timeout": 1}

    asyncio.run(run())


def test_a_body_still_dribbling_after_an_early_answer_is_closed_at_the_body_timeout() -> None:
    """uvicorn cancels its keep-alive timer at every read, so without this such a connection lived on."""

    async def run() -> None:
        async with serve(FAST) as s, connect(s.port) as (reader, writer):
            writer.write(post(b"0123456789" * 100, path="/early")[:-1000])
            assert (await response(reader))[0] == 200
            for _ in range(200):  # the unread body, ten bytes every 50 ms
                if s.guard.closed:
                    break
                with contextlib.suppress(ConnectionError):
                    writer.write(b"0123456789")
                    await writer.drain()
                await asyncio.sleep(0.05)
            assert await rest(reader) == b""  # it had its answer: closed without another
            assert s.guard.closed == {"body_timeout": 1}

    asyncio.run(run())


def test_at_the_cap_a_new_connection_replaces_the_longest_waiting_one() -> None:
    limits = ConnectionLimits(
        4, idle_timeout=WAIT * 3, header_timeout=WAIT * 3, body_timeout=WAIT * 3, max_header_bytes=2048
    )

    async def run() -> None:
        async with serve(limits) as s, contextlib.AsyncExitStack() as stack:
            old = [await stack.enter_async_context(connect(s.port)) for _ in range(4)]
            old[0][1].write(b"GET / HTTP/1.1\r\n")  # the oldest: idle, then slow headers
            old[1][1].write(post(b"k"))  # the second: a request answered, then idle (keep-alive)
            assert (await response(old[1][0]))[0] == 200
            await asyncio.sleep(0.05)
            reader, writer = await stack.enter_async_context(connect(s.port))
            writer.write(post(b"new"))
            assert (await response(reader))[2] == b"new"
            assert await rest(old[0][0]) == b""  # the longest waiting one went, silently
            assert all([await still_open(r) for r, _ in old[1:]])
            assert s.guard.closed == {"evicted": 1}
            # old[2] has now waited longest (old[1] went back to waiting after its answer)
            _, writer2 = await stack.enter_async_context(connect(s.port))
            assert await rest(old[2][0]) == b""
            assert await still_open(old[1][0]) and await still_open(old[3][0])
            assert s.guard.closed == {"evicted": 2}
            writer2.close()

    asyncio.run(run())


def test_when_every_connection_is_in_a_request_a_new_one_gets_503_with_retry_after() -> None:
    limits = ConnectionLimits(
        2, idle_timeout=WAIT * 3, header_timeout=WAIT * 3, body_timeout=WAIT * 3, max_header_bytes=2048
    )

    async def run() -> None:
        async with serve(limits) as s, contextlib.AsyncExitStack() as stack:
            busy = [await stack.enter_async_context(connect(s.port)) for _ in range(2)]
            for _, writer in busy:
                writer.write(post(b"w", path="/wait"))
            while s.app.requests < 2:
                await asyncio.sleep(0.01)
            reader, _ = await stack.enter_async_context(connect(s.port))
            answer = await rest(reader)
            assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\n")
            assert s.guard.closed == {"refused": 1}
            s.app.gate.set()  # the requests in progress were not disturbed
            assert [(await response(r))[0] for r, _ in busy] == [200, 200]

    asyncio.run(run())


def test_the_guard_forgets_closed_connections() -> None:
    async def run() -> None:
        async with serve(SLOW) as s:
            for _ in range(3):
                async with connect(s.port) as (reader, writer):
                    writer.write(post(b"x"))
                    await response(reader)
            for _ in range(100):
                if not s.state.connections:
                    break
                await asyncio.sleep(0.02)
            assert not s.guard.waiting and not s.state.connections

    asyncio.run(run())


def test_closes_are_logged_as_counts_at_most_every_few_seconds(caplog: pytest.LogCaptureFixture) -> None:
    guard = ConnectionGuard(FAST)
    with caplog.at_level(logging.WARNING, "beaconproxy"):
        guard.note("idle_timeout")  # normal: counted, not logged
        guard.note("header_timeout")
        guard.note("evicted")
    assert guard.closed == {"idle_timeout": 1, "header_timeout": 1, "evicted": 1}
    assert [r.getMessage() for r in caplog.records] == [
        "connections closed by the connection limits so far: header_timeout 1, idle_timeout 1"
    ]


@pytest.mark.parametrize(
    ("cap", "backlog", "fds", "expected"),
    [
        (4096, 2048, 1 << 20, (4096, 2048)),  # plenty: as configured
        (4096, 2048, 6656, (4096, 2048)),  # exactly fits with the 512 reserve
        (4096, 2048, 6655, (4096, 2047)),  # one short: the backlog gives way first
        (4096, 2048, 1024, (384, 128)),  # a common default soft limit
        (100, 2048, 1024, (100, 412)),  # a small cap keeps its value, the backlog takes the rest
        (4096, 2048, 256, (96, 32)),  # tiny: half of it is kept for the process
    ],
)
def test_the_cap_and_backlog_fit_under_the_open_file_limit(
    cap: int, backlog: int, fds: int, expected: tuple[int, int]
) -> None:
    fitted = fit_to_fds(cap, backlog, fds)
    assert fitted == expected
    assert sum(fitted) <= fds - min(512, fds // 2)  # connections, queued ones included, plus the reserve


def test_the_soft_open_file_limit_is_raised_to_the_hard_limit_and_the_cap_fits_under_it() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 512:
        pytest.skip("hard open-file limit below 512")
    code = (
        "import resource\n"
        "from config.settings import ServerSettings\n"
        "from proxy.connlimits import uvicorn_options\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "opts = uvicorn_options(ServerSettings())\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard if hard != resource.RLIM_INFINITY"
        " else 'inf', opts['http'].keywords['guard'].limits.max_connections, opts['backlog'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    fds = hard if hard != resource.RLIM_INFINITY else 1 << 20
    assert out[0] in ("True", "inf")
    assert (int(out[1]), int(out[2])) == fit_to_fds(4096, BACKLOG, fds)


def test_uvicorn_options_carry_the_settings_and_survive_pickling_into_a_worker() -> None:
    server = ServerSettings(
        max_connections=100,
        idle_timeout_seconds=1.5,
        header_timeout_seconds=2.5,
        body_timeout_seconds=3.5,
        keep_alive_seconds=4.5,
        max_header_bytes=9999,
    )
    fds = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        options = pickle.loads(pickle.dumps(uvicorn_options(server)))  # as Supervisor hands them to a worker
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, fds)  # uvicorn_options raised it for this process
    assert options["ws"] == "none"
    assert options["timeout_keep_alive"] == 4.5
    factory = options["http"]
    assert isinstance(factory, functools.partial) and factory.func is LimitedHttpToolsProtocol
    limits = factory.keywords["guard"].limits
    assert limits == ConnectionLimits(100, 1.5, 2.5, 3.5, 9999)


def test_a_graceful_stop_answers_a_request_that_arrives_on_an_idle_kept_alive_connection() -> None:
    """uvicorn closes idle kept-alive connections at once on shutdown, resetting a request the client
    may have sent already. Here such a connection lingers: a request that arrives is answered, with
    Connection: close, and a connection that stays quiet is closed."""

    async def run() -> None:
        async with serve(SLOW, keep_alive=WAIT * 3) as s, contextlib.AsyncExitStack() as stack:
            busy_r, busy_w = await stack.enter_async_context(connect(s.port))
            quiet_r, quiet_w = await stack.enter_async_context(connect(s.port))
            for w, r in ((busy_w, busy_r), (quiet_w, quiet_r)):
                w.write(post(b"first"))
                assert (await response(r))[0] == 200
            for conn in list(s.state.connections):  # what uvicorn's Server.shutdown does
                conn.shutdown()
            busy_w.write(post(b"in flight"))  # written by the client as the stop began
            status, headers, body = await response(busy_r)
            assert (status, body, headers[b"connection"]) == (200, b"in flight", b"close")
            assert await rest(busy_r) == b""  # and closed after it
            assert await rest(quiet_r) == b""  # the quiet one: closed after the linger

    asyncio.run(run())


def test_a_draining_server_answers_connections_queued_in_the_listen_backlog() -> None:
    """With several workers, clients told to reconnect by one stopping worker can land in the listen
    queue of another just before it stops: DrainingServer accepts and answers them before closing."""

    async def run() -> None:
        app = App()
        guard = ConnectionGuard(SLOW)
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            lifespan="off",
            log_config=None,
            http=functools.partial(LimitedHttpToolsProtocol, guard=guard),
            timeout_graceful_shutdown=int(WAIT),
        )
        config.load()
        server = DrainingServer(config)
        server.lifespan = config.lifespan_class(config)  # what Server._serve sets up before startup
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        port = sock.getsockname()[1]
        await server.startup(sockets=[sock])
        assert server.servers
        loop = asyncio.get_running_loop()
        for s in server.servers:  # stop accepting, as if the loop had not got to them yet
            for listener in s.sockets:
                loop.remove_reader(listener.fileno())
        queued = [await connect_raw(port) for _ in range(3)]  # completed by the kernel, not accepted
        for _, w in queued:
            w.write(post(b"queued"))
        stop = asyncio.create_task(server.shutdown(sockets=[sock]))
        answers = [await response(r) for r, _ in queued]
        assert [(a[0], a[2]) for a in answers] == [(200, b"queued")] * 3
        await asyncio.wait_for(stop, WAIT * 2)
        for _, w in queued:
            w.close()

    asyncio.run(run())


async def connect_raw(port: int) -> Conn:
    return await asyncio.open_connection("127.0.0.1", port)
