from __future__ import annotations

import pytest

from proxy.formats import umami
from proxy.model import Beacon
from proxy.parse import RequestError
from tests.proxy.formats.conftest import foreign

# As Umami's tracker script sends them; @umami/node (tests/clients) sends the same shape.
VIEW = {
    "type": "event",
    "payload": {
        "website": "phc_shop",
        "hostname": "example.com",
        "screen": "1920x1080",
        "language": "en-US",
        "title": "Pricing",
        "url": "/pricing?utm_source=x",
        "referrer": "https://ref.example/y",
    },
}


def one(body: object) -> Beacon:
    (b,) = umami.parse(foreign("/api/send", body)).beacons  # type: ignore[arg-type]
    assert isinstance(b, Beacon), b
    return b


def test_page_view_and_event() -> None:
    v = one(VIEW)
    assert (v.site, v.type, v.url, v.referrer, v.title) == (
        "shop",
        "pageview",
        "https://example.com/pricing?utm_source=x",
        "https://ref.example/y",
        "Pricing",
    )
    assert (v.screen_width, v.screen_height, v.language) == (1920, 1080, "en-US")
    e = one(
        {"type": "event", "payload": {**VIEW["payload"], "name": "signup", "data": {"plan": "pro", "o": {}}}}
    )
    assert (e.type, e.name, e.props) == ("event", "signup", {"plan": "pro"})
    full = one({"type": "event", "payload": {**VIEW["payload"], "url": "https://example.com/x", "id": "u-1"}})
    assert (full.url, full.user_id) == ("https://example.com/x", "u-1")


def test_identify_is_answered_and_not_stored() -> None:
    parsed = umami.parse(
        foreign("/api/send", {"type": "identify", "payload": {"website": "demo", "data": {"email": "x"}}})
    )
    assert parsed.beacons == [] and parsed.ignored == 1


@pytest.mark.parametrize(
    "body",
    [
        {"type": "event"},
        {"type": "event", "payload": {}},
        {"type": "other", "payload": {"website": "demo"}},
        [],
    ],
)
def test_bad_input(body: object) -> None:
    with pytest.raises(RequestError):
        umami.parse(foreign("/api/send", body))  # type: ignore[arg-type]


def test_umami_node_captures() -> None:
    """@umami/node 0.4.0: a page view, a named event with data, an identify call."""
    from tests.proxy.formats.conftest import captured

    view, event, identify = (umami.parse(r) for r in captured("umami-node-0.4.0"))
    (v,) = view.beacons
    assert isinstance(v, Beacon)
    assert (v.type, v.url, v.title, v.language) == (
        "pageview",
        "https://example.com/pricing?utm_source=news",
        "Pricing",
        "en-GB",
    )
    (e,) = event.beacons
    assert isinstance(e, Beacon) and (e.name, e.props) == ("signup", {"plan": "pro"})
    assert identify.beacons == [] and identify.ignored == 1  # its id and e-mail are never stored
