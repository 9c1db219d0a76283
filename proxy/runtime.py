"""Everything the routes use, built once from settings: ``build_runtime(settings)``."""

from __future__ import annotations

import gc
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from config.settings import MAIN_STORE, Settings
from proxy.admin_listener import AdminAddress, parse_admin_listen
from proxy.background import JobState
from proxy.geo import GeoLookup, find_databases
from proxy.keys import DailySalt, SiteKeys, admin_token, pseudonym_secret
from proxy.metrics import Metrics
from proxy.parse import Limits
from proxy.pipeline import Pipeline, Services
from proxy.ratelimit import RateLimit
from proxy.replicas import Replicas
from proxy.stats.service import StatsService
from proxy.stores import Store, Stores, build_store, store_sink, writer_id
from proxy.subjects import SubjectRoute, SubjectService, Suppressions
from sinks.base import Sink
from sinks.clickhouse import ClickHouseSink
from sinks.shipper import Shipper
from sinks.spool import LoopAppender, SpoolReader, SpoolWriter

Role = Literal["single", "primary", "worker"]


def freeze_startup_objects() -> None:
    """For a serving process, once its app is built: what start-up made (modules, settings, the
    runtime) lives as long as the process, so keep it out of the garbage collector's full passes,
    which then pause the event loop for less."""
    gc.collect()
    gc.freeze()


def metrics_dir(settings: Settings) -> Path:
    """Where each worker leaves its counters for the primary to add up."""
    return settings.data_dir / "run" / "metrics"


@dataclass
class Runtime:
    """single: one process does everything. With --workers N, one primary process owns the sink, the
    shipper and the admin API (on a unix socket), and N workers only ingest into their own spool
    segments, forwarding admin requests to the primary.

    ``spool``, ``appender``, ``reader``, ``shipper`` and ``sink`` are the main store's; ``stores`` has
    every store (proxy/stores.py), and ``stores.for_site(site)`` is where a site's data goes."""

    settings: Settings
    pipeline: Pipeline
    spool: SpoolWriter
    appender: LoopAppender  # the event loop's way into the spool
    reader: SpoolReader
    shipper: Shipper | None  # None in a worker
    sink: Sink | None  # None in a worker
    geo: GeoLookup
    salt: DailySalt
    metrics: Metrics
    limits: Limits
    admin_token: bytes
    suppressions: Suppressions
    subjects: SubjectService | None  # None in a worker, or when the sink is not ClickHouse
    # POST /v1/consent/withdraw: per client (truncated IP prefix) and per site (proxy/visitor.py)
    withdraw_limits: tuple[RateLimit, RateLimit]
    role: Role = "single"
    jobs: list[JobState] = field(default_factory=list)  # the app's periodic tasks (proxy/app.py)
    admin_address: AdminAddress = field(default_factory=AdminAddress)
    # In a worker: the primary's readiness (its shipper is what ships this worker's events).
    upstream_ready: Callable[[], Awaitable[tuple[bool, dict[str, Any]]]] | None = None
    stores: Stores = field(default=None)  # type: ignore[assignment]  # set by build_runtime
    # With a remote store: this replica's identity, what it knows of the others, and the shared salt.
    replicas: Replicas = field(default=None)  # type: ignore[assignment]  # set by build_runtime
    secret: bytes = b""  # the pseudonym secret (fingerprints, the wrapped salts)

    def background(self) -> list[JobState]:
        """Every background job of this process: the spool writers, the shippers, the periodic tasks."""
        out: list[JobState] = []
        for store in self.stores:
            if store.spool.job is not None:
                out.append(store.spool.job)
            if store.shipper is not None:
                out.append(store.shipper.job)
        return out + self.jobs

    def vital_jobs_down(self) -> list[str]:
        return [job.name for job in self.background() if job.vital and not job.up]

    def refresh_job_counters(self) -> None:
        """Copy the jobs' states into the counters (what /metrics and a worker's snapshot read)."""
        jobs = self.background()
        self.metrics.jobs_down = Counter({job.name: int(not job.up) for job in jobs})
        self.metrics.job_failures = Counter({job.name: job.failures for job in jobs})

    # The analysts' stats API, per ClickHouse store by name (a site's figures come from its own store);
    # empty in a worker.
    analytics: dict[str, StatsService] = field(default_factory=dict)

    def stats_for(self, site: str) -> StatsService | None:
        """The stats service reading ``site``'s store (None: this process serves no stats)."""
        return self.analytics.get(self.stores.for_site(site).name) if self.analytics else None

    @property
    def stats_main(self) -> StatsService | None:
        """The main store's: analyst keys and their rate limit live there."""
        return self.analytics.get(MAIN_STORE)

    def flush(self, timeout: float = 30.0, store: str | None = None) -> bool:
        """Every event accepted so far is in storage (seal the open segments, wait for the shippers);
        with ``store``, only that store's."""
        chosen = [s for s in self.stores if store is None or s.name == store]
        if not all(s.spool.flush(timeout) for s in chosen):
            return False
        if all(s.shipper is None for s in chosen):
            return True
        if self.role == "primary":
            # Workers seal their segments by age: wait for those holding earlier events to be sealed.
            time.sleep(self.settings.batch.max_age_seconds + 0.25)
        return all(s.shipper.wait_idle(timeout) for s in chosen if s.shipper is not None)

    def counters(self) -> Metrics:
        """A total of this process's counters; in the primary, plus the snapshots its workers leave."""
        snapshots = metrics_dir(self.settings) if self.role == "primary" else None
        self.refresh_job_counters()
        return self.metrics.with_snapshots(snapshots)

    def ready(self) -> bool:
        """What /readyz says of this process (a worker's also asks its primary): the main store's spool
        accepts events (see SpoolWriter.refusal), every vital background job runs, and nothing known
        makes this replica's answers differ from the others' (proxy/replicas.py)."""
        return self.spool.refusal() is None and not self.vital_jobs_down() and not self.replicas.problems()

    def spool_stats(self) -> dict[str, Any]:
        used = self.spool.bytes_used()
        return {
            **vars(self.reader.stats()),
            "bytes_used": used,
            "max_bytes": self.settings.spool.max_bytes,
            "state": self.spool.state,
            "ready": self.ready(),
        }

    def store_stats(self, store: Store) -> dict[str, Any]:
        """One store's spool and shipping, for /readyz, /admin/stats and /metrics."""
        spool = store.reader.stats()
        refusal = store.spool.refusal()
        out: dict[str, Any] = {
            "accepting": refusal is None,
            "spool_bytes": store.spool.bytes_used(),
            "spool_segments": spool.segments + spool.open_segments,
            "oldest_spooled_seconds": round(spool.oldest_age_seconds, 3),
        }
        if refusal is not None:
            out["refusing"] = refusal
        if store.sink is not None:
            out["sink_healthy"] = store.shipper.healthy() if store.shipper else store.sink.healthy()
        if store.shipper is not None:
            out["sink_started"] = store.shipper.stats.sink_started
            out["shipped_rows"] = store.shipper.stats.rows
            out["withheld_rows"] = store.shipper.stats.withheld_rows
        return out

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "spool": self.spool_stats(),
            "background": {job.name: job.snapshot() for job in self.background()},
        }
        if self.shipper is not None:
            out["shipper"] = {k: v for k, v in vars(self.shipper.stats).items() if k != "insert_latency"}
        if len(self.stores) > 1:
            out["stores"] = {store.name: self.store_stats(store) for store in self.stores}
        out["replica"] = self.replicas.summary()
        return out

    def subject_route(self, site: str) -> SubjectRoute:
        """Where ``site``'s subject requests go (its store; see proxy/subjects.py)."""
        store = self.stores.for_site(site)
        assert store.subjects is not None, "subject requests need a ClickHouse store"
        elsewhere = None
        if store.shared is not None and self.settings.shared_store:
            shared = store.shared
            elsewhere = lambda: self.replicas.pending_elsewhere(shared)  # noqa: E731
        return SubjectRoute(
            store.subjects,
            store.requests,
            lambda: self.flush(store=store.name),
            elsewhere,
        )


def build_runtime(
    settings: Settings, sink: Sink | None = None, geo: GeoLookup | None = None, role: Role = "single"
) -> Runtime:
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    shared = settings.shared_store
    secret = pseudonym_secret(settings)  # a remote store without a configured secret: SettingsError
    token = admin_token(settings)
    if geo is None:
        paths = list(settings.geoip.databases) or find_databases(settings.geoip_dir)
        geo = GeoLookup(
            paths,
            with_city=settings.geoip.city,
            cache_size=settings.geoip.cache_size,
            cache_prefix_bits=(settings.privacy.ipv4_prefix_bits, settings.privacy.ipv6_prefix_bits),
        )
    if sink is None and role != "worker":
        sink = store_sink(settings, MAIN_STORE)
    metrics = Metrics()
    # With a remote store the day's salt is drawn in the store, once for all replicas; the directory
    # caches the winner for this machine's processes (proxy/replicas.py).
    salt = DailySalt(data / "salts", provisional=shared)
    keys = SiteKeys(secret, {site: s.pseudonym_keys for site, s in settings.sites.items()})
    suppressions = Suppressions(cache=data / "suppressions.json")
    services = Services(settings, geo, salt, keys, metrics, suppressions)
    writer = writer_id()
    stores = {MAIN_STORE: build_store(settings, MAIN_STORE, sink, writer=writer)}
    for name in settings.clickhouse.stores:
        named = None if role == "worker" else store_sink(settings, name)
        stores[name] = build_store(settings, name, named, writer=writer)
    main = stores[MAIN_STORE]
    p = settings.privacy
    limits = Limits(
        max_events=settings.server.max_batch_events,
        max_props=p.max_props,
        max_prop_key_length=p.max_prop_key_length,
        max_prop_value_length=p.max_prop_value_length,
        max_string_length=p.max_string_length,
    )
    rt = Runtime(
        settings,
        Pipeline(services),
        main.spool,
        main.appender,
        main.reader,
        main.shipper,
        main.sink,
        geo,
        salt,
        metrics,
        limits,
        token,
        suppressions,
        None,
        (
            RateLimit(settings.server.withdraw_per_client_per_minute),
            RateLimit(settings.server.withdraw_per_site_per_minute),
        ),
        role,
    )
    rt.stores = Stores(settings, stores)
    rt.secret = secret
    rt.replicas = Replicas(settings, secret, token)
    rt.admin_address = parse_admin_listen(settings.server.admin_listen, data)
    if all(store.subjects is not None for store in rt.stores):
        rt.subjects = SubjectService(
            keys,
            rt.subject_route,
            suppressions,
            services.sites,
            future_margin=timedelta(seconds=p.max_future_seconds),
        )
    if isinstance(main.sink, ClickHouseSink):
        main_stats = StatsService.create(settings, main.sink)
        rt.analytics[MAIN_STORE] = main_stats
        for store in rt.stores:
            if store.name != MAIN_STORE and isinstance(store.sink, ClickHouseSink):
                rt.analytics[store.name] = StatsService.create(settings, store.sink, main_stats)
    return rt
