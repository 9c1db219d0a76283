"""Storage side of data-subject requests: find, export, delete rows by pseudonym; audit; suppressions;
the record of deletions and withdrawals that keeps a subject's late events out of the store.

Every statement takes values as bound query parameters. It runs on the sink's control client, from a
worker thread (never the event loop). Identifiers arrive here only as pseudonyms or subject HMACs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from clickhouse_connect.driver.exceptions import ClickHouseError

from sinks.base import SinkError
from sinks.clickhouse import ClickHouseSink, safe_error, store_settings

Kind = Literal["client_id", "user_id"]
_JSON_SETTINGS = {
    "output_format_json_quote_64bit_integers": 0,
    "output_format_json_escape_forward_slashes": 0,
}


@dataclass(frozen=True)
class SubjectRequest:
    """A recorded deletion or withdrawal: the subject's events up to ``cutoff`` are not stored."""

    site: str
    kind: str
    pseudonym: str
    cutoff: datetime


class SubjectStore:
    def __init__(self, sink: ClickHouseSink) -> None:
        self.sink = sink
        self.db = sink.database

    @property
    def name(self) -> str:
        """The store's name (``main`` or a named store)."""
        return self.sink.name

    def _command(self, sql: str, parameters: dict[str, Any], settings: dict[str, Any] | None = None) -> Any:
        try:
            return self.sink.control.command(sql, parameters=parameters, settings=settings)
        except ClickHouseError as exc:
            raise SinkError(f"subject request failed: {safe_error(exc)}") from None

    @staticmethod
    def _where(kind: Kind) -> str:
        # kind is a closed Literal, never caller text; the column name cannot be a bound parameter.
        return f"site = {{site:String}} AND {kind} IN {{pseudonyms:Array(String)}}"

    def count(self, site: str, kind: Kind, pseudonyms: Sequence[str]) -> int:
        n = self._command(
            f"SELECT count() FROM {self.db}.events WHERE {self._where(kind)}",  # noqa: S608 - db and column names come from validated settings/Literal
            {"site": site, "pseudonyms": list(pseudonyms)},
        )
        return int(n)

    def export(self, site: str, kind: Kind, pseudonyms: Sequence[str], fmt: Literal["json", "csv"]) -> bytes:
        """Every stored row of the subject, oldest first, as JSON lines or CSV with a header."""
        try:
            data: Any = self.sink.control.raw_query(
                f"SELECT * FROM {self.db}.events WHERE {self._where(kind)} ORDER BY ts",  # noqa: S608 - db and column names come from validated settings/Literal
                parameters={"site": site, "pseudonyms": list(pseudonyms)},
                fmt="JSONEachRow" if fmt == "json" else "CSVWithNames",
                settings=_JSON_SETTINGS,
            )
        except ClickHouseError as exc:
            raise SinkError(f"export failed: {safe_error(exc)}") from None
        return bytes(data)

    def delete(self, site: str, kind: Kind, pseudonyms: Sequence[str]) -> int:
        """Delete the subject's rows (a synchronous mutation: parts are rewritten, not just masked)."""
        params = {"site": site, "pseudonyms": list(pseudonyms)}
        before = self.count(site, kind, pseudonyms)
        if before:
            self._command(
                f"ALTER TABLE {self.db}.events DELETE WHERE {self._where(kind)}",
                params,
                settings={"mutations_sync": 2},
            )
        remaining = self.count(site, kind, pseudonyms)
        if remaining:
            raise SinkError(f"deletion incomplete: {remaining} rows remain")
        return before

    def audit(self, action: str, site: str, kind: Kind, pseudonym: str, rows: int, actor: str) -> None:
        try:
            self.sink.control.insert(
                f"{self.db}.audit_log",
                [[datetime.now(UTC), action, site, kind, pseudonym, rows, actor]],
                column_names=["time", "action", "site", "kind", "pseudonym", "rows", "actor"],
                settings=store_settings(self.sink, "insert"),
            )
        except ClickHouseError as exc:
            raise SinkError(f"audit write failed: {safe_error(exc)}") from None

    def block(self, site: str, kind: Kind, subject: str) -> None:
        try:
            self.sink.control.insert(
                f"{self.db}.suppressions",
                [[site, kind, subject, 1, datetime.now(UTC)]],
                column_names=["site", "kind", "subject", "blocked", "updated"],
                settings=store_settings(self.sink, "insert"),
            )
        except ClickHouseError as exc:
            raise SinkError(f"suppression write failed: {safe_error(exc)}") from None

    def unblock(self, site: str, kind: Kind, subject: str) -> None:
        """Forget the subject entirely: an unblocked subject leaves no trace in the list."""
        self._command(
            f"ALTER TABLE {self.db}.suppressions DELETE "
            "WHERE site = {site:String} AND kind = {kind:String} AND subject = {subject:String}",
            {"site": site, "kind": kind, "subject": subject},
            settings={"mutations_sync": 2},
        )

    def blocked(self) -> list[tuple[str, str, str]]:
        """Every currently blocked (site, kind, subject): the latest row per subject wins."""
        try:
            result = self.sink.control.query(
                f"SELECT site, kind, subject FROM {self.db}.suppressions FINAL WHERE blocked = 1",  # noqa: S608 - db and column names come from validated settings/Literal
                settings=store_settings(self.sink, "read"),
            )
        except ClickHouseError as exc:
            raise SinkError(f"loading suppressions failed: {safe_error(exc)}") from None
        return [(str(a), str(b), str(c)) for a, b, c in result.result_rows]

    def record_request(
        self, action: str, site: str, kind: Kind, pseudonyms: Sequence[str], cutoff: datetime
    ) -> list[SubjectRequest]:
        """Record a deletion or withdrawal before any row is deleted (under every pseudonym of the
        subject), so that every replica's shipper keeps the subject's late events out."""
        now = datetime.now(UTC)
        rows = [[now, cutoff, action, site, kind, p] for p in pseudonyms]
        try:
            self.sink.control.insert(
                f"{self.db}.subject_requests",
                rows,
                column_names=["requested", "cutoff", "action", "site", "kind", "pseudonym"],
                settings=store_settings(self.sink, "insert"),
            )
        except ClickHouseError as exc:
            raise SinkError(f"recording the request failed: {safe_error(exc)}") from None
        return [SubjectRequest(site, kind, p, cutoff) for p in pseudonyms]

    def request_count(self) -> int:
        try:
            n = self.sink.control.command(
                f"SELECT count() FROM {self.db}.subject_requests",  # noqa: S608 - db from validated settings
                settings=store_settings(self.sink, "read"),
            )
            return int(str(n))
        except ClickHouseError as exc:
            raise SinkError(f"reading subject requests failed: {safe_error(exc)}") from None

    def requests(self) -> list[SubjectRequest]:
        """Every recorded deletion and withdrawal still kept (the latest cutoff per subject)."""
        try:
            result = self.sink.control.query(
                f"SELECT site, kind, pseudonym, max(cutoff) FROM {self.db}.subject_requests "  # noqa: S608 - db from validated settings
                "GROUP BY site, kind, pseudonym",
                settings=store_settings(self.sink, "read"),
            )
        except ClickHouseError as exc:
            raise SinkError(f"reading subject requests failed: {safe_error(exc)}") from None
        out = []
        for site, kind, pseudonym, cutoff in result.result_rows:
            when = cutoff if cutoff.tzinfo else cutoff.replace(tzinfo=UTC)
            out.append(SubjectRequest(str(site), str(kind), str(pseudonym), when))
        return out
