"""Shared fixtures.

chDB allows one data path per process, so the whole test session shares one embedded store and each test
gets its own database in it. Tests that need another store start another process.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import clickhouse_connect
import orjson
import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis.database import DirectoryBasedExampleDatabase
from starlette.testclient import TestClient

from config.settings import Settings, load_settings
from proxy.app import create_app
from tests.support.mmdb import write_dbip_flat

if TYPE_CHECKING:
    from tests.support.serve import Processes

CHROME_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
_db_counter = itertools.count(1)

# Property tests: a modest number of examples per test keeps `make test` quick
# (HYPOTHESIS_MAX_EXAMPLES raises it for a deeper run); no deadline, since the box is shared and noisy.
# Failing examples are remembered outside the repository (none at all under CI).
hypothesis_settings.register_profile(
    "beacon",
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None
    if os.environ.get("CI")
    else DirectoryBasedExampleDatabase(os.path.expanduser("~/.cache/beaconproxy-hypothesis")),
)
hypothesis_settings.load_profile("beacon")


@pytest.fixture(scope="session")
def chdb_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"chdb://{tmp_path_factory.mktemp('chdb')}/clickhouse"


@pytest.fixture(scope="session")
def ch(chdb_dsn: str) -> Client:
    """A client on the session's embedded store, for assertions."""
    return clickhouse_connect.get_client(dsn=chdb_dsn)


@pytest.fixture(scope="session")
def geoip_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    d = tmp_path_factory.mktemp("geoip")
    v4, v6 = write_dbip_flat(d / "dbip-city-ipv4.mmdb", d / "dbip-city-ipv6.mmdb")
    return str(v4), str(v6)


@pytest.fixture
def database() -> str:
    return f"t{next(_db_counter)}"


@pytest.fixture
def make_settings(
    tmp_path: Path, chdb_dsn: str, geoip_files: tuple[str, str], database: str
) -> Callable[..., Settings]:
    """Settings for one test: its own data dir and database, the test GeoIP files, two sites."""

    def make(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "data_dir": str(tmp_path / "data"),
            "clickhouse": {"dsn": chdb_dsn, "database": database},
            "geoip": {"databases": list(geoip_files)},
            "batch": {"max_age_seconds": 0.05},
            "sites": {
                "demo": {"allowed_origins": ["*"]},
                "shop": {
                    "allowed_origins": ["https://shop.example.com", "https://*.example.org"],
                    "without_consent": "drop",
                },
            },
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        return load_settings(environ={}, **base)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def client_factory(settings: Settings) -> Iterator[Callable[..., TestClient]]:
    """TestClients on one app, each with its own socket peer address.

    The first one is entered (runs the app's lifespan: sink, spool, shipper); the others only send requests.
    """
    app = create_app(settings)
    owner = TestClient(app, client=("127.0.0.1", 50000))
    owner.__enter__()

    def make(peer: str = "127.0.0.1", **kwargs: Any) -> TestClient:
        return TestClient(app, client=(peer, 50000), **kwargs)

    try:
        yield make
    finally:
        owner.__exit__(None, None, None)


@pytest.fixture
def client(client_factory: Callable[..., TestClient]) -> TestClient:
    return client_factory("127.0.0.1")


def stored_rows(ch: Client, database: str, app_client: TestClient | None = None) -> list[dict[str, Any]]:
    """Every stored row of the test's events table, after the app shipped everything it accepted."""
    if app_client is not None:
        assert app_client.app.state.rt.flush(10), "accepted events were not shipped"  # type: ignore[attr-defined]
    raw = ch.raw_query(f"SELECT * FROM {database}.events ORDER BY ts, event_id", fmt="JSONEachRow")
    return [orjson.loads(line) for line in bytes(raw).splitlines() if line]


def stored_text(ch: Client, database: str) -> str:
    """The whole table as text (every column of every row), for leak searches."""
    raw = ch.raw_query(f"SELECT * FROM {database}.events", fmt="TabSeparatedWithNames")
    return bytes(raw).decode()


def admin(app_client: TestClient) -> TestClient:
    """A client of the app's admin listener (served on its own socket by ``serve``; reached here in
    process, on the same runtime)."""
    app: Any = app_client.app
    if not hasattr(app.state, "admin_test_client"):
        app.state.admin_test_client = TestClient(app.state.admin_app, client=("uid=0", 4242))
    client: TestClient = app.state.admin_test_client
    return client


def new_analyst_key(app_client: TestClient, token: str, *sites: str) -> str:
    """A new analyst key for ``sites``, made on the admin listener with the admin ``token``."""
    r = admin(app_client).post(
        "/admin/analyst-keys", json={"sites": list(sites)}, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Every subprocess a test starts (tests.support.serve), killed at teardown whatever happened."""
    from tests.support.serve import Processes  # it imports this module

    p = Processes(tmp_path)
    try:
        yield p
    finally:
        p.cleanup()
