"""The values that flow through the proxy: a parsed beacon, the anonymised event, and drop reasons.

A :class:`Beacon` is what the site sent, validated for shape but not yet trusted: it can still hold raw
identifiers and PII. An :class:`Event` is what may be stored; the pipeline fills it field by field from the
beacon and the request, and only the pipeline creates one.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

PropValue = str | int | float | bool


class DropReason(enum.StrEnum):
    """Why an event was not stored. Closed: every drop names one of these, and each is counted."""

    INVALID = "invalid"  # failed validation (shape, types, bounds)
    UNKNOWN_SITE = "unknown_site"  # site id not configured
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"  # browser Origin not listed for the site
    BOT = "bot"  # crawler, automation or empty User-Agent
    NO_CONSENT = "no_consent"  # no analytics consent and the site keeps nothing anonymous
    OPTED_OUT = "opted_out"  # the visitor's opt-out cookie
    DO_NOT_TRACK = "do_not_track"  # DNT: 1, on a site that honours it
    CHILDREN = "children"  # a children's audience, on a site that drops rather than aggregates
    BLOCKED = "blocked"  # a blocked data subject, on a site that drops rather than anonymises


@dataclass(frozen=True, slots=True)
class Dropped:
    reason: DropReason


@dataclass(frozen=True, slots=True)
class Consent:
    analytics: bool = False
    preferences: bool = False
    marketing: bool = False
    precise_location: bool = False

    def categories(self) -> list[str]:
        """The granted categories, as stored in the ``consent`` column."""
        out = []
        if self.analytics:
            out.append("analytics")
        if self.preferences:
            out.append("preferences")
        if self.marketing:
            out.append("marketing")
        if self.precise_location:
            out.append("precise_location")
        return out


NO_CONSENT = Consent()


@dataclass(slots=True)
class Beacon:
    """One event as the site sent it: shape-checked, not yet anonymised."""

    site: str
    type: str = "pageview"
    name: str = "pageview"
    url: str = ""
    referrer: str = ""
    title: str = ""
    props: dict[str, PropValue] = field(default_factory=dict)
    consent: Consent | None = None  # None: the beacon carried no consent object
    client_id: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    screen_width: int | None = None
    screen_height: int | None = None
    language: str = ""
    latitude: float | None = None
    longitude: float | None = None
    engagement_ms: int | None = None
    ts_ms: int | None = None  # the client's clock, when it sent a usable number
    ts_unusable: bool = False  # it sent a ``ts`` that is no time at all: the server's time is used


@dataclass(slots=True)
class Event:
    """One row of the ``events`` table. Only anonymised values are ever assigned here."""

    site: str
    type: str
    name: str = ""
    ts: datetime = field(default_factory=lambda: datetime.now(UTC))
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)
    url: str = ""
    referrer: str = ""
    title: str = ""
    utm_source: str = ""
    utm_medium: str = ""
    utm_campaign: str = ""
    utm_term: str = ""
    utm_content: str = ""
    props: dict[str, str] = field(default_factory=dict)
    ip: str = ""  # truncated
    country: str = ""
    region: str = ""
    city: str = ""
    latitude: float | None = None
    longitude: float | None = None
    browser: str = ""
    browser_version: str = ""
    os: str = ""
    os_version: str = ""
    device: str = ""
    language: str = ""
    screen_width: int | None = None
    screen_height: int | None = None
    engagement_ms: int | None = None
    visitor_hash: int = 0
    client_id: str | None = None  # keyed pseudonym or None
    user_id: str | None = None  # keyed pseudonym or None
    session_id: str | None = None  # keyed pseudonym or None
    click_ids: dict[str, str] = field(default_factory=dict)  # param -> keyed pseudonym
    consent: list[str] = field(default_factory=list)

    def approx_bytes(self) -> int:
        """A cheap size estimate for batch limits (not exact, never below the real string payload)."""
        n = 256 + len(self.url) + len(self.referrer) + len(self.title) + len(self.name)
        for k, v in self.props.items():
            n += len(k) + len(v) + 2
        return n


# Column order of the events table, shared by the sink and the DDL test.
EVENT_COLUMNS: tuple[str, ...] = tuple(Event.__dataclass_fields__)
