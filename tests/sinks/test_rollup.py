"""The daily rollup (events_daily) holds nothing that can carry an identifier, also in stores made by an
older version: their view and their rows are brought up to the current definition at start-up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from config.schema import ROLLUP_VERSION
from config.settings import ClickhouseSettings
from proxy.model import Event
from sinks.clickhouse import ClickHouseSink
from sinks.codec import EventBlock
from tests.sinks.test_clickhouse import full_event

# The rollup view as versions before ROLLUP_VERSION created it: the raw path and the referrer's host.
OLD_VIEW = """
CREATE MATERIALIZED VIEW {db}.events_daily_mv TO {db}.events_daily AS
SELECT site, toDate(ts) AS day, path(url) AS page,
    if(utm_source != '', utm_source, if(referrer != '', domain(referrer), '(direct)')) AS source,
    country, device, browser, uniqState(visitor_hash) AS visitors,
    toUInt64(countIf(type = 'pageview')) AS pageviews, toUInt64(countIf(type = 'event')) AS events
FROM {db}.events GROUP BY site, day, page, source, country, device, browser
"""

SHOP = "https://shop.example.com"
# (url, referrer, utm_source) -> (page, source) in the rollup
CASES: list[tuple[tuple[str, str, str], tuple[str, str]]] = [
    ((f"{SHOP}/users/jane/settings", "", ""), ("/users/:id/settings", "(direct)")),
    ((f"{SHOP}/orders/84512/receipt", "https://m.example.net", ""), ("/orders/:id/receipt", "example.net")),
    ((f"{SHOP}/blog/2024/10/hello", "https://jo.blogspot.com", ""), ("/blog/:id/:id/hello", "blogspot.com")),
    ((f"{SHOP}/u/[email]/x", "https://news.bbc.co.uk", ""), ("/u/:id/x", "bbc.co.uk")),
    ((f"{SHOP}/team/@alice", "http://ip.invalid:8080", ""), ("/team/:id", "ip.invalid")),
    ((f"{SHOP}/p/%D9%A1%D9%A2%D9%A3", "", "newsletter"), ("/p/:id", "newsletter")),
    ((f"{SHOP}/pricing", "", "subscriber-48213"), ("/pricing", "(other)")),
    ((f"{SHOP}/pricing", "", "jane doe"), ("/pricing", "(other)")),
    ((f"{SHOP}/docs/HowToUseJavaScriptNow", "", "l.facebook.com"), ("/docs/:id", "facebook.com")),
    ((f"{SHOP}/", "", ""), ("/", "(direct)")),
]  # fmt: skip


def event(i: int, url: str, referrer: str, utm_source: str) -> Event:
    e = full_event(i)
    return dataclasses.replace(e, type="pageview", url=url, referrer=referrer, utm_source=utm_source)


def rollup(ch: Client, database: str) -> dict[tuple[str, str], tuple[int, int]]:
    rows = ch.query(
        f"SELECT page, source, sum(pageviews), uniqMerge(visitors) FROM {database}.events_daily "
        "GROUP BY page, source"
    ).result_rows
    return {(str(p), str(s)): (int(n), int(v)) for p, s, n, v in rows}


def view(ch: Client, database: str) -> tuple[str, str]:
    comment, query = ch.query(
        "SELECT comment, as_select FROM system.tables "
        "WHERE database = {db:String} AND name = 'events_daily_mv'",
        parameters={"db": database},
    ).result_rows[0]
    return str(comment), str(query)


@pytest.fixture
def sink(chdb_dsn: str, database: str) -> Iterator[ClickHouseSink]:
    s = ClickHouseSink(chdb_dsn, ClickhouseSettings(database=database))
    s.start()
    yield s
    s.close()


def test_the_rollup_generalises_what_could_identify(sink: ClickHouseSink, ch: Client, database: str) -> None:
    assert view(ch, database)[0] == ROLLUP_VERSION
    sink.write(EventBlock.of([event(i, *given) for i, (given, _) in enumerate(CASES)]), "t1")
    got = rollup(ch, database)
    for given, expected in CASES:
        assert expected in got, (given, expected, sorted(got))
    assert len(got) == len({expected for _, expected in CASES})


def _make_old_store(sink: ClickHouseSink, ch: Client, database: str) -> None:
    """The store as an older version left it: the old view, and rows it wrote."""
    ch.command(f"DROP VIEW {database}.events_daily_mv")
    ch.command(OLD_VIEW.format(db=database))
    batch = [event(i, *given) for i, (given, _) in enumerate(CASES)]
    batch += [event(100 + i, *given) for i, (given, _) in enumerate(CASES[:3])]  # counted twice
    sink.write(EventBlock.of(batch), "old-1")
    assert ("/users/jane/settings", "(direct)") in rollup(ch, database)  # the old view kept the name


def _totals(ch: Client, database: str) -> tuple[int, int]:
    row = ch.query(f"SELECT sum(pageviews), uniqMerge(visitors) FROM {database}.events_daily").result_rows[0]
    return int(row[0]), int(row[1])


def test_an_older_rollup_is_upgraded_with_its_rows(
    sink: ClickHouseSink, ch: Client, chdb_dsn: str, database: str
) -> None:
    _make_old_store(sink, ch, database)
    before = _totals(ch, database)
    assert before[0] == len(CASES) + 3

    again = ClickHouseSink(chdb_dsn, ClickhouseSettings(database=database))
    again.start()
    comment, query = view(ch, database)
    assert comment == ROLLUP_VERSION
    assert "arrayMap" in query  # the new definition
    assert _totals(ch, database) == before  # nothing lost, nothing counted twice
    got = rollup(ch, database)
    assert set(got) == {expected for _, expected in CASES}
    assert got[("/users/:id/settings", "(direct)")][0] == 2
    # New rows go through the new definition too.
    again.write(EventBlock.of([event(500, "https://shop.example.com/users/bob", "", "")]), "new-1")
    assert ("/users/:id", "(direct)") in rollup(ch, database)
    # And a second start changes nothing.
    third = ClickHouseSink(chdb_dsn, ClickhouseSettings(database=database))
    third.start()
    assert _totals(ch, database) == (before[0] + 1, before[1])  # full_event: one visitor hash
    for s in (again, third):
        s.close()
    comments = dict(
        ch.query(
            "SELECT name, comment FROM system.columns "
            "WHERE database = {db:String} AND table = 'events_daily'",
            parameters={"db": database},
        ).result_rows
    )
    assert comments["page"].startswith("URL path, segments that can carry an id replaced by :id |")


def test_an_upgrade_cut_short_before_its_delete_counts_nothing_twice(
    sink: ClickHouseSink, ch: Client, chdb_dsn: str, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _make_old_store(sink, ch, database)
    before = _totals(ch, database)

    interrupted = ClickHouseSink(chdb_dsn, ClickhouseSettings(database=database))
    interrupted._client = ch  # type: ignore[assignment]
    real_command = ch.command

    def crash_at_delete(cmd: str, *args: Any, **kwargs: Any) -> Any:
        if " DELETE WHERE " in cmd:
            raise RuntimeError("the process died here")
        return real_command(cmd, *args, **kwargs)

    monkeypatch.setattr(ch, "command", crash_at_delete)
    from config.schema import ddl_statements

    with pytest.raises(RuntimeError):
        interrupted._apply_rollup_definition(ddl_statements(database, ClickhouseSettings(database=database)))
    monkeypatch.undo()
    assert view(ch, database)[0] != ROLLUP_VERSION  # not marked done: the next start redoes it

    again = ClickHouseSink(chdb_dsn, ClickhouseSettings(database=database))
    again.start()
    assert view(ch, database)[0] == ROLLUP_VERSION
    assert _totals(ch, database) == before
    assert set(rollup(ch, database)) == {expected for _, expected in CASES}
    again.close()
