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
from pathlib import Path
from typing import Literal

import orjson

from proxy.keys import SiteKeys
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

    def replace(self, blocked: Iterable[tuple[str, str, str]]) -> None:
        new = set(blocked)
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


@dataclass(frozen=True)
class SubjectResult:
    action: str
    site: str
    kind: str
    pseudonym: str  # under the site's current key; never the identifier
    rows: int
    data: bytes = b""
    note: str = ""


class SubjectService:
    """Export, delete, block, unblock and visitor withdrawal; each one audited by pseudonym."""

    def __init__(
        self,
        keys: SiteKeys,
        store: SubjectStore,
        suppressions: Suppressions,
        sites: Container[str],
        flush: Callable[[], bool],
    ) -> None:
        self.keys = keys
        self.store = store
        self.suppressions = suppressions
        self.sites = sites
        self.flush = flush  # accepted events still in the spool must be stored before we look

    def _check(self, site: str, kind: str, value: str) -> Kind:
        if site not in self.sites:
            raise SubjectError(f"unknown site {site!r}")
        if kind not in SUBJECT_KINDS:
            raise SubjectError(f"kind must be one of {', '.join(SUBJECT_KINDS)}")
        if not value:
            raise SubjectError("the identifier is empty")
        if not self.flush():
            raise SubjectUnavailable("pending events could not be written yet; retry shortly")
        return kind  # type: ignore[return-value]

    def export(
        self, site: str, kind: str, value: str, fmt: Literal["json", "csv"], actor: str
    ) -> SubjectResult:
        k = self._check(site, kind, value)
        pseudonyms = self.keys.pseudonyms(site, k, value)
        rows = self.store.count(site, k, pseudonyms)
        data = self.store.export(site, k, pseudonyms, fmt)
        current = pseudonyms[0]
        self.store.audit("export", site, k, current, rows, actor)
        return SubjectResult("export", site, k, current, rows, data, "" if rows else NOTHING_LINKABLE)

    def delete(self, site: str, kind: str, value: str, actor: str, action: str = "delete") -> SubjectResult:
        k = self._check(site, kind, value)
        pseudonyms = self.keys.pseudonyms(site, k, value)
        rows = self.store.delete(site, k, pseudonyms)
        self.store.audit(action, site, k, pseudonyms[0], rows, actor)
        return SubjectResult(action, site, k, pseudonyms[0], rows, note="" if rows else NOTHING_LINKABLE)

    def withdraw(self, site: str, client_id: str) -> SubjectResult:
        """The visitor's own browser withdraws consent: its pseudonymous data is deleted."""
        return self.delete(site, "client_id", client_id, actor="visitor", action="withdraw")

    def set_blocked(self, site: str, kind: str, value: str, blocked: bool, actor: str) -> SubjectResult:
        k = self._check(site, kind, value)
        subject = self.keys.subject(site, k, value)
        if blocked:
            self.store.block(site, k, subject)
            self.suppressions.block(site, k, subject)
        else:
            self.store.unblock(site, k, subject)
            self.suppressions.unblock(site, k, subject)
        action = "block" if blocked else "unblock"
        pseudonym = self.keys.pseudonym(site, k, value)
        self.store.audit(action, site, k, pseudonym, 0, actor)
        return SubjectResult(action, site, k, pseudonym, 0)
