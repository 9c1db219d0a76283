"""Everything the routes use, built once from settings: ``build_runtime(settings)``."""

from __future__ import annotations

import gc
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from config.settings import Settings
from proxy.admin_listener import AdminAddress, parse_admin_listen
from proxy.background import JobState
from proxy.geo import GeoLookup, find_databases
from proxy.keys import DailySalt, SiteKeys, load_or_create_secret
from proxy.metrics import Metrics
from proxy.parse import Limits
from proxy.pipeline import Pipeline, Services
from proxy.ratelimit import RateLimit
from proxy.stats.service import StatsService
from proxy.subjects import SubjectService, Suppressions
from sinks.base import Sink
from sinks.clickhouse import ClickHouseSink
from sinks.shipper import Shipper
from sinks.spool import LoopAppender, SpoolReader, SpoolWriter
from sinks.subject_store import SubjectStore

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
    segments, forwarding admin requests to the primary."""

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

    def background(self) -> list[JobState]:
        """Every background job of this process: the spool writer, the shipper, the periodic tasks."""
        out = [job for job in (self.spool.job,) if job is not None]
        if self.shipper is not None:
            out.append(self.shipper.job)
        return out + self.jobs

    def vital_jobs_down(self) -> list[str]:
        return [job.name for job in self.background() if job.vital and not job.up]

    def refresh_job_counters(self) -> None:
        """Copy the jobs' states into the counters (what /metrics and a worker's snapshot read)."""
        jobs = self.background()
        self.metrics.jobs_down = Counter({job.name: int(not job.up) for job in jobs})
        self.metrics.job_failures = Counter({job.name: job.failures for job in jobs})

    # The analysts' stats API; None in a worker, or when the sink is not ClickHouse.
    analytics: StatsService | None = None

    def flush(self, timeout: float = 30.0) -> bool:
        """Every event accepted so far is in storage (seal the open segment, wait for the shipper)."""
        if not self.spool.flush(timeout):
            return False
        if self.shipper is None:
            return True
        if self.role == "primary":
            # Workers seal their segments by age: wait for those holding earlier events to be sealed.
            time.sleep(self.settings.batch.max_age_seconds + 0.25)
        return self.shipper.wait_idle(timeout)

    def counters(self) -> Metrics:
        """A total of this process's counters; in the primary, plus the snapshots its workers leave."""
        snapshots = metrics_dir(self.settings) if self.role == "primary" else None
        self.refresh_job_counters()
        return self.metrics.with_snapshots(snapshots)

    def ready(self) -> bool:
        """What /readyz says of this process (a worker's also asks its primary): the spool accepts
        events (see SpoolWriter.refusal) and every vital background job runs."""
        return self.spool.refusal() is None and not self.vital_jobs_down()

    def spool_stats(self) -> dict[str, Any]:
        used = self.spool.bytes_used()
        return {
            **vars(self.reader.stats()),
            "bytes_used": used,
            "max_bytes": self.settings.spool.max_bytes,
            "state": self.spool.state,
            "ready": self.ready(),
        }

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "spool": self.spool_stats(),
            "background": {job.name: job.snapshot() for job in self.background()},
        }
        if self.shipper is not None:
            out["shipper"] = {k: v for k, v in vars(self.shipper.stats).items() if k != "insert_latency"}
        return out


def build_runtime(
    settings: Settings, sink: Sink | None = None, geo: GeoLookup | None = None, role: Role = "single"
) -> Runtime:
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    if geo is None:
        paths = list(settings.geoip.databases) or find_databases(settings.geoip_dir)
        geo = GeoLookup(
            paths,
            with_city=settings.geoip.city,
            cache_size=settings.geoip.cache_size,
            cache_prefix_bits=(settings.privacy.ipv4_prefix_bits, settings.privacy.ipv6_prefix_bits),
        )
    if sink is None and role != "worker":
        sink = ClickHouseSink(settings.clickhouse_dsn, settings.clickhouse)
    metrics = Metrics()
    salt = DailySalt(data / "salts")
    secret = load_or_create_secret(settings.privacy.pseudonym_secret, data / "pseudonym_secret")
    keys = SiteKeys(secret, {site: s.pseudonym_keys for site, s in settings.sites.items()})
    suppressions = Suppressions(cache=data / "suppressions.json")
    services = Services(settings, geo, salt, keys, metrics, suppressions)
    b, sp = settings.batch, settings.spool
    spool_dir = data / "spool"
    spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    writer = SpoolWriter(
        spool_dir,
        writer=str(os.getpid()),
        max_bytes=sp.max_bytes,
        segment_max_bytes=b.max_bytes,
        segment_max_records=b.max_rows,
        segment_max_age=b.max_age_seconds,
        fsync=sp.fsync,
        fsync_interval=sp.fsync_interval,
        min_free_bytes=sp.min_free_bytes,
    )
    reader = SpoolReader(spool_dir)
    shipper = None
    if sink is not None:
        shipper = Shipper(
            sink,
            reader,
            retention_seconds=settings.clickhouse.retention_days * 86400,
            poll_interval=min(0.1, b.max_age_seconds),
        )
    p = settings.privacy
    limits = Limits(
        max_events=settings.server.max_batch_events,
        max_props=p.max_props,
        max_prop_key_length=p.max_prop_key_length,
        max_prop_value_length=p.max_prop_value_length,
        max_string_length=p.max_string_length,
    )
    token = load_or_create_secret(settings.server.admin_token, data / "admin_token")
    rt = Runtime(
        settings,
        Pipeline(services),
        writer,
        LoopAppender(writer),
        reader,
        shipper,
        sink,
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
    rt.admin_address = parse_admin_listen(settings.server.admin_listen, data)
    if isinstance(sink, ClickHouseSink):
        rt.subjects = SubjectService(keys, SubjectStore(sink), suppressions, services.sites, rt.flush)
        rt.analytics = StatsService.create(settings, sink)
    return rt
