"""The data inventory: every stored column with its meaning, source, consent category and retention.

Built from the live schema (each column's COMMENT, ``meaning | source: … | consent: …``) and the retention
settings, so it cannot drift from what is stored: a column without a well-formed comment is an error.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from config.schema import PSEUDONYM_COLUMNS, TABLES, request_retention_days
from config.settings import CONSENT_CATEGORIES, ClickhouseSettings


class InventoryError(ValueError):
    """A stored column is not documented; the message names it."""


def parse_comment(table: str, column: str, comment: str) -> dict[str, Any]:
    parts = [p.strip() for p in comment.split("|")]
    fields = dict(p.split(":", 1) for p in parts[1:] if ":" in p)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    if len(parts) != 3 or not parts[0] or set(fields) != {"source", "consent"}:
        raise InventoryError(
            f"column {table}.{column} lacks an inventory comment 'meaning | source: … | consent: …'"
        )
    consent = [] if fields["consent"] == "none" else [c.strip() for c in fields["consent"].split(",")]
    unknown = [c for c in consent if c not in CONSENT_CATEGORIES]
    if unknown:
        raise InventoryError(f"column {table}.{column} names unknown consent categories {unknown}")
    return {"meaning": parts[0], "source": fields["source"], "consent": consent}


def retention_days(table: str, column: str, ch: ClickhouseSettings) -> int | None:
    """Days a value is kept; None: until removed by hand or replaced (a blocked subject until unblocked, an
    analyst key's row for as long as the store lives: a revoked key stays listed as revoked, a secret's
    fingerprint until it is pinned anew)."""
    if table == "events":
        return ch.pseudonym_retention_days if column in PSEUDONYM_COLUMNS else ch.retention_days
    return {
        "events_daily": ch.aggregate_retention_days,
        "audit_log": ch.audit_retention_days,
        "analyst_requests": 1,
        "dashboard_sessions": 31,  # a day after the session's expiry, which is at most 30 days away
        "visits": ch.retention_days,
        "visit_days": ch.retention_days,
        "salts": 1,  # deleted the day after the day it hashed (README "Running several replicas")
        "replicas": 7,  # heartbeats (the table's TTL)
        "subject_requests": request_retention_days(ch),
    }.get(table)


def build_inventory(columns: Iterable[tuple[str, str, str, str]], ch: ClickhouseSettings) -> dict[str, Any]:
    """``columns``: (table, column, type, comment) rows from the store."""
    tables: dict[str, dict[str, Any]] = {t: {} for t in TABLES}
    for table, column, type_, comment in columns:
        if table not in tables:
            continue
        entry = parse_comment(table, column, comment)
        entry["type"] = type_
        entry["retention_days"] = retention_days(table, column, ch)
        tables[table][column] = entry
    missing = [t for t, cols in tables.items() if not cols]
    if missing:
        raise InventoryError(f"tables {missing} are missing from the store")
    return {"database": ch.database, "tables": tables}
