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

from proxy.cli import main
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
    assert "readonly" in bad.stderr.lower()

    server.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status reports it
    assert server.wait(30) in (0, -signal.SIGTERM)
    log = server.stdout.read() if server.stdout else ""
    assert "Application shutdown complete" in log
    assert "203.0.113.77" not in log
    assert not (Path(env["BEACONPROXY_DATA_DIR"]) / "run" / "proxy.json").exists()

    stopped = cli("query", sql, env=env)  # opens the embedded store itself
    assert stopped.returncode == 0, stopped.stderr
    assert [orjson.loads(line) for line in stopped.stdout.splitlines()] == [expected]


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
