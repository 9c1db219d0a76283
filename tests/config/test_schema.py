"""The DDL for a ClickHouse cluster (``clickhouse.cluster``, applied by ``beaconproxy migrate``): every
CREATE runs ON CLUSTER, every table is Replicated with explicit deduplication windows, and ClickHouse's own
parser (chDB's ``formatQuery``) reads every statement. No Keeper cluster runs here: that the statements
do what they say on one is for a real cluster to show (README "Running several replicas")."""

from __future__ import annotations

import re

import pytest
from clickhouse_connect.driver.client import Client

from config.schema import REPLICA_PATH, TABLES, ddl_statements, schema_objects
from config.settings import ClickhouseSettings

CH = ClickhouseSettings(deduplication_window=50_000, deduplication_window_seconds=3 * 86400)


def cluster_ddl(cluster: str = "analytics") -> list[str]:
    return ddl_statements("beacon", CH, cluster)


def test_every_statement_runs_on_the_cluster() -> None:
    statements = cluster_ddl()
    assert statements, "no DDL"
    for stmt in statements:
        assert re.match(
            r"(CREATE (DATABASE|TABLE|MATERIALIZED VIEW) IF NOT EXISTS|ALTER TABLE) \S+"
            r" ON CLUSTER 'analytics'",
            stmt,
        ), stmt


def test_every_table_is_replicated_with_explicit_deduplication_windows() -> None:
    tables = [s for s in cluster_ddl() if s.startswith("CREATE TABLE")]
    assert len(tables) == len(TABLES)
    for stmt in tables:
        engine = re.search(r"ENGINE = (\w+)\((.*?)\)\n", stmt)
        assert engine is not None, stmt
        assert engine.group(1).startswith("Replicated") and engine.group(1).endswith("MergeTree")
        assert engine.group(2).startswith(REPLICA_PATH)
        assert "replicated_deduplication_window = 50000" in stmt
        assert "replicated_deduplication_window_seconds = 259200" in stmt
        assert "non_replicated_deduplication_window" not in stmt


def test_engine_arguments_and_other_settings_are_kept() -> None:
    names = [re.match(r"CREATE \D+ IF NOT EXISTS beacon\.?(\w*)", s) for s in cluster_ddl()]
    by_table = {m.group(1): s for m, s in zip(names, cluster_ddl(), strict=True) if m}
    assert f"ReplicatedReplacingMergeTree({REPLICA_PATH}, updated)" in by_table["suppressions"]
    assert f"ReplicatedReplacingMergeTree({REPLICA_PATH}, version)" in by_table["secret_fingerprints"]
    assert f"ReplicatedReplacingMergeTree({REPLICA_PATH}, updated)" in by_table["dashboard_sessions"]
    assert f"ReplicatedAggregatingMergeTree({REPLICA_PATH})" in by_table["events_daily"]
    assert "ttl_only_drop_parts = 1" in by_table["salts"]
    assert "TO beacon.events_daily" in by_table["events_daily_mv"]


def test_without_a_cluster_the_ddl_is_the_single_server_one() -> None:
    plain = ddl_statements("beacon", CH)
    assert not any("ON CLUSTER" in s or "Replicated" in s for s in plain)
    assert "non_replicated_deduplication_window = 50000" in plain[1]
    # the same objects either way
    assert [re.sub(r" ON CLUSTER '\w+'", "", s).split("\n", 1)[0] for s in cluster_ddl()] == [
        s.split("\n", 1)[0] for s in plain
    ]
    assert schema_objects("beacon", CH) == [
        "events",
        "events_daily",
        "events_daily_mv",
        "audit_log",
        "suppressions",
        "analyst_keys",
        "analyst_requests",
        "dashboard_sessions",
        "visits",
        "visit_days",
        "salts",
        "secret_fingerprints",
        "replicas",
        "subject_requests",
    ]


@pytest.mark.parametrize("cluster", ["analytics", "{cluster}", "eu_1.prod-a"])
def test_clickhouse_parses_every_cluster_statement(ch: Client, cluster: str) -> None:
    """ClickHouse's parser (formatQuery: parse and print, run nothing) reads each statement as written,
    keeps ON CLUSTER and the Replicated engine with its Keeper path."""
    for stmt in ddl_statements("beacon", CH, cluster):
        formatted = str(ch.command("SELECT formatQuery({q:String})", parameters={"q": stmt}))
        assert f"ON CLUSTER {cluster}" in formatted.replace("`", "").replace("'", "") or (
            f"ON CLUSTER '{cluster}'" in formatted
        ), formatted
        if stmt.startswith("CREATE TABLE"):
            assert "ENGINE = Replicated" in formatted
            assert "{shard}" in formatted and "{replica}" in formatted


def test_a_bad_cluster_name_is_refused() -> None:
    with pytest.raises(ValueError, match="cluster"):
        ClickhouseSettings(cluster="x'; DROP TABLE y")
