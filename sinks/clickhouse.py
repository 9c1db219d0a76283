"""ClickHouse sink via clickhouse-connect: ``chdb://<path>`` (embedded, default) or ``http(s)://`` (remote).

Clients are created in ``start``; every call runs off the event loop (chDB is thread-safe and releases
the GIL). A remote store gets one client for the shipper's inserts and another for everything else
(subject requests, suppressions, shared state), both without a ClickHouse session: a session admits one
query at a time, and those callers run on different threads. Inserts send the spool's records as
``JSONCompactEachRow`` with explicit column names (the schema is checked once at start-up, no DESCRIBE
round trip per batch) and carry the batch's deduplication token, with ``async_insert`` off and
deduplication on whatever the server's profile says. Errors are reduced to ClickHouse's error code: an
insert error can quote row data.

The schema: with ``clickhouse.manage_schema`` on, ``start`` applies the DDL (``CREATE ... IF NOT
EXISTS``, then retention ALTERs), skipping statements a user without DDL rights may not run for objects
that already exist; with it off, it only checks that ``beaconproxy migrate`` created everything.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any, Literal

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
    on_cluster,
    request_retention_days,
    rollup_page,
    rollup_select,
    rollup_source,
    schema_objects,
)
from config.settings import ClickhouseSettings
from proxy.model import EVENT_COLUMNS
from sinks import adminsql
from sinks.base import SinkError
from sinks.codec import EventBlock

log = logging.getLogger(__name__)
_CODE = re.compile(r"Code: (\d+)")
_ADD_COLUMN = re.compile(
    r"ALTER TABLE \w+\.(?P<table>\w+)(?: ON CLUSTER \S+)?\s+ADD COLUMN IF NOT EXISTS (?P<column>\w+)\b"
)
# What an acknowledged insert means must not depend on the server's profile: synchronous (the rows are in
# a part when the call returns) and deduplicated by the batch's token.
INSERT_SETTINGS = {"async_insert": 0, "insert_deduplicate": 1}
ACCESS_DENIED = 497
ALREADY_EXISTS = (57, 82)  # TABLE_ALREADY_EXISTS, DATABASE_ALREADY_EXISTS (a concurrent CREATE won)


def safe_error(exc: BaseException) -> str:
    """An error description that cannot carry row data: the exception type and ClickHouse's code."""
    match = _CODE.search(str(exc))
    return f"{type(exc).__name__}" + (f" (ClickHouse code {match.group(1)})" if match else "")


def store_settings(sink: ClickHouseSink, use: Literal["insert", "read"]) -> dict[str, Any]:
    """Settings for the small inserts and reads of shared state (subject requests, suppressions, salts,
    fingerprints, heartbeats). On a cluster, inserts wait for a majority of replicas and reads see every
    such insert, so a replica never acts on state another replica's node has not received yet."""
    if use == "insert":
        return {**INSERT_SETTINGS, "insert_quorum": "auto"} if sink.cluster else dict(INSERT_SETTINGS)
    return {"select_sequential_consistency": 1} if sink.cluster else {}


def error_code(exc: BaseException) -> int | None:
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None


def redact_dsn(dsn: str) -> str:
    """The DSN without its user and password (nor a password given as a query parameter)."""
    dsn = re.sub(r"//[^/@]*@", "//***@", dsn)
    return re.sub(r"(?i)([?&](?:password|key|access_token)=)[^&]*", r"\1***", dsn)


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
            dsn=dsn,
            compress=compress,
            connect_timeout=5,
            send_receive_timeout=60,
            # No session: a ClickHouse session runs one query at a time ("concurrent queries within the
            # same session"), and nothing here relies on session state.
            autogenerate_session_id=False,
            **extra,
        )
    except Exception as exc:
        raise SinkError(f"cannot connect to {redact_dsn(dsn)}: {safe_error(exc)}") from None


class ClickHouseSink:
    def __init__(
        self,
        dsn: str,
        settings: ClickhouseSettings,
        *,
        database: str | None = None,
        cluster: str | None = None,
        name: str = "clickhouse",
    ) -> None:
        """``database`` and ``cluster``: a named store's (default: the main store's, from ``settings``);
        ``name`` is what logs and metrics call it."""
        if not dsn.startswith(("chdb://", "http://", "https://")):
            raise ValueError(
                f"clickhouse dsn must start with chdb://, http:// or https:// (got {redact_dsn(dsn)})"
            )
        self.name = name
        self.dsn = dsn
        self.settings = settings
        self.database = database or settings.database
        self.cluster = settings.cluster if cluster is None else cluster
        self.compress = settings.compress
        self.remote = not dsn.startswith("chdb://")
        self.table = f"{self.database}.events"
        self._client: Client | None = None
        # Everything but the shipper's inserts, on a remote store (see the module docstring).
        self._control: Client | None = None
        # Admin SQL gets its own connection (sinks.adminsql): readonly=1 and the admin limits are its
        # session settings, which chDB keeps per connection, so the writer is never read-only.
        self._query_client: Client | None = None
        self._functions: adminsql.FunctionCatalog | None = None
        self._admin_lock = threading.Lock()  # admin queries arrive on several threads
        self._healthy = False
        # Checks run once the schema is there, before the sink counts as started (e.g. the secrets'
        # fingerprints): one that raises keeps the sink from starting, and so the shipper from shipping.
        self.start_checks: list[Callable[[ClickHouseSink], None]] = []

    @property
    def client(self) -> Client:
        """The shipper's client (inserts, schema)."""
        if self._client is None:
            raise SinkError("sink not started")
        return self._client

    @property
    def control(self) -> Client:
        """The client for subject requests, suppressions and shared state (any thread)."""
        if self._client is None:
            raise SinkError("sink not started")
        return self._control or self._client

    def start_client(self) -> None:
        """Connect, nothing more (``start`` also sees to the schema)."""
        if self._client is None:
            self._client = connect(self.dsn, compress=self.compress)
        if self.remote and self._control is None:
            self._control = connect(self.dsn, compress=self.compress)

    def start(self) -> None:
        self.start_client()
        try:
            self._schema()
        except ClickHouseError as exc:
            raise SinkError(f"schema set-up failed: {safe_error(exc)}") from None
        for check in self.start_checks:
            check(self)
        self._healthy = True

    def _schema(self) -> None:
        if not self.settings.manage_schema:
            missing = self.missing_objects()
            if missing:
                raise SinkError(
                    f"the store lacks {', '.join(missing)} in database {self.database}; run `beaconproxy "
                    "migrate` (clickhouse.manage_schema is off, so this replica does not create them)"
                )
            self._check_columns()
            self._report_retention_drift()
            return
        statements = self.apply_schema(cluster="")
        self._apply_rollup_definition(statements)
        self._check_columns()

    def apply_schema(self, cluster: str) -> list[str]:
        """Run the DDL (``ON CLUSTER`` with Replicated engines when ``cluster`` is set), then bring the
        retention and deduplication settings of existing tables in line. The statements run, in order."""
        done: list[str] = []
        for stmt in ddl_statements(self.database, self.settings, cluster):
            if self._column_exists(stmt):
                # Even a no-op ALTER rewrites the table's metadata file, and on a full disk ClickHouse
                # leaves it empty: the store could not be opened again. Only run it when needed.
                continue
            try:
                self.client.command(stmt)
            except ClickHouseError as exc:
                code = error_code(exc)
                if code in ALREADY_EXISTS:
                    continue
                if code == ACCESS_DENIED and self._exists(stmt):
                    continue  # no DDL rights, and nothing to create: fine
                if self._create_query("events"):  # an events table from elsewhere: say what it lacks
                    self._check_columns()
                raise
            done.append(stmt)
        done += self._apply_retention(cluster)
        return done

    def _column_exists(self, statement: str) -> bool:
        """Whether ``statement`` is an ``ALTER TABLE t ADD COLUMN IF NOT EXISTS c`` whose column exists."""
        match = _ADD_COLUMN.match(statement)
        if match is None:
            return False
        n = self.client.command(
            "SELECT count() FROM system.columns "
            "WHERE database = {db:String} AND table = {t:String} AND name = {c:String}",
            parameters={"db": self.database, "t": match["table"], "c": match["column"]},
        )
        return bool(int(str(n)))

    def _apply_rollup_definition(self, statements: list[str]) -> None:
        """Bring a rollup view made by an older version, and the rows it wrote, up to ROLLUP_VERSION.

        The view's COMMENT names its definition. An older view gets the new query (ALTER ... MODIFY
        QUERY: no moment without a view), then every events_daily row whose page or source the new rules
        would write differently is rewritten: re-inserted generalised (merged with its new key) and the
        old row deleted. The insert carries a fixed deduplication token, so a start that dies before the
        delete and runs again does not count anything twice. The COMMENT is set last, so that an
        interrupted upgrade is redone. (``statements``: the schema's, for the view's SELECT.)
        """
        db, view, daily = self.database, f"{self.database}.events_daily_mv", f"{self.database}.events_daily"
        comment = self.client.command(
            "SELECT comment FROM system.tables WHERE database = {db:String} AND name = 'events_daily_mv'",
            parameters={"db": db},
        )
        if str(comment) == ROLLUP_VERSION:
            return
        statements = statements or ddl_statements(self.database, self.settings)
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

    def _exists(self, stmt: str) -> bool:
        """Whether the object a CREATE ... IF NOT EXISTS statement names is there already."""
        match = re.match(
            r"CREATE (DATABASE|TABLE|MATERIALIZED VIEW|VIEW) IF NOT EXISTS ([A-Za-z0-9_.]+)", stmt
        )
        if match is None:
            return False
        if match.group(1) == "DATABASE":
            found = self.client.command(
                "SELECT count() FROM system.databases WHERE name = {db:String}",
                parameters={"db": match.group(2)},
            )
            return str(found) != "0"
        return bool(self._create_query(match.group(2).split(".", 1)[1]))

    def missing_objects(self) -> list[str]:
        """The tables and views of the schema that the store lacks."""
        result = self.client.query(
            "SELECT name FROM system.tables WHERE database = {db:String}", parameters={"db": self.database}
        )
        present = {str(row[0]) for row in result.result_rows}
        return [name for name in schema_objects(self.database, self.settings) if name not in present]

    def _create_query(self, table: str) -> str:
        return str(
            self.client.command(
                "SELECT create_table_query FROM system.tables "
                "WHERE database = {db:String} AND name = {t:String}",
                parameters={"db": self.database, "t": table},
            )
        )

    def _retention_changes(self) -> list[tuple[str, str]]:
        """(table, ALTER clause) for every retention or deduplication setting the store's tables lack."""
        ch = self.settings
        changes: list[tuple[str, str]] = []
        events = self._create_query("events")
        columns, _, engine = events.partition(" ENGINE = ")
        if f" TTL {normalised_ttl('ts', ch.retention_days)}" not in engine:
            changes.append(("events", f"MODIFY TTL {days_ttl('ts', ch.retention_days)}"))
        for column in PSEUDONYM_COLUMNS:
            if f"`{column}` " not in columns:
                continue  # a missing column is reported by _check_columns
            ttl = re.escape(normalised_ttl("ts", ch.pseudonym_retention_days))
            if not re.search(rf"`{column}` [^`]*? TTL {ttl}(?: |,|\)$)", columns):
                changes.append(
                    ("events", f"MODIFY COLUMN {column} TTL {days_ttl('ts', ch.pseudonym_retention_days)}")
                )
        for table, column, days in (
            ("events_daily", "day", ch.aggregate_retention_days),
            ("audit_log", "time", ch.audit_retention_days),
            ("subject_requests", "requested", request_retention_days(ch)),
            ("visits", "day", ch.retention_days),  # visits are derived from events: kept as long
            ("visit_days", "day", ch.retention_days),
        ):
            query = self._create_query(table)
            if query and f" TTL {normalised_ttl(column, days)}" not in query.partition(" ENGINE = ")[2]:
                changes.append((table, f"MODIFY TTL {days_ttl(column, days)}"))
        for table in ("events", "events_daily", "salts", "secret_fingerprints"):
            query = self._create_query(table)
            window = re.search(r"(non_replicated|replicated)_deduplication_window = (\d+)", query)
            if window and int(window.group(2)) != ch.deduplication_window:
                changes.append(
                    (
                        table,
                        f"MODIFY SETTING {window.group(1)}_deduplication_window = {ch.deduplication_window}",
                    )
                )
        return changes

    def _apply_retention(self, cluster: str) -> list[str]:
        """Retention settings change existing tables (ALTER ... TTL), not only new ones. A user without the
        right to alter them is told so in the log; the proxy still starts."""
        done = []
        for table, change in self._retention_changes():
            stmt = f"ALTER TABLE {self.database}.{table}{on_cluster(cluster)} {change}"
            try:
                self.client.command(stmt)
            except ClickHouseError as exc:
                if error_code(exc) != ACCESS_DENIED:
                    raise
                log.warning(
                    "store %s: %s.%s needs `%s`, which this database user may not run; run `beaconproxy "
                    "migrate`",
                    self.name,
                    self.database,
                    table,
                    change,
                )
                continue
            log.info("store %s: %s.%s %s", self.name, self.database, table, change)
            done.append(stmt)
        return done

    def _report_retention_drift(self) -> None:
        """With manage_schema off: say (never change) where the store's retention differs from ours."""
        for table, change in self._retention_changes():
            log.warning(
                "store %s: %s.%s differs from this replica's settings (%s); `beaconproxy migrate` with "
                "the intended settings aligns it",
                self.name,
                self.database,
                table,
                change,
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
                    **INSERT_SETTINGS,
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
                self._functions = adminsql.FunctionCatalog.load(self.control)
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
        for client in (self._client, self._control, self._query_client):
            if client is not None:
                client.close()
        self._client = self._control = self._query_client = None
