"""The README's flow with real processes: serve, curl-like POST, `beaconproxy query` while running and
after a graceful stop. chDB allows one process per data directory, so the server runs in its own process.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from config.schema import TABLES
from proxy.cli import main
from proxy.subjects import NOTHING_LINKABLE
from tests.conftest import CHROME_UA

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def env(tmp_path: Path, geoip_files: tuple[str, str]) -> dict[str, str]:
    data = tmp_path / "data"
    (data / "geoip").mkdir(parents=True)
    for f in geoip_files:
        shutil.copy(f, data / "geoip")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BEACONPROXY_")}
    return {
        **clean,
        "BEACONPROXY_DATA_DIR": str(data),
        "BEACONPROXY_PORT": str(free_port()),
        "BEACONPROXY_BATCH__MAX_AGE_SECONDS": "0.1",
    }


@pytest.fixture
def server(env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "serve"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{env['BEACONPROXY_PORT']}/healthz"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("server did not become healthy")
        time.sleep(0.1)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def post_event(port: str, body: dict[str, object], xff: str) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/events",
        data=orjson.dumps(body),
        headers={"Content-Type": "application/json", "User-Agent": CHROME_UA, "X-Forwarded-For": xff},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        status: int = r.status
        return status


def test_serve_post_query_stop_query(server: subprocess.Popen[str], env: dict[str, str]) -> None:
    port = env["BEACONPROXY_PORT"]
    body = {
        "site": "demo",
        "url": "https://example.com/pricing?utm_source=news&email=jo@example.com#top",
        "client_id": "abc-123",
        "props": {"plan": "pro", "email": "jo@example.com"},
    }
    assert post_event(port, body, "203.0.113.77") == 202
    sql = "SELECT url, ip, country, browser, client_id, props FROM events"
    expected = {
        "url": "https://example.com/pricing?utm_source=news",
        "ip": "203.0.113.0",
        "country": "NZ",
        "browser": "Chrome",
        "client_id": None,
        "props": {"plan": "pro"},
    }
    deadline = time.monotonic() + 30
    while True:  # rows land in batches (max_age 0.1 s here)
        running = cli("query", sql, env=env)
        assert running.returncode == 0, running.stderr
        if running.stdout.strip():
            break
        assert time.monotonic() < deadline, "row never became visible"
        time.sleep(0.2)
    assert [orjson.loads(line) for line in running.stdout.splitlines()] == [expected]

    bad = cli("query", "DROP TABLE events", env=env)
    assert bad.returncode == 1
    assert "DROP is not allowed" in bad.stderr
    assert_admin_sql_is_confined(env)  # through the running proxy's admin endpoint

    server.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status reports it
    assert server.wait(30) in (0, -signal.SIGTERM)
    log = server.stdout.read() if server.stdout else ""
    assert "Application shutdown complete" in log
    entries = [orjson.loads(line) for line in log.splitlines() if line.strip()]  # JSON lines, all of them
    assert {"ts", "level", "logger", "msg"} <= set(entries[0])
    assert "203.0.113.77" not in log
    assert not (Path(env["BEACONPROXY_DATA_DIR"]) / "run" / "admin.sock").exists()

    stopped = cli("query", sql, env=env)  # opens the embedded store itself
    assert stopped.returncode == 0, stopped.stderr
    assert [orjson.loads(line) for line in stopped.stdout.splitlines()] == [expected]
    assert_admin_sql_is_confined(env)  # the same check, with the store opened by the command


def assert_admin_sql_is_confined(env: dict[str, str]) -> None:
    data = Path(env["BEACONPROXY_DATA_DIR"])
    secrets = [(data / name).read_text().strip() for name in ("admin_token", "pseudonym_secret")]
    for sql, says in (
        (f"SELECT file('{data / 'admin_token'}')", "function file() is not allowed"),
        (f"SELECT * FROM url('file://{data / 'pseudonym_secret'}', 'RawBLOB')", "table function url()"),
    ):
        refused = cli("query", sql, env=env)
        assert refused.returncode == 1, refused.stdout
        assert says in refused.stderr
        assert not any(secret in refused.stdout + refused.stderr for secret in secrets)


def test_unknown_setting_fails_at_start_naming_the_key(env: dict[str, str]) -> None:
    result = cli("serve", env={**env, "BEACONPROXY_PRIVACY__IPV4_BITS": "16"})
    assert result.returncode == 2
    assert "BEACONPROXY_PRIVACY__IPV4_BITS" in result.stderr


def test_unknown_key_in_config_file_fails(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[server]\nmax_body = 5\n")
    result = cli("--config", str(cfg), "config", env=env)
    assert result.returncode == 2
    assert "server.max_body" in result.stderr


def test_config_command_hides_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BEACONPROXY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BEACONPROXY_PRIVACY__PSEUDONYM_SECRET", "a-very-secret-key-123")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "a-very-secret-key-123" not in out
    data = orjson.loads(out)
    assert data["privacy"]["pseudonym_secret"] == "***"
    assert data["clickhouse"]["dsn"] == f"chdb://{tmp_path}/clickhouse"


def test_config_command_hides_dsn_passwords(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BEACONPROXY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BEACONPROXY_CLICKHOUSE__DSN", "https://writer:w-pass-1@ch.example:8443")
    monkeypatch.setenv(
        "BEACONPROXY_CLICKHOUSE__ADMIN_QUERY", '{"dsn": "https://reader:r-pass-2@ch.example:8443"}'
    )
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "w-pass-1" not in out and "r-pass-2" not in out
    data = orjson.loads(out)
    assert data["clickhouse"]["admin_query"]["dsn"] == "https://***@ch.example:8443"


def test_config_command_hides_every_secret_of_a_remote_deployment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """DSN passwords (main and named stores, also one given as a query parameter), the admin token,
    the pseudonym secret and each site's pseudonym keys."""
    planted = {
        "BEACONPROXY_DATA_DIR": str(tmp_path),
        "BEACONPROXY_CLICKHOUSE__DSN": "https://writer:main-PLANTED-pw@ch.example:8443/?password=q-PLANTED",
        "BEACONPROXY_CLICKHOUSE__STORES__EU__DSN": "https://eu:eu-PLANTED-pw@eu.example:8443",
        "BEACONPROXY_SERVER__ADMIN_TOKEN": "admin-PLANTED-token-0123",
        "BEACONPROXY_PRIVACY__PSEUDONYM_SECRET": "pseudonym-PLANTED-0123",
        "BEACONPROXY_SITES__DEMO__PSEUDONYM_KEYS": '["sitekey-PLANTED-0123456", "old-sitekey-PLANTED-0123"]',
    }
    for key, value in planted.items():
        monkeypatch.setenv(key, value)
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "PLANTED" not in out
    data = orjson.loads(out)
    assert data["clickhouse"]["dsn"] == "https://***@ch.example:8443/?password=***"
    assert data["clickhouse"]["stores"]["eu"]["dsn"] == "https://***@eu.example:8443"
    assert data["sites"]["demo"]["pseudonym_keys"] == ["***", "***"]
    assert data["server"]["admin_token"] == data["privacy"]["pseudonym_secret"] == "***"


# --- data-subject requests and the inventory from the command line -------------------------------------

RAW_X = "cid-RAW-cli-X-6b1d"
RAW_Y = "cid-RAW-cli-Y-2c9e"
RAW_Z = "cid-RAW-cli-Z-8f07"


def consented(path: str, client_id: str) -> dict[str, object]:
    return {
        "site": "demo",
        "url": f"https://example.com{path}",
        "client_id": client_id,
        "consent": {"analytics": True},
    }


def cli_json(*args: str, env: dict[str, str]) -> dict[str, object]:
    result = cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    doc: dict[str, object] = orjson.loads(result.stdout)
    return doc


def query_rows(sql: str, env: dict[str, str], want: int, timeout: float = 30) -> list[dict[str, object]]:
    """`beaconproxy query`, repeated until ``want`` rows are visible (rows land in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        result = cli("query", sql, env=env)
        assert result.returncode == 0, result.stderr
        rows = [orjson.loads(line) for line in result.stdout.splitlines() if line]
        if len(rows) >= want:
            return rows
        assert time.monotonic() < deadline, f"only {len(rows)} of {want} rows became visible"
        time.sleep(0.2)


def stop(server: subprocess.Popen[str], env: dict[str, str]) -> str:
    server.send_signal(signal.SIGTERM)
    assert server.wait(30) in (0, -signal.SIGTERM)
    assert not (Path(env["BEACONPROXY_DATA_DIR"]) / "run" / "admin.sock").exists()
    return server.stdout.read() if server.stdout else ""


def test_subject_requests_go_through_the_running_proxy_then_open_the_store(
    server: subprocess.Popen[str], env: dict[str, str]
) -> None:
    port = env["BEACONPROXY_PORT"]
    for body in (consented("/x", RAW_X), consented("/y", RAW_Y)):
        assert post_event(port, body, "203.0.113.77") == 202

    # the service stores what is still batched before it looks, so no waiting here
    exported = cli_json("subject", "export", "--site", "demo", "--client-id", RAW_X, env=env)
    assert (exported["action"], exported["kind"], exported["rows"]) == ("export", "client_id", 1)
    [event] = exported["events"]  # type: ignore[misc]
    assert event["url"] == "https://example.com/x"
    assert event["client_id"] == exported["pseudonym"]
    as_csv = cli("subject", "export", "--site", "demo", "--client-id", RAW_X, "--format", "csv", env=env)
    assert as_csv.returncode == 0, as_csv.stderr
    header, row = as_csv.stdout.strip().splitlines()
    assert "client_id" in header and "https://example.com/x" in row
    for text in (orjson.dumps(exported).decode(), as_csv.stdout):
        assert RAW_X not in text

    # a block through the proxy reaches its in-memory suppression list at once
    blocked = cli_json("subject", "block", "--site", "demo", "--client-id", RAW_Z, env=env)
    assert (blocked["action"], blocked["rows"]) == ("block", 0)
    assert post_event(port, consented("/z", RAW_Z), "203.0.113.77") == 202
    [z_row] = query_rows("SELECT client_id, consent FROM events WHERE url LIKE '%/z'", env, 1)
    assert z_row == {"client_id": None, "consent": []}

    deleted = cli_json("subject", "delete", "--site", "demo", "--client-id", RAW_X, env=env)
    assert (deleted["action"], deleted["rows"]) == ("delete", 1)
    gone = cli_json("subject", "export", "--site", "demo", "--client-id", RAW_X, env=env)
    assert (gone["rows"], gone["events"]) == (0, [])
    assert gone["note"] == NOTHING_LINKABLE

    log = stop(server, env)
    assert RAW_X not in log and RAW_Z not in log

    # stopped: the command opens the embedded store itself
    direct = cli_json("subject", "export", "--site", "demo", "--client-id", RAW_X, env=env)
    assert direct["rows"] == 0
    assert direct["note"] == gone["note"]
    assert direct["pseudonym"] == exported["pseudonym"]
    still = cli_json("subject", "export", "--site", "demo", "--client-id", RAW_Y, env=env)
    assert [e["url"] for e in still["events"]] == ["https://example.com/y"]  # type: ignore[attr-defined]
    csv_note = cli("subject", "export", "--site", "demo", "--client-id", RAW_X, "--format", "csv", env=env)
    assert csv_note.returncode == 0
    assert direct["note"] in csv_note.stderr

    audit = query_rows("SELECT action, kind, rows, actor FROM audit_log ORDER BY time", env, 8)
    via_socket = f"admin-socket:uid={os.getuid()}"  # the proxy's admin socket, and who connected to it
    assert [(a["action"], a["kind"], a["rows"], a["actor"]) for a in audit] == [
        ("export", "client_id", 1, via_socket),  # through the proxy
        ("export", "client_id", 1, via_socket),
        ("block", "client_id", 0, via_socket),
        ("delete", "client_id", 1, via_socket),
        ("export", "client_id", 0, via_socket),
        ("export", "client_id", 0, "admin-cli"),  # directly on the store
        ("export", "client_id", 1, "admin-cli"),
        ("export", "client_id", 0, "admin-cli"),
    ]
    every_table = " UNION ALL ".join(
        f"SELECT toString(tuple(*)) AS row FROM {t}" for t in ("audit_log", "suppressions", "events")
    )
    everything = query_rows(every_table, env, 8 + 1 + 2)
    assert len(everything) == 8 + 1 + 2  # audit rows, one block, the rows of Y and Z
    for raw in (RAW_X, RAW_Y, RAW_Z):
        assert raw not in str(everything)

    unknown = cli("subject", "export", "--site", "nope", "--client-id", RAW_X, env=env)
    assert unknown.returncode == 1
    assert "unknown site" in unknown.stderr and RAW_X not in unknown.stderr


def test_subject_command_needs_exactly_one_identifier(env: dict[str, str]) -> None:
    neither = cli("subject", "export", "--site", "demo", env=env)
    assert neither.returncode == 2
    both = cli("subject", "delete", "--site", "demo", "--client-id", "a", "--user-id", "b", env=env)
    assert both.returncode == 2


def test_inventory_while_running_and_stopped(server: subprocess.Popen[str], env: dict[str, str]) -> None:
    running = cli("inventory", env=env)
    assert running.returncode == 0, running.stderr
    inventory = orjson.loads(running.stdout)
    assert set(inventory["tables"]) == set(TABLES)
    assert inventory["tables"]["events"]["client_id"]["consent"] == ["analytics"]
    assert inventory["tables"]["events"]["client_id"]["retention_days"] == 90
    stop(server, env)
    stopped = cli("inventory", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert orjson.loads(stopped.stdout) == inventory


def test_a_cli_block_on_a_remote_store_reaches_the_running_proxy(tmp_path: Path, env: dict[str, str]) -> None:
    from tests.support.ch_http import clickhouse_http_server

    with clickhouse_http_server(tmp_path / "remote") as dsn:
        remote = {
            **env,
            "BEACONPROXY_CLICKHOUSE__DSN": dsn,
            "BEACONPROXY_SERVER__SUPPRESSION_RELOAD_SECONDS": "0.1",
            # a remote store: every replica must be given the same secrets
            "BEACONPROXY_PRIVACY__PSEUDONYM_SECRET": "test-pseudonym-secret-0123456789",
            "BEACONPROXY_SERVER__ADMIN_TOKEN": "test-admin-token-0123456789",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "serve"],
            cwd=REPO,
            env=remote,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            port = remote["BEACONPROXY_PORT"]
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, "server exited"
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "server did not become healthy"
                time.sleep(0.1)
            blocked = cli_json("subject", "block", "--site", "demo", "--client-id", RAW_X, env=remote)
            assert blocked["action"] == "block"
            time.sleep(1)  # the running proxy re-reads the suppression list every 0.1 s here
            assert post_event(port, consented("/after-block", RAW_X), "203.0.113.77") == 202
            [row] = query_rows("SELECT client_id FROM events", remote, 1)
            assert row["client_id"] is None
        finally:
            proc.terminate()
            proc.wait(30)


def test_a_second_serve_on_the_same_data_dir_refuses_to_start(
    server: subprocess.Popen[str], env: dict[str, str]
) -> None:
    second = cli("serve", env={**env, "BEACONPROXY_PORT": str(free_port())}, timeout=60)
    assert second.returncode == 1
    assert "holds" in second.stderr and f"pid {server.pid}" in second.stderr
    assert post_event(env["BEACONPROXY_PORT"], {"site": "demo", "url": "https://e.com/"}, "1.2.3.4") == 202


def test_every_file_the_proxy_creates_is_private_to_its_user(
    server: subprocess.Popen[str], env: dict[str, str]
) -> None:
    data = Path(env["BEACONPROXY_DATA_DIR"])
    os.chmod(data, 0o755)  # as a careless install might leave it; serve made it private at start
    stop(server, env)
    restarted = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "serve"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert restarted.poll() is None and time.monotonic() < deadline
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{env['BEACONPROXY_PORT']}/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        assert (
            post_event(env["BEACONPROXY_PORT"], {"site": "demo", "url": "https://e.com/p"}, "1.2.3.4") == 202
        )
        assert cli("query", "SELECT count() FROM events", env=env).returncode == 0
        assert data.stat().st_mode & 0o777 == 0o700
        created = [
            p for p in data.rglob("*") if "geoip" not in p.relative_to(data).parts
        ]  # geoip: the test's
        assert len(created) > 20  # the store, the spool, the secrets, the salts, the sockets
        # (a symlink's own mode is always 777 and never used: what it points to is checked itself)
        shared = [
            str(p.relative_to(data)) for p in created if not p.is_symlink() and p.lstat().st_mode & 0o077
        ]
        assert shared == []
    finally:
        restarted.terminate()
        restarted.wait(30)
