"""Visits of past UTC days kept in the store, rebuilt from ``events`` with the one visit definition.

Making visits at query time costs a sort of every event of the range per query; for a dashboard over 30
days of millions of events that is seconds. So the process that owns the store (the single process, or
the primary of ``--workers N``; on a remote store every replica's) rebuilds each past UTC day's visits into
``visits`` whenever that day's event count differs from the count it was last built from (late events,
replays from the spool, deletions), then records the rebuild in ``visit_days``. Queries read ``visits``
for recorded days and make visits from ``events`` for the rest (today, and any day not yet rebuilt), so
answers are never staler than the events, and the same on every replica: a rebuild is a function of
the stored events alone, and two replicas rebuilding the same day write the same rows.

Days are UTC days because the visitor hash changes at UTC midnight: no visit crosses one.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from proxy.stats import visits
from sinks.base import SinkError
from sinks.clickhouse import connect, safe_error

log = logging.getLogger(__name__)
RECENT_DAYS = 3  # checked at every refresh; all days at start and every FULL_CHECK_SECONDS
FULL_CHECK_SECONDS = 3600
ARRAYS = (
    ("starts", "vstart"),
    ("pageviews", "v_pageviews"),
    ("events", "v_events"),
    ("bounces", "v_bounce"),
    ("durations", "v_duration"),
    ("entry_pages", "entry_page"),
    ("exit_pages", "exit_page"),
    ("ref_hosts", "v_ref_host"),
    ("utm_sources", "v_utm_source"),
    ("utm_mediums", "v_utm_medium"),
    ("utm_campaigns", "v_utm_campaign"),
    ("utm_contents", "v_utm_content"),
    ("utm_terms", "v_utm_term"),
)


def rebuild_sql(db: str) -> str:
    """All visits of one site and UTC day (``{site:String}``, ``{day:Date}``) as ``visits`` rows."""
    carried = [("page", "page"), ("ref_host", "ref_host"), *((u, u) for u in visits.UTM_COLUMNS)]
    page, ref = visits.field(0), visits.field(1)
    cols = [
        f"{visits.pageviews_sql()} AS v_pageviews",
        f"{visits.events_sql()} AS v_events",
        f"{visits.bounce_sql()} AS v_bounce",
        f"{visits.duration_sql()} AS v_duration",
        f"{visits.entry_sql(page)} AS entry_page",
        f"{visits.exit_sql(page)} AS exit_page",
        f"{visits.first_sql(ref)} AS v_ref_host",
        *(f"{visits.first_sql(visits.field(2 + i))} AS v_{u}" for i, u in enumerate(visits.UTM_COLUMNS)),
    ]
    events = (
        f"SELECT {visits.event_columns_sql()} FROM {db}.events WHERE site = {{site:String}} "
        "AND ts >= toDateTime64({day:Date}, 3, 'UTC') AND ts < toDateTime64({day:Date} + 1, 3, 'UTC')"
    )
    relation = visits.visits_sql(events, carried, cols)
    arrays = ", ".join(f"groupArray({expr}) AS {name}" for name, expr in ARRAYS)
    who = ", ".join(visits.VISITOR_COLUMNS)
    names = ", ".join(n for n, _ in ARRAYS)
    return (
        f"INSERT INTO {db}.visits (site, day, visitor_hash, version, {who}, {names}) "
        f"SELECT {{site:String}}, {{day:Date}}, vh, {{version:UInt64}}, {who}, {arrays} "
        f"FROM ({relation}) GROUP BY vh, {who}"
    )


def read_sql(db: str, visitor_columns: list[str], visit_columns: list[str], where: str) -> str:
    """Visits from ``visits`` in the shape of a query-time visits relation (:func:`visits.visits_sql`):
    ``vh``, the visitor columns, ``vstart``, then the visit columns (aliases), in the order given."""
    array_of = {e: n for n, e in ARRAYS}
    join = ", ".join(f"{array_of[e]} AS {e}" for e in ["vstart", *visit_columns])
    cols = ", ".join(["visitor_hash AS vh", *visitor_columns, "vstart", *visit_columns])
    return f"SELECT {cols} FROM {db}.visits ARRAY JOIN {join} WHERE {where}"


def covered_sql(db: str) -> str:
    """The recorded version of each rebuilt day of ``{site:String}`` in ``[{first:Date}, {last:Date}]``."""
    return (
        f"SELECT toString(day) AS covered_day, max(version) AS covered_version FROM {db}.visit_days "
        "WHERE site = {site:String} AND day >= {first:Date} AND day <= {last:Date} GROUP BY day ORDER BY day"
    )


class VisitStore:
    """Rebuilds stale days. Runs on a worker thread of the store process, with a client of its own."""

    def __init__(self, dsn: str, database: str, compress: bool = True) -> None:
        self.dsn = dsn
        self.db = database
        self.compress = compress
        self._client: Client | None = None
        self._last_full = 0.0

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = connect(self.dsn, compress=self.compress)
        return self._client

    def stale(self, today: date, full: bool) -> list[tuple[str, date, int]]:
        """(site, day, events now) of every past day whose visits are missing or older than its events."""
        since = date(1970, 1, 2) if full else today - timedelta(days=RECENT_DAYS)
        rows = self.client.query(
            "SELECT e.site, e.day, e.n FROM (SELECT site, toDate(ts) AS day, count() AS n "
            f"FROM {self.db}.events "
            "WHERE ts >= toDateTime64({since:Date}, 3, 'UTC') AND ts < toDateTime64({today:Date}, 3, 'UTC') "
            f"GROUP BY site, day) AS e LEFT JOIN (SELECT site, day, argMax(events, version) AS n "
            f"FROM {self.db}.visit_days GROUP BY site, day) AS v ON e.site = v.site AND e.day = v.day "
            "WHERE e.n != v.n ORDER BY e.day DESC, e.site",
            parameters={"since": since.isoformat(), "today": today.isoformat()},
            settings={"join_use_nulls": 0},
        ).result_rows
        return [(str(s), d, int(n)) for s, d, n in rows]

    def rebuild(self, site: str, day: date, events: int) -> None:
        version = time.time_ns() // 1_000_000
        params: dict[str, Any] = {"site": site, "day": day.isoformat(), "version": version}
        self.client.command(rebuild_sql(self.db), parameters=params)
        # Recorded only once every row is written: readers never see a half-written day. Then the older
        # versions go (a crash before this leaves rows nobody reads, removed at the day's next rebuild).
        self.client.insert(
            f"{self.db}.visit_days",
            [[site, day, version, events]],
            column_names=["site", "day", "version", "events"],
        )
        self.client.command(
            f"DELETE FROM {self.db}.visits WHERE site = {{site:String}} AND day = {{day:Date}} "
            "AND version < {version:UInt64}",
            parameters=params,
        )

    def refresh(self, now: datetime | None = None, full: bool | None = None) -> int:
        """Rebuild every stale day (newest first); returns how many."""
        moment = now or datetime.now(UTC)
        if full is None:
            full = time.monotonic() - self._last_full > FULL_CHECK_SECONDS or not self._last_full
        try:
            stale = self.stale(moment.astimezone(UTC).date(), full)
            for site, day, events in stale:
                self.rebuild(site, day, events)
        except ClickHouseError as exc:
            raise SinkError(f"visit rebuild failed: {safe_error(exc)}") from None
        if full:
            self._last_full = time.monotonic()
        if stale:
            log.info("visits rebuilt for %d site-days", len(stale))
        return len(stale)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
