"""Typed settings, loaded once and handed down (``create_app(settings)``).

Sources, strongest first: environment variables > TOML file > defaults.

* The TOML file is ``--config FILE``, else ``$BEACONPROXY_CONFIG``, else the shipped ``config/default.toml``.
* ``BEACONPROXY_HOST``, ``BEACONPROXY_PORT`` and ``BEACONPROXY_DATA_DIR`` set the three top-level keys.
* ``BEACONPROXY_<SECTION>__<KEY>`` sets a key in a section, e.g. ``BEACONPROXY_PRIVACY__IPV4_PREFIX_BITS=16``;
  sites nest one level deeper: ``BEACONPROXY_SITES__DEMO__ALLOWED_ORIGINS='["https://example.com"]'``.
  Values that start with ``[`` or ``{`` are read as JSON.

Unknown keys, in the file or the environment, fail at load with a message that names the key.
Nothing here reads the environment at import time: :func:`load_settings` takes the mapping to read.
"""

from __future__ import annotations

import os
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_PREFIX = "BEACONPROXY_"
DEFAULT_CONFIG = Path(__file__).with_name("default.toml")
CONSENT_CATEGORIES = ("analytics", "preferences", "marketing", "precise_location")
SITE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class SettingsError(ValueError):
    """A setting is missing, unknown or invalid; the message names it."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    max_body_bytes: int = Field(1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_batch_events: int = Field(100, ge=1, le=1000)
    # Peers allowed to tell us the client address. Only loopback by default.
    trusted_proxies: tuple[str, ...] = ("127.0.0.0/8", "::1")
    client_ip_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    # Bearer token for admin endpoints (/admin/*). Empty: generated once into <data_dir>/admin_token
    # (embedded store only: with a remote store every replica needs the same one, so it must be given).
    admin_token: str = ""
    # A file holding the admin token (e.g. a systemd credential or a container secret); used when
    # admin_token is empty.
    admin_token_file: str = ""
    # Where /admin/* is served (never on the public port): a unix socket path ("unix:/path" or a path
    # with a "/"; relative paths are under data_dir) or a loopback "HOST:PORT". Empty: the socket
    # <data_dir>/run/admin.sock, reachable only by this user. The CLI finds it by itself.
    admin_listen: str = ""
    # /metrics on the public listener (for a scraper that reaches it) or only on the admin listener.
    metrics_listener: Literal["public", "admin"] = "public"
    # First-party opt-out cookie set by GET /v1/opt-out. Set cookie_domain (e.g. "example.com") when the
    # proxy runs on a subdomain of the sites it serves, so the cookie reaches it from every page.
    opt_out_cookie: str = Field("bp_optout", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    cookie_domain: str = ""
    cookie_secure: bool = True
    # How often the suppression list is re-read from the store, so that blocks made through another
    # proxy (or by the CLI on a remote store) apply here too. A block made here applies at once.
    suppression_reload_seconds: float = Field(5.0, gt=0, le=3600)
    # With a remote store: how often this replica writes its heartbeat (configuration hash, spool state)
    # into the store; a replica not heard from for four of these is no longer counted as live.
    replica_heartbeat_seconds: float = Field(5.0, gt=0, le=300)
    # /metrics holds counts only (no personal data); require the admin token for it if you prefer.
    metrics_require_token: bool = False
    # How long the event loop may keep the GIL while the spool writer or shipper thread waits for it
    # (Python's default is 5 ms): shorter answers durable requests sooner, at a few more thread switches.
    gil_switch_interval_ms: float = Field(1.0, gt=0, le=100)
    # Compressed bodies (gzip, and PostHog's lz64/base64 forms) are refused with 413 once they expand past
    # this: max_body_bytes bounds what is read, this bounds what a small "decompression bomb" becomes.
    max_decompressed_bytes: int = Field(8 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    # POST /v1/consent/withdraw deletes data: at most this many requests a minute from one client (its
    # truncated IP prefix) and for one site, else 429 with Retry-After. Kept in memory, per process (the
    # primary's, with --workers N).
    withdraw_per_client_per_minute: int = Field(10, ge=1, le=100_000)
    withdraw_per_site_per_minute: int = Field(600, ge=1, le=1_000_000)
    # Hostile connections (proxy/connlimits.py; each worker process has its own limits). Open client
    # connections at most: at the cap a new one replaces the one that has waited longest without a request
    # in progress, else it gets 503. Lowered at start to fit the open-file limit.
    max_connections: int = Field(4096, ge=16, le=1_000_000)
    # A new connection that sends no byte within this is closed.
    idle_timeout_seconds: float = Field(10.0, gt=0, le=300)
    # From a request's first byte to the end of its headers (slowloris), and on to the end of its body.
    header_timeout_seconds: float = Field(10.0, gt=0, le=300)
    body_timeout_seconds: float = Field(20.0, gt=0, le=600)
    # Between two requests on one connection (uvicorn's keep-alive timeout).
    keep_alive_seconds: float = Field(5.0, gt=0, le=300)
    # Request line and headers together; more gets 431 and the connection is closed.
    max_header_bytes: int = Field(32 * 1024, ge=1024, le=1024 * 1024)
    # Request bodies held in memory at once (proxy/bodybudget.py): a request whose Content-Length does not
    # fit gets 503 with Retry-After before its body is read. A quarter is kept for bodies up to 64 KiB.
    body_budget_bytes: int = Field(32 * 1024 * 1024, ge=4096, le=16 * 1024 * 1024 * 1024)

    @model_validator(mode="after")
    def _budget_fits_a_body(self) -> ServerSettings:
        # Bodies over 64 KiB may fill three quarters of the budget: the largest allowed one must fit there.
        if self.body_budget_bytes - self.body_budget_bytes // 4 < self.max_body_bytes:
            least = -(-self.max_body_bytes * 4 // 3)
            raise ValueError(
                f"body_budget_bytes ({self.body_budget_bytes}) must be at least {least}, 4/3 of"
                f" max_body_bytes ({self.max_body_bytes}): bodies over 64 KiB may use three quarters of it"
            )
        return self


class PrivacySettings(_Section):
    ipv4_prefix_bits: int = Field(24, ge=0, le=32)
    ipv6_prefix_bits: int = Field(48, ge=0, le=128)
    query_allowlist: tuple[str, ...] = ("utm_*",)
    # None: the scrubber's default list (proxy/scrub/propkeys.py). "=name" matches a whole key, stems of 4
    # characters or fewer a whole word of it, longer stems anywhere in it.
    prop_key_denylist: tuple[str, ...] | None = None
    click_id_params: tuple[str, ...] | None = None  # None: the scrubber's default list
    max_props: int = Field(30, ge=0, le=200)
    max_prop_key_length: int = Field(64, ge=1, le=256)
    max_prop_value_length: int = Field(512, ge=1, le=4096)
    max_string_length: int = Field(2048, ge=64, le=16384)  # url, referrer, title, name, ids
    # Key for identifier pseudonyms (HMAC). Empty: generated once into <data_dir>/pseudonym_secret
    # (embedded store only: with a remote store every replica needs the same one, so it must be given).
    pseudonym_secret: str = ""
    # A file holding the pseudonym secret; used when pseudonym_secret is empty.
    pseudonym_secret_file: str = ""
    # Client timestamps are trusted within these bounds, else the server time is used.
    max_past_seconds: int = Field(24 * 3600, ge=0)
    max_future_seconds: int = Field(300, ge=0)


class GeoipSettings(_Section):
    # .mmdb files (GeoIP2/GeoLite2 or DB-IP). Empty: every *.mmdb under <data_dir>/geoip.
    databases: tuple[str, ...] = ()
    city: bool = False
    cache_size: int = Field(65536, ge=0)


class AdminQuerySettings(_Section):
    """Admin SQL (``POST /admin/query``, ``beaconproxy query``): ClickHouse's own limits on every query, and
    the connection it runs on. Checked at start-up; ClickHouse enforces them while the query runs."""

    # A remote store only: a separate connection for admin queries, as a user that may only read this
    # proxy's database (README, "Admin SQL"). Empty: the store's own connection.
    dsn: str = ""
    max_seconds: float = Field(30.0, gt=0, le=3600)  # max_execution_time
    max_memory_bytes: int = Field(1024**3, ge=16 * 1024**2, le=1024**4)  # max_memory_usage
    max_result_rows: int = Field(100_000, ge=1, le=100_000_000)  # max_result_rows, overflow throws
    # max_result_bytes (uncompressed, in ClickHouse): the answer is held in memory before it is sent.
    max_result_bytes: int = Field(100 * 1024**2, ge=1024**2, le=16 * 1024**3)

    @field_validator("dsn")
    @classmethod
    def _remote(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// DSN (a remote store's read-only user)")
        return v


DATABASE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
# A ClickHouse cluster name (remote_servers), or the {cluster} macro.
CLUSTER_PATTERN = r"^(\{cluster\}|[A-Za-z_][A-Za-z0-9_.-]{0,127})?$"
STORE_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAIN_STORE = "main"


class StoreSettings(_Section):
    """A named store (``[clickhouse.stores.<name>]``): sites with ``store = "<name>"`` keep their events,
    rollups, subject requests and audit rows there only. Retention and the schema switches are the main
    store's (``[clickhouse]``)."""

    dsn: str = Field(min_length=1)  # http(s)://user:password@host:port (a named store is always remote)
    database: str = Field("beacon", pattern=DATABASE_PATTERN)
    cluster: str = Field("", pattern=CLUSTER_PATTERN)

    @field_validator("dsn")
    @classmethod
    def _remote(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(
                "a named store's dsn must start with http:// or https:// (one embedded store only)"
            )
        return v


class ClickhouseSettings(_Section):
    # chdb://<path> (embedded) or http(s)://user:password@host:port. Empty: chdb://<data_dir>/clickhouse.
    dsn: str = ""
    database: str = Field("beacon", pattern=DATABASE_PATTERN)
    # A ClickHouse cluster: `beaconproxy migrate` then creates every table ON CLUSTER with a Replicated
    # engine and explicit deduplication windows. Empty: plain MergeTree tables (one server, or
    # ClickHouse Cloud, which replicates by itself).
    cluster: str = Field("", pattern=CLUSTER_PATTERN)
    # On: the proxy applies the schema at start-up (CREATE ... IF NOT EXISTS, retention ALTERs) where the
    # store lacks it. Off: it only checks that the schema `beaconproxy migrate` made is there, and its
    # database user needs no more than INSERT, SELECT and ALTER DELETE.
    manage_schema: bool = True
    # Inserts remembered for deduplication, per table: a segment replayed after more inserts than this
    # (from every replica together) is stored twice. Replicated tables also forget after the seconds.
    deduplication_window: int = Field(1000, ge=100, le=10_000_000)
    deduplication_window_seconds: int = Field(7 * 86400, ge=3600, le=365 * 86400)
    # Named stores for data residency; sites choose one with `store = "<name>"`.
    stores: dict[str, StoreSettings] = Field(default_factory=dict)
    retention_days: int = Field(400, ge=1, le=36500)
    # Pseudonymous identifier columns (client_id, user_id, session_id, click_ids) expire sooner.
    pseudonym_retention_days: int = Field(90, ge=1, le=36500)
    # The daily aggregates hold no identifiers and are kept longer than raw events.
    aggregate_retention_days: int = Field(1825, ge=1, le=36500)
    audit_retention_days: int = Field(1825, ge=1, le=36500)
    compress: bool = True
    admin_query: AdminQuerySettings = AdminQuerySettings()

    @model_validator(mode="after")
    def _admin_connection(self) -> ClickhouseSettings:
        # The embedded store has one process and no users: a second connection cannot be more restricted.
        if self.admin_query.dsn and not self.dsn.startswith(("http://", "https://")):
            raise ValueError("admin_query.dsn needs a remote store (an http(s):// clickhouse.dsn)")
        return self

    @model_validator(mode="before")
    @classmethod
    def _retention_order(cls, data: Any) -> Any:
        # A pseudonym never outlives its row: a shorter row retention shortens it too (the stricter reading).
        if isinstance(data, dict) and "retention_days" in data:
            try:
                rows, pseudonyms = (
                    int(data["retention_days"]),
                    int(
                        data.get(
                            "pseudonym_retention_days", cls.model_fields["pseudonym_retention_days"].default
                        )
                    ),
                )
            except (TypeError, ValueError):
                return data  # field validation reports it
            if pseudonyms > rows:
                return {**data, "pseudonym_retention_days": rows}
        return data


class SpoolSettings(_Section):
    """Accepted events are written here before the 202; the shipper drains it into ClickHouse."""

    # always: fsync (group commit) before answering, survives power loss. interval: answer after the
    # write, fsync every fsync_interval seconds: a process crash loses nothing, a power loss can lose
    # that interval. never: benchmarks only.
    fsync: Literal["always", "interval", "never"] = "always"
    fsync_interval: float = Field(0.2, gt=0, le=60)
    # At this size the proxy answers 503 with Retry-After instead of accepting more.
    max_bytes: int = Field(1024 * 1024 * 1024, ge=64 * 1024)
    # Free disk kept in reserve on the spool's file system: below it, 503 with Retry-After and not ready,
    # so that a disk filling up never stops the shipper and the store from draining what was accepted.
    min_free_bytes: int = Field(256 * 1024 * 1024, ge=0)


class BatchSettings(_Section):
    """How accepted events are grouped: a spool segment is sealed (and becomes one batch for the sink)
    at max_bytes or max_age_seconds after its first event; inserts carry at most max_rows rows."""

    max_rows: int = Field(10_000, ge=1)
    max_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_age_seconds: float = Field(1.0, gt=0, le=3600)
    # On SIGTERM: time to ship what is spooled before exiting; the rest stays for the next start.
    shutdown_grace_seconds: float = Field(10.0, ge=0, le=600)


class AnalyticsSettings(_Section):
    """The analysts' stats API (proxy/stats): suppression, and limits per analyst key and query."""

    # A breakdown row counted from fewer distinct visitors is folded into "(other)"; 1 turns it off.
    min_visitors: int = Field(5, ge=1, le=1000)
    # Requests per analyst key and hour, counted in the store (so across replicas); then 429.
    rate_limit_per_hour: int = Field(600, ge=1, le=1_000_000)
    # ClickHouse settings on every analyst query: a time limit, a result-row cap, and the threads one
    # query may use (on a 2-core machine 1 leaves the other core to ingestion).
    max_execution_seconds: float = Field(10.0, gt=0, le=600)
    max_result_rows: int = Field(100_000, ge=100, le=10_000_000)
    max_threads: int = Field(1, ge=1, le=64)
    # Snowplow referer-parser data (referers.json) naming known referrers for visit:source. Empty: the
    # copy packaged with the referer-parser distribution.
    referrer_data: str = ""
    # How often the store process checks for past UTC days whose visits need a rebuild (proxy/stats/
    # visit_store.py): recent days every time, all days hourly and at start. Today is always made at
    # query time, so this bounds how long late events take to reach past days' visit figures.
    visits_refresh_seconds: float = Field(60.0, ge=1, le=86400)
    # How long a process trusts what it read about a key (so a revocation reaches every replica within
    # this many seconds).
    key_cache_seconds: float = Field(5.0, ge=0, le=600)


class DashboardSettings(_Section):
    """The analysts' dashboard (``GET /dashboard``, proxy/dashboard): sign-in sessions."""

    # How long a sign-in lasts: the session cookie's Max-Age and the stored session's expiry. Signing out,
    # or revoking the analyst key the session was opened with, ends it sooner.
    session_hours: float = Field(12.0, gt=0, le=24 * 30)


class ConsentCookieSettings(_Section):
    name: str = Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
    # json: {"analytics": true, ...}; kv: "analytics:1,marketing:0"; tcf: an IAB TCF v2 string (euconsent-v2).
    format: Literal["json", "kv", "tcf"] = "json"
    # Our category -> the site's key, e.g. {analytics = "statistics"} for a CMP that says "statistics".
    keys: dict[str, str] = Field(default_factory=dict)

    @field_validator("keys")
    @classmethod
    def _categories(cls, v: dict[str, str]) -> dict[str, str]:
        for category, key in v.items():
            if not key:
                raise ValueError(f"the cookie key for {category!r} is empty")
            if category not in CONSENT_CATEGORIES:
                raise ValueError(
                    f"unknown consent category {category!r}; use one of {', '.join(CONSENT_CATEGORIES)}"
                )
        return v


class ConsentDefaults(_Section):
    """What a site assumes for a category no consent source speaks about."""

    analytics: bool = False
    preferences: bool = False
    marketing: bool = False
    precise_location: bool = False


class SiteSettings(_Section):
    # Exact origins ("https://example.com"), "*" for any, or "https://*.example.com" for subdomains.
    allowed_origins: tuple[str, ...] = ()
    # Without analytics consent: keep the event without identifiers, or drop it.
    without_consent: Literal["anonymous", "drop"] = "anonymous"
    consent_cookie: ConsentCookieSettings | None = None
    consent_defaults: ConsentDefaults = ConsentDefaults()
    # Treat "DNT: 1" as an analytics opt-out: such events are dropped (reason do_not_track).
    honour_dnt: bool = False
    # A children's audience: the whole site, or pages under these path prefixes. Their events are stored
    # aggregate-only (no identifiers, no precise location, no props) or dropped.
    children_audience: bool = False
    children_paths: tuple[str, ...] = ()
    children_policy: Literal["aggregate", "drop"] = "aggregate"
    # A blocked subject's further events: kept without identifiers, or dropped.
    blocked_subjects: Literal["anonymous", "drop"] = "anonymous"
    # Keys for identifier pseudonyms: the first is used for new rows, the others only to find old rows
    # (keep a rotated-out key until pseudonym_retention_days have passed). Empty: derived from
    # privacy.pseudonym_secret and the site id.
    pseudonym_keys: tuple[str, ...] = ()
    # How other trackers name this site, for the wire-compatible endpoints: a Plausible domain, an Umami
    # website id, a Segment/RudderStack write key, a PostHog project API key, a Snowplow app id. Any key
    # here matches in every format; a key may belong to one site only.
    tracker_keys: tuple[str, ...] = ()
    # The site's reporting time zone (IANA name): date ranges and time buckets of the stats API.
    timezone: str = "UTC"
    # Overrides analytics.min_visitors for this site (1 turns small-count suppression off).
    min_visitors: int | None = Field(None, ge=1, le=1000)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}; use an IANA name such as 'Europe/Berlin'") from None
        return v

    # The store that keeps this site's events, rollups, subject requests and audit rows: a name from
    # [clickhouse.stores], or empty for the main store.
    store: str = ""

    @field_validator("tracker_keys")
    @classmethod
    def _tracker_keys(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for k in v:
            if not k or len(k) > 256 or k != k.strip():
                raise ValueError("each tracker key must be 1-256 characters without surrounding spaces")
        return v

    @field_validator("children_paths")
    @classmethod
    def _paths(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for p in v:
            if not p.startswith("/"):
                raise ValueError(f"children path {p!r} must start with '/'")
        return v

    @field_validator("pseudonym_keys")
    @classmethod
    def _keys(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if any(len(k) < 16 for k in v):
            raise ValueError("each pseudonym key must be at least 16 characters")
        return v

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for o in v:
            if o != "*" and not re.fullmatch(r"https?://(\*\.)?[a-z0-9.-]+(:\d{1,5})?", o):
                raise ValueError(
                    f"allowed origin {o!r} must be '*', 'https://host[:port]' or 'https://*.domain'"
                )
        return v


class Settings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Path("./data")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"  # JSON lines on stderr
    server: ServerSettings = ServerSettings()
    privacy: PrivacySettings = PrivacySettings()
    geoip: GeoipSettings = GeoipSettings()
    clickhouse: ClickhouseSettings = ClickhouseSettings()
    batch: BatchSettings = BatchSettings()
    spool: SpoolSettings = SpoolSettings()
    analytics: AnalyticsSettings = AnalyticsSettings()
    dashboard: DashboardSettings = DashboardSettings()
    sites: dict[str, SiteSettings] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_sites(self) -> Settings:
        for name in self.sites:
            if not SITE_ID_RE.match(name):
                raise ValueError(f"site id {name!r} must be 1-64 of [A-Za-z0-9._-]")
        owner: dict[str, str] = {}
        for name, site in self.sites.items():
            for key in site.tracker_keys:
                if owner.setdefault(key, name) != name:
                    raise ValueError(f"tracker key {key!r} is listed by sites {owner[key]!r} and {name!r}")
        stores = self.clickhouse.stores
        for name in stores:
            if not STORE_NAME_PATTERN.match(name) or name == MAIN_STORE:
                raise ValueError(
                    f"store name {name!r} must be 1-32 of [a-z0-9_], start with a letter, not 'main'"
                )
        for name, site in self.sites.items():
            if site.store and site.store not in stores:
                known = ", ".join(sorted(stores)) or "none configured"
                raise ValueError(
                    f"sites.{name}.store: no store {site.store!r} in [clickhouse.stores] ({known})"
                )
        return self

    def store_of(self, site: str) -> str:
        """The name of the store that keeps ``site``'s data (``main`` unless the site names another)."""
        cfg = self.sites.get(site)
        return cfg.store if cfg is not None and cfg.store else MAIN_STORE

    @property
    def shared_store(self) -> bool:
        """Whether the main store is remote: then other replicas may share it, and what they must agree
        on (secrets, the daily salt, suppressions, subject requests) lives there."""
        return not self.clickhouse_dsn.startswith("chdb://")

    @property
    def clickhouse_dsn(self) -> str:
        return self.clickhouse.dsn or f"chdb://{self.data_dir / 'clickhouse'}"

    @property
    def geoip_dir(self) -> Path:
        return self.data_dir / "geoip"


_SECTIONS: dict[str, type[_Section]] = {
    name: field.annotation
    for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, _Section)
}
_TOP_LEVEL = {name for name in Settings.model_fields if name not in _SECTIONS and name != "sites"}


def _env_value(raw: str) -> Any:
    text = raw.strip()
    if text[:1] in ("[", "{"):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise SettingsError(f"value is not valid JSON: {exc}") from None
    return raw


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        parts = key[len(ENV_PREFIX) :].lower().split("__")
        try:
            value = _env_value(raw)
        except SettingsError as exc:
            raise SettingsError(f"{key}: {exc}") from None
        if len(parts) == 1 and parts[0] in _TOP_LEVEL:
            out[parts[0]] = value
        elif len(parts) == 2 and parts[0] in _SECTIONS:
            section = _SECTIONS[parts[0]]
            if parts[1] not in section.model_fields:
                raise SettingsError(f"unknown setting {key} (no key {parts[1]!r} in [{parts[0]}])")
            out.setdefault(parts[0], {})[parts[1]] = value
        elif len(parts) == 4 and parts[:2] == ["clickhouse", "stores"]:
            if parts[3] not in StoreSettings.model_fields:
                raise SettingsError(f"unknown setting {key} (no key {parts[3]!r} in a store)")
            stores = out.setdefault("clickhouse", {}).setdefault("stores", {})
            stores.setdefault(parts[2], {})[parts[3]] = value
        elif len(parts) == 3 and parts[0] == "sites":
            if parts[2] not in SiteSettings.model_fields:
                raise SettingsError(f"unknown setting {key} (no key {parts[2]!r} in a site)")
            out.setdefault("sites", {}).setdefault(parts[1], {})[parts[2]] = value
        else:
            raise SettingsError(f"unknown setting {key}")
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError) -> str:
    lines = []
    for err in error.errors():
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown setting {where!r}")
        else:
            lines.append(f"{where}: {err['msg']}")
    return "; ".join(lines)


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Read the TOML file, apply environment overrides and explicit overrides, validate once."""
    env = os.environ if environ is None else environ
    path = Path(config_file or env.get(ENV_PREFIX + "CONFIG") or DEFAULT_CONFIG)
    try:
        with path.open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError(f"config file {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path}: {exc}") from None
    env_data = _env_overrides(env)
    if "sites" in env_data:
        # Environment names are case-insensitive; site ids are not: BEACONPROXY_SITES__MYSHOP__… targets
        # the file's [sites.MyShop] rather than creating a second site "myshop".
        by_lower = {sid.lower(): sid for sid in data.get("sites", {})}
        env_data["sites"] = {by_lower.get(sid, sid): v for sid, v in env_data["sites"].items()}
    data = _merge(data, env_data)
    data = _merge(data, overrides)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(f"{path} with {ENV_PREFIX}* overrides: {_describe(exc)}") from None
    return settings.model_copy(update={"data_dir": settings.data_dir.expanduser().resolve()})
