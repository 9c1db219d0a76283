"""Analyst keys: a key reads the sites it names and nothing else.

``beaconproxy analyst-key create --site SITE`` prints a new key once; only its SHA-256 is stored, in the
store's ``analyst_keys`` table, so every replica knows every key and a revocation (a newer row) reaches all
of them within ``analytics.key_cache_seconds``. Keys are 256 random bits, so a plain hash is enough: there
is nothing to guess. A key looks like ``bpk_<id>_<secret>``; the id is public (lists, logs, rate limits).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from clickhouse_connect.driver.exceptions import ClickHouseError

from sinks.base import SinkError
from sinks.clickhouse import ClickHouseSink, safe_error

PREFIX = "bpk_"
_KEY = re.compile(r"^bpk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
MAX_LABEL = 200


class AnalystKeyError(ValueError):
    """A bad key request (unknown site, unknown id); the message says which."""


@dataclass(frozen=True, slots=True)
class AnalystKey:
    key_id: str
    sites: tuple[str, ...]
    label: str
    created: datetime
    revoked: bool

    def public(self) -> dict[str, object]:
        return {
            "id": self.key_id,
            "sites": list(self.sites),
            "label": self.label,
            "created": self.created.astimezone(UTC).isoformat(timespec="seconds"),
            "revoked": self.revoked,
        }


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    """The ``analyst_keys`` table, through the sink's writer client (never the analysts' read-only one)."""

    def __init__(self, sink: ClickHouseSink) -> None:
        self.sink = sink
        self.table = f"{sink.database}.analyst_keys"

    def write(self, key: AnalystKey, key_hash: str) -> None:
        try:
            self.sink.client.insert(
                self.table,
                [
                    [
                        key.key_id,
                        key_hash,
                        list(key.sites),
                        key.label,
                        key.created,
                        int(key.revoked),
                        datetime.now(UTC),
                    ]
                ],
                column_names=["key_id", "key_hash", "sites", "label", "created", "revoked", "updated"],
            )
        except ClickHouseError as exc:
            raise SinkError(f"analyst key write failed: {safe_error(exc)}") from None

    def read(self, key_id: str | None = None) -> list[tuple[AnalystKey, str]]:
        where = "WHERE key_id = {id:String}" if key_id is not None else ""
        try:
            result = self.sink.client.query(
                f"SELECT key_id, key_hash, sites, label, created, revoked FROM {self.table} FINAL {where} "  # noqa: S608 - table name from validated settings
                "ORDER BY created, key_id",
                parameters={"id": key_id} if key_id is not None else None,
            )
        except ClickHouseError as exc:
            raise SinkError(f"analyst key read failed: {safe_error(exc)}") from None
        out = []
        for kid, khash, sites, label, created, revoked in result.result_rows:
            when = created if created.tzinfo else created.replace(tzinfo=UTC)
            out.append((AnalystKey(str(kid), tuple(sites), str(label), when, bool(revoked)), str(khash)))
        return out


class AnalystKeys:
    def __init__(self, store: KeyStore, known_sites: Sequence[str], cache_seconds: float) -> None:
        self.store = store
        self.known_sites = frozenset(known_sites)
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, AnalystKey | None, str]] = {}
        self._lock = threading.Lock()

    def create(self, sites: Sequence[str], label: str = "") -> tuple[str, AnalystKey]:
        if not sites:
            raise AnalystKeyError("name at least one site (--site)")
        unknown = [s for s in sites if s not in self.known_sites]
        if unknown:
            raise AnalystKeyError(
                f"unknown site {unknown[0]!r}; configured sites: {', '.join(sorted(self.known_sites))}"
            )
        if len(label) > MAX_LABEL:
            raise AnalystKeyError(f"label longer than {MAX_LABEL} characters")
        key_id = secrets.token_hex(8)
        text = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        now = datetime.now(UTC)
        created = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as stored (DateTime64(3))
        key = AnalystKey(key_id, tuple(dict.fromkeys(sites)), label, created, False)
        self.store.write(key, digest(text))
        return text, key

    def list(self) -> list[AnalystKey]:
        return [k for k, _ in self.store.read()]

    def revoke(self, key_id: str) -> AnalystKey:
        found = self.store.read(key_id)
        if not found:
            raise AnalystKeyError("no analyst key with that id")
        key, key_hash = found[0]
        revoked = AnalystKey(key.key_id, key.sites, key.label, key.created, True)
        self.store.write(revoked, key_hash)
        with self._lock:
            self._cache.pop(key_id, None)
        return revoked

    def verify(self, text: str) -> AnalystKey | None:
        """The key ``text`` names, if it is a live key; None otherwise. Reads the store at most once per
        key id every ``cache_seconds``."""
        m = _KEY.match(text)
        if m is None:
            return None
        key, key_hash = self._lookup(m.group(1))
        if key is None or key.revoked or not hmac.compare_digest(key_hash, digest(text)):
            return None
        return key

    def live(self, key_id: str) -> AnalystKey | None:
        """The key with id ``key_id`` if it exists and is not revoked (for a dashboard session, which holds
        the id, never the key); cached like :meth:`verify`."""
        key, _ = self._lookup(key_id)
        return key if key is not None and not key.revoked else None

    def _lookup(self, key_id: str) -> tuple[AnalystKey | None, str]:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key_id)
        if cached is None or now - cached[0] > self.cache_seconds:
            found = self.store.read(key_id)
            cached = (now, found[0][0], found[0][1]) if found else (now, None, "")
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key_id] = cached
        return cached[1], cached[2]
