"""Everything the routes use, built once from settings: ``build_runtime(settings)``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from config.settings import Settings
from proxy.geo import GeoLookup, find_databases
from proxy.keys import DailySalt, SiteKeys, load_or_create_secret
from proxy.metrics import Metrics
from proxy.parse import Limits
from proxy.pipeline import Pipeline, Services
from proxy.subjects import SubjectService, Suppressions
from sinks.base import Sink
from sinks.clickhouse import ClickHouseSink
from sinks.shipper import Shipper
from sinks.spool import SpoolReader, SpoolWriter
from sinks.subject_store import SubjectStore


@dataclass
class Runtime:
    settings: Settings
    pipeline: Pipeline
    spool: SpoolWriter
    shipper: Shipper
    sink: Sink
    geo: GeoLookup
    salt: DailySalt
    metrics: Metrics
    limits: Limits
    admin_token: bytes
    suppressions: Suppressions
    subjects: SubjectService | None  # None when the sink is not ClickHouse (e.g. a benchmark blackhole)
    spool_refused: bool = False  # the last append did not fit: not ready until one does

    def flush(self, timeout: float = 30.0) -> bool:
        """Every event accepted so far is in storage (seal the open segment, wait for the shipper)."""
        return self.spool.flush(timeout) and self.shipper.wait_idle(timeout)

    def spool_stats(self) -> dict[str, Any]:
        return {
            **vars(self.shipper.reader.stats()),
            "bytes_used": self.spool.bytes_used(),
            "state": self.spool.state,
        }

    def stats(self) -> dict[str, Any]:
        shipper = {k: v for k, v in vars(self.shipper.stats).items() if k != "insert_latency"}
        return {"shipper": shipper, "spool": self.spool_stats()}


def build_runtime(settings: Settings, sink: Sink | None = None, geo: GeoLookup | None = None) -> Runtime:
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    if geo is None:
        paths = list(settings.geoip.databases) or find_databases(settings.geoip_dir)
        geo = GeoLookup(paths, with_city=settings.geoip.city, cache_size=settings.geoip.cache_size)
    if sink is None:
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
        segment_max_age=b.max_age_seconds,
        fsync=sp.fsync,
        fsync_interval=sp.fsync_interval,
    )
    shipper = Shipper(
        sink,
        SpoolReader(spool_dir),
        max_rows=b.max_rows,
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
        shipper,
        sink,
        geo,
        salt,
        metrics,
        limits,
        token,
        suppressions,
        None,
    )
    if isinstance(sink, ClickHouseSink):
        rt.subjects = SubjectService(keys, SubjectStore(sink), suppressions, services.sites, rt.flush)
    return rt
