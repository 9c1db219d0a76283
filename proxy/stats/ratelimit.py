"""Requests per analyst key and hour, counted in the store so that every replica shares one budget.

Each request adds 1 to its key's current minute in ``analyst_requests`` (a SummingMergeTree); a request
is refused while the last 60 minutes already hold ``analytics.rate_limit_per_hour``, and ``Retry-After``
says when the oldest of them leaves the window. Replicas checking at the same instant can each let one
request through, so the budget can be overshot by at most the number of replicas at that instant (an
in-memory limit per process would instead multiply the budget by the number of processes).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.exceptions import ClickHouseError

from sinks.base import SinkError
from sinks.clickhouse import ClickHouseSink, safe_error

WINDOW = timedelta(hours=1)


class RateLimiter:
    def __init__(self, sink: ClickHouseSink, per_hour: int) -> None:
        self.sink = sink
        self.per_hour = per_hour
        self.table = f"{sink.database}.analyst_requests"

    def hit(self, key_id: str, now: datetime | None = None) -> int | None:
        """Count a request; None if allowed, else the seconds to wait (the request is not counted)."""
        now = (now or datetime.now(UTC)).astimezone(UTC)
        minute = now.replace(second=0, microsecond=0)
        since = minute - WINDOW + timedelta(minutes=1)
        try:
            result = self.sink.client.query(
                f"SELECT minute, sum(requests) FROM {self.table} "  # noqa: S608 - table name from validated settings
                "WHERE key_id = {id:String} AND minute >= {since:DateTime('UTC')} "
                "GROUP BY minute ORDER BY minute",
                parameters={"id": key_id, "since": since.strftime("%Y-%m-%d %H:%M:%S")},
            )
            counts = [(m if m.tzinfo else m.replace(tzinfo=UTC), int(n)) for m, n in result.result_rows]
            if sum(n for _, n in counts) >= self.per_hour:
                oldest = counts[0][0]
                return max(1, int((oldest + WINDOW - now).total_seconds()) + 1)
            self.sink.client.insert(
                self.table, [[key_id, minute, 1]], column_names=["key_id", "minute", "requests"]
            )
        except ClickHouseError as exc:
            raise SinkError(f"rate limit check failed: {safe_error(exc)}") from None
        return None
