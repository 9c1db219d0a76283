"""ClickHouse sink via clickhouse-connect: ``chdb://<path>`` (embedded, default) or ``http(s)://`` (remote).

One client per sink, created in ``start``; every call runs on the shipper's thread, never on the
event loop (chDB is thread-safe and releases the GIL). Inserts send the spool's records as
``JSONCompactEachRow`` with explicit column names (the schema is checked once at start-up, no DESCRIBE
round trip per batch) and carry the batch's deduplication token. Errors are reduced to ClickHouse's
error code: an insert error can quote row data.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from config.schema import PSEUDONYM_COLUMNS, TABLES, days_ttl, ddl_statements, normalised_ttl
from config.settings import ClickhouseSettings
from proxy.model import EVENT_COLUMNS
from sinks.base import SinkError
from sinks.codec import EventBlock

log = logging.getLogger(__name__)
_CODE = re.compile(r"Code: (\d+)")
# readonly=2: no writes or DDL, but the client may still set per-query format settings.
# 64-bit integers as JSON numbers and URLs without escaped slashes, whatever the server's defaults.
READONLY_JSON = {
    "readonly": 2,
    "output_format_json_quote_64bit_integers": 0,
    "output_format_json_escape_forward_slashes": 0,
}


def safe_error(exc: BaseException) -> str:
    """An error description that cannot carry row data: the exception type and ClickHouse's code."""
    match = _CODE.search(str(exc))
    return f"{type(exc).__name__}" + (f" (ClickHouse code {match.group(1)})" if match else "")


def redact_dsn(dsn: str) -> str:
    return re.sub(r"//[^/@]*@", "//***@", dsn)


def connect(dsn: str, *, compress: bool = True, database: str | None = None) -> Client:
    extra: dict[str, Any] = {"database": database} if database else {}
    try:
        if dsn.startswith("chdb://"):
            return clickhouse_connect.get_client(dsn=dsn, **extra)
        return clickhouse_connect.get_client(
            dsn=dsn, compress=compress, connect_timeout=5, send_receive_timeout=60, **extra
        )
    except Exception as exc:
        raise SinkError(f"cannot connect to {redact_dsn(dsn)}: {safe_error(exc)}") from None


class ClickHouseSink:
    name = "clickhouse"

    def __init__(self, dsn: str, settings: ClickhouseSettings) -> None:
        if not dsn.startswith(("chdb://", "http://", "https://")):
            raise ValueError(
                f"clickhouse dsn must start with chdb://, http:// or https:// (got {redact_dsn(dsn)})"
            )
        self.dsn = dsn
        self.settings = settings
        self.database = settings.database
        self.compress = settings.compress
        self.table = f"{self.database}.events"
        self._client: Client | None = None
        # Read-only queries get their own client: chDB applies per-query settings to a session and
        # cannot reset readonly afterwards, so sharing one would leave the writer read-only.
        self._query_client: Client | None = None
        self._healthy = False

    @property
    def client(self) -> Client:
        if self._client is None:
            raise SinkError("sink not started")
        return self._client

    def start(self) -> None:
        self._client = connect(self.dsn, compress=self.compress)
        try:
            for stmt in ddl_statements(self.database, self.settings):
                try:
                    self._client.command(stmt)
                except ClickHouseError:
                    if self._create_query("events"):  # an events table from elsewhere: say what it lacks
                        self._check_columns()
                    raise
            self._apply_retention()
            self._check_columns()
        except ClickHouseError as exc:
            raise SinkError(f"schema set-up failed: {safe_error(exc)}") from None
        self._healthy = True

    def _create_query(self, table: str) -> str:
        return str(
            self.client.command(
                "SELECT create_table_query FROM system.tables "
                "WHERE database = {db:String} AND name = {t:String}",
                parameters={"db": self.database, "t": table},
            )
        )

    def _apply_retention(self) -> None:
        """Retention settings change existing tables (ALTER ... TTL), not only new ones."""
        ch = self.settings
        events = self._create_query("events")
        columns, _, engine = events.partition(" ENGINE = ")
        if f" TTL {normalised_ttl('ts', ch.retention_days)}" not in engine:
            log.info("events TTL is now %d days", ch.retention_days)
            self.client.command(f"ALTER TABLE {self.table} MODIFY TTL {days_ttl('ts', ch.retention_days)}")
        for column in PSEUDONYM_COLUMNS:
            if f"`{column}` " not in columns:
                continue  # a missing column is reported by _check_columns
            ttl = re.escape(normalised_ttl("ts", ch.pseudonym_retention_days))
            if not re.search(rf"`{column}` [^`]*? TTL {ttl}(?: |,|\)$)", columns):
                log.info("%s TTL is now %d days", column, ch.pseudonym_retention_days)
                self.client.command(
                    f"ALTER TABLE {self.table} MODIFY COLUMN {column} "
                    f"TTL {days_ttl('ts', ch.pseudonym_retention_days)}"
                )
        for table, column, days in (
            ("events_daily", "day", ch.aggregate_retention_days),
            ("audit_log", "time", ch.audit_retention_days),
            ("visits", "day", ch.retention_days),  # visits are derived from events: kept as long
            ("visit_days", "day", ch.retention_days),
        ):
            if (
                f" TTL {normalised_ttl(column, days)}"
                not in self._create_query(table).partition(" ENGINE = ")[2]
            ):
                log.info("%s TTL is now %d days", table, days)
                self.client.command(
                    f"ALTER TABLE {self.database}.{table} MODIFY TTL {days_ttl(column, days)}"
                )

    def _check_columns(self) -> None:
        result = self.client.query(
            "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = 'events'",
            parameters={"db": self.database},
        )
        types: dict[str, str] = {str(name): str(type_) for name, type_ in result.result_rows}
        missing = [c for c in EVENT_COLUMNS if c not in types]
        if missing:
            raise SinkError(f"table {self.table} lacks columns {missing}; migrate it before starting")

    def write(self, batch: EventBlock, token: str) -> None:
        # The spool's records as they are: ClickHouse parses JSONCompactEachRow in native code (no
        # per-row Python work, and chDB releases the GIL meanwhile).
        try:
            self.client.raw_insert(
                self.table,
                column_names=list(EVENT_COLUMNS),
                insert_block=batch.data,
                fmt="JSONCompactEachRow",
                settings={
                    "insert_deduplication_token": token,
                    # a replayed batch must not be counted twice by the daily aggregates either
                    "deduplicate_blocks_in_dependent_materialized_views": 1,
                    "date_time_input_format": "best_effort",  # ts is ISO 8601 with an offset
                    # A segment is parsed faster by one thread than split across a pool: ~25% less CPU
                    # per row (21 vs 28 us), on cores the event loop needs.
                    "input_format_parallel_parsing": 0,
                },
            )
        except Exception as exc:
            self._healthy = False
            raise SinkError(f"insert of {batch.rows} rows failed: {safe_error(exc)}") from None
        self._healthy = True

    def query_json(self, sql: str) -> bytes:
        """Read-only SQL, answered as JSON lines (one object per row)."""
        if self._query_client is None:
            # unqualified table names in analysts' SQL resolve to our database
            self._query_client = connect(self.dsn, compress=self.compress, database=self.database)
        try:
            data: Any = self._query_client.raw_query(sql, fmt="JSONEachRow", settings=READONLY_JSON)
        except ClickHouseError as exc:
            # Query errors go back to the operator who wrote the SQL; they may quote the SQL, not row data.
            raise SinkError(str(exc).split("\n", 1)[0][:500]) from None
        return bytes(data)

    def columns(self) -> list[tuple[str, str, str, str]]:
        """(table, column, type, comment) of every table the proxy owns, in table order."""
        result = self.client.query(
            "SELECT table, name, type, comment FROM system.columns "
            "WHERE database = {db:String} AND table IN {tables:Array(String)} ORDER BY table, position",
            parameters={"db": self.database, "tables": list(TABLES)},
        )
        return [(str(t), str(n), str(ty), str(c)) for t, n, ty, c in result.result_rows]

    def healthy(self) -> bool:
        return self._healthy

    def close(self) -> None:
        for client in (self._client, self._query_client):
            if client is not None:
                client.close()
        self._client = self._query_client = None
