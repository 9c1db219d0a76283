"""``beaconproxy serve --workers 2``: workers ingest into their own spool segments, one primary process owns
the store (embedded chDB allows one process per data directory) and serves what needs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import CHROME_UA
from tests.proxy.test_cli import REPO, cli, env  # noqa: F401 - env is a fixture used below
from tests.support.serve import TEST_SECRETS


def post(port: str, body: object) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/events",
        data=orjson.dumps(body),
        headers={"Content-Type": "application/json", "User-Agent": CHROME_UA},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        status: int = r.status
        return status


def get(port: str, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
        data: bytes = r.read()
        return data


def count(environ: dict[str, str], where: str = "1") -> int:
    result = cli("query", f"SELECT count() AS n FROM events WHERE {where}", env=environ)
    assert result.returncode == 0, result.stderr
    n: int = orjson.loads(result.stdout)["n"]
    return n


def eventually(check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.2)


@pytest.fixture
def workers(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:  # noqa: F811
    environ = {**env, "BEACONPROXY_SERVER__SUPPRESSION_RELOAD_SECONDS": "0.2"}
    log = open(Path(environ["BEACONPROXY_DATA_DIR"]).parent / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "serve", "--workers", "2"],
        cwd=REPO,
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # so the test can stop the whole group, as a service manager would
    )
    try:
        eventually(lambda: _healthy(environ["BEACONPROXY_PORT"]) or proc.poll() is not None, 120)
        assert proc.poll() is None, "serve --workers 2 exited"
        yield proc, environ
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        log.close()


def _healthy(port: str) -> bool:
    try:
        return get(port, "/healthz") == b'{"status":"ok"}'
    except OSError:
        return False


def test_two_workers_one_store(workers: tuple[subprocess.Popen[bytes], dict[str, str]]) -> None:
    proc, environ = workers
    port = environ["BEACONPROXY_PORT"]
    with ThreadPoolExecutor(8) as pool:  # concurrent connections reach both workers
        statuses = list(
            pool.map(lambda n: post(port, {"site": "demo", "url": f"https://e.com/{n}"}), range(200))
        )
    assert statuses == [202] * 200
    eventually(lambda: count(environ) == 200)  # queried through the primary's admin listener

    def metric(name: str) -> float:
        for line in get(port, "/metrics").decode().splitlines():
            if line.startswith(name):
                return float(line.rsplit(" ", 1)[1])
        return -1.0

    eventually(lambda: metric('beacon_events_accepted_total{site="demo"}') == 200)  # both workers added up
    assert metric('beacon_request_seconds_count{endpoint="events"}') == 200  # their latencies too
    assert metric("beacon_cpu_seconds_total") > 0
    snapshots = [
        orjson.loads(p.read_bytes())
        for p in (Path(environ["BEACONPROXY_DATA_DIR"]) / "run/metrics").glob("*.json")
    ]
    assert len(snapshots) == 2
    assert all(s["accepted"] > 0 for s in snapshots), "one worker took no traffic"
    data_dir = Path(environ["BEACONPROXY_DATA_DIR"])
    token = (data_dir / "admin_token").read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    public = urllib.request.Request(f"http://127.0.0.1:{port}/admin/stats", headers=auth)
    with pytest.raises(urllib.error.HTTPError) as not_here:
        urllib.request.urlopen(public, timeout=30)
    not_here.value.close()
    assert not_here.value.code == 404  # the admin API is not on the public port, not even via a worker
    transport = httpx.HTTPTransport(uds=str(data_dir / "run" / "admin.sock"))
    with httpx.Client(transport=transport, base_url="http://admin", timeout=30) as admin:
        stats = admin.get("/admin/stats", headers=auth).json()
    assert stats["accepted"] == 200  # the primary's admin listener adds up the workers' counters too

    # The analysts' API through a worker: the key is made via the admin API, answered by the primary.
    made = cli("analyst-key", "create", "--site", "demo", env=environ)
    assert made.returncode == 0, made.stderr
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/stats/aggregate?site_id=demo&period=day&metrics=pageviews",
        headers={"Authorization": f"Bearer {made.stdout.strip()}"},
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        assert orjson.loads(r.read()) == {"results": {"pageviews": {"value": 200}}}

    # The dashboard through a worker: the primary opens the session (its Set-Cookie comes back), judges
    # the origin the client used (passed on by the worker), and answers the API for the cookie.
    origin = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=origin, timeout=30, follow_redirects=False) as web:
        signed = web.post(
            "/dashboard/session",
            content=f"key={made.stdout.strip()}".encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": origin},
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/dashboard/demo", signed.text
        cookie = signed.headers["set-cookie"].split(";")[0]
        assert cookie.startswith("bp_dashboard=")  # plain http on loopback: not Secure
        web.cookies.clear()
        query = {"site_id": "demo", "metrics": ["pageviews"], "date_range": "day"}
        ok = web.post("/api/v2/query", json=query, headers={"Cookie": cookie, "Origin": origin})
        assert ok.status_code == 200 and ok.json()["results"] == [{"dimensions": [], "metrics": [200]}]
        elsewhere = {"Cookie": cookie, "Origin": "http://evil.example"}
        assert web.post("/api/v2/query", json=query, headers=elsewhere).status_code == 403
        spoofed = {**elsewhere, "X-Beaconproxy-Origin": "http://evil.example"}  # replaced by the worker
        assert web.post("/api/v2/query", json=query, headers=spoofed).status_code == 403
        page = web.get("/dashboard/demo", headers={"Cookie": cookie})
        assert page.status_code == 200 and 'data-site="demo"' in page.text
        assert web.get("/dashboard/assets/app.css").status_code == 200  # served by the worker itself

    # A block made through the admin API (the primary's admin socket) reaches both workers.
    blocked = cli("subject", "block", "--site", "demo", "--client-id", "w-raw-1", env=environ)
    assert blocked.returncode == 0, blocked.stderr
    time.sleep(1)
    consented = {
        "site": "demo",
        "url": "https://e.com/blocked",
        "client_id": "w-raw-1",
        "consent": {"analytics": True},
    }
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda _: post(port, consented), range(8))) == [202] * 8
    eventually(lambda: count(environ, "url = 'https://e.com/blocked'") == 8)
    assert count(environ, "client_id IS NOT NULL") == 0

    # Consent withdrawal is forwarded to the primary, which rate-limits it for every worker (10 a minute
    # per client by default), keyed by the prefix the worker resolved: a client's own claim is replaced.
    def withdraw(n: int) -> int:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/consent/withdraw",
            data=orjson.dumps({"site": "demo", "client_id": "w-raw-2"}),
            headers={
                "Content-Type": "application/json",
                "Origin": "https://example.com",
                "X-Beaconproxy-Client": f"198.51.100.{n}",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    with ThreadPoolExecutor(4) as pool:
        withdrawals = list(pool.map(withdraw, range(14)))
    assert sorted(withdrawals) == [200] * 10 + [429] * 4

    # Late events, then a group-wide SIGTERM: workers seal, the primary ships, nothing is left behind.
    for n in range(20):
        assert post(port, {"site": "demo", "url": f"https://e.com/late{n}"}) == 202
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(90)
    spool = Path(environ["BEACONPROXY_DATA_DIR"]) / "spool"
    assert not list(spool.glob("*.seg")) and not list(spool.glob("*.open"))
    assert count(environ) == 228  # the store opened directly now that the proxy is gone


def test_two_workers_with_a_remote_store(tmp_path: Path, env: dict[str, str]) -> None:  # noqa: F811
    from tests.support.ch_http import clickhouse_http_server

    with clickhouse_http_server(tmp_path / "remote") as dsn:
        # a remote store: the workers' salt comes from the store, through the primary's cache
        environ = {**env, "BEACONPROXY_CLICKHOUSE__DSN": dsn, **TEST_SECRETS}
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "serve", "--workers", "2"],
            cwd=REPO,
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            port = environ["BEACONPROXY_PORT"]
            eventually(lambda: _healthy(port) or proc.poll() is not None, 120)
            with ThreadPoolExecutor(8) as pool:
                statuses = list(
                    pool.map(lambda n: post(port, {"site": "demo", "url": f"https://e.com/{n}"}), range(50))
                )
            assert statuses == [202] * 50
            eventually(lambda: count(environ) == 50)
            os.killpg(proc.pid, signal.SIGTERM)
            assert proc.wait(90) in (0, -signal.SIGTERM)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)


def _primary_pid(data_dir: str) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--primary-socket" in args and any(data_dir.encode() in a for a in args):
            return int(entry.name)
    return None


def test_a_killed_primary_is_started_again_and_nothing_accepted_is_lost(
    workers: tuple[subprocess.Popen[bytes], dict[str, str]],
) -> None:
    proc, environ = workers
    port, data_dir = environ["BEACONPROXY_PORT"], environ["BEACONPROXY_DATA_DIR"]
    for n in range(20):
        assert post(port, {"site": "demo", "url": f"https://e.com/before{n}"}) == 202
    first = _primary_pid(data_dir)
    assert first is not None
    assert readyz(port) == (200, "ready")  # a worker is ready while the primary (which ships) is
    os.kill(first, signal.SIGKILL)
    for n in range(20):  # the workers keep accepting into their spool segments meanwhile
        assert post(port, {"site": "demo", "url": f"https://e.com/during{n}"}) == 202
    assert readyz(port)[0] == 503  # ...but say that nothing ships until it is back
    eventually(lambda: (pid := _primary_pid(data_dir)) is not None and pid != first, 120)
    eventually(lambda: _count_or_none(environ) == 40, 120)
    eventually(lambda: readyz(port) == (200, "ready"), 60)
    assert proc.poll() is None


def readyz(port: str) -> tuple[int, str]:
    """A worker's /readyz: its status and what it says of the primary."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=30) as r:
            return r.status, orjson.loads(r.read())["primary"]["status"]
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, orjson.loads(exc.read())["primary"]["status"]


def _count_or_none(environ: dict[str, str]) -> int | None:
    result = cli("query", "SELECT count() AS n FROM events", env=environ)
    if result.returncode != 0:
        return None  # the new primary is still starting
    n: int = orjson.loads(result.stdout)["n"]
    return n
