"""The promise "a 2xx means the event is in storage or in a durable spool; nothing acknowledged is lost;
replays do not duplicate rows", with real processes: kill -9, a store that goes away and comes back, a
store that is not there at start, a graceful stop with the store down, and a damaged spool at start-up.

Every event carries a unique number (``props.seq`` and the URL path); only numbers answered with a 202
count as acknowledged. The proxy runs as ``python -m proxy.cli serve``; the remote store is the
ClickHouse-HTTP fixture (``tests.support.ch_http``) started by hand, so it can be stopped and restarted on
the same data directory and port.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
import pytest

from proxy.model import Event
from sinks.codec import decode_events, encode_event
from sinks.spool import SpoolReader, encode_record, segment_name
from tests.conftest import CHROME_UA
from tests.support.ch_http import _stop as stop_fixture_process
from tests.support.ch_http import _wait_for_listening

REPO = Path(__file__).resolve().parents[2]
EVENTS = "beacon.events"
STORED_SEQS = f"SELECT props['seq'] AS seq FROM {EVENTS} WHERE props['seq'] != ''"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(what: str, predicate: Callable[[], bool], timeout: float = 60.0, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


# --- processes ----------------------------------------------------------------------------------------


class Processes:
    """Every subprocess a test starts; all are killed at teardown, whatever happened."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.files: list[IO[bytes]] = []
        self._n = itertools.count(1)

    def log(self, kind: str) -> tuple[Path, IO[bytes]]:
        path = self.tmp / f"{kind}-{next(self._n)}.log"
        f = path.open("wb")
        self.files.append(f)
        return path, f

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        for f in self.files:
            f.close()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    p = Processes(tmp_path)
    try:
        yield p
    finally:
        p.cleanup()


class Proxy:
    """``beaconproxy serve`` on a data directory; start, kill -9, SIGTERM, start again."""

    def __init__(self, processes: Processes, data_dir: Path, **env: str) -> None:
        self.processes = processes
        self.data_dir = data_dir
        self.extra_env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_path: Path | None = None

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    def start(self, timeout: float = 60.0) -> None:
        self.port = free_port()
        clean = {k: v for k, v in os.environ.items() if not k.startswith("BEACONPROXY_")}
        env = {
            **clean,
            "BEACONPROXY_DATA_DIR": str(self.data_dir),
            "BEACONPROXY_PORT": str(self.port),
            "BEACONPROXY_SPOOL__FSYNC": "always",
            "BEACONPROXY_BATCH__MAX_AGE_SECONDS": "0.2",
            **self.extra_env,
        }
        self.log_path, log = self.processes.log("proxy")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "serve"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.procs.append(self.proc)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"proxy exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url("/healthz"), timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"proxy did not become healthy:\n{self.log_tail()}")
            time.sleep(0.05)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log_tail(self, limit: int = 6000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return self.log_path.read_text(errors="replace")[-limit:]

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(30) == -signal.SIGKILL

    def sigterm(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        assert code in (0, -signal.SIGTERM), self.log_tail()
        return code

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin_token").read_text().strip()

    def readyz(self) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(self.url("/readyz"), timeout=10) as r:
                return r.status, orjson.loads(r.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, orjson.loads(exc.read())

    def admin(self, method: str, path: str, body: bytes | None = None) -> bytes:
        """A call to the proxy's admin listener (the unix socket in its data directory)."""
        transport = httpx.HTTPTransport(uds=str(self.data_dir / "run" / "admin.sock"))
        with httpx.Client(transport=transport, base_url="http://admin", timeout=60) as client:
            r = client.request(
                method, path, content=body, headers={"Authorization": f"Bearer {self.admin_token}"}
            )
        if r.status_code >= 400:
            raise AssertionError(f"{method} {path}: {r.status_code} {r.content!r}")
        return r.content

    def stats(self) -> dict[str, Any]:
        doc: dict[str, Any] = orjson.loads(self.admin("GET", "/admin/stats"))
        return doc

    def query(self, sql: str) -> list[dict[str, Any]]:
        data = self.admin("POST", "/admin/query", sql.encode())
        return [orjson.loads(line) for line in data.splitlines() if line]

    def post(self, seqs: list[int], timeout: float = 10.0) -> int | None:
        """POST one event per number; the status, or None if no answer came back."""
        body = [
            {"site": "demo", "url": f"https://example.com/seq/{n}", "props": {"seq": str(n)}} for n in seqs
        ]
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(
                "POST",
                "/v1/events",
                body=orjson.dumps(body if len(body) > 1 else body[0]),
                headers={"Content-Type": "application/json", "User-Agent": CHROME_UA},
            )
            resp = conn.getresponse()
            answer = resp.read()
            if resp.status == 202:
                assert orjson.loads(answer) == {"accepted": len(seqs), "dropped": 0}
            return resp.status
        except (OSError, http.client.HTTPException):
            return None
        finally:
            conn.close()


class ChFixture:
    """The ClickHouse-HTTP fixture on a fixed port and data directory, so it can come back as it was."""

    def __init__(self, processes: Processes, data_dir: Path) -> None:
        self.processes = processes
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"http://default:@127.0.0.1:{self.port}/"

    def start(self) -> None:
        log_path, log = self.processes.log("ch_http")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.ch_http",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
                "--exit-on-stdin-eof",
            ],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        self.processes.procs.append(self.proc)
        try:
            assert _wait_for_listening(self.proc, 60) == self.port
        except RuntimeError as exc:
            raise AssertionError(f"{exc}\n{log_path.read_text(errors='replace')[-4000:]}") from None

    def stop(self) -> None:
        assert self.proc is not None
        stop_fixture_process(self.proc, 10)
        assert self.proc.returncode == 0

    def query(self, sql: str) -> list[dict[str, Any]]:
        query = f"{sql} FORMAT JSONEachRow"
        url = f"http://127.0.0.1:{self.port}/?" + urllib.parse.urlencode({"query": query})
        with urllib.request.urlopen(url, timeout=30) as r:
            return [orjson.loads(line) for line in r.read().splitlines() if line]


# --- helpers ------------------------------------------------------------------------------------------


def stored(rows: Iterable[dict[str, Any]]) -> Counter[int]:
    return Counter(int(row["seq"]) for row in rows)


def segment_files(spool: Path, suffix: str) -> list[Path]:
    return sorted(p for p in spool.glob(f"w*{suffix}") if p.is_file())


def drained(proxy: Proxy) -> bool:
    """Nothing sealed or open is left in the spool: everything accepted was shipped (and acked)."""
    return not segment_files(proxy.spool_dir, ".seg") and not segment_files(proxy.spool_dir, ".open")


def spooled_seqs(spool: Path) -> Counter[int]:
    """The event numbers in the sealed segments of a spool (read as the shipper would)."""
    reader = SpoolReader(spool)
    found: Counter[int] = Counter()
    for name in reader.sealed_segments():
        events, bad = decode_events(reader.read(name).records)
        assert bad == 0
        found.update(int(e.props["seq"]) for e in events)
    return found


def assert_exactly_once(acked: set[int], counts: Counter[int], sent: set[int]) -> None:
    missing = sorted(acked - set(counts))
    assert not missing, f"{len(missing)} acknowledged events were lost, e.g. {missing[:10]}"
    duplicated = sorted(n for n, c in counts.items() if c > 1)
    assert not duplicated, f"{len(duplicated)} events stored more than once, e.g. {duplicated[:10]}"
    assert set(counts) <= sent, "stored an event that was never sent"


def post_all(proxy: Proxy, seqs: Iterable[int], acked: set[int], *, batch: int = 1) -> None:
    """POST the numbers (``batch`` per request); every request must be answered 202."""
    pending = list(seqs)
    for i in range(0, len(pending), batch):
        chunk = pending[i : i + batch]
        status = proxy.post(chunk)
        assert status == 202, f"events {chunk} got {status}:\n{proxy.log_tail()}"
        acked.update(chunk)


def sealed_event(seq: int) -> bytes:
    """A spool record as the proxy writes it: an anonymised event, encoded and framed."""
    event = Event(
        site="demo",
        type="pageview",
        name="pageview",
        ts=datetime.now(UTC),
        event_id=uuid.uuid4(),
        url=f"https://example.com/seq/{seq}",
        props={"seq": str(seq)},
        ip="127.0.0.0",
        browser="Chrome",
        device="desktop",
    )
    return encode_record(encode_event(event))


# --- 1. kill -9 in the middle of a stream ----------------------------------------------------------------


def test_kill_9_mid_stream_loses_no_acknowledged_event_and_duplicates_none(
    tmp_path: Path, processes: Processes
) -> None:
    """Three rounds of: start on the same data directory, stream, kill -9 (the later rounds are killed
    while they also replay what the previous one left). Then a last start drains everything."""
    proxy = Proxy(processes, tmp_path / "data")
    numbers = itertools.count(1)
    lock = threading.Lock()
    acked: set[int] = set()
    sent: set[int] = set()
    unanswered: list[int] = []
    rounds: list[str] = []

    def client(stop: threading.Event) -> None:
        while not stop.is_set():
            with lock:
                seqs = [next(numbers), next(numbers)]
                sent.update(seqs)
            status = proxy.post(seqs, timeout=5)
            with lock:
                if status != 202:  # in flight at the kill, or refused after it: not acknowledged
                    unanswered.extend(seqs)
                    return
                acked.update(seqs)

    for _ in range(3):
        proxy.start()
        before = len(acked)
        stop = threading.Event()
        threads = [threading.Thread(target=client, args=(stop,), daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            wait_until("events to be acknowledged", lambda: len(acked) >= before + 50, timeout=30)  # noqa: B023
            time.sleep(1.0)  # keep streaming; sealed segments are shipped while more arrive
            proxy.kill9()
        finally:
            stop.set()
            for t in threads:
                t.join(15)
        rounds.append(
            f"{len(acked) - before} acked, "
            f"{len(segment_files(proxy.spool_dir, '.open'))} open + "
            f"{len(segment_files(proxy.spool_dir, '.seg'))} sealed segments left"
        )

    proxy.start()
    after = set(range(10**6, 10**6 + 20))
    post_all(proxy, after, acked)  # and it keeps serving
    sent |= after
    wait_until("the spool to drain after the restart", lambda: drained(proxy), timeout=60)
    counts = stored(proxy.query(STORED_SEQS))
    assert_exactly_once(acked, counts, sent)

    unacked_stored = sorted(set(counts) - acked)
    print(
        f"\nkill -9 x3 ({'; '.join(rounds)}): sent {len(sent)}, acknowledged {len(acked)} "
        f"(incl. {len(after)} after the last restart), unanswered {len(unanswered)}; stored "
        f"{sum(counts.values())} rows for {len(counts)} distinct events; every acknowledged event stored "
        f"exactly once; stored but never acknowledged: {len(unacked_stored)}; duplicates: 0"
    )


# --- 2. the store goes away and comes back -------------------------------------------------------------


def test_store_down_for_a_while_then_back_everything_acknowledged_is_stored_once(
    tmp_path: Path, processes: Processes
) -> None:
    store = ChFixture(processes, tmp_path / "remote")
    store.start()
    proxy = Proxy(processes, tmp_path / "data", BEACONPROXY_CLICKHOUSE__DSN=store.dsn)
    proxy.start()
    acked: set[int] = set()

    post_all(proxy, range(1, 21), acked, batch=2)
    wait_until("the first events to be stored", lambda: len(store.query(STORED_SEQS)) == 20)

    store.stop()
    for n in range(21, 61):  # accepted into the spool throughout the outage
        post_all(proxy, [n], acked)
        time.sleep(0.02)

    def sink_reported_down() -> bool:
        status, body = proxy.readyz()
        assert status == 200, body  # ready: the spool accepts
        assert body["status"] == "ready"
        return body["sink_healthy"] is False and body["spool_segments"] > 0

    wait_until("/readyz to report the sink unhealthy", sink_reported_down, timeout=30)
    post_all(proxy, range(61, 71), acked)
    status, body = proxy.readyz()
    assert status == 200 and not body["sink_healthy"]
    assert proxy.stats()["shipper"]["errors"] > 0

    store.start()  # same data directory, same port
    post_all(proxy, range(71, 81), acked, batch=5)
    wait_until("the spool to drain", lambda: drained(proxy), timeout=90)
    counts = stored(store.query(STORED_SEQS))
    assert_exactly_once(acked, counts, set(range(1, 81)))
    assert set(counts) == acked
    assert proxy.readyz()[1]["sink_healthy"] is True
    print(f"\nstore outage: acknowledged {len(acked)}, stored {sum(counts.values())} rows, duplicates 0")


def test_store_killed_during_inserts_replays_without_duplicates(tmp_path: Path, processes: Processes) -> None:
    """The store crashes (kill -9) while batches stream in: some inserts fail after the store may have
    committed them; their retries carry the same token, so nothing is stored twice."""
    store = ChFixture(processes, tmp_path / "remote")
    store.start()
    proxy = Proxy(
        processes,
        tmp_path / "data",
        BEACONPROXY_CLICKHOUSE__DSN=store.dsn,
        BEACONPROXY_BATCH__MAX_AGE_SECONDS="0.05",
    )
    proxy.start()
    numbers = itertools.count(1)
    lock = threading.Lock()
    acked: set[int] = set()
    statuses: Counter[int | None] = Counter()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            with lock:
                seqs = [next(numbers) for _ in range(5)]
            status = proxy.post(seqs)
            with lock:
                statuses[status] += 1
                if status == 202:
                    acked.update(seqs)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(2):
            time.sleep(1.0)
            assert store.proc is not None
            store.proc.kill()
            store.proc.wait(10)
            time.sleep(0.3)
            store.start()
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert set(statuses) == {202}, statuses  # the proxy answered 202 throughout
    wait_until("the spool to drain", lambda: drained(proxy), timeout=90)
    counts = stored(store.query(STORED_SEQS))
    assert_exactly_once(acked, counts, acked)
    assert set(counts) == acked
    shipper = proxy.stats()["shipper"]
    print(
        f"\nstore killed twice mid-stream: acknowledged {len(acked)}, stored {sum(counts.values())} rows, "
        f"duplicates 0, failed inserts retried {shipper['errors']}"
    )


# --- 3. the store is not there when the proxy starts ---------------------------------------------------


def test_proxy_started_while_the_store_is_down_spools_then_ships(
    tmp_path: Path, processes: Processes
) -> None:
    store = ChFixture(processes, tmp_path / "remote")  # not started yet
    proxy = Proxy(processes, tmp_path / "data", BEACONPROXY_CLICKHOUSE__DSN=store.dsn)
    proxy.start()
    acked: set[int] = set()

    post_all(proxy, range(1, 31), acked, batch=3)
    status, body = proxy.readyz()
    assert status == 200, body
    assert body["status"] == "ready" and body["sink_healthy"] is False
    wait_until(
        "the accepted events to be sealed in the spool",
        lambda: proxy.readyz()[1]["spool_segments"] > 0 and not segment_files(proxy.spool_dir, ".open"),
    )
    assert sum(spooled_seqs(proxy.spool_dir).values()) == 30
    assert proxy.stats()["shipper"]["sink_started"] is False

    store.start()
    post_all(proxy, range(31, 41), acked)
    wait_until("the spool to drain", lambda: drained(proxy), timeout=90)
    counts = stored(store.query(STORED_SEQS))
    assert_exactly_once(acked, counts, set(range(1, 41)))
    assert set(counts) == acked
    assert proxy.stats()["shipper"]["sink_started"] is True


# --- 4. graceful shutdown -------------------------------------------------------------------------------


def test_sigterm_with_the_store_up_stores_everything(tmp_path: Path, processes: Processes) -> None:
    proxy = Proxy(processes, tmp_path / "data", BEACONPROXY_BATCH__MAX_AGE_SECONDS="30")
    proxy.start()
    acked: set[int] = set()
    post_all(proxy, range(1, 41), acked, batch=4)  # all still in the open segment (max age 30 s)
    assert segment_files(proxy.spool_dir, ".open")
    proxy.sigterm()

    assert not segment_files(proxy.spool_dir, ".open")
    spooled = spooled_seqs(proxy.spool_dir)
    result = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "query", STORED_SEQS],
        cwd=REPO,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("BEACONPROXY_")},
            "BEACONPROXY_DATA_DIR": str(proxy.data_dir),
        },
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    counts = stored(orjson.loads(line) for line in result.stdout.splitlines() if line)
    assert acked <= set(counts) | set(spooled)
    assert_exactly_once(set(), counts, acked)
    assert not spooled and set(counts) == acked  # the store was up: the grace period shipped it all


def test_sigterm_with_the_store_down_leaves_sealed_segments_then_stores_them_once(
    tmp_path: Path, processes: Processes
) -> None:
    store = ChFixture(processes, tmp_path / "remote")
    store.start()
    grace = {"BEACONPROXY_BATCH__SHUTDOWN_GRACE_SECONDS": "1"}
    proxy = Proxy(processes, tmp_path / "data", BEACONPROXY_CLICKHOUSE__DSN=store.dsn, **grace)
    proxy.start()
    acked: set[int] = set()
    post_all(proxy, range(1, 11), acked)
    wait_until("the first events to be stored", lambda: len(store.query(STORED_SEQS)) == 10)

    store.stop()
    post_all(proxy, range(11, 41), acked, batch=3)
    t0 = time.monotonic()
    proxy.sigterm()
    shutdown_seconds = time.monotonic() - t0

    assert not segment_files(proxy.spool_dir, ".open"), "the open segment was not sealed on shutdown"
    spooled = spooled_seqs(proxy.spool_dir)
    store.start()
    counts = stored(store.query(STORED_SEQS))
    assert acked <= set(counts) | set(spooled), sorted(acked - set(counts) - set(spooled))
    assert counts == Counter(range(1, 11))  # stored before the outage
    assert spooled == Counter(range(11, 41))  # the rest is sealed in the spool, each event once
    print(
        f"\nSIGTERM, store down: acknowledged {len(acked)}, stored {len(counts)}, spooled {len(spooled)}; "
        f"exit took {shutdown_seconds:.1f}s with shutdown_grace_seconds = 1"
    )

    proxy.start()  # the next start ships what was left
    wait_until("the spool to drain", lambda: drained(proxy), timeout=90)
    counts = stored(store.query(STORED_SEQS))
    assert_exactly_once(acked, counts, acked)
    assert set(counts) == acked


# --- 5. a damaged spool found at start-up --------------------------------------------------------------


def test_a_corrupt_spool_tail_is_counted_and_shipping_goes_on(tmp_path: Path, processes: Processes) -> None:
    data = tmp_path / "data"
    spool = data / "spool"
    spool.mkdir(parents=True)
    SpoolReader(spool)  # the spool's id, as a previous run would have left it
    torn = sealed_event(99)
    (spool / segment_name("4242", 1, ".seg")).write_bytes(
        b"".join(sealed_event(n) for n in range(1, 6)) + torn[: len(torn) // 2]
    )
    (spool / segment_name("4242", 2, ".seg")).write_bytes(
        sealed_event(6) + encode_record(b"\x02from the future") + sealed_event(7)
    )
    (spool / segment_name("4242", 3, ".seg")).write_bytes(
        b"".join(sealed_event(n) for n in range(8, 11)) + b"\x00\xde\xad\xbe\xef garbage " * 4
    )

    proxy = Proxy(processes, data)
    proxy.start()
    acked = set(range(1, 11))  # what the previous run had acknowledged (its readable part)
    post_all(proxy, range(11, 21), acked, batch=2)
    wait_until("the spool to drain", lambda: drained(proxy), timeout=60)
    counts = stored(proxy.query(STORED_SEQS))
    assert_exactly_once(acked, counts, acked)
    assert set(counts) == acked  # 99 was torn: never readable, never stored

    shipper = proxy.stats()["shipper"]
    assert shipper["corrupt_records"] == 2  # the torn record, and the garbage tail (at least one)
    assert shipper["undecodable_records"] == 1
    assert shipper["segments"] >= 4
