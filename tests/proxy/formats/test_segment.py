from __future__ import annotations

import base64

import pytest

from proxy.formats import segment
from proxy.formats.base import UNKNOWN_SITE
from proxy.model import Beacon
from proxy.parse import EventError, RequestError
from tests.proxy.formats.conftest import captured, foreign, only_beacons

BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
)


def test_segment_python_captures() -> None:
    track, page, identify = (segment.parse(r) for r in captured("segment-analytics-python-2.4.0"))
    (t,) = only_beacons(track)
    assert (t.site, t.type, t.name, t.props) == ("demo", "event", "Signed Up", {"plan": "pro"})
    assert (t.client_id, t.user_id) == ("anon-1", "user-42")
    assert t.ts_ms is not None
    (p,) = only_beacons(page)
    assert (p.type, p.url, p.referrer, p.title) == (
        "pageview",
        "https://example.com/pricing?x=1",
        "https://google.com/",
        "Pricing",
    )
    assert p.props == {}  # url/referrer/title have columns; category and name are not stored
    assert identify.beacons == [] and identify.ignored == 1  # traits (an e-mail here) never stored


def test_rudderstack_python_captures_gzip_and_basic_auth_only() -> None:
    track, page = (segment.parse(r) for r in captured("rudder-sdk-python-2.1.9"))
    assert [(b.site, b.name, b.user_id) for b in only_beacons(track)] == [("demo", "Signed Up", "user-42")]
    assert [(b.type, b.url) for b in only_beacons(page)] == [("pageview", "https://example.com/pricing")]


def test_analytics_js_single_calls_with_the_key_in_the_body() -> None:
    body = {
        "writeKey": "phc_shop",
        "event": "Clicked",
        "anonymousId": "a-1",
        "properties": {"button": "buy", "nested": {"x": 1}},
        "context": {
            "page": {"url": "https://shop.example.com/p", "referrer": "https://ref.example/x", "title": "P"},
            "locale": "de-DE",
            "userAgent": BROWSER_UA,
            "ip": "81.2.69.142",
            "screen": {"width": 390, "height": 844},
            "sessionId": 1733050000,
        },
        "timestamp": "2026-12-01T15:00:00Z",
    }
    parsed = segment.parse(foreign("/v1/t", body))
    (b,) = only_beacons(parsed)
    assert (b.site, b.name, b.url, b.referrer, b.title) == (
        "shop",
        "Clicked",
        "https://shop.example.com/p",
        "https://ref.example/x",
        "P",
    )
    assert (b.client_id, b.session_id, b.language) == ("a-1", "1733050000", "de-DE")
    assert (b.screen_width, b.screen_height, b.ts_ms) == (390, 844, 1796137200000)
    assert b.props == {"button": "buy"}
    assert parsed.user_agent == BROWSER_UA  # the visitor's, for coarse parsing; context.ip is never read
    page = segment.parse(foreign("/v1/p", {**body, "properties": {"url": "https://shop.example.com/q"}}))
    assert [(x.type, x.url) for x in only_beacons(page)] == [("pageview", "https://shop.example.com/q")]
    assert segment.parse(foreign("/v1/i", {**body, "traits": {"email": "x@y.z"}})).ignored == 1


def test_write_key_sources_and_batches() -> None:
    auth = "Basic " + base64.b64encode(b"phc_shop:").decode()
    msgs = [
        {"type": "track", "event": "a"},
        {"type": "identify", "userId": "u"},
        {"type": "screen", "name": "Home"},
        {"type": "bogus"},
        "not an object",
        {"type": "track"},
    ]
    parsed = segment.parse(foreign("/v1/batch", {"batch": msgs}, headers={"Authorization": auth}))
    kinds = [(b.site, b.name) if isinstance(b, Beacon) else "error" for b in parsed.beacons]
    assert kinds == [("shop", "a"), ("shop", "Home"), "error", "error", "error"]
    assert parsed.ignored == 1
    assert isinstance(parsed.beacons[2], EventError)
    jitsu = segment.parse(foreign("/v1/t", {"event": "a"}, headers={"X-Write-Key": "demo"}))
    assert [b.site for b in only_beacons(jitsu)] == ["demo"]
    unknown = segment.parse(foreign("/v1/t", {"event": "a", "writeKey": "who"}))
    assert [b.site for b in only_beacons(unknown)] == [UNKNOWN_SITE]


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/v1/t", {"event": "a"}, {}),  # no key anywhere
        ("/v1/t", {"event": "a"}, {"Authorization": "Basic !!!"}),
        ("/v1/batch", {"writeKey": "demo", "batch": []}, {}),
        ("/v1/batch", {"writeKey": "demo"}, {}),
        ("/v1/t", [1, 2], {}),
    ],
)
def test_unusable_requests(path: str, body: object, headers: dict[str, str]) -> None:
    with pytest.raises(RequestError):
        segment.parse(foreign(path, body, headers=headers))  # type: ignore[arg-type]
