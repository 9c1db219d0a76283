"""Dashboard sessions: signing in with an analyst key opens a session that stands for that key.

The browser gets a random 256-bit token in an HttpOnly cookie (proxy/dashboard/session_cookie.py), never
the key. The store's ``dashboard_sessions`` table holds the token's SHA-256 (256 random bits: a plain hash
is enough, there is nothing to guess), the key's id and the expiry, so every replica knows every session
and none trusts its own memory for one: state shared by replicas lives in the store. A session is good
while

* it has not expired (``dashboard.session_hours`` after sign-in) nor been ended (signing out writes a newer
  row with ``ended = 1``), and
* its key is live: the key is looked up by id on every use (:meth:`AnalystKeys.live`), so revoking the key
  ends all of its sessions, on every replica, within ``analytics.key_cache_seconds``, and the session
  reads exactly the sites the key reads now.

What a process read about a session is trusted for ``analytics.key_cache_seconds`` (as for keys), so a
sign-out reaches other replicas within that time and reaches this one at once. The token is never logged
and never stored; a bad or unknown token is just "no session".
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.exceptions import ClickHouseError

from proxy.stats.keys import AnalystKey, AnalystKeys
from sinks.base import SinkError
from sinks.clickhouse import ClickHouseSink, safe_error

TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)
MAX_CACHED = 10_000


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SessionRow:
    key_id: str
    expires: datetime
    ended: bool


class SessionStore:
    """The ``dashboard_sessions`` table, through the sink's writer client."""

    def __init__(self, sink: ClickHouseSink) -> None:
        self.sink = sink
        self.table = f"{sink.database}.dashboard_sessions"

    def write(self, hashed: str, key_id: str, created: datetime, expires: datetime, ended: bool) -> None:
        try:
            self.sink.client.insert(
                self.table,
                [[hashed, key_id, created, expires, int(ended), datetime.now(UTC)]],
                column_names=["token_hash", "key_id", "created", "expires", "ended", "updated"],
            )
        except ClickHouseError as exc:
            raise SinkError(f"dashboard session write failed: {safe_error(exc)}") from None

    def read(self, hashed: str) -> tuple[SessionRow, datetime] | None:
        """The session's latest row and its creation time, or None."""
        try:
            result = self.sink.client.query(
                f"SELECT key_id, created, expires, ended FROM {self.table} FINAL "  # noqa: S608 - table name from validated settings
                "WHERE token_hash = {h:String}",
                parameters={"h": hashed},
            )
        except ClickHouseError as exc:
            raise SinkError(f"dashboard session read failed: {safe_error(exc)}") from None
        if not result.result_rows:
            return None
        key_id, created, expires, ended = result.result_rows[0]
        return SessionRow(str(key_id), _utc(expires), bool(ended)), _utc(created)


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class Sessions:
    def __init__(
        self, store: SessionStore, keys: AnalystKeys, lifetime: timedelta, cache_seconds: float
    ) -> None:
        self.store = store
        self.keys = keys
        self.lifetime = lifetime
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, SessionRow | None]] = {}
        self._lock = threading.Lock()

    def open(self, key: AnalystKey, now: datetime | None = None) -> tuple[str, datetime]:
        """A new session for the live ``key``: (the token for the cookie, when it expires)."""
        now = now or datetime.now(UTC)
        created = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as stored (DateTime64(3))
        expires = created + self.lifetime
        token = secrets.token_urlsafe(32)
        self.store.write(token_hash(token), key.key_id, created, expires, ended=False)
        return token, expires

    def resolve(self, token: str, now: datetime | None = None) -> AnalystKey | None:
        """The live key a live session stands for; None for anything else."""
        if not TOKEN.match(token):
            return None
        row = self._row(token_hash(token))
        if row is None or row.ended or (now or datetime.now(UTC)) >= row.expires:
            return None
        return self.keys.live(row.key_id)

    def end(self, token: str) -> None:
        """Sign out: a newer row says the session ended (here at once, elsewhere within the cache time)."""
        if not TOKEN.match(token):
            return
        hashed = token_hash(token)
        found = self.store.read(hashed)
        if found is None:
            return
        row, created = found
        self.store.write(hashed, row.key_id, created, row.expires, ended=True)
        with self._lock:
            self._cache[hashed] = (time.monotonic(), SessionRow(row.key_id, row.expires, True))

    def _row(self, hashed: str) -> SessionRow | None:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(hashed)
        if cached is None or now - cached[0] > self.cache_seconds:
            found = self.store.read(hashed)
            cached = (now, found[0] if found else None)
            with self._lock:
                if len(self._cache) > MAX_CACHED:
                    self._cache.clear()
                self._cache[hashed] = cached
        return cached[1]
