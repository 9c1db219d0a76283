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
import threading
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from config.schema import (
    PSEUDONYM_COLUMNS,
    ROLLUP_VERSION,
    TABLES,
    days_ttl,
    ddl_statements,
    normalised_ttl,
    rollup_page,
    rollup_select,
    rollup_source,
)
from config.settings import ClickhouseSettings
from proxy.model import EVENT_COLUMNS
from sinks import adminsql
from sinks.base import SinkError
from sinks.codec import EventBlock

log = logging.getLogger(__name__)
_CODE = re.compile(r"Code: (\d+)")


_ADD_COLUMN = re.compile(r"ALTER TABLE \S+\.(\w+)\s+ADD COLUMN IF NOT EXISTS (\w+) ")


def safe_error(exc: BaseException) -> str:
    """An error description that cannot carry row data: the exception type and ClickHouse's code."""
    match = _CODE.search(str(exc))
    return f"{type(exc).__name__}" + (f" (ClickHouse code {match.group(1)})" if match else "")


def redact_dsn(dsn: str) -> str:
    return re.sub(r"//[^/@]*@", "//***@", dsn)


def connect(
    dsn: str, *, compress: bool = True, database: str | None = None, settings: dict[str, Any] | None = None
) -> Client:
    extra: dict[str, Any] = {"database": database} if database else {}
    if settings:
        extra["settings"] = settings
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
        # Admin SQL gets its own connection (sinks.adminsql): readonly=1 and the admin limits are its
        # session settings, which chDB keeps per connection, so the writer is never read-only.
        self._query_client: Client | None = None
        self._functions: adminsql.FunctionCatalog | None = None
        self._admin_lock = threading.Lock()  # admin queries arrive on several threads
        self._healthy = False

    @property
    def client(self) -> Client:
        if self._client is None:
            raise SinkError("sink not started")
        return self._client

    def start(self) -> None:
        self._client = connect(self.dsn, compress=self.compress)
        try:
            statements = ddl_statements(self.database, self.settings)
            for stmt in statements:
                if self._column_exists(stmt):
                    continue
                try:
                    self._client.command(stmt)
                except ClickHouseError:
                    if self._create_query("events"):  # an events table from elsewhere: say what it lacks
                        self._check_columns()
                    raise
            self._apply_rollup_definition(statements)
            self._apply_retention()
            self._check_columns()
        except ClickHouseError as exc:
            raise SinkError(f"schema set-up failed: {safe_error(exc)}") from None
        self._healthy = True

    def _column_exists(self, stmt: str) -> bool:
        """Whether ``stmt`` is an ``ALTER TABLE t ADD COLUMN IF NOT EXISTS c`` whose column is there: such an
        ALTER rewrites the table's metadata file even when it changes nothing, and a start on a full disk
        then leaves that file empty (a store that no longer opens), so it is not run at all."""
        m = _ADD_COLUMN.match(stmt)
        if m is None:
            return False
        found = self.client.command(
            "SELECT count() FROM system.columns WHERE database = {db:String} AND table = {t:String} "
            "AND name = {c:String}",
            parameters={"db": self.database, "t": m.group(1), "c": m.group(2)},
        )
        return bool(int(str(found)))

    def _create_query(self, table: str) -> str:
        return str(
            self.client.command(
                "SELECT create_table_query FROM system.tables "
                "WHERE database = {db:String} AND name = {t:String}",
                parameters={"db": self.database, "t": table},
            )
        )

    def _apply_rollup_definition(self, statements: list[str]) -> None:
        """Bring a rollup view made by an older version, and the rows it wrote, up to ROLLUP_VERSION.

        The view's COMMENT names its definition. An older view gets the new query (ALTER ... MODIFY
        QUERY: no moment without a view), then every events_daily row whose page or source the new rules
        would write differently is rewritten: re-inserted generalised (merged with its new key) and the
        old row deleted. The insert carries a fixed deduplication token, so a start that dies before the
        delete and runs again does not count anything twice. The COMMENT is set last, so that an
        interrupted upgrade is redone.
        """
        db, view, daily = self.database, f"{self.database}.events_daily_mv", f"{self.database}.events_daily"
        comment = self.client.command(
            "SELECT comment FROM system.tables WHERE database = {db:String} AND name = 'events_daily_mv'",
            parameters={"db": db},
        )
        if str(comment) == ROLLUP_VERSION:
            return
        log.info("rollup view: upgrading to %r", ROLLUP_VERSION)
        self.client.command(f"ALTER TABLE {view} MODIFY QUERY {rollup_select(statements)}")
        page, source = rollup_page("page"), rollup_source("source")
        changed = f"({page}) != page OR ({source}) != source"
        # Names from validated settings, SQL from config.schema: nothing from outside.
        columns = "site, day, page, source, country, device, browser, visitors, pageviews, events"
        rewrite = (
            f"INSERT INTO {daily} ({columns}) SELECT site, day, {page} AS new_page,"  # noqa: S608
            f" {source} AS new_source, country, device, browser, uniqMergeState(visitors), sum(pageviews),"
            f" sum(events) FROM {daily} WHERE {changed}"
            " GROUP BY site, day, new_page, new_source, country, device, browser"
        )
        self.client.command(
            rewrite,
            settings={"insert_deduplication_token": f"rollup-upgrade {ROLLUP_VERSION}"},
        )
        self.client.command(f"ALTER TABLE {daily} DELETE WHERE {changed}", settings={"mutations_sync": 2})
        for statement in statements:  # the column comments the inventory reads
            if statement.startswith(f"CREATE TABLE IF NOT EXISTS {daily}"):
                for column in ("page", "source"):
                    match = re.search(rf"\n\s*{column}\s+[^\n]*? COMMENT '((?:[^']|'')*)'", statement)
                    if match:
                        self.client.command(f"ALTER TABLE {daily} COMMENT COLUMN {column} '{match.group(1)}'")
        self.client.command(
            f"ALTER TABLE {view} MODIFY COMMENT '{ROLLUP_VERSION.replace(chr(39), chr(39) * 2)}'"
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
        """Admin SQL, answered as JSON lines (one object per row). ClickHouse parses it and
        ``sinks.adminsql`` lets only reads of this proxy's tables run, under the admin limits; anything
        else is an :class:`adminsql.AdminSQLError` saying what is not allowed."""
        with self._admin_lock:
            if self._functions is None:  # on the store's own connection: the admin limits would cut it short
                self._functions = adminsql.FunctionCatalog.load(self.client)
            functions, client = self._functions, self._admin_client()
        run = adminsql.confine(client, sql, self.database, functions)
        try:
            data: Any = client.raw_query(run, fmt="JSONEachRow")
        except ClickHouseError as exc:
            raise adminsql.query_error(exc, self.settings.admin_query) from None
        return bytes(data)

    def _admin_client(self) -> Client:
        if self._query_client is None:
            # On a remote store, a separate read-only user when one is configured. Unqualified table
            # names in the admin's SQL resolve to our database.
            limits = self.settings.admin_query
            self._query_client = connect(
                limits.dsn or self.dsn,
                compress=self.compress,
                database=self.database,
                settings=adminsql.session_settings(limits),
            )
        return self._query_client

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
