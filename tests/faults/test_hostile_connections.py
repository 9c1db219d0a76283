"""Hostile connections against the real ``beaconproxy serve``, single-process and with ``--workers 2``.

Idle connections, slowloris headers, huge headers and many concurrent large bodies, while ordinary
beacons keep arriving: the beacons are answered 202 and stored, the hostile connections are closed by the
timeouts (under the cap) or replaced (over it), huge headers get 431 or a closed connection, bodies that
do not fit the memory budget get 503 with Retry-After before a byte of them is sent, and the memory of
the whole process tree stays within a bound that a control run, without the budget, exceeds.

Timeouts are set short; waits for something to happen are generous, and nothing asserts a duration.
"""

from __future__ import annotations

import contextlib
import http.client
import resource
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from tests.conftest import CHROME_UA
from tests.support.proxy_server import RunningProxy, running_proxy

CAP = 200  # connections per process
MIB = 1024 * 1024
CONFIG = """
[server]
max_connections = {cap}
idle_timeout_seconds = 1.0
header_timeout_seconds = 1.0
body_timeout_seconds = 3.0
keep_alive_seconds = 1.0
max_header_bytes = 16384
body_budget_bytes = {budget}

[sites.demo]
allowed_origins = ["*"]
"""
BUDGET = 8 * MIB  # per process: 6 bodies of 1 MiB at a time (bodies over 64 KiB get three quarters)
HOLDERS = 200  # concurrent 1 MiB bodies, each held open one byte short of complete
# The test's own end: a socket per connection it opens, at most this many at once, plus slack.
FILES_NEEDED = 3 * CAP * 2 + 500


@pytest.fixture(scope="module", autouse=True)
def enough_files() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FILES_NEEDED:
        pytest.skip(f"the hard open-file limit ({hard}) is below the {FILES_NEEDED} this test opens")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, FILES_NEEDED), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --- the process tree and its memory ---------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            ppid = int(text[text.rindex(")") + 2 :].split()[1])
            kids.setdefault(ppid, []).append(int(stat.parent.name))
    return kids


def process_tree(root: int) -> set[int]:
    kids, tree, todo = _children(), set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(kids.get(pid, []))
    return tree


def rss_bytes(pids: set[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


@dataclass
class PeakRss:
    """Samples the tree's RSS on a thread until stopped; ``peak`` is the largest sample."""

    pids: set[int]
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pids))
            time.sleep(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


# --- clients ---------------------------------------------------------------------------------------


def beacon(proxy: RunningProxy, tag: str) -> int:
    """One ordinary beacon on a connection of its own."""
    body = orjson.dumps({"site": "demo", "url": f"https://example.com/hostile/{tag}"})
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    try:
        conn.request(
            "POST", "/v1/events", body, {"Content-Type": "application/json", "User-Agent": CHROME_UA}
        )
        return conn.getresponse().status
    finally:
        conn.close()


def connect(proxy: RunningProxy, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    if first:
        sock.sendall(first)
    return sock


def read_closed(sock: socket.socket) -> tuple[bool, bytes]:
    """Without waiting: (closed by the server, what it sent)."""
    got = b""
    while True:
        try:
            chunk = sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False, got
        except OSError:  # reset
            return True, got
        if not chunk:
            return True, got
        got += chunk


def wait_closed(socks: list[socket.socket], timeout: float = 30) -> int:
    """How many of ``socks`` the server had not closed within ``timeout``."""
    open_ = list(socks)
    deadline = time.monotonic() + timeout
    while open_ and time.monotonic() < deadline:
        open_ = [s for s in open_ if not read_closed(s)[0]]
        time.sleep(0.1)
    return len(open_)


class Dribbler:
    """Slowloris: a request line, then one header line to every connection every quarter second."""

    def __init__(self, socks: list[socket.socket]) -> None:
        self.socks = socks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            for sock in self.socks:
                with contextlib.suppress(OSError):
                    sock.send(b"X-Slow: 1\r\n", socket.MSG_DONTWAIT)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def hostile(proxy: RunningProxy, idle: int, slow: int) -> Iterator[list[socket.socket]]:
    socks = [connect(proxy) for _ in range(idle)]
    slow_socks = [connect(proxy, b"POST /v1/events HTTP/1.1\r\nHost: proxy\r\n") for _ in range(slow)]
    dribbler = Dribbler(slow_socks)
    try:
        yield socks + slow_socks
    finally:
        dribbler.stop()
        for sock in socks + slow_socks:
            sock.close()


def large_body_head(size: int = MIB) -> bytes:
    return (
        b"POST /v1/events HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % size
    )


def hold_large_bodies(proxy: RunningProxy, n: int) -> list[socket.socket]:
    """``n`` connections, each sending a 1 MiB body but its last byte (a valid JSON array of spaces)."""
    socks = []
    for _ in range(n):
        sock = connect(proxy)
        with contextlib.suppress(OSError):  # refused ones are closed while they send
            sock.sendall(large_body_head() + b"[" + b" " * (MIB - 3) + b"]")
        socks.append(sock)
    return socks


def answer_to_head_only(proxy: RunningProxy) -> bytes:
    """A 1 MiB request's headers, and not one byte of its body: what the server says at once."""
    with connect(proxy, large_body_head()) as sock:
        ready, _, _ = select.select([sock], [], [], 30)
        assert ready, "no answer without the body"
        return read_closed(sock)[1]


# --- the tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2], ids=["single", "workers-2"])
def test_hostile_connections_leave_beacons_answered_and_memory_bounded(
    tmp_path: Path, geoip_files: tuple[str, str], workers: int
) -> None:
    config = CONFIG.format(cap=CAP, budget=BUDGET)
    with running_proxy(tmp_path, geoip_files, config, workers=workers) as proxy:
        sent = 0

        def beacons(n: int) -> list[int]:
            nonlocal sent
            statuses = [beacon(proxy, f"{sent + i}") for i in range(n)]
            sent += n
            return statuses

        assert beacons(5) == [202] * 5  # warm: caches, the store, a first segment shipped
        pids = process_tree(proxy.proc.pid)
        assert len(pids) >= (1 if workers == 1 else workers + 2)  # serving, primary and worker processes
        baseline = rss_bytes(pids)
        rss = PeakRss(pids)

        # Under the cap: nothing is replaced, so what closes them is the idle and header timeouts.
        with hostile(proxy, idle=CAP // 4, slow=CAP // 4) as socks:
            assert beacons(10) == [202] * 10
            assert wait_closed(socks) == 0

        # Over the cap (three times it, in every process): the longest waiting make room for beacons.
        with hostile(proxy, idle=CAP * workers * 3 // 2, slow=CAP * workers * 3 // 2) as socks:
            assert beacons(10) == [202] * 10
            assert wait_closed(socks) == 0

        # Huge headers: 431, or the connection closed while they were still being sent.
        for size in (MIB, 20 * MIB):
            with connect(proxy) as sock:
                with contextlib.suppress(OSError):
                    sock.sendall(
                        b"GET /healthz HTTP/1.1\r\nHost: proxy\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
                    )
                select.select([sock], [], [], 30)
                closed, answer = read_closed(sock)
                assert answer.startswith(b"HTTP/1.1 431 ") or (closed and not answer)
        assert beacons(5) == [202] * 5

        # Large bodies: a few per process are read, the rest are refused before being read.
        holders = hold_large_bodies(proxy, HOLDERS)
        try:
            for _ in range(3):
                answer = answer_to_head_only(proxy)  # budget full: 503 without a byte of the body sent
                assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
                assert b"\r\nretry-after: 1\r\n" in answer.lower()
            assert beacons(10) == [202] * 10  # the quarter kept for small bodies
            assert wait_closed(holders) == 0  # the read ones time out: their last byte never came
        finally:
            for sock in holders:
                sock.close()
        assert beacons(5) == [202] * 5

        peak = rss.stop()
        assert process_tree(proxy.proc.pid) == pids  # no process died or was restarted
        growth = peak - baseline
        # Without the budget the held bodies alone add HOLDERS MiB (the control test below shows it);
        # with it, a few MiB of bodies per process and the connections' own buffers (~30-40 MiB seen).
        assert growth < 96 * MIB, f"RSS grew by {growth / MIB:.0f} MiB (from {baseline / MIB:.0f} MiB)"

        rows = proxy.rows("url LIKE 'https://example.com/hostile/%'", want=sent)
        assert sorted(int(r["url"].rsplit("/", 1)[1]) for r in rows) == list(range(sent))
        log = proxy.log()
        assert "connections closed by the connection limits" in log
        assert "Traceback" not in log


def test_control_without_the_budget_the_same_bodies_take_the_memory(
    tmp_path: Path, geoip_files: tuple[str, str]
) -> None:
    """The bound above means something: with a budget no flood reaches, the held bodies are all read."""
    config = CONFIG.format(cap=CAP, budget=16 * 1024 * MIB)
    with running_proxy(tmp_path, geoip_files, config) as proxy:
        assert beacon(proxy, "warm") == 202
        pids = process_tree(proxy.proc.pid)
        baseline = rss_bytes(pids)
        rss = PeakRss(pids)
        holders = hold_large_bodies(proxy, HOLDERS)
        try:
            assert wait_closed(holders) == 0  # all read, then timed out
        finally:
            for sock in holders:
                sock.close()
        growth = rss.stop() - baseline
        assert growth > HOLDERS * MIB // 2, f"RSS grew by {growth / MIB:.0f} MiB only"


def test_the_cap_fits_a_low_open_file_limit_and_a_flood_beyond_it_kills_nothing(
    tmp_path: Path, geoip_files: tuple[str, str]
) -> None:
    """With 1024 open files, 4096 connections would exhaust them (and the store's files with them): the
    cap is lowered to fit, and 1,500 connections leave the proxy answering and storing."""
    config = CONFIG.format(cap=4096, budget=BUDGET)
    with running_proxy(tmp_path, geoip_files, config, max_open_files=1024) as proxy:
        assert "server.max_connections lowered from 4096 to 384" in proxy.log()
        with hostile(proxy, idle=1000, slow=500) as socks:
            assert [beacon(proxy, str(i)) for i in range(10)] == [202] * 10
            assert wait_closed(socks) == 0
        assert [beacon(proxy, str(i)) for i in range(10, 20)] == [202] * 10
        assert len(proxy.rows("url LIKE 'https://example.com/hostile/%'", want=20)) == 20
        log = proxy.log()
        assert "Too many open files" not in log and "Traceback" not in log
