"""The ClickHouse DDL in ``schema.sql``, filled in from settings and split into statements."""

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
    "analyst_keys",
    "analyst_requests",
    "visits",
    "visit_days",
)


def days_ttl(column: str, days: int) -> str:
    return f"toDateTime({column}) + INTERVAL {int(days)} DAY"


def ddl_statements(database: str, ch: ClickhouseSettings) -> list[str]:
    """Statements in file order, comment lines removed. Values come from validated settings only."""
    lines = [ln for ln in SCHEMA_FILE.read_text().splitlines() if not ln.lstrip().startswith("--")]
    text = "\n".join(lines).format(
        database=database,
        ttl=days_ttl("ts", ch.retention_days),
        pseudonym_ttl=days_ttl("ts", ch.pseudonym_retention_days),
        aggregate_ttl=days_ttl("day", ch.aggregate_retention_days),
        audit_ttl=days_ttl("time", ch.audit_retention_days),
        visits_ttl=days_ttl("day", ch.retention_days),
    )
    return [stmt.strip() for stmt in _STATEMENT_END.split(text) if stmt.strip()]


def normalised_ttl(column: str, days: int) -> str:
    """How ClickHouse shows ``days_ttl`` in ``create_table_query``."""
    return f"toDateTime({column}) + toIntervalDay({int(days)})"
