"""The ClickHouse sink against the real engine: embedded chDB, and the HTTP client path via the fixture."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from clickhouse_connect.driver.client import Client

from config.settings import AdminQuerySettings, ClickhouseSettings
from proxy.model import EVENT_COLUMNS, Event
from sinks.base import SinkError
from sinks.clickhouse import ClickHouseSink, redact_dsn, safe_error
from sinks.codec import EventBlock
from tests.support.ch_http import clickhouse_http_server


def ch_settings(database: str, **kw: int) -> ClickhouseSettings:
    return ClickhouseSettings(database=database, **kw)


def full_event(i: int = 0) -> Event:
    return Event(
        site="demo",
        type="event",
        name=f"signup{i}",
        ts=datetime(2026, 11, 22, 10, 30, 15, 123000, tzinfo=UTC),
        event_id=uuid.UUID(int=i + 1),
        url="https://example.com/a?utm_source=x",
        referrer="https://ref.example",
        title="T",
        utm_source="x",
        utm_medium="m",
        utm_campaign="c",
        utm_term="t",
        utm_content="ct",
        props={"plan": "pro", "n": "3"},
        ip="203.0.113.0",
        country="NZ",
        region="Wellington",
        city="",
        latitude=1.5,
        longitude=-2.25,
        browser="Chrome",
        browser_version="120",
        os="Windows",
        os_version="10",
        device="desktop",
        language="en",
        screen_width=1280,
        screen_height=800,
        engagement_ms=1500,
        visitor_hash=2**64 - 5,
        client_id="a" * 32,
        user_id=None,
        session_id="b" * 32,
        click_ids={"gclid": "c" * 32},
        consent=["analytics", "marketing"],
    )


def read_all(sink: ClickHouseSink) -> list[dict[str, object]]:
    data = sink.query_json(f"SELECT * FROM {sink.table} ORDER BY event_id")
    return [orjson.loads(line) for line in data.splitlines()]


@pytest.fixture
def sink(chdb_dsn: str, database: str) -> Iterator[ClickHouseSink]:
    s = ClickHouseSink(chdb_dsn, ch_settings(database))
    s.start()
    yield s
    s.close()


def test_every_column_round_trips(sink: ClickHouseSink) -> None:
    sink.write(EventBlock.of([full_event()]), "tok-1")
    [row] = read_all(sink)
    assert set(row) == set(EVENT_COLUMNS)
    assert row["event_id"] == "00000000-0000-0000-0000-000000000001"
    assert row["ts"] == "2026-11-22 10:30:15.123"
    assert row["props"] == {"plan": "pro", "n": "3"}
    assert row["visitor_hash"] == 2**64 - 5
    assert (row["latitude"], row["longitude"]) == (1.5, -2.25)
    assert (row["client_id"], row["user_id"]) == ("a" * 32, None)
    assert row["click_ids"] == {"gclid": "c" * 32}
    assert row["consent"] == ["analytics", "marketing"]


def test_start_is_idempotent(sink: ClickHouseSink, chdb_dsn: str, database: str) -> None:
    sink.write(EventBlock.of([full_event()]), "tok-1")
    again = ClickHouseSink(chdb_dsn, ch_settings(database))
    again.start()
    assert len(read_all(again)) == 1


def test_a_column_added_by_alter_is_added_once_and_never_altered_again(
    sink: ClickHouseSink, chdb_dsn: str, database: str, ch: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A store from before the page column gets it at start...
    ch.command(f"ALTER TABLE {database}.events DROP COLUMN page")
    again = ClickHouseSink(chdb_dsn, ch_settings(database))
    again.start()
    columns = ch.query(
        "SELECT name FROM system.columns WHERE database = {db:String} AND table = 'events'",
        parameters={"db": database},
    ).result_rows
    assert ("page",) in columns
    # ...and a start that finds it runs no ALTER: even a no-op ALTER rewrites the table's metadata file,
    # which a start on a full disk would leave empty (tests/faults/test_full_disk.py).
    sent: list[str] = []
    third = ClickHouseSink(chdb_dsn, ch_settings(database))
    import sinks.clickhouse as module

    real = module.connect

    def recording(*args: object, **kwargs: object) -> object:
        client = real(*args, **kwargs)  # type: ignore[arg-type]
        command = client.command

        def record(cmd: str, *a: object, **k: object) -> object:
            sent.append(cmd)
            return command(cmd, *a, **k)  # type: ignore[arg-type]

        monkeypatch.setattr(client, "command", record)
        return client

    monkeypatch.setattr(module, "connect", recording)
    third.start()
    assert any("CREATE TABLE IF NOT EXISTS" in c for c in sent)
    assert not [c for c in sent if "ADD COLUMN" in c]


def test_replayed_batch_is_deduplicated_by_token(sink: ClickHouseSink) -> None:
    batch = [full_event(i) for i in range(5)]
    sink.write(EventBlock.of(batch), "batch-token-1")
    sink.write(EventBlock.of(batch), "batch-token-1")  # a retry after an ambiguous failure
    assert len(read_all(sink)) == 5
    sink.write(EventBlock.of(batch), "batch-token-2")  # a different batch with equal rows is not a replay
    assert len(read_all(sink)) == 10


def test_changing_retention_alters_the_existing_tables(
    sink: ClickHouseSink, chdb_dsn: str, database: str, ch: Client
) -> None:
    def create(table: str) -> str:
        return str(
            ch.command(
                f"SELECT create_table_query FROM system.tables WHERE database='{database}' AND name='{table}'"
            )
        )

    events = create("events")
    assert events.count("toIntervalDay(90)") == 4  # client_id, user_id, session_id, click_ids
    assert re.search(
        r"`client_id` Nullable\(String\) [^`]* TTL toDateTime\(ts\) \+ toIntervalDay\(90\)", events
    )
    assert (
        "TTL toDateTime(ts) + toIntervalDay(400) SETTINGS non_replicated_deduplication_window = 1000"
        in events
    )
    changed = ch_settings(
        database,
        retention_days=200,
        pseudonym_retention_days=30,
        aggregate_retention_days=1000,
        audit_retention_days=700,
    )
    ClickHouseSink(chdb_dsn, changed).start()
    events = create("events")
    assert events.count("toIntervalDay(30)") == 4
    assert "toIntervalDay(90)" not in events
    assert "TTL toDateTime(ts) + toIntervalDay(200) SETTINGS" in events
    assert "TTL toDateTime(day) + toIntervalDay(1000)" in create("events_daily")
    assert "TTL toDateTime(time) + toIntervalDay(700)" in create("audit_log")
    ClickHouseSink(chdb_dsn, changed).start()  # unchanged settings: nothing to alter, still starts


def test_schema_drift_fails_at_start(chdb_dsn: str, database: str, ch: Client) -> None:
    ch.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    ch.command(
        f"CREATE TABLE {database}.events (site String, ts DateTime64(3, 'UTC')) "
        "ENGINE = MergeTree ORDER BY ts"
    )
    with pytest.raises(SinkError, match="lacks columns"):
        ClickHouseSink(chdb_dsn, ch_settings(database)).start()


def test_query_json_is_read_only(sink: ClickHouseSink) -> None:
    """Admin SQL is confined by sinks.adminsql (tests/sinks/test_adminsql.py has the cases)."""
    with pytest.raises(SinkError, match="DROP is not allowed"):
        sink.query_json(f"DROP TABLE {sink.table}")
    assert sink.query_json(f"SELECT count() AS n FROM {sink.table}") == b'{"n":0}\n'


def test_errors_carry_no_row_data() -> None:
    exc = RuntimeError("Code: 27. DB::Exception: Cannot parse input: 'jo@example.com' at row 1")
    assert safe_error(exc) == "RuntimeError (ClickHouse code 27)"
    assert redact_dsn("https://user:s3cret@ch.example:8443/") == "https://***@ch.example:8443/"


def test_bad_dsn_is_rejected_at_construction() -> None:
    with pytest.raises(ValueError, match="chdb://"):
        ClickHouseSink("mysql://x", ch_settings("beacon"))


def test_remote_http_path(tmp_path: Path) -> None:
    """The same sink through clickhouse-connect's HTTP client, against ClickHouse's HTTP interface."""
    with clickhouse_http_server(tmp_path / "remote", user="beacon", password="pw") as dsn:
        sink = ClickHouseSink(dsn, ch_settings("remote_db"))
        sink.start()
        batch = [full_event(i) for i in range(3)]
        sink.write(EventBlock.of(batch), "remote-token")
        sink.write(EventBlock.of(batch), "remote-token")
        rows = read_all(sink)
        assert len(rows) == 3
        assert rows[0]["props"] == {"plan": "pro", "n": "3"}
        assert rows[0]["consent"] == ["analytics", "marketing"]
        with pytest.raises(SinkError, match="DROP is not allowed"):
            sink.query_json("DROP TABLE remote_db.events")
        with pytest.raises(SinkError, match=r"table function file\(\) is not allowed"):
            sink.query_json("SELECT * FROM file('/etc/passwd', 'LineAsString')")
        sink.close()
        bad = ClickHouseSink(dsn.replace(":pw@", ":wrong@"), ch_settings("remote_db"))
        with pytest.raises(SinkError) as err:
            bad.start()
        assert "wrong" not in str(err.value)


def test_admin_queries_run_on_the_configured_read_only_connection(tmp_path: Path) -> None:
    """clickhouse.admin_query.dsn: admin SQL goes through that user, and only admin SQL does."""
    with clickhouse_http_server(
        tmp_path / "remote", user="beacon", password="pw", reader=("analyst", "read-pw")
    ) as dsn:
        reader = dsn.replace("beacon:pw@", "analyst:read-pw@")
        settings = ch_settings("remote_db").model_copy(
            update={"dsn": dsn, "admin_query": AdminQuerySettings(dsn=reader, max_result_rows=2)}
        )
        sink = ClickHouseSink(dsn, settings)
        sink.start()
        sink.write(EventBlock.of([full_event(i) for i in range(3)]), "remote-admin")
        assert sink.query_json("SELECT count() AS n FROM events") == b'{"n":3}\n'
        with pytest.raises(SinkError, match=r"max_result_rows \(2 rows\)"):  # the admin limits apply there
            sink.query_json("SELECT event_id FROM events")
        sink.close()

        # The same with a wrong password for the read-only user: ingestion still works, admin SQL does not.
        wrong = settings.model_copy(
            update={"admin_query": AdminQuerySettings(dsn=reader.replace("read-pw", "wrong"))}
        )
        sink = ClickHouseSink(dsn, wrong)
        sink.start()
        sink.write(EventBlock.of([full_event(7)]), "remote-admin-2")
        with pytest.raises(SinkError, match="cannot connect") as err:
            sink.query_json("SELECT count() AS n FROM events")
        assert "wrong" not in str(err.value)
        sink.close()


def test_daily_aggregates_count_each_event_once_even_on_replay(sink: ClickHouseSink, ch: Client) -> None:
    batch = [full_event(i) for i in range(4)]
    batch[3].type = "pageview"
    batch[2].visitor_hash = batch[1].visitor_hash = 7
    sink.write(EventBlock.of(batch), "agg-token")
    sink.write(EventBlock.of(batch), "agg-token")  # replay: neither table may count it twice
    rows = ch.query(
        f"SELECT site, day, page, source, country, uniqMerge(visitors), sum(pageviews), sum(events) "
        f"FROM {sink.database}.events_daily GROUP BY site, day, page, source, country"
    ).result_rows
    assert [r[2:] for r in rows] == [("/a", "x", "NZ", 2, 1, 3)]  # hashes {2**64 - 5, 7}
    columns = ch.query(
        f"SELECT name FROM system.columns WHERE database = '{sink.database}' AND table = 'events_daily'"
    )
    assert not {"client_id", "user_id", "session_id", "ip", "visitor_hash"} & {
        r[0] for r in columns.result_rows
    }
