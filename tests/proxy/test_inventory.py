"""The data inventory (PRIVACY.md rows 6 and 7): every stored column, its meaning, source, consent category
and retention, built from the live schema. Checked against ``system.columns`` directly, so a column added
to the store without an inventory entry fails here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from starlette.testclient import TestClient

from config.schema import PSEUDONYM_COLUMNS, TABLES
from config.settings import CONSENT_CATEGORIES, ClickhouseSettings, Settings
from proxy.app import create_app
from proxy.inventory import InventoryError, build_inventory, parse_comment
from sinks.clickhouse import ClickHouseSink
from tests.conftest import admin

PRECISE = ("latitude", "longitude")


def auth(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {(settings.data_dir / 'admin_token').read_text().strip()}"}


def inventory_of(c: TestClient, settings: Settings) -> dict[str, Any]:
    r = admin(c).get("/admin/inventory", headers=auth(settings))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@contextmanager
def running(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as c:
        yield c


def stored_columns(ch: Client, database: str) -> dict[tuple[str, str], str]:
    """(table, column) -> type of every column of every table that stores data in the database."""
    rows = ch.query(
        "SELECT c.table, c.name, c.type FROM system.columns AS c "
        "INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table "
        "WHERE c.database = {db:String} AND t.engine NOT IN ('MaterializedView', 'View')",
        parameters={"db": database},
    ).result_rows
    return {(str(t), str(n)): str(ty) for t, n, ty in rows}


def listed(inv: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(t, col): e["type"] for t, cols in inv["tables"].items() for col, e in cols.items()}


def test_inventory_lists_every_stored_column(
    client: TestClient, settings: Settings, ch: Client, database: str
) -> None:
    inv = inventory_of(client, settings)
    assert inv["database"] == database
    assert list(inv["tables"]) == list(TABLES)
    stored = stored_columns(ch, database)
    assert stored, "no stored columns found"
    assert {t for t, _ in stored} == set(TABLES), "a table stores data but is not in config.schema.TABLES"
    missing = sorted(set(stored) - set(listed(inv)))
    assert not missing, f"stored columns without an inventory entry: {missing}"
    assert listed(inv) == stored  # nothing invented, types as stored
    # the same from the library on the sink's own column listing
    sink = client.app.state.rt.sink  # type: ignore[attr-defined]
    assert build_inventory(sink.columns(), settings.clickhouse) == inv


def test_every_entry_is_documented(client: TestClient, settings: Settings) -> None:
    inv = inventory_of(client, settings)
    for table, cols in inv["tables"].items():
        for col, e in cols.items():
            assert set(e) == {"meaning", "source", "consent", "type", "retention_days"}, (table, col)
            assert e["meaning"] and e["source"], (table, col)
            assert set(e["consent"]) <= set(CONSENT_CATEGORIES), (table, col)


def test_consent_and_retention_per_column(client: TestClient, settings: Settings) -> None:
    ch_settings = settings.clickhouse
    tables = inventory_of(client, settings)["tables"]
    for col, e in tables["events"].items():
        if col in PSEUDONYM_COLUMNS:
            assert e["consent"][0] == "analytics", col
            assert e["retention_days"] == ch_settings.pseudonym_retention_days == 90, col
        else:
            assert e["retention_days"] == ch_settings.retention_days == 400, col
            assert e["consent"] == (["precise_location"] if col in PRECISE else []), col
    assert tables["events"]["click_ids"]["consent"] == ["analytics", "marketing"]
    for col in ("client_id", "user_id", "session_id"):
        assert tables["events"][col]["consent"] == ["analytics"]
    assert {e["retention_days"] for e in tables["events_daily"].values()} == {1825}
    assert {e["retention_days"] for e in tables["audit_log"].values()} == {ch_settings.audit_retention_days}
    # a block is kept while it is in force, not for a number of days
    assert {e["retention_days"] for e in tables["suppressions"].values()} == {None}
    for table in ("events_daily", "audit_log", "suppressions"):
        assert all(e["consent"] == [] for e in tables[table].values()), table
    # no identifier column outside the pseudonymous ones and the hashed subject
    assert "subject" in tables["suppressions"] and "pseudonym" in tables["audit_log"]


def test_changing_retention_settings_changes_the_inventory_and_the_store(
    make_settings: Callable[..., Settings], ch: Client, database: str
) -> None:
    settings = make_settings(
        clickhouse={
            "retention_days": 200,
            "pseudonym_retention_days": 30,
            "aggregate_retention_days": 1000,
            "audit_retention_days": 700,
        }
    )
    with running(settings) as c:
        tables = inventory_of(c, settings)["tables"]
    assert {tables["events"][col]["retention_days"] for col in PSEUDONYM_COLUMNS} == {30}
    assert tables["events"]["url"]["retention_days"] == 200
    assert {e["retention_days"] for e in tables["events_daily"].values()} == {1000}
    assert {e["retention_days"] for e in tables["audit_log"].values()} == {700}

    # what the inventory says is what the store enforces
    def create(table: str) -> str:
        return str(
            ch.command(
                "SELECT create_table_query FROM system.tables "
                "WHERE database = {db:String} AND name = {t:String}",
                parameters={"db": database, "t": table},
            )
        )

    columns, _, engine = create("events").partition(" ENGINE = ")
    assert "TTL toDateTime(ts) + toIntervalDay(200)" in engine
    for col in PSEUDONYM_COLUMNS:
        definition = columns.split(f"`{col}` ", 1)[1].split(", `", 1)[0]
        assert "TTL toDateTime(ts) + toIntervalDay(30)" in definition, col
    assert "TTL toDateTime(day) + toIntervalDay(1000)" in create("events_daily")
    assert "TTL toDateTime(time) + toIntervalDay(700)" in create("audit_log")

    # a row retention shorter than the pseudonym retention shortens the pseudonyms too
    short = make_settings(clickhouse={"retention_days": 20})
    with running(short) as c:
        tables = inventory_of(c, short)["tables"]
    assert {tables["events"][col]["retention_days"] for col in PSEUDONYM_COLUMNS} == {20}
    assert tables["events"]["ts"]["retention_days"] == 20


def test_inventory_needs_the_admin_token(client: TestClient) -> None:
    assert admin(client).get("/admin/inventory").status_code == 401
    assert admin(client).get("/admin/inventory", headers={"Authorization": "Bearer wrong"}).status_code == 403


def test_a_stored_column_without_an_inventory_comment_fails_the_inventory(
    client: TestClient, settings: Settings, ch: Client, database: str
) -> None:
    ch.command(f"ALTER TABLE {database}.events ADD COLUMN undocumented String")
    r = admin(client).get("/admin/inventory", headers=auth(settings))
    assert r.status_code == 500
    assert "events.undocumented" in r.json()["error"]
    sink = client.app.state.rt.sink  # type: ignore[attr-defined]
    with pytest.raises(InventoryError, match=r"events\.undocumented"):
        build_inventory(sink.columns(), settings.clickhouse)


@pytest.mark.parametrize(
    "comment",
    [
        "",
        "a meaning only",
        "meaning | source: beacon",
        "meaning | source: beacon | consent: none | extra: 1",
        " | source: beacon | consent: none",
        "meaning | origin: beacon | consent: none",
        "meaning | source: beacon | consent: tracking",
        "meaning | source: beacon | consent: analytics, ads",
        "meaning | source: beacon | consent:",
        "meaning | source: beacon | source: server",
    ],
)
def test_malformed_comments_raise_naming_the_column(
    make_settings: Callable[..., Settings], ch: Client, database: str, comment: str
) -> None:
    settings = make_settings()
    sink = ClickHouseSink(settings.clickhouse_dsn, settings.clickhouse)
    sink.start()
    try:
        good = sink.columns()
    finally:
        sink.close()
    # a table of our own, with one badly documented column, read back from the store
    ch.command(
        f"CREATE TABLE {database}.scratch (id UInt8 COMMENT 'id | source: server | consent: none', "
        f"bad_col String COMMENT '{comment}') ENGINE = MergeTree ORDER BY id"
    )
    rows = ch.query(
        "SELECT table, name, type, comment FROM system.columns "
        "WHERE database = {db:String} AND table = 'scratch' ORDER BY position",
        parameters={"db": database},
    ).result_rows
    assert [r[3] for r in rows][1] == comment
    crafted = [(str(t), str(n), str(ty), str(co)) for t, n, ty, co in rows]
    # tables the proxy does not own are not its inventory's business
    build_inventory(good + crafted, settings.clickhouse)
    # once such a column is in an owned table, the inventory refuses to be built, and says which one
    as_owned = [("suppressions", n, ty, co) for _, n, ty, co in crafted]
    with pytest.raises(InventoryError, match=r"suppressions\.bad_col") as exc:
        build_inventory(good + as_owned, settings.clickhouse)
    assert "suppressions.id" not in str(exc.value)


def test_well_formed_comments_parse() -> None:
    assert parse_comment("t", "c", "the thing | source: beacon, server | consent: analytics, marketing") == {
        "meaning": "the thing",
        "source": "beacon, server",
        "consent": ["analytics", "marketing"],
    }
    assert parse_comment("t", "c", "x | consent: none | source: s")["consent"] == []


def test_a_missing_table_is_an_error() -> None:
    rows = [("events", "event_id", "UUID", "id | source: server | consent: none")]
    with pytest.raises(InventoryError, match="missing"):
        build_inventory(rows, ClickhouseSettings())
