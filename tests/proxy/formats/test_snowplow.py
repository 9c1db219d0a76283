from __future__ import annotations

import base64

import orjson
import pytest

from proxy.formats import snowplow
from proxy.formats.base import UNKNOWN_SITE
from proxy.model import Beacon
from proxy.parse import EventError, RequestError
from tests.proxy.formats.conftest import captured, foreign, only_beacons

SCHEMA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


def test_snowplow_python_captures() -> None:
    page, struct, pixel = (snowplow.parse(r) for r in captured("snowplow-tracker-1.1.0"))
    (p,) = only_beacons(page)
    assert (p.site, p.type, p.url, p.title, p.referrer) == (
        "demo",
        "pageview",
        "https://example.com/p?email=a@b.c",
        "Title",
        "https://ref.example/",
    )
    assert (p.client_id, p.user_id, p.session_id) == ("duid-1", "user-42", "sid-1")  # tnuid: never read
    assert (p.language, p.screen_width, p.screen_height) == ("en-GB", 1920, 1080)
    assert p.ts_ms == 1796139096884
    assert page.user_agent == "Mozilla/5.0 Chrome/120"
    (s,) = only_beacons(struct)
    assert (s.type, s.name) == ("event", "act")
    assert s.props == {"category": "cat", "label": "lab", "property": "prop", "value": "1.5"}
    (g,) = only_beacons(pixel)
    assert (g.type, g.url, g.site) == ("pageview", "https://example.com/g", "demo")
    assert pixel.user_agent is None  # no ua field: the header's is used


def test_self_describing_events_both_encodings_and_other_kinds() -> None:
    envelope = {
        "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
        "data": {"schema": "iglu:com.acme/signup/jsonschema/1-0-0", "data": {"plan": "pro", "ids": [1]}},
    }
    ue_px = base64.urlsafe_b64encode(orjson.dumps(envelope)).decode().rstrip("=")
    data = [
        {"e": "ue", "aid": "phc_shop", "ue_pr": orjson.dumps(envelope).decode()},
        {"e": "ue", "aid": "phc_shop", "ue_px": ue_px},
        {"e": "pp", "aid": "phc_shop", "url": "https://example.com/"},
        {"e": "tr", "aid": "phc_shop", "tr_id": "order-1"},
        {"e": "zz", "aid": "phc_shop"},
        {"e": "ue", "aid": "phc_shop", "ue_pr": "{bad"},
        {"e": "pv", "aid": "unknown", "url": "https://example.com/"},
    ]
    parsed = snowplow.parse(foreign(snowplow.TP2_PATH, {"schema": SCHEMA, "data": data}))
    out = [(b.site, b.name, b.props) if isinstance(b, Beacon) else "error" for b in parsed.beacons]
    assert out == [
        ("shop", "signup", {"plan": "pro"}),
        ("shop", "signup", {"plan": "pro"}),
        ("shop", "page_ping", {}),
        "error",
        "error",
        (UNKNOWN_SITE, "pageview", {}),
    ]
    assert parsed.ignored == 1  # the transaction
    assert isinstance(parsed.beacons[3], EventError)


def test_mixed_user_agents_fall_back_to_the_header() -> None:
    data = [
        {"e": "pv", "aid": "demo", "url": "https://e.com/", "ua": "A"},
        {"e": "pv", "aid": "demo", "url": "https://e.com/", "ua": "B"},
    ]
    assert snowplow.parse(foreign(snowplow.TP2_PATH, {"schema": SCHEMA, "data": data})).user_agent is None


@pytest.mark.parametrize("body", [b"[]", b"{}", b'{"data": []}', b"nope"])
def test_unusable_bodies(body: bytes) -> None:
    with pytest.raises(RequestError):
        snowplow.parse(foreign(snowplow.TP2_PATH, body))


@pytest.mark.parametrize("kind", [["pv"], {"e": "pv"}, 7, None, True])
def test_an_event_whose_e_is_not_a_string_is_dropped_and_the_batch_kept(kind: object) -> None:
    """Issue 14: a non-string 'e' used to raise TypeError (a 500) and lose the valid events beside it."""
    good = {"e": "pv", "aid": "demo", "url": "https://example.com/ok"}
    parsed = snowplow.parse(
        foreign(
            "/com.snowplowanalytics.snowplow/tp2",
            {"schema": SCHEMA, "data": [good, {**good, "e": kind}, good]},
        )
    )
    first, bad, last = parsed.beacons
    assert isinstance(first, Beacon) and isinstance(last, Beacon)
    assert isinstance(bad, EventError) and str(bad) == "field 'e' must be pv, se, ue, pp, tr or ti"


def test_ue_px_with_non_ascii_text_is_a_bad_event_not_a_failure() -> None:
    event = {"e": "ue", "aid": "demo", "url": "https://example.com/", "ue_px": "eyJ€"}
    [bad] = snowplow.parse(
        foreign("/com.snowplowanalytics.snowplow/tp2", {"schema": SCHEMA, "data": [event]})
    ).beacons
    assert isinstance(bad, EventError) and "ue_px" in str(bad)
