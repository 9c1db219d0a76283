"""Stats fixtures: a test database with the proxy's schema, rows planted by hand, an engine over it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from config.settings import Settings
from proxy.model import EVENT_COLUMNS
from proxy.stats.engine import StatsEngine
from proxy.stats.parse import parse_v2
from proxy.stats.query import Query
from proxy.stats.referrers import Referrers
from sinks.clickhouse import ClickHouseSink

SITES = {
    "demo": {"allowed_origins": ["*"]},
    "ny": {"allowed_origins": ["*"], "timezone": "America/New_York"},
    "shop": {"allowed_origins": ["https://shop.example.com"]},
}
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


def ev(site: str, ts: str, vh: int, page: str = "/", **fields: Any) -> dict[str, Any]:
    """One events row; ``ts`` is UTC ``YYYY-MM-DD HH:MM:SS``."""
    row: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "site": site,
        "ts": datetime.fromisoformat(ts).replace(tzinfo=UTC),
        "type": "pageview",
        "name": "pageview",
        "url": f"https://{site}.example{page}",
        "referrer": "",
        "title": "",
        "utm_source": "",
        "utm_medium": "",
        "utm_campaign": "",
        "utm_term": "",
        "utm_content": "",
        "props": {},
        "ip": "192.0.2.0",
        "country": "DE",
        "region": "Berlin",
        "city": "",
        "latitude": None,
        "longitude": None,
        "browser": "Firefox",
        "browser_version": "120",
        "os": "Linux",
        "os_version": "",
        "device": "desktop",
        "language": "en",
        "screen_width": None,
        "screen_height": None,
        "engagement_ms": None,
        "visitor_hash": vh,
        "client_id": None,
        "user_id": None,
        "session_id": None,
        "click_ids": {},
        "consent": [],
    }
    row.update(fields)
    return row


@dataclass
class Store:
    settings: Settings
    sink: ClickHouseSink
    engine: StatsEngine

    def insert(self, rows: list[dict[str, Any]]) -> None:
        self.sink.client.insert(
            f"{self.settings.clickhouse.database}.events",
            [[r[c] for c in EVENT_COLUMNS] for r in rows],
            column_names=list(EVENT_COLUMNS),
        )

    def query(self, doc: dict[str, Any], now: datetime = NOW) -> Query:
        return parse_v2(doc, self.engine.context(doc["site_id"], now))

    def run(self, doc: dict[str, Any], now: datetime = NOW) -> list[tuple[list[Any], list[Any]]]:
        return self.engine.run(self.query(doc, now)).rows


@pytest.fixture
def make_store(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., Store]]:
    made: list[Store] = []

    def make(**analytics: Any) -> Store:
        settings = make_settings(
            sites=SITES,
            clickhouse={"retention_days": 3650},
            analytics={"min_visitors": 1, **analytics},
        )
        sink = ClickHouseSink(settings.clickhouse_dsn, settings.clickhouse)
        sink.start()
        store = Store(settings, sink, StatsEngine(settings, settings.clickhouse_dsn, Referrers.load()))
        made.append(store)
        return store

    yield make
    for s in made:
        s.engine.close()
        s.sink.close()


@pytest.fixture
def store(make_store: Callable[..., Store]) -> Store:
    return make_store()
