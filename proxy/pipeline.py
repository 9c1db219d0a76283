"""The privacy pipeline: two readable lists of small named steps.

A step is a function of (state, services) that returns the state or ``Dropped(reason)``; its name says
what it may do (``put_``, ``drop_``, ``scrub_``, ``truncate_``, ``forget_``). The runner stops at the
first drop and counts it by reason; a sample of runs is timed per step.

Request steps run once per HTTP request (a batch shares one client, one IP and one User-Agent); event
steps run once per event. The request steps are the only code that sees the full client IP and the raw
User-Agent, and they end by destroying both: every event step runs after ``truncate_ip`` and
``forget_user_agent``, so no event step can see them, by construction.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import TypeVar

from config.settings import ConsentCookieSettings, Settings
from proxy import clientip
from proxy.consent import (
    DENIED,
    SILENT,
    ConsentSignal,
    Cookies,
    TCFError,
    combine,
    decode_tcf_v2,
    parse_json_cookie,
    parse_kv_cookie,
    strictest,
    tcf_to_signal,
)
from proxy.geo import UNKNOWN, GeoLookup, GeoResult
from proxy.keys import DailySalt, SiteKeys, visitor_hash
from proxy.metrics import Metrics
from proxy.model import NO_CONSENT, Beacon, Consent, Dropped, DropReason, Event
from proxy.parse import EventError
from proxy.paths import normalise_path, url_path
from proxy.scrub import (
    DEFAULT_CLICK_ID_PARAMS,
    DEFAULT_PROP_KEY_DENYLIST,
    Scrubber,
)
from proxy.sites import Site, SiteRegistry
from proxy.subjects import Suppressions
from proxy.useragent import UserAgentInfo, parse_user_agent

TIMING_SAMPLE = 16  # time one request in this many


@dataclass(slots=True)
class RequestInfo:
    """What the route read from the HTTP request. Holds raw inputs until the request steps forget them."""

    peer: str | None
    forwarded: str | None  # value of the configured client-IP header
    user_agent: str
    origin: str | None = None
    accept_language: str = ""
    gpc: bool = False
    dnt: bool = False
    cookies: Cookies = field(default_factory=dict)  # every occurrence of each name (consent.Cookies)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(slots=True)
class Visit:
    """Per-request state. ``full_ip`` and ``info.user_agent`` are emptied by the last request steps."""

    info: RequestInfo
    sites: frozenset[str]
    now_ms: float  # info.now in epoch milliseconds
    full_ip: bytes | None = None
    ip: str = ""  # truncated, formatted
    ua: UserAgentInfo = field(default_factory=UserAgentInfo)
    geo: GeoResult = UNKNOWN
    visitor_hashes: dict[str, int] = field(default_factory=dict)
    # (what, site, kind, raw value) -> keyed pseudonym or subject id, for this request only: a batch
    # from one browser repeats its ids, and raw identifiers must not outlive the request in a cache.
    keyed: dict[tuple[str, str, str, str], str] = field(default_factory=dict)


def _keyed(
    v: Visit, what: str, derive: Callable[[str, str, str], str], site: str, kind: str, value: str
) -> str:
    """``derive(site, kind, value)``, computed once per request (``what`` names ``derive``)."""
    key = (what, site, kind, value)
    out = v.keyed.get(key)
    if out is None:
        out = v.keyed[key] = derive(site, kind, value)
    return out


@dataclass(slots=True)
class Draft:
    """One event in the making: the untrusted beacon, the row being filled, and its context."""

    beacon: Beacon
    event: Event
    visit: Visit
    site: Site | None = None
    consent: Consent = field(default_factory=Consent)
    aggregate_only: bool = False  # a children's audience: no identifiers, precise location or props


@dataclass(slots=True)
class Outcome:
    events: list[Event] = field(default_factory=list)
    dropped: Counter[DropReason] = field(default_factory=Counter)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (index in batch, message)


class Services:
    """Everything steps may use, built once from settings."""

    def __init__(
        self,
        settings: Settings,
        geo: GeoLookup,
        salt: DailySalt,
        keys: SiteKeys,
        metrics: Metrics,
        suppressions: Suppressions | None = None,
    ) -> None:
        p = settings.privacy
        self.settings = settings
        self.sites = SiteRegistry(settings.sites)
        self.trusted = clientip.TrustedProxies(settings.server.trusted_proxies)
        self.ip_header = settings.server.client_ip_header
        self.v4_bits = p.ipv4_prefix_bits
        self.v6_bits = p.ipv6_prefix_bits
        self.geo = geo
        self.with_city = settings.geoip.city
        self.salt = salt
        self.keys = keys
        self.suppressions = suppressions if suppressions is not None else Suppressions()
        self.opt_out_cookie = settings.server.opt_out_cookie
        self.scrubber = Scrubber(
            p.query_allowlist,
            DEFAULT_PROP_KEY_DENYLIST if p.prop_key_denylist is None else p.prop_key_denylist,
            DEFAULT_CLICK_ID_PARAMS if p.click_id_params is None else p.click_id_params,
        )
        self.max_past_ms = p.max_past_seconds * 1000
        self.max_future_ms = p.max_future_seconds * 1000
        self.metrics = metrics


# --- request steps -----------------------------------------------------------------------------------


def drop_opted_out(v: Visit, s: Services) -> Visit | Dropped:
    """The visitor's opt-out cookie (GET /v1/opt-out): nothing of theirs is processed further. Any copy
    of it that says so (or cannot be read) opts out, whatever other copies say."""
    copies = v.info.cookies.get(s.opt_out_cookie)
    return Dropped(DropReason.OPTED_OUT) if copies and ("1" in copies or None in copies) else v


def put_client_ip(v: Visit, s: Services) -> Visit | Dropped:
    """The client address; an IPv6 address that carries the client's IPv4 (6to4, Teredo, NAT64...) is
    that IPv4 address from here on, for geo, the visitor hash and truncation alike."""
    ip = clientip.client_ip(v.info.peer, v.info.forwarded, s.ip_header, s.trusted)
    if ip is not None and len(ip) == 16:
        ip = clientip.embedded_ipv4(ip) or ip
    v.full_ip = ip
    v.info.peer = v.info.forwarded = None  # from here on only full_ip holds the address
    return v


def put_user_agent(v: Visit, s: Services) -> Visit | Dropped:
    v.ua = parse_user_agent(v.info.user_agent)
    return v


def drop_bot(v: Visit, s: Services) -> Visit | Dropped:
    return Dropped(DropReason.BOT) if v.ua.is_bot else v


def put_geo(v: Visit, s: Services) -> Visit | Dropped:
    if v.full_ip is not None:
        v.geo = s.geo.lookup(v.full_ip)
    return v


def put_visitor_hash(v: Visit, s: Services) -> Visit | Dropped:
    salt = s.salt.current(v.info.now)
    ip = v.full_ip or b""
    for site in v.sites:
        v.visitor_hashes[site] = visitor_hash(salt, site, ip, v.info.user_agent)
    return v


def truncate_ip(v: Visit, s: Services) -> Visit | Dropped:
    if v.full_ip is not None:
        v.ip = clientip.format_ip(clientip.anonymise(v.full_ip, s.v4_bits, s.v6_bits))
    v.full_ip = None
    return v


def forget_user_agent(v: Visit, s: Services) -> Visit | Dropped:
    v.info.user_agent = ""
    return v


# Order matters and is fixed here:
# - an opted-out visitor is dropped before anything about them is looked at;
# - then the client IP; bots are dropped before any lookup is spent on them;
# - geo lookup and visitor hash need the full IP, so they run before truncation;
# - truncate_ip and forget_user_agent end the request phase: nothing after them sees the full IP or raw UA.
REQUEST_STEPS: tuple[Callable[[Visit, Services], Visit | Dropped], ...] = (
    drop_opted_out,
    put_client_ip,
    put_user_agent,
    drop_bot,
    put_geo,
    put_visitor_hash,
    truncate_ip,
    forget_user_agent,
)


# --- event steps -------------------------------------------------------------------------------------


def drop_unknown_site(d: Draft, s: Services) -> Draft | Dropped:
    d.site = s.sites.get(d.beacon.site)
    return d if d.site is not None else Dropped(DropReason.UNKNOWN_SITE)


def drop_disallowed_origin(d: Draft, s: Services) -> Draft | Dropped:
    assert d.site is not None
    return d if d.site.allows_origin(d.visit.info.origin) else Dropped(DropReason.ORIGIN_NOT_ALLOWED)


def drop_do_not_track(d: Draft, s: Services) -> Draft | Dropped:
    assert d.site is not None
    if d.visit.info.dnt and d.site.settings.honour_dnt:
        return Dropped(DropReason.DO_NOT_TRACK)
    return d


def _one_cookie_signal(cfg: ConsentCookieSettings, value: str | None) -> ConsentSignal:
    if value is None:
        return DENIED
    if cfg.format == "json":
        signal = parse_json_cookie(value, cfg.keys)
    elif cfg.format == "kv":
        signal = parse_kv_cookie(value, cfg.keys)
    else:
        try:
            signal = tcf_to_signal(decode_tcf_v2(value))
        except TCFError:
            signal = SILENT
    # A consent cookie that is there but says nothing we can read refuses everything: otherwise a site
    # whose defaults grant a category would take an unreadable cookie as consent.
    return DENIED if signal == SILENT else signal


def _cookie_signal(site: Site, cookies: Cookies) -> ConsentSignal:
    """The site's consent cookie; sent more than once (other paths or domains), the most restrictive copy
    wins per category, and an unreadable copy refuses everything."""
    cfg = site.settings.consent_cookie
    copies = cookies.get(cfg.name) if cfg is not None else None
    if cfg is None or not copies:
        return SILENT
    return strictest([_one_cookie_signal(cfg, value) for value in copies])


@lru_cache(maxsize=4096)  # keys are small closed values: at most 81 x 17 x 2 per site's defaults
def _settle_consent(
    cookie: ConsentSignal, beacon: Consent | None, defaults: ConsentSignal, gpc: bool
) -> Consent:
    sources = [cookie] if beacon is None else [cookie, ConsentSignal.from_consent(beacon)]
    c = combine(sources, defaults)
    if gpc and c.marketing:  # Global Privacy Control withdraws marketing consent
        c = Consent(c.analytics, c.preferences, False, c.precise_location)
    return c


def put_consent(d: Draft, s: Services) -> Draft | Dropped:
    """Beacon, consent cookie and site defaults; the most restrictive answer wins; GPC withdraws marketing."""
    assert d.site is not None
    cookie = _cookie_signal(d.site, d.visit.info.cookies)
    d.consent = _settle_consent(cookie, d.beacon.consent, d.site.consent_defaults, d.visit.info.gpc)
    return d


def put_audience(d: Draft, s: Services) -> Draft | Dropped:
    """A children's audience (whole site or path prefixes) is stored aggregate-only, or dropped. Paths
    match as the page a browser would load: any spelling of a children's page is one (proxy.paths)."""
    assert d.site is not None
    cfg = d.site.settings
    children = cfg.children_audience or (
        bool(d.site.children_prefixes) and d.site.is_children_path(normalise_path(url_path(d.beacon.url)))
    )
    if children:
        if cfg.children_policy == "drop":
            return Dropped(DropReason.CHILDREN)
        d.aggregate_only = True
        d.consent = NO_CONSENT  # no identifiers, no precise location, whatever was granted
    return d


def drop_without_consent(d: Draft, s: Services) -> Draft | Dropped:
    assert d.site is not None
    if d.site.drop_without_consent and not d.consent.analytics and not d.aggregate_only:
        return Dropped(DropReason.NO_CONSENT)
    return d


def put_identifiers(d: Draft, s: Services) -> Draft | Dropped:
    """Identifiers only with analytics consent, only as keyed pseudonyms, never for a blocked subject."""
    if not d.consent.analytics:
        return d
    b, e, site = d.beacon, d.event, d.beacon.site
    if s.suppressions:
        for kind, value in (("client_id", b.client_id), ("user_id", b.user_id)):
            subject = _keyed(d.visit, "subject", s.keys.subject, site, kind, value) if value else ""
            if subject and s.suppressions.is_blocked(site, kind, subject):
                assert d.site is not None
                if d.site.settings.blocked_subjects == "drop":
                    return Dropped(DropReason.BLOCKED)
                # kept anonymous: nothing that identifies a blocked subject (ids, click ids, precise
                # location) is stored, whatever was granted
                d.consent = NO_CONSENT
                return d
    p, v = s.keys.pseudonym, d.visit
    e.client_id = _keyed(v, "pseudonym", p, site, "client_id", b.client_id) if b.client_id else None
    e.user_id = _keyed(v, "pseudonym", p, site, "user_id", b.user_id) if b.user_id else None
    e.session_id = _keyed(v, "pseudonym", p, site, "session_id", b.session_id) if b.session_id else None
    return d


def put_consent_record(d: Draft, s: Services) -> Draft | Dropped:
    """The row records the consent it was actually stored under (after GPC, audience and blocks)."""
    d.event.consent = d.consent.categories()
    return d


def put_location(d: Draft, s: Services) -> Draft | Dropped:
    """Latitude/longitude only with explicit precise-location consent; never from GeoIP."""
    if d.consent.precise_location and d.beacon.latitude is not None:
        d.event.latitude = d.beacon.latitude
        d.event.longitude = d.beacon.longitude
    return d


def scrub_url(d: Draft, s: Services) -> Draft | Dropped:
    """Allow-listed query parameters only; utm_* into their columns; click ids need marketing consent."""
    scrubbed = s.scrubber.url(d.beacon.url)
    e = d.event
    e.url = scrubbed.url
    params = scrubbed.params
    if params:
        e.utm_source = params.get("utm_source", "")
        e.utm_medium = params.get("utm_medium", "")
        e.utm_campaign = params.get("utm_campaign", "")
        e.utm_term = params.get("utm_term", "")
        e.utm_content = params.get("utm_content", "")
    if scrubbed.click_ids and d.consent.marketing and d.consent.analytics:
        site = d.beacon.site
        e.click_ids = {k: s.keys.pseudonym(site, k, v) for k, v in scrubbed.click_ids.items()}
    return d


def scrub_referrer(d: Draft, s: Services) -> Draft | Dropped:
    d.event.referrer = s.scrubber.referrer(d.beacon.referrer) if d.beacon.referrer else ""
    return d


def scrub_text(d: Draft, s: Services) -> Draft | Dropped:
    d.event.name = s.scrubber.text(d.beacon.name)
    d.event.title = s.scrubber.text(d.beacon.title) if d.beacon.title else ""
    return d


def scrub_props(d: Draft, s: Services) -> Draft | Dropped:
    d.event.props = s.scrubber.props(d.beacon.props) if d.beacon.props and not d.aggregate_only else {}
    return d


@lru_cache(maxsize=1024)  # a few tags and Accept-Language values make up nearly all traffic
def _primary_language(tag: str) -> str:
    primary = tag.split(",", 1)[0].split(";", 1)[0].strip().split("-", 1)[0].split("_", 1)[0].lower()
    return primary if 2 <= len(primary) <= 3 and primary.isascii() and primary.isalpha() else ""


def put_language(d: Draft, s: Services) -> Draft | Dropped:
    d.event.language = _primary_language(d.beacon.language or d.visit.info.accept_language)
    return d


def put_measurements(d: Draft, s: Services) -> Draft | Dropped:
    b, e = d.beacon, d.event
    e.screen_width = b.screen_width
    e.screen_height = b.screen_height
    e.engagement_ms = b.engagement_ms
    return d


def put_timestamp(d: Draft, s: Services) -> Draft | Dropped:
    """The client's clock is trusted within bounds; outside them, or when ``ts`` was no usable time at
    all, the server's receive time (which every event starts with) is kept and the reason counted."""
    ts_ms = d.beacon.ts_ms
    if ts_ms is not None:
        now_ms = d.visit.now_ms
        if ts_ms < now_ms - s.max_past_ms:
            s.metrics.clock_replaced["too_old"] += 1
        elif ts_ms > now_ms + s.max_future_ms:
            s.metrics.clock_replaced["in_future"] += 1
        else:
            d.event.ts = datetime.fromtimestamp(ts_ms / 1000, UTC)
    elif d.beacon.ts_unusable:
        s.metrics.clock_replaced["unusable"] += 1
    return d


def put_visit(d: Draft, s: Services) -> Draft | Dropped:
    """Copy the request's anonymised facts: truncated IP, coarse geo, coarse UA, daily visitor hash."""
    v, e = d.visit, d.event
    e.ip = v.ip
    e.country = v.geo.country
    e.region = v.geo.region
    e.city = v.geo.city if s.with_city else ""
    ua = v.ua
    e.browser, e.browser_version, e.os, e.os_version, e.device = (
        ua.browser,
        ua.browser_version,
        ua.os,
        ua.os_version,
        ua.device,
    )
    e.visitor_hash = v.visitor_hashes.get(d.beacon.site, 0)
    return d


# Order: the site, origin and DNT decide whether anything is kept; consent (sources, GPC, children's
# audience) is settled before any identifier, location or click id is copied; a blocked subject's
# identifiers never reach the row; scrubbing happens on the way into the row, never after.
EVENT_STEPS: tuple[Callable[[Draft, Services], Draft | Dropped], ...] = (
    drop_unknown_site,
    drop_disallowed_origin,
    drop_do_not_track,
    put_consent,
    put_audience,
    drop_without_consent,
    put_identifiers,
    put_consent_record,
    put_location,
    scrub_url,
    scrub_referrer,
    scrub_text,
    scrub_props,
    put_language,
    put_measurements,
    put_timestamp,
    put_visit,
)


# --- runner ------------------------------------------------------------------------------------------

T = TypeVar("T")


def _run(steps: Sequence[Callable[[T, Services], T | Dropped]], state: T, s: Services) -> T | Dropped:
    for step in steps:
        result = step(state, s)
        if isinstance(result, Dropped):
            return result
        state = result
    return state


def _run_timed(steps: Sequence[Callable[[T, Services], T | Dropped]], state: T, s: Services) -> T | Dropped:
    step_ns, step_runs = s.metrics.step_ns, s.metrics.step_runs
    for step in steps:
        t0 = time.perf_counter_ns()
        result = step(state, s)
        step_ns[step.__name__] += time.perf_counter_ns() - t0
        step_runs[step.__name__] += 1
        if isinstance(result, Dropped):
            return result
        state = result
    return state


class Pipeline:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._requests = 0

    def process(self, info: RequestInfo, beacons: Sequence[Beacon | EventError]) -> Outcome:
        s = self.services
        out = Outcome()
        valid: list[Beacon] = []
        for i, b in enumerate(beacons):
            if isinstance(b, EventError):
                out.dropped[DropReason.INVALID] += 1
                out.errors.append((i, str(b)))
            else:
                valid.append(b)
        self._requests += 1
        run = _run_timed if self._requests % TIMING_SAMPLE == 1 else _run
        if valid:
            sites = frozenset(b.site for b in valid if b.site in s.sites)
            visit = run(REQUEST_STEPS, Visit(info, sites, info.now.timestamp() * 1000), s)
            if isinstance(visit, Dropped):
                out.dropped[visit.reason] += len(valid)
            else:
                now = info.now
                # Random row ids, from one read of the OS's generator for the whole request (each
                # read releases the GIL, and a waiting thread can then hold the loop up).
                ids = os.urandom(16 * len(valid))
                for i, b in enumerate(valid):
                    event_id = uuid.UUID(bytes=ids[16 * i : 16 * i + 16], version=4)
                    event = Event(site=b.site, type=b.type, ts=now, event_id=event_id)
                    draft = Draft(beacon=b, event=event, visit=visit)
                    result = run(EVENT_STEPS, draft, s)
                    if isinstance(result, Dropped):
                        out.dropped[result.reason] += 1
                    else:
                        out.events.append(result.event)
        # Accepted events are counted by the caller once they are in the spool (a refused append is no
        # acceptance); drops are final here.
        s.metrics.dropped.update(out.dropped)
        return out

    def count_received(self, endpoint: str, beacons: Sequence[Beacon | EventError]) -> None:
        """Events received per endpoint and site; a site id that is not configured is "unknown"."""
        sites, counts = self.services.sites, self.services.metrics.received_events
        for b in beacons:
            site = b.site if isinstance(b, Beacon) and b.site in sites else "unknown"
            counts[(endpoint, site)] += 1
