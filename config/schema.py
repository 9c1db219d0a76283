"""The ClickHouse DDL in ``schema.sql``, filled in from settings and split into statements.

For a ClickHouse cluster (``clickhouse.cluster``) the same statements are rewritten: every CREATE gets
``ON CLUSTER``, every MergeTree-family engine its Replicated form (the Keeper path from the servers'
``{shard}`` and ``{replica}`` macros), and every table explicit deduplication windows. Statements other
helpers add to ``schema.sql`` are rewritten the same way.
"""

from __future__ import annotations

import re
from pathlib import Path

from config.settings import ClickhouseSettings

SCHEMA_FILE = Path(__file__).with_name("schema.sql")
_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)  # a statement ends with ";" at the end of a line
# Columns whose values expire before the row does (a column TTL in the DDL).
PSEUDONYM_COLUMNS = ("client_id", "user_id", "session_id", "click_ids")
TABLES = (
    "events",
    "events_daily",
    "audit_log",
    "suppressions",
    "salts",
    "secret_fingerprints",
    "replicas",
    "subject_requests",
)
# Shared state no analyst query may read (the wrapped salts, the secrets' fingerprints).
PRIVATE_TABLES = ("salts", "secret_fingerprints")
# Where a Replicated table keeps its metadata in Keeper: ClickHouse fills in the macros per server.
REPLICA_PATH = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"

_CREATE = re.compile(
    r"^CREATE (?P<kind>DATABASE|TABLE|MATERIALIZED VIEW|VIEW) IF NOT EXISTS (?P<name>[A-Za-z0-9_.]+)"
)
_ENGINE = re.compile(r"ENGINE = (?P<family>[A-Za-z]*)MergeTree(?:\((?P<args>[^()]*)\))?")
_NON_REPLICATED_WINDOW = re.compile(r"non_replicated_deduplication_window = \d+")


def days_ttl(column: str, days: int) -> str:
    return f"toDateTime({column}) + INTERVAL {int(days)} DAY"


def request_retention_days(ch: ClickhouseSettings) -> int:
    """Subject requests are kept as long as an event may wait in a spool (its retention), plus a day."""
    return ch.retention_days + 1


def ddl_statements(database: str, ch: ClickhouseSettings, cluster: str = "") -> list[str]:
    """Statements in file order, comment lines removed. Values come from validated settings only.

    ``cluster``: a cluster name (``clickhouse.cluster``): the statements for a replicated cluster."""
    lines = [ln for ln in SCHEMA_FILE.read_text().splitlines() if not ln.lstrip().startswith("--")]
    text = "\n".join(lines).format(
        database=database,
        ttl=days_ttl("ts", ch.retention_days),
        pseudonym_ttl=days_ttl("ts", ch.pseudonym_retention_days),
        aggregate_ttl=days_ttl("day", ch.aggregate_retention_days),
        audit_ttl=days_ttl("time", ch.audit_retention_days),
        request_ttl=days_ttl("requested", request_retention_days(ch)),
    )
    statements = [stmt.strip() for stmt in _STATEMENT_END.split(text) if stmt.strip()]
    window = f"non_replicated_deduplication_window = {int(ch.deduplication_window)}"
    statements = [_NON_REPLICATED_WINDOW.sub(window, stmt) for stmt in statements]
    if cluster:
        statements = [for_cluster(stmt, cluster, ch) for stmt in statements]
    return statements


def on_cluster(cluster: str) -> str:
    """`` ON CLUSTER '<name>'`` (the name is validated by settings), or "" without a cluster."""
    return f" ON CLUSTER '{cluster}'" if cluster else ""


def for_cluster(stmt: str, cluster: str, ch: ClickhouseSettings) -> str:
    """One statement for a replicated cluster: ON CLUSTER, a Replicated engine, explicit windows."""
    match = _CREATE.match(stmt)
    if match is None:
        return stmt
    stmt = stmt[: match.end()] + on_cluster(cluster) + stmt[match.end() :]
    engine = _ENGINE.search(stmt)
    if match["kind"] != "TABLE" or engine is None:
        return stmt
    args = engine["args"]
    replicated = (
        f"ENGINE = Replicated{engine['family']}MergeTree({REPLICA_PATH}{', ' + args if args else ''})"
    )
    stmt = stmt[: engine.start()] + replicated + stmt[engine.end() :]
    windows = (
        f"replicated_deduplication_window = {int(ch.deduplication_window)}, "
        f"replicated_deduplication_window_seconds = {int(ch.deduplication_window_seconds)}"
    )
    if _NON_REPLICATED_WINDOW.search(stmt):
        return _NON_REPLICATED_WINDOW.sub(windows, stmt)
    if re.search(r"\nSETTINGS ", stmt):
        return f"{stmt}, {windows}"
    return f"{stmt}\nSETTINGS {windows}"


def schema_objects(database: str, ch: ClickhouseSettings) -> list[str]:
    """The tables and views the DDL creates, in order (without the database)."""
    names = []
    for stmt in ddl_statements(database, ch):
        match = _CREATE.match(stmt)
        if match is not None and match["kind"] != "DATABASE":
            names.append(match["name"].split(".", 1)[1])
    return names


def normalised_ttl(column: str, days: int) -> str:
    """How ClickHouse shows ``days_ttl`` in ``create_table_query``."""
    return f"toDateTime({column}) + toIntervalDay({int(days)})"
