"""The ClickHouse DDL in ``schema.sql``, filled in from settings and split into statements."""

from __future__ import annotations

import re
from pathlib import Path

SCHEMA_FILE = Path(__file__).with_name("schema.sql")
_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)  # a statement ends with ";" at the end of a line


def ddl_statements(database: str, retention_days: int) -> list[str]:
    """Statements in file order, comment lines removed. Values come from validated settings only."""
    lines = [ln for ln in SCHEMA_FILE.read_text().splitlines() if not ln.lstrip().startswith("--")]
    text = "\n".join(lines).format(database=database, ttl=retention_ttl(retention_days))
    return [stmt.strip() for stmt in _STATEMENT_END.split(text) if stmt.strip()]


def retention_ttl(retention_days: int) -> str:
    return f"toDateTime(ts) + INTERVAL {int(retention_days)} DAY DELETE"
