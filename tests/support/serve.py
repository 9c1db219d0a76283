"""Real ``beaconproxy serve`` processes for the durability and fault tests: start (single or
``--workers N``, with extra environment or resource limits), kill -9, SIGTERM, start again on the same data
directory; the ClickHouse-HTTP fixture as a remote store that can go away and come back; and helpers that
count acknowledged against stored events by their sequence numbers.

Every event carries a unique number (``props.seq`` and the URL path); only numbers answered with a 202
count as acknowledged.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import os
import resource
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
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
import orjson

from proxy.model import Event
from sinks.codec import decode_events, encode_event
from sinks.spool import SpoolReader, encode_record
from tests.conftest import CHROME_UA
from tests.support.ch_http import _stop as stop_fixture_process
from tests.support.ch_http import _wait_for_listening

REPO = Path(__file__).resolve().parents[2]
# Replicas of one remote store must share these (README "Running several replicas"); tests that want a
# replica with other secrets give their own.
TEST_SECRETS = {
    "BEACONPROXY_PRIVACY__PSEUDONYM_SECRET": "test-pseudonym-secret-0123456789",
    "BEACONPROXY_SERVER__ADMIN_TOKEN": "test-admin-token-0123456789",
}
EVENTS = "beacon.events"
STORED_SEQS = f"SELECT props['seq'] AS seq FROM {EVENTS} WHERE props['seq'] != ''"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with contextlib.suppress(OSError):
                children = [int(c) for c in (task / "children").read_text().split()]
                found.extend(children)
                todo.extend(children)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie is not alive: it only waits to be reaped
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    return False


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
        self.pids: set[int] = set()  # descendants seen (workers, primaries): killed too, if still alive
        self.files: list[IO[bytes]] = []
        self._n = itertools.count(1)

    def log(self, kind: str) -> tuple[Path, IO[bytes]]:
        path = self.tmp / f"{kind}-{next(self._n)}.log"
        f = path.open("wb")
        self.files.append(f)
        return path, f

    def cleanup(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
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


class Proxy:
    """``beaconproxy serve`` on a data directory; start, kill -9, SIGTERM, start again."""

    def __init__(
        self,
        processes: Processes,
        data_dir: Path,
        *,
        workers: int = 1,
        nofile: int | None = None,
        **env: str,
    ) -> None:
        self.processes = processes
        self.data_dir = data_dir
        self.workers = workers
        self.nofile = nofile  # RLIMIT_NOFILE (soft and hard) for the whole process tree
        self.extra_env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_path: Path | None = None
        self.env: dict[str, str] = {}

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    def start(self, timeout: float = 60.0) -> None:
        self.port = free_port()
        clean = {k: v for k, v in os.environ.items() if not k.startswith("BEACONPROXY_")}
        remote = self.extra_env.get("BEACONPROXY_CLICKHOUSE__DSN", "").startswith("http")
        env = {
            **clean,
            "BEACONPROXY_DATA_DIR": str(self.data_dir),
            "BEACONPROXY_PORT": str(self.port),
            "BEACONPROXY_SPOOL__FSYNC": "always",
            "BEACONPROXY_BATCH__MAX_AGE_SECONDS": "0.2",
            **(TEST_SECRETS if remote else {}),
            **self.extra_env,
        }
        self.env = env
        self.log_path, log = self.processes.log("proxy")
        workers = ["--workers", str(self.workers)] if self.workers > 1 else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "serve", *workers],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if self.nofile is not None:  # at once: the interpreter is still starting, nothing is open yet
            resource.prlimit(self.proc.pid, resource.RLIMIT_NOFILE, (self.nofile, self.nofile))
        self.processes.procs.append(self.proc)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"proxy exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url("/healthz"), timeout=1) as r:
                    if r.status == 200:
                        self.processes.pids.update(self.descendants())
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

    def descendants(self) -> list[int]:
        """Every process below the serving one (workers, the primary): from /proc, Linux only."""
        assert self.proc is not None
        return descendants(self.proc.pid)

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
        return (
            self.env.get("BEACONPROXY_SERVER__ADMIN_TOKEN")
            or (self.data_dir / "admin_token").read_text().strip()
        )

    def readyz(self) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(self.url("/readyz"), timeout=10) as r:
                return r.status, orjson.loads(r.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, orjson.loads(exc.read())

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.url("/metrics"), timeout=10) as r:
            text: str = r.read().decode()
            return text

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
    """The ClickHouse-HTTP fixture on a fixed port and data directory, so it can come back as it was.

    ``password``: the default user's; ``restricted``: a second user (name, password) with SELECT, INSERT
    and ALTER DELETE only, as a replica's database user (tests.support.ch_http)."""

    def __init__(
        self,
        processes: Processes,
        data_dir: Path,
        *,
        password: str = "",
        restricted: tuple[str, str] | None = None,
    ) -> None:
        self.processes = processes
        self.data_dir = data_dir
        self.port = free_port()
        self.password = password
        self.restricted = restricted
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"http://default:{self.password}@127.0.0.1:{self.port}/"

    @property
    def restricted_dsn(self) -> str:
        assert self.restricted is not None
        user, password = self.restricted
        return f"http://{user}:{password}@127.0.0.1:{self.port}/"

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
                "--password",
                self.password,
                *(
                    ["--restricted-user", self.restricted[0], "--restricted-password", self.restricted[1]]
                    if self.restricted
                    else []
                ),
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
        params = {"query": query, **({"password": self.password} if self.password else {})}
        url = f"http://127.0.0.1:{self.port}/?" + urllib.parse.urlencode(params)
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


class Load:
    """Client threads sending numbered events, each on one kept-alive connection (reconnecting when the
    server closes it), as a browser or load balancer pool would. Every number ends in exactly one of:

    * ``acked``: answered 202 (the proxy promised to store it);
    * ``refused``: answered something else (e.g. 503 + Retry-After), or the connection was refused
      before the request could be sent;
    * ``unanswered``: the request was written but the connection closed without an answer: a request
      "in flight" that the server dropped (or that it received while it was being killed).
    """

    def __init__(self, proxy: Proxy, *, threads: int = 4, batch: int = 2, start: int = 1) -> None:
        self.proxy = proxy
        self.threads = threads
        self.batch = batch
        self._numbers = itertools.count(start)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self.acked: set[int] = set()
        self.sent: set[int] = set()
        self.refused: set[int] = set()
        self.unanswered: set[int] = set()
        self.statuses: Counter[int] = Counter()

    def start(self) -> Load:
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for t in self._workers:
            t.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout)

    def wait_acked(self, n: int, timeout: float = 60.0) -> None:
        wait_until(f"{n} acknowledged events", lambda: len(self.acked) >= n, timeout)

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            with self._lock:
                seqs = [next(self._numbers) for _ in range(self.batch)]
                self.sent.update(seqs)
            body = orjson.dumps(
                [
                    {"site": "demo", "url": f"https://example.com/seq/{n}", "props": {"seq": str(n)}}
                    for n in seqs
                ]
            )
            outcome: set[int] = self.unanswered
            status = 0
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=30)
                    conn.connect()
                headers = {"Content-Type": "application/json", "User-Agent": CHROME_UA}
                try:
                    conn.request("POST", "/v1/events", body=body, headers=headers)
                except OSError:
                    outcome = self.refused  # not (wholly) sent: the server cannot have taken it
                    raise
                resp = conn.getresponse()
                resp.read()
                status = resp.status
                outcome = self.acked if status == 202 else self.refused
                if resp.will_close:
                    conn.close()
                    conn = None
            except ConnectionRefusedError:
                outcome = self.refused
                conn = None
                time.sleep(0.05)
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            with self._lock:
                outcome.update(seqs)
                self.statuses[status] += 1
            if status == 503:
                time.sleep(0.05)
        if conn is not None:
            conn.close()

    def summary(self, stored_counts: Counter[int]) -> str:
        dup = sum(1 for c in stored_counts.values() if c > 1)
        lost = len(self.acked - set(stored_counts))
        return (
            f"sent {len(self.sent)}, acknowledged {len(self.acked)}, refused {len(self.refused)}, "
            f"unanswered {len(self.unanswered)}; stored {len(stored_counts)} distinct "
            f"({sum(stored_counts.values())} rows), acknowledged but lost {lost}, duplicated {dup}"
        )
