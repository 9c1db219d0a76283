"""Several ``beaconproxy serve`` replicas on one machine sharing one store, for the scale-out tests.

The store is the ClickHouse-HTTP fixture (tests.support.ch_http), or a real ClickHouse server when
``CLICKHOUSE_TEST_DSN`` is set (``http(s)://user:password@host:port``; each test then works in a database
of its own, dropped at the end). A replica reaches the store through its own TCP relay
(tests.support.relay), which the test can cut to make the store unreachable for that replica only.
"""

from __future__ import annotations

import http.client
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import orjson
import pytest
from clickhouse_connect.driver.client import Client

from tests.conftest import CHROME_UA
from tests.support.relay import Relay
from tests.support.serve import TEST_SECRETS, ChFixture, Processes, Proxy

REAL_DSN = os.environ.get("CLICKHOUSE_TEST_DSN", "")


def fixture_only(reason: str) -> pytest.MarkDecorator:
    """For what only the fixture can do (a restricted user, two stores at once on one machine)."""
    return pytest.mark.skipif(bool(REAL_DSN), reason=f"needs the ClickHouse-HTTP fixture: {reason}")


class SharedStore:
    def __init__(
        self,
        processes: Processes,
        data_dir: Path,
        *,
        password: str = "",
        restricted: tuple[str, str] | None = None,
    ) -> None:
        self.processes = processes
        self.database = f"bp_{uuid.uuid4().hex[:12]}"
        self.fixture: ChFixture | None = None
        if REAL_DSN:
            self.dsn = REAL_DSN
        else:
            self.fixture = ChFixture(processes, data_dir, password=password, restricted=restricted)
            self.fixture.start()
            self.dsn = self.fixture.dsn
        self.relays: list[Relay] = []
        self._client: Client | None = None

    def relay(self) -> Relay:
        """A relay of its own in front of the store (one per replica that a test may cut off)."""
        relay = Relay.for_dsn(self.dsn)
        self.relays.append(relay)
        return relay

    def env(self, relay: Relay | None = None, *, dsn: str | None = None, **extra: str) -> dict[str, str]:
        """What a replica of this store is started with."""
        target = dsn or self.dsn
        return {
            "BEACONPROXY_CLICKHOUSE__DSN": relay.dsn(target) if relay else target,
            "BEACONPROXY_CLICKHOUSE__DATABASE": self.database,
            "BEACONPROXY_SERVER__SUPPRESSION_RELOAD_SECONDS": "0.5",
            "BEACONPROXY_SERVER__REPLICA_HEARTBEAT_SECONDS": "0.5",
            **TEST_SECRETS,
            **extra,
        }

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = clickhouse_connect.get_client(dsn=self.dsn, autogenerate_session_id=False)
        return self._client

    def rows(self, sql: str, **parameters: Any) -> list[dict[str, Any]]:
        """``sql`` with ``{db}`` for the test's database, as one dict per row."""
        data = self.client.raw_query(
            sql.replace("{db}", self.database),
            parameters=parameters,
            fmt="JSONEachRow",
            settings={"output_format_json_quote_64bit_integers": 0},
        )
        return [orjson.loads(line) for line in bytes(data).splitlines() if line]

    def count(self, sql: str, **parameters: Any) -> int:
        return int(self.rows(sql, **parameters)[0]["n"])

    def close(self) -> None:
        for relay in self.relays:
            relay.close()
        if REAL_DSN and self._client is not None:
            self._client.command(f"DROP DATABASE IF EXISTS {self.database}")
        if self._client is not None:
            self._client.close()


def replica(processes: Processes, data_dir: Path, env: dict[str, str], *, start: bool = True) -> Proxy:
    proxy = Proxy(processes, data_dir, **env)
    if start:
        proxy.start()
    return proxy


def post(
    proxy: Proxy,
    events: list[dict[str, Any]],
    *,
    ip: str = "198.51.100.7",
    ua: str = CHROME_UA,
) -> int:
    """POST events as a browser at ``ip`` behind the (trusted, loopback) balancer would send them."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    try:
        conn.request(
            "POST",
            "/v1/events",
            body=orjson.dumps(events),
            headers={"Content-Type": "application/json", "User-Agent": ua, "X-Forwarded-For": ip},
        )
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def admin_json(proxy: Proxy, method: str, path: str, body: Any = None) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(
        proxy.admin(method, path, orjson.dumps(body) if body is not None else None)
    )
    return doc


def subject(proxy: Proxy, action: str, site: str, client_id: str) -> dict[str, Any]:
    return admin_json(proxy, "POST", f"/admin/subjects/{action}", {"site": site, "client_id": client_id})


def readyz_body(proxy: Proxy) -> dict[str, Any]:
    return proxy.readyz()[1]


def sink_started(proxy: Proxy) -> bool:
    body = readyz_body(proxy)
    return bool(body.get("sink_healthy"))


def log_text(proxies: Iterator[Proxy] | list[Proxy]) -> str:
    return "\n".join(p.log_path.read_text(errors="replace") for p in proxies if p.log_path is not None)
