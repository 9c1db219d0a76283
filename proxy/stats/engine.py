"""Run analyst queries on the store: one client of its own, ClickHouse limits on every query.

Each query carries ``readonly``, ``max_execution_time``, ``max_result_rows`` (both throwing) and
``max_threads`` as ClickHouse settings, so an analyst query can neither write, run long, return an
unbounded answer, nor take every core from ingestion. Calls block: routes run them on a worker thread.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from config.settings import Settings
from proxy.stats import sql, suppress, visit_store
from proxy.stats.parse import SiteContext
from proxy.stats.query import Query, QueryError
from proxy.stats.referrers import Referrers
from sinks.base import SinkError
from sinks.clickhouse import connect, safe_error

log = logging.getLogger(__name__)
_CODE = re.compile(r"Code: (\d+)")
TOO_MANY_ROWS, TIMEOUT, BAD_REGEXP = 396, 159, 427


class StatsUnavailable(RuntimeError):
    """The store cannot answer now (down, or not yet started)."""


@dataclass(frozen=True, slots=True)
class Result:
    query: Query
    rows: list[tuple[list[Any], list[Any]]]  # (dimension values, metric values), this page
    withheld: suppress.Withheld


class StatsEngine:
    def __init__(
        self, settings: Settings, dsn: str, referrers: Referrers, database: str | None = None
    ) -> None:
        self.settings = settings
        self.dsn = dsn
        self.database = database or settings.clickhouse.database  # a named store's own database
        self.referrers = referrers.parameters()
        self._client: Client | None = None
        a = settings.analytics
        self.query_settings: dict[str, Any] = {
            "readonly": 2,
            "max_execution_time": a.max_execution_seconds,
            "timeout_overflow_mode": "throw",
            "max_result_rows": a.max_result_rows,
            "result_overflow_mode": "throw",
            "max_threads": a.max_threads,
        }

    @property
    def client(self) -> Client:
        # Its own client: chDB keeps per-query settings on the session, and readonly must never reach the
        # writer's session (see ClickHouseSink).
        if self._client is None:
            try:
                self._client = connect(self.dsn, compress=self.settings.clickhouse.compress)
            except SinkError as exc:
                raise StatsUnavailable(str(exc)) from None
        return self._client

    def context(self, site: str, now: datetime) -> SiteContext:
        s = self.settings.sites[site]
        k = s.min_visitors if s.min_visitors is not None else self.settings.analytics.min_visitors
        return SiteContext(site, s.timezone, k, now, lambda: self.first_day(site, s.timezone))

    def _rows(self, statement: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            result = self.client.query(statement, parameters=parameters, settings=self.query_settings)
            return list(result.named_results())
        except ClickHouseError as exc:
            match = _CODE.search(str(exc))
            code = int(match.group(1)) if match else 0
            a = self.settings.analytics
            if code == TOO_MANY_ROWS:
                raise QueryError(
                    f"Invalid pagination: the answer would exceed {a.max_result_rows} rows "
                    "(analytics.max_result_rows); ask for fewer rows."
                ) from None
            if code == TIMEOUT:
                raise QueryError(
                    f"Invalid query: it ran past the time limit of {a.max_execution_seconds:g} s "
                    "(analytics.max_execution_seconds); narrow date_range, dimensions or filters."
                ) from None
            if code == BAD_REGEXP:
                raise QueryError(
                    "Invalid filters: a 'matches' clause is not a valid regular expression."
                ) from None
            log.error("stats query failed: %s", safe_error(exc))
            raise StatsUnavailable(f"the store could not answer: {safe_error(exc)}") from None
        except (OSError, SinkError) as exc:
            raise StatsUnavailable(f"the store could not answer: {type(exc).__name__}") from None

    def covered(self, q: Query) -> list[tuple[str, int]]:
        """The past UTC days of the query whose visits are rebuilt in the store (``visit_store``)."""
        first = q.start.astimezone(UTC).date()
        last = min(
            (q.end - timedelta(milliseconds=1)).astimezone(UTC).date(),
            datetime.now(UTC).date() - timedelta(days=1),
        )
        if last < first:
            return []
        rows = self._rows(
            visit_store.covered_sql(self.database),
            {"site": q.site, "first": first.isoformat(), "last": last.isoformat()},
        )
        return [(str(r["covered_day"]), int(r["covered_version"])) for r in rows]

    def run(self, q: Query) -> Result:
        covered = self.covered(q) if sql.plan(q) == "visits" else []
        statement = sql.build(q, self.database, self.referrers, covered)
        rows = self._rows(statement.sql, statement.parameters)
        shown, withheld = suppress.withhold(q, rows)
        out = [([r[d] for d in statement.dimensions], [r[m] for m in statement.metrics]) for r in shown]
        return Result(q, out, withheld)

    def first_day(self, site: str, tz: str) -> date | None:
        rows = self._rows(
            f"SELECT toString(toDate(min(ts), {{tz:String}})) AS day, count() AS n "  # noqa: S608 - database from validated settings
            f"FROM {self.database}.events WHERE site = {{site:String}}",
            {"site": site, "tz": tz},
        )
        return date.fromisoformat(rows[0]["day"]) if rows and rows[0]["n"] else None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
