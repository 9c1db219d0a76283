"""Data-subject rights: the in-memory suppression list the pipeline consults.

A subject is ``(site, kind, identifier)`` as the site knows it; the list holds only the key-independent
HMAC from :meth:`proxy.keys.SiteKeys.subject`, never the identifier.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import orjson

from proxy.keys import SiteKeys
from sinks.request_filter import RequestFilter
from sinks.subject_store import Kind, SubjectStore

log = logging.getLogger(__name__)

SUBJECT_KINDS = ("client_id", "user_id")


class Suppressions:
    """Blocked subjects, loaded from the store at start-up and updated by the subject actions.

    With ``cache``, the list is also kept in a local file (HMACs only), so a restart while a remote
    store is unreachable still honours every block it knew of.
    """

    def __init__(self, blocked: Iterable[tuple[str, str, str]] = (), cache: Path | None = None) -> None:
        self._blocked: set[tuple[str, str, str]] = set(blocked)
        self._cache = cache
        if not self._blocked:
            self.reload_cache()

    def reload_cache(self) -> None:
        """Take the list from the cache file (a worker follows the primary's list this way)."""
        if self._cache is None:
            return
        with contextlib.suppress(FileNotFoundError, orjson.JSONDecodeError, ValueError, TypeError):
            self._blocked = {(a, b, c) for a, b, c in orjson.loads(self._cache.read_bytes())}

    def _save(self) -> None:
        """Best effort: the store holds the list; the file only bridges a restart while it is away (and
        a full disk must not fail a block, which already applies here in memory)."""
        if self._cache is not None:
            tmp = self._cache.with_suffix(".tmp")
            try:
                tmp.write_bytes(orjson.dumps(sorted(self._blocked)))
                os.replace(tmp, self._cache)
            except OSError as exc:
                log.warning("suppression cache not written: %s", exc.strerror or type(exc).__name__)
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)

    def replace(self, blocked: Iterable[tuple[str, str, str]], sites: Container[str] | None = None) -> None:
        """The list as a store has it; with ``sites``, only those sites' entries (the sites that store
        keeps: each store holds its own sites' blocks)."""
        new = set(blocked)
        if sites is not None:
            new |= {entry for entry in self._blocked if entry[0] not in sites}
        if new != self._blocked:
            self._blocked = new
            self._save()

    def block(self, site: str, kind: str, subject: str) -> None:
        self._blocked.add((site, kind, subject))
        self._save()

    def unblock(self, site: str, kind: str, subject: str) -> None:
        self._blocked.discard((site, kind, subject))
        self._save()

    def is_blocked(self, site: str, kind: str, subject: str) -> bool:
        return (site, kind, subject) in self._blocked

    def __len__(self) -> int:
        return len(self._blocked)


class SubjectError(ValueError):
    """A subject request that cannot be served (unknown site, bad kind, empty identifier)."""


class SubjectUnavailable(RuntimeError):
    """The request is fine but cannot be served now (pending events not yet stored): retry later."""


NOTHING_LINKABLE = (
    "No stored row is linked to this identifier. Events stored without analytics consent carry no "
    "identifier, and the cookieless visitor hash uses a daily salt that is destroyed the next day, so "
    "they cannot be linked to a person."
)


PENDING_ELSEWHERE = (
    "Other replicas ({replicas}) still held events not yet shipped to the store when this ran; any of "
    "this subject's events among them are not in this export."
)
# A deletion also keeps out the subject's events stamped up to this long after it: a client clock may run
# ahead by privacy.max_future_seconds, and replicas' clocks differ a little.
CLOCK_SKEW = timedelta(seconds=60)


@dataclass(frozen=True)
class SubjectResult:
    action: str
    site: str
    kind: str
    pseudonym: str  # under the site's current key; never the identifier
    rows: int
    data: bytes = b""
    note: str = ""
    pending: tuple[str, ...] = ()  # other replicas whose spools may still hold events (export only)


def _nothing_found(rows: int) -> str:
    return "" if rows else NOTHING_LINKABLE


@dataclass(frozen=True)
class SubjectRoute:
    """Where a site's subject data lives (proxy/stores.py): its store, that store's screen of recorded
    deletions, how to ship this process's spooled events for it, and which other replicas may still
    hold some (None: no other replica writes there)."""

    store: SubjectStore
    requests: RequestFilter | None = None
    flush: Callable[[], bool] = lambda: True
    elsewhere: Callable[[], list[str]] | None = None


class SubjectService:
    """Export, delete, block, unblock and visitor withdrawal; each one audited by pseudonym.

    A deletion or withdrawal is recorded in the site's store before any row is deleted: every replica's
    shipper then keeps the subject's late events out (sinks/request_filter.py), so "zero rows remain"
    holds while other replicas' spools still hold some, and after a cut-off replica ships them."""

    def __init__(
        self,
        keys: SiteKeys,
        route: Callable[[str], SubjectRoute],
        suppressions: Suppressions,
        sites: Container[str],
        *,
        future_margin: timedelta = timedelta(minutes=5),
    ) -> None:
        self.keys = keys
        self.route = route
        self.suppressions = suppressions
        self.sites = sites
        self.future_margin = future_margin + CLOCK_SKEW

    def _check(self, site: str, kind: str, value: str) -> tuple[Kind, SubjectRoute]:
        if site not in self.sites:
            raise SubjectError(f"unknown site {site!r}")
        if kind not in SUBJECT_KINDS:
            raise SubjectError(f"kind must be one of {', '.join(SUBJECT_KINDS)}")
        if not value:
            raise SubjectError("the identifier is empty")
        route = self.route(site)
        # accepted events still in this process's spool must be stored before we look
        if not route.flush():
            raise SubjectUnavailable("pending events could not be written yet; retry shortly")
        return kind, route  # type: ignore[return-value]

    def export(
        self, site: str, kind: str, value: str, fmt: Literal["json", "csv"], actor: str
    ) -> SubjectResult:
        k, route = self._check(site, kind, value)
        pseudonyms = self.keys.pseudonyms(site, k, value)
        store = route.store
        pending = tuple(route.elsewhere()) if route.elsewhere is not None else ()
        rows = store.count(site, k, pseudonyms)
        data = store.export(site, k, pseudonyms, fmt)
        current = pseudonyms[0]
        store.audit("export", site, k, current, rows, actor)
        notes = [_nothing_found(rows)] + (
            [PENDING_ELSEWHERE.format(replicas=", ".join(pending))] if pending else []
        )
        note = " ".join(n for n in notes if n)
        return SubjectResult("export", site, k, current, rows, data, note, pending)

    def delete(self, site: str, kind: str, value: str, actor: str, action: str = "delete") -> SubjectResult:
        k, route = self._check(site, kind, value)
        pseudonyms = self.keys.pseudonyms(site, k, value)
        cutoff = datetime.now(UTC) + self.future_margin
        recorded = route.store.record_request(action, site, k, pseudonyms, cutoff)
        if route.requests is not None:
            route.requests.add(recorded)  # this process's shipper: at once
        rows = route.store.delete(site, k, pseudonyms)
        route.store.audit(action, site, k, pseudonyms[0], rows, actor)
        return SubjectResult(action, site, k, pseudonyms[0], rows, note=_nothing_found(rows))

    def withdraw(self, site: str, client_id: str) -> SubjectResult:
        """The visitor's own browser withdraws consent: its pseudonymous data is deleted."""
        return self.delete(site, "client_id", client_id, actor="visitor", action="withdraw")

    def set_blocked(self, site: str, kind: str, value: str, blocked: bool, actor: str) -> SubjectResult:
        k, route = self._check(site, kind, value)
        store = route.store
        subject = self.keys.subject(site, k, value)
        if blocked:
            store.block(site, k, subject)
            self.suppressions.block(site, k, subject)
        else:
            store.unblock(site, k, subject)
            self.suppressions.unblock(site, k, subject)
        action = "block" if blocked else "unblock"
        pseudonym = self.keys.pseudonym(site, k, value)
        store.audit(action, site, k, pseudonym, 0, actor)
        return SubjectResult(action, site, k, pseudonym, 0)
