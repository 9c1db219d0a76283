"""The stats engine on a remote ClickHouse (HTTP): the ClickHouse-HTTP test double over chDB, or a real
server when ``CLICKHOUSE_TEST_DSN`` is set (e.g. ``http://default:@127.0.0.1:8123``); the same figures as
the embedded store."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import load_settings
from proxy.stats.engine import StatsEngine
from proxy.stats.keys import AnalystKeys, KeyStore
from proxy.stats.parse import parse_v2
from proxy.stats.ratelimit import RateLimiter
from proxy.stats.referrers import Referrers
from sinks.clickhouse import ClickHouseSink
from tests.proxy.stats.conftest import NOW, SITES, ev
from tests.support.ch_http import clickhouse_http_server


@pytest.fixture
def remote_dsn(tmp_path: Path) -> Iterator[str]:
    real = os.environ.get("CLICKHOUSE_TEST_DSN")
    if real:
        yield real
        return
    with clickhouse_http_server(tmp_path / "remote", user="beacon", password="pw") as dsn:
        yield dsn


def test_remote_store_gives_the_same_figures(remote_dsn: str, tmp_path: Path) -> None:
    db = f"stats_{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        environ={},
        data_dir=str(tmp_path / "data"),
        sites=SITES,
        clickhouse={"dsn": remote_dsn, "database": db, "retention_days": 3650},
        analytics={"min_visitors": 2},
    )
    sink = ClickHouseSink(remote_dsn, settings.clickhouse)
    sink.start()
    engine = StatsEngine(settings, remote_dsn, Referrers.load())
    try:
        rows = [
            ev("demo", "2026-03-02 10:00:00", 1, "/a", referrer="https://www.google.com"),
            ev("demo", "2026-03-02 10:40:00", 1, "/b"),
            ev("demo", "2026-03-02 11:00:00", 2, "/a", referrer="https://www.google.de"),
            ev("demo", "2026-03-02 11:00:00", 3, "/c", referrer="https://t.co"),
        ]
        from proxy.model import EVENT_COLUMNS

        sink.client.insert(
            f"{db}.events", [[r[c] for c in EVENT_COLUMNS] for r in rows], column_names=list(EVENT_COLUMNS)
        )
        doc = {
            "site_id": "demo",
            "date_range": ["2026-03-02", "2026-03-02"],
            "metrics": ["visitors", "visits", "bounce_rate"],
        }
        q = parse_v2({**doc, "dimensions": ["visit:source"]}, engine.context("demo", NOW))
        result = engine.run(q)
        # Direct / None (visitor 1's second visit) and Twitter (visitor 3) are below k = 2: one (other) row
        assert result.rows == [(["(other)"], [2, 2, 100]), (["Google"], [2, 2, 100])]
        assert (result.withheld.rows_folded, result.withheld.other_withheld) == (2, 0)
        total = engine.run(parse_v2(doc, engine.context("demo", NOW)))
        assert total.rows == [([], [3, 4, 100])]
        keys = AnalystKeys(KeyStore(sink), list(settings.sites), 0)
        text, key = keys.create(["demo"])
        assert keys.verify(text) == key
        limiter = RateLimiter(sink, 2)
        assert [limiter.hit(key.key_id), limiter.hit(key.key_id)] == [None, None]
        assert limiter.hit(key.key_id) is not None
    finally:
        engine.close()
        sink.close()
