from __future__ import annotations

import pytest

from proxy.formats import plausible
from proxy.formats.base import UNKNOWN_SITE
from proxy.model import Beacon
from proxy.parse import EventError, RequestError
from tests.proxy.formats.conftest import foreign

# As @plausible-analytics/tracker 0.4.6 sends them (fetch, text/plain), see tests/clients.
PAGEVIEW = {
    "n": "pageview",
    "v": 36,
    "u": "https://example.com/a?q=1",
    "d": "example.com",
    "r": "https://ref.example/x",
}
CUSTOM = {
    "n": "Signup",
    "v": 36,
    "u": "https://example.com/a",
    "d": "example.com",
    "r": None,
    "p": {"plan": "pro"},
}
ENGAGEMENT = {
    "n": "engagement",
    "sd": 100,
    "d": "example.com",
    "u": "https://example.com/a",
    "p": {},
    "e": 4210,
}


def one(req_body: object) -> Beacon:
    (b,) = plausible.parse(foreign("/api/event", req_body, headers={"Content-Type": "text/plain"})).beacons  # type: ignore[arg-type]
    assert isinstance(b, Beacon), b
    return b


def test_the_script_s_events() -> None:
    view = one(PAGEVIEW)
    assert (view.site, view.type, view.url, view.referrer) == (
        "shop",
        "pageview",
        "https://example.com/a?q=1",
        "https://ref.example/x",
    )
    assert (view.client_id, view.user_id, view.session_id) == (None, None, None)
    custom = one(CUSTOM)
    assert (custom.type, custom.name, custom.props) == ("event", "Signup", {"plan": "pro"})
    engaged = one(ENGAGEMENT)
    assert (engaged.name, engaged.engagement_ms, engaged.props) == ("engagement", 4210, {})


def test_events_api_long_names_and_props_as_a_json_string() -> None:
    b = one(
        {
            "name": "Download",
            "url": "https://example.com/f",
            "domain": "example.com",
            "props": '{"f":"a.pdf"}',
        }
    )
    assert (b.name, b.props) == ("Download", {"f": "a.pdf"})
    assert one({**PAGEVIEW, "p": "{not json"}).props == {}


def test_rollup_domains_keep_one_event_per_known_site() -> None:
    parsed = plausible.parse(foreign("/api/event", {**PAGEVIEW, "d": "example.com,demo,other.org,demo"}))
    assert sorted(b.site for b in parsed.beacons if isinstance(b, Beacon)) == ["demo", "shop"]
    unknown = plausible.parse(foreign("/api/event", {**PAGEVIEW, "d": "nobody.example"}))
    assert [b.site for b in unknown.beacons if isinstance(b, Beacon)] == [UNKNOWN_SITE]


def test_bad_input() -> None:
    for body in ({"n": "pageview", "u": "https://e.com/"}, {"d": "demo", "u": "https://e.com/"}, [PAGEVIEW]):
        with pytest.raises(RequestError):
            plausible.parse(foreign("/api/event", body))
    (bad,) = plausible.parse(foreign("/api/event", {"n": "pageview", "d": "demo"})).beacons  # no url
    assert isinstance(bad, EventError)


def test_plausible_tracker_captures() -> None:
    """@plausible-analytics/tracker 0.4.6 in Chromium: page view, custom event, SPA page view, two
    engagement events."""
    from tests.proxy.formats.conftest import captured

    out = [b for r in captured("plausible-tracker-0.4.6") for b in plausible.parse(r).beacons]
    assert all(isinstance(b, Beacon) for b in out)
    got = [(b.type, b.name, b.url.rsplit("/", 1)[1], b.engagement_ms) for b in out if isinstance(b, Beacon)]
    assert got == [
        ("pageview", "pageview", "page?utm_source=news", None),
        ("event", "Signup", "page?utm_source=news", None),
        ("event", "engagement", "page?utm_source=news", 1323),
        ("pageview", "pageview", "next", None),
        ("event", "engagement", "next", 3823),
    ]
    assert {b.site for b in out if isinstance(b, Beacon)} == {"demo"}
