"""State every replica must agree on, kept in the store itself (nothing home-made in between): the day's
visitor-hash salt, the fingerprints of the shared secrets, and the replicas' heartbeats.

"First writer wins" is ClickHouse's insert deduplication: each replica inserts its own candidate with the
same deduplication token (the day, or the secret's name and version); the store keeps the first insert and
drops the others as duplicates, and every replica reads the winner back. Runs on the sink's control
client, off the event loop. Values are wrapped or hashed before they get here; nothing here logs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.exceptions import ClickHouseError

from sinks.base import SinkError
from sinks.clickhouse import INSERT_SETTINGS, ClickHouseSink, safe_error, store_settings


@dataclass(frozen=True)
class ReplicaState:
    """A replica's last heartbeat in a store."""

    replica: str
    config_hash: str
    seen: datetime
    spool_segments: int
    spool_bytes: int
    oldest_spooled_seconds: float
    stopped: bool = False  # its last heartbeat came as it stopped gracefully


class SharedState:
    def __init__(self, sink: ClickHouseSink) -> None:
        self.sink = sink
        self.db = sink.database

    def _query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        try:
            result = self.sink.control.query(
                sql, parameters=parameters, settings=store_settings(self.sink, "read")
            )
        except ClickHouseError as exc:
            raise SinkError(f"reading shared state failed: {safe_error(exc)}") from None
        return [tuple(row) for row in result.result_rows]

    def _insert(
        self, table: str, row: list[Any], columns: list[str], token: str | None = None, *, quorum: bool = True
    ) -> None:
        """``quorum``: on a cluster, wait for a majority of replicas (what other replicas must read
        back); heartbeats do not, so a ClickHouse node down never stops them."""
        settings: dict[str, Any] = store_settings(self.sink, "insert") if quorum else dict(INSERT_SETTINGS)
        if token is not None:
            settings["insert_deduplication_token"] = token
        try:
            self.sink.control.insert(f"{self.db}.{table}", [row], column_names=columns, settings=settings)
        except ClickHouseError as exc:
            raise SinkError(f"writing shared state failed: {safe_error(exc)}") from None

    # -- the day's salt

    def salt(self, day: date, candidate: str) -> str | None:
        """The day's (wrapped) salt: ``candidate`` if this replica is the first to offer one, else the
        one that won. None if none can be read back yet (a replica behind on replication)."""
        self._insert(
            "salts", [day, candidate, datetime.now(UTC)], ["day", "salt", "created"], token=f"salt:{day}"
        )
        rows = self._query(
            f"SELECT salt FROM {self.db}.salts WHERE day = {{day:Date}} ORDER BY created LIMIT 1",  # noqa: S608 - db from validated settings
            {"day": day},
        )
        return str(rows[0][0]) if rows else None

    def purge_salts(self, today: date) -> int:
        """Drop the salts of days before ``today``; how many days were dropped."""
        days = [
            row[0]
            for row in self._query(
                f"SELECT DISTINCT day FROM {self.db}.salts WHERE day < {{today:Date}}",  # noqa: S608 - db from validated settings
                {"today": today},
            )
        ]
        for day in days:
            try:
                self.sink.control.command(
                    f"ALTER TABLE {self.db}.salts DELETE WHERE day = {{day:Date}}",
                    parameters={"day": day},
                    settings={"mutations_sync": 2},
                )
            except ClickHouseError as exc:
                raise SinkError(f"deleting an old salt failed: {safe_error(exc)}") from None
        return len(days)

    # -- the secrets' fingerprints

    def fingerprints(self) -> dict[str, tuple[str, int]]:
        """name -> (fingerprint, version) of the latest pinned version of each secret."""
        rows = self._query(
            f"SELECT name, argMax(fingerprint, version), max(version) FROM {self.db}.secret_fingerprints "  # noqa: S608 - db from validated settings
            "GROUP BY name"
        )
        return {str(name): (str(fp), int(version)) for name, fp, version in rows}

    def pin(self, name: str, fingerprint: str, version: int) -> None:
        """Offer a fingerprint as ``version`` of the secret; the first offer of a version wins."""
        self._insert(
            "secret_fingerprints",
            [name, fingerprint, version, datetime.now(UTC)],
            ["name", "fingerprint", "version", "pinned"],
            token=f"fingerprint:{name}:{version}",
        )

    # -- heartbeats

    def heartbeat(self, state: ReplicaState, started: datetime) -> None:
        self._insert(
            "replicas",
            [
                state.replica,
                state.config_hash,
                started,
                state.seen,
                state.spool_segments,
                state.spool_bytes,
                state.oldest_spooled_seconds,
                int(state.stopped),
            ],
            [
                "replica",
                "config_hash",
                "started",
                "seen",
                "spool_segments",
                "spool_bytes",
                "oldest_spooled_seconds",
                "stopped",
            ],
            quorum=False,
        )

    def replicas(self, within: timedelta) -> list[ReplicaState]:
        """Every replica heard from within ``within``, as its latest heartbeat says."""
        since = datetime.now(UTC) - within
        columns = (
            "replica, argMax(config_hash, seen), max(seen), argMax(spool_segments, seen), "
            "argMax(spool_bytes, seen), argMax(oldest_spooled_seconds, seen), argMax(stopped, seen)"
        )
        rows = self._query(
            f"SELECT {columns} FROM {self.db}.replicas GROUP BY replica "  # noqa: S608 - db from validated settings
            "HAVING max(seen) >= {since:DateTime64(3, 'UTC')} ORDER BY replica",
            {"since": since},
        )
        out = []
        for replica, config_hash, seen, segments, size, oldest, stopped in rows:
            out.append(
                ReplicaState(
                    str(replica),
                    str(config_hash),
                    seen if seen.tzinfo else seen.replace(tzinfo=UTC),
                    int(segments),
                    int(size),
                    float(oldest),
                    bool(stopped),
                )
            )
        return out
