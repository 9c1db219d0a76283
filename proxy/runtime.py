"""Everything the routes use, built once from settings: ``build_runtime(settings)``."""

from __future__ import annotations

from dataclasses import dataclass

from config.settings import Settings
from proxy.geo import GeoLookup, find_databases
from proxy.keys import DailySalt, SiteKeys, load_or_create_secret
from proxy.metrics import Metrics
from proxy.parse import Limits
from proxy.pipeline import Pipeline, Services
from proxy.subjects import SubjectService, Suppressions
from sinks.base import Sink
from sinks.batcher import Batcher
from sinks.clickhouse import ClickHouseSink
from sinks.subject_store import SubjectStore


@dataclass
class Runtime:
    settings: Settings
    pipeline: Pipeline
    batcher: Batcher
    sink: Sink
    geo: GeoLookup
    salt: DailySalt
    metrics: Metrics
    limits: Limits
    admin_token: bytes
    suppressions: Suppressions
    subjects: SubjectService | None  # None when the sink is not ClickHouse (e.g. a benchmark blackhole)


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
    suppressions = Suppressions()
    services = Services(settings, geo, salt, keys, metrics, suppressions)
    b = settings.batch
    batcher = Batcher(
        sink,
        max_rows=b.max_rows,
        max_bytes=b.max_bytes,
        max_age_seconds=b.max_age_seconds,
        max_pending_rows=b.max_pending_rows,
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
    subjects = None
    if isinstance(sink, ClickHouseSink):
        subjects = SubjectService(keys, SubjectStore(sink), suppressions, services.sites, batcher.flush)
    return Runtime(
        settings, Pipeline(services), batcher, sink, geo, salt, metrics, limits, token, suppressions, subjects
    )
