"""Everything the stats routes use, built once at start-up from settings and the sink."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from config.settings import Settings
from proxy.stats import render
from proxy.stats.engine import StatsEngine
from proxy.stats.keys import AnalystKeys, KeyStore
from proxy.stats.parse import build, parse_date, parse_date_range
from proxy.stats.query import Metric, Query
from proxy.stats.ratelimit import RateLimiter
from proxy.stats.referrers import Referrers
from proxy.stats.sessions import Sessions, SessionStore
from proxy.stats.visit_store import VisitStore
from sinks.clickhouse import ClickHouseSink

VISIT_SUMMARY: tuple[Metric, ...] = ("visitors", "visits", "bounce_rate", "visit_duration")
# The whole-site export: one CSV per report, every one through the same engine and suppression.
EXPORT: tuple[tuple[str, str | None, tuple[Metric, ...]], ...] = (
    (
        "visitors.csv",
        "time:day",
        ("visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration"),
    ),
    ("pages.csv", "event:page", ("visitors", "pageviews")),
    ("entry_pages.csv", "visit:entry_page", VISIT_SUMMARY),
    ("exit_pages.csv", "visit:exit_page", ("visitors", "visits")),
    ("sources.csv", "visit:source", VISIT_SUMMARY),
    ("referrers.csv", "visit:referrer", VISIT_SUMMARY),
    ("utm_mediums.csv", "visit:utm_medium", VISIT_SUMMARY),
    ("utm_sources.csv", "visit:utm_source", VISIT_SUMMARY),
    ("utm_campaigns.csv", "visit:utm_campaign", VISIT_SUMMARY),
    ("utm_contents.csv", "visit:utm_content", VISIT_SUMMARY),
    ("utm_terms.csv", "visit:utm_term", VISIT_SUMMARY),
    ("countries.csv", "visit:country", ("visitors",)),
    ("regions.csv", "visit:region", ("visitors",)),
    ("cities.csv", "visit:city", ("visitors",)),
    ("devices.csv", "visit:device", ("visitors",)),
    ("browsers.csv", "visit:browser", ("visitors",)),
    ("browser_versions.csv", "visit:browser_version", ("visitors",)),
    ("operating_systems.csv", "visit:os", ("visitors",)),
    ("operating_system_versions.csv", "visit:os_version", ("visitors",)),
    ("custom_events.csv", "event:name", ("visitors", "events")),
)


@dataclass
class StatsService:
    settings: Settings
    engine: StatsEngine
    keys: AnalystKeys
    limiter: RateLimiter
    visits: VisitStore
    sessions: Sessions  # the dashboard's sign-ins, each standing for an analyst key

    @classmethod
    def create(
        cls, settings: Settings, sink: ClickHouseSink, main: StatsService | None = None
    ) -> StatsService:
        """The stats of the sites kept in ``sink``'s store. Keys and their rate limit live in the main
        store only: pass the main store's service as ``main`` for a named store (data residency: a
        site's figures are read from its own store, and nowhere else)."""
        a = settings.analytics
        referrers = Referrers.load(a.referrer_data or None)  # once per store, at start-up
        keys = (
            main.keys
            if main is not None
            else AnalystKeys(KeyStore(sink), list(settings.sites), a.key_cache_seconds)
        )
        lifetime = timedelta(hours=settings.dashboard.session_hours)
        return cls(
            settings,
            StatsEngine(settings, sink.dsn, referrers, database=sink.database),
            keys,
            main.limiter if main is not None else RateLimiter(sink, a.rate_limit_per_hour),
            VisitStore(sink.dsn, sink.database, settings.clickhouse.compress),
            # Sign-ins, like the keys they stand for, live in the main store only.
            main.sessions
            if main is not None
            else Sessions(SessionStore(sink), keys, lifetime, a.key_cache_seconds),
        )

    def export(self, site: str, period: object, now: datetime | None = None) -> bytes:
        """Every report of ``site`` over ``period`` (a v2 ``date_range``) as a zip of CSV files."""
        ctx = self.engine.context(site, now or datetime.now(UTC))
        span = parse_date_range(period, parse_date(None, ctx), ctx)
        files = {}
        for name, dimension, metrics in EXPORT:
            q: Query = build(ctx, metrics, (dimension,) if dimension else (), (), span, (), 10_000, 0)
            header, rows = render.table(self.engine.run(q), v1=True)
            files[name] = render.csv_bytes(header, rows)
        return render.zip_bytes(files)

    def close(self) -> None:
        self.engine.close()
        self.visits.close()
