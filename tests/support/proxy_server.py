"""A real ``beaconproxy serve`` process on a free port, for tests whose client is a real program
(a browser, a vendor SDK) that must talk HTTP to the proxy.

The proxy gets its own data directory (so its own embedded store) and a TOML config written from the
test's ``config`` text. Rows are read back through the proxy's own ``POST /admin/query``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

REPO = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "test-admin-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RunningProxy:
    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_socket(self) -> Path:
        return self.data_dir / "run" / "admin.sock"

    def admin(self, method: str, path: str, body: bytes | None = None) -> httpx.Response:
        """A call to the proxy's admin listener (its unix socket)."""
        transport = httpx.HTTPTransport(uds=str(self.admin_socket))
        with httpx.Client(transport=transport, base_url="http://admin", timeout=30) as client:
            return client.request(
                method, path, content=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )

    def query(self, sql: str) -> list[dict[str, Any]]:
        r = self.admin("POST", "/admin/query", sql.encode())
        r.raise_for_status()
        return [orjson.loads(line) for line in r.content.splitlines() if line]

    def rows(self, where: str = "1", want: int = 1, timeout: float = 30) -> list[dict[str, Any]]:
        """Rows of ``beacon.events`` matching ``where``, polled until ``want`` are visible (rows land in
        batches); then a short settle so that rows beyond ``want`` would show up too."""
        sql = f"SELECT * FROM beacon.events WHERE {where} ORDER BY ts, event_id"
        deadline = time.monotonic() + timeout
        while True:
            rows = self.query(sql)
            if len(rows) >= want:
                time.sleep(0.5)
                return self.query(sql)
            if time.monotonic() > deadline:
                return rows
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"proxy exited at start:\n{log_path.read_text(errors='replace')}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url + "/healthz", timeout=1) as r:
            if r.status == 200:
                return
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"proxy did not become healthy:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.1)


def _limit_files(n: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))


@contextlib.contextmanager
def running_proxy(
    workdir: Path,
    geoip_files: tuple[str, ...],
    config: str = "",
    env: dict[str, str] | None = None,
    *,
    workers: int = 1,
    max_open_files: int | None = None,
) -> Iterator[RunningProxy]:
    """Start the proxy with ``config`` (TOML text; ``[sites.*]`` and so on) and stop it afterwards;
    ``workers`` > 1 runs ``serve --workers N``; ``max_open_files`` sets its hard RLIMIT_NOFILE."""
    data = workdir / "proxy-data"
    (data / "geoip").mkdir(parents=True)
    for f in geoip_files:
        shutil.copy(f, data / "geoip")
    config_file = workdir / "proxy.toml"
    config_file.write_text(config)
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BEACONPROXY_")}
    full_env = {
        **clean,
        "BEACONPROXY_CONFIG": str(config_file),
        "BEACONPROXY_DATA_DIR": str(data),
        "BEACONPROXY_PORT": str(port),
        "BEACONPROXY_SERVER__ADMIN_TOKEN": ADMIN_TOKEN,
        "BEACONPROXY_BATCH__MAX_AGE_SECONDS": "0.1",
        **(env or {}),
    }
    log_path = workdir / "proxy.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "serve", "--workers", str(workers)],
            cwd=REPO,
            env=full_env,
            stdout=log,
            stderr=log,
            preexec_fn=None if max_open_files is None else functools.partial(_limit_files, max_open_files),
        )
    try:
        _wait_healthy(proc, f"http://127.0.0.1:{port}", log_path)
        yield RunningProxy(proc, port, data, log_path)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
