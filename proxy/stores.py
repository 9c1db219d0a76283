"""The stores a proxy writes to: the main one and the named ones (``[clickhouse.stores.<name>]``), for
data residency. A site's events, rollups, subject requests, audit rows and analyst queries go to its
store only (``sites.<id>.store``; the main store by default): :func:`Stores.for_site` is the one place
that decides.

Each store has its own spool directory, spool writer, shipper and health, so one store being down never
delays another: its spool grows (and, at its limit, only its sites are answered 503) while the others
keep shipping. The main store's spool is ``<data_dir>/spool``; a named store's
``<data_dir>/stores/<name>/spool``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from config.settings import MAIN_STORE, Settings
from sinks.base import Sink
from sinks.clickhouse import ClickHouseSink
from sinks.request_filter import RequestFilter
from sinks.shared_state import SharedState
from sinks.shipper import Shipper
from sinks.spool import LoopAppender, SpoolReader, SpoolWriter
from sinks.subject_store import SubjectStore


@dataclass
class Store:
    name: str  # "main" or the name in [clickhouse.stores]
    spool: SpoolWriter
    appender: LoopAppender  # the event loop's way into the spool
    reader: SpoolReader
    sink: Sink | None  # None in a worker process (its primary ships)
    shipper: Shipper | None
    subjects: SubjectStore | None = None  # ClickHouse stores only
    requests: RequestFilter | None = None  # recorded deletions, screened before each insert
    shared: SharedState | None = None  # salts, fingerprints, heartbeats (ClickHouse stores only)


def spool_dir(settings: Settings, store: str) -> Path:
    if store == MAIN_STORE:
        return settings.data_dir / "spool"
    return settings.data_dir / "stores" / store / "spool"


def writer_id() -> str:
    """This process's spool writer id: its pid and a random part drawn at every start, so that segment
    names (and the deduplication tokens made from them) never repeat, even in a data directory that was
    cloned or restored from a backup, or in containers where every proxy is pid 1."""
    return f"{os.getpid()}.{secrets.token_hex(4)}"


def store_sink(settings: Settings, store: str) -> ClickHouseSink:
    """A (not started) sink for the named store."""
    ch = settings.clickhouse
    if store == MAIN_STORE:
        return ClickHouseSink(settings.clickhouse_dsn, ch)
    cfg = ch.stores[store]
    return ClickHouseSink(cfg.dsn, ch, database=cfg.database, cluster=cfg.cluster, name=f"clickhouse:{store}")


def build_store(settings: Settings, name: str, sink: Sink | None, *, writer: str) -> Store:
    b, sp = settings.batch, settings.spool
    directory = spool_dir(settings, name)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    suffix = "" if name == MAIN_STORE else f":{name}"
    spool = SpoolWriter(
        directory,
        writer=writer,
        max_bytes=sp.max_bytes,
        segment_max_bytes=b.max_bytes,
        segment_max_records=b.max_rows,
        segment_max_age=b.max_age_seconds,
        fsync=sp.fsync,
        fsync_interval=sp.fsync_interval,
        min_free_bytes=sp.min_free_bytes,
        job_name=f"spool_writer{suffix}",
    )
    reader = SpoolReader(directory)
    store = Store(name, spool, LoopAppender(spool), reader, sink, None)
    if isinstance(sink, ClickHouseSink):
        store.subjects = SubjectStore(sink)
        store.requests = RequestFilter(store.subjects, shared=sink.remote)
        store.shared = SharedState(sink)
    if sink is not None:
        store.shipper = Shipper(
            sink,
            reader,
            retention_seconds=settings.clickhouse.retention_days * 86400,
            poll_interval=min(0.1, b.max_age_seconds),
            requests=store.requests,
            name=f"shipper{suffix}",
        )
    return store


class Stores:
    """Every store of this process, by name; the main one first."""

    def __init__(self, settings: Settings, stores: dict[str, Store]) -> None:
        self._stores = stores
        self.main = stores[MAIN_STORE]
        self._by_site = {site: settings.store_of(site) for site in settings.sites}

    def for_site(self, site: str) -> Store:
        """The store that keeps ``site``'s data (the main store for a site it does not know)."""
        return self._stores[self._by_site.get(site, MAIN_STORE)]

    def store_name(self, site: str) -> str:
        return self._by_site.get(site, MAIN_STORE)

    def get(self, name: str) -> Store | None:
        return self._stores.get(name)

    def __iter__(self) -> Iterator[Store]:
        return iter(self._stores.values())

    def __len__(self) -> int:
        return len(self._stores)

    def names(self) -> list[str]:
        return list(self._stores)
