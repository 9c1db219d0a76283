"""Keeps a deleted subject's late events out of the store.

A deletion or withdrawal is recorded in the store (``subject_requests``) before any row is deleted. Every
shipper, on every replica, screens each segment against those records just before inserting it: an event
of such a subject whose time is not after the request's cutoff is withheld (counted, never stored). So
"zero rows remain" stays true when another replica's spool still held the subject's events, or when a
replica that was cut off from the store ships them after it reconnects.

On a remote store the records are re-read before each insert (a ``count()`` first; everything only when
it changed, and at least every ``full_reload_seconds``): a request recorded by any replica applies from
the next insert on. On the embedded store only this process records requests, so it reads them once and
is told of new ones directly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import orjson

from proxy.model import EVENT_COLUMNS
from sinks.codec import VERSION
from sinks.subject_store import SubjectRequest, SubjectStore

log = logging.getLogger(__name__)

_SITE = EVENT_COLUMNS.index("site")
_TS = EVENT_COLUMNS.index("ts")
_KINDS = (("client_id", EVENT_COLUMNS.index("client_id")), ("user_id", EVENT_COLUMNS.index("user_id")))


class RequestFilter:
    def __init__(self, store: SubjectStore, *, shared: bool, full_reload_seconds: float = 60.0) -> None:
        self.store = store
        self.shared = shared  # other processes may record requests: re-read before each insert
        self.full_reload_seconds = full_reload_seconds
        self._lock = threading.Lock()
        self._cutoffs: dict[tuple[str, str, str], datetime] = {}
        self._count = -1  # rows in subject_requests at the last read (-1: never read)
        self._loaded_at = -float("inf")
        self.withheld = 0  # events not stored because of a request

    def refresh(self) -> None:
        """Bring the records up to date (raises SinkError when the store cannot be read)."""
        if not self.shared and self._count >= 0:
            return
        count = self.store.request_count()
        stale = time.monotonic() - self._loaded_at > self.full_reload_seconds
        if count != self._count or stale:
            requests = self.store.requests()
            with self._lock:
                self._cutoffs = {}
                self._add(requests)
                self._count = count
                self._loaded_at = time.monotonic()

    def add(self, requests: Iterable[SubjectRequest]) -> None:
        """Requests this process just recorded: they apply at once, before any re-read."""
        with self._lock:
            self._add(requests)

    def _add(self, requests: Iterable[SubjectRequest]) -> None:
        for r in requests:
            key = (r.site, r.kind, r.pseudonym)
            old = self._cutoffs.get(key)
            self._cutoffs[key] = r.cutoff if old is None else max(old, r.cutoff)

    def __len__(self) -> int:
        return len(self._cutoffs)

    def screen(self, records: Sequence[bytes]) -> tuple[list[bytes], int]:
        """The records to store, and how many were withheld. Records that are not events pass through
        (the shipper counts those)."""
        with self._lock:
            cutoffs = self._cutoffs
        if not cutoffs:
            return list(records), 0
        kept: list[bytes] = []
        withheld = 0
        for record in records:
            if record[:1] == VERSION and self._withheld(record, cutoffs):
                withheld += 1
            else:
                kept.append(record)
        self.withheld += withheld
        return kept, withheld

    @staticmethod
    def _withheld(record: bytes, cutoffs: dict[tuple[str, str, str], datetime]) -> bool:
        try:
            values = orjson.loads(record[1:])
            site = values[_SITE]
            for kind, index in _KINDS:
                pseudonym = values[index]
                if pseudonym is None:
                    continue
                cutoff = cutoffs.get((site, kind, pseudonym))
                if cutoff is not None:
                    ts = datetime.fromisoformat(values[_TS])
                    if (ts if ts.tzinfo else ts.replace(tzinfo=UTC)) <= cutoff:
                        return True
        except (orjson.JSONDecodeError, TypeError, ValueError, IndexError, KeyError):
            return False  # not an event: left to the shipper's own checks
        return False
