from __future__ import annotations

import base64
import gzip
import random
from urllib.parse import quote

import lzstring
import orjson
import pytest

from proxy.formats import posthog
from proxy.formats.base import UNKNOWN_SITE, TooLarge
from proxy.model import Beacon
from proxy.parse import EventError, RequestError
from tests.proxy.formats.conftest import captured, foreign, only_beacons

EVENTS = [
    {
        "event": "$pageview",
        "properties": {
            "token": "demo",
            "distinct_id": "0190-anon",
            "$device_id": "0190-anon",
            "$session_id": "sess-1",
            "$current_url": "https://example.com/pricing?email=jo@example.com",
            "$referrer": "$direct",
            "title": "Pricing",
            "$screen_width": 1920,
            "$screen_height": 1080,
            "$browser_language": "en-GB",
            "$raw_user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36",
            "$ip": "81.2.69.142",
            "$set": {"email": "jo@example.com"},
        },
        "timestamp": "2026-12-01T15:00:00.000Z",
    },
    {
        "event": "signup",
        "properties": {"token": "demo", "distinct_id": "user-9", "$device_id": "0190-anon", "plan": "pro"},
    },
    {
        "event": "$identify",
        "properties": {"token": "demo", "distinct_id": "user-9", "$anon_distinct_id": "x"},
    },
]


def test_posthog_python_captures() -> None:
    reqs = captured("posthog-python-7.91.1")
    signup, pageview, person, gzipped = (posthog.parse(r) for r in reqs)
    (b,) = only_beacons(signup)
    assert (b.site, b.type, b.name, b.client_id, b.user_id) == ("demo", "event", "signup", "user-42", None)
    assert b.props == {"plan": "pro"}  # $python_version, $os, $lib... are PostHog's, not stored
    assert b.url == "https://example.com/x?email=a@b.c"  # the pipeline scrubs it
    assert b.ts_ms is not None
    (p,) = only_beacons(pageview)
    assert (p.type, p.url, p.referrer) == ("pageview", "https://example.com/pricing", "https://google.com/q")
    assert person.beacons == [] and person.ignored == 1  # $set: a person's traits, never stored
    (g,) = only_beacons(gzipped)
    assert (g.name, g.client_id) == ("gz", "u")


def test_posthog_js_event_fields() -> None:
    parsed = posthog.parse(foreign("/e/", EVENTS))
    view, signup = only_beacons(parsed)
    assert parsed.ignored == 1
    assert (view.type, view.title, view.referrer, view.language) == ("pageview", "Pricing", "", "en-GB")
    assert (view.client_id, view.user_id, view.session_id) == ("0190-anon", None, "sess-1")
    assert (view.screen_width, view.screen_height) == (1920, 1080)
    assert view.props == {}  # $ip, $set and the other $ properties are never copied
    assert view.ts_ms == 1796137200000
    assert (signup.client_id, signup.user_id) == ("0190-anon", "user-9")  # identified after $identify
    assert parsed.user_agent == EVENTS[0]["properties"]["$raw_user_agent"]  # type: ignore[index]


def test_every_encoding_posthog_clients_use() -> None:
    doc = orjson.dumps(EVENTS)
    lz = lzstring.LZString().compressToBase64(doc.decode())
    b64 = base64.b64encode(doc).decode()
    forms = [
        foreign("/e/", gzip.compress(doc), query={"compression": "gzip-js"}),
        foreign("/e/", gzip.compress(doc), headers={"Content-Encoding": "gzip"}),
        foreign(
            "/e/",
            f"data={lz.replace('+', '%2B')}&compression=lz64".encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        foreign("/e/", lz.encode(), query={"compression": "lz64"}),
        foreign("/e/", f"compression=lz64&data={lz.replace('+', '%2B')}".encode()),  # no Content-Type
        foreign("/e/", f"data={b64.replace('+', '%2B')}".encode()),
        foreign("/e/", b64.encode()),
        foreign("/e/", method="GET", query={"data": b64}),
        foreign("/batch/", {"api_key": "demo", "batch": [{k: v for k, v in EVENTS[1].items()}]}),
        # JSON labelled as a form, as `curl -d` sends it
        foreign("/e/", doc, headers={"Content-Type": "application/x-www-form-urlencoded"}),
    ]
    for req in forms:
        names = [b.name for b in only_beacons(posthog.parse(req))]
        assert names in (["pageview", "signup"], ["signup"]), req


def test_decompression_bombs_in_each_compressed_form() -> None:
    huge = orjson.dumps([{"event": "x", "properties": {"token": "demo", "pad": "a" * 3_000_000}}])
    lz = lzstring.LZString().compressToBase64(huge.decode())
    for req in (
        foreign("/e/", gzip.compress(huge), query={"compression": "gzip-js"}),
        foreign("/e/", lz.encode(), query={"compression": "lz64"}),
        foreign("/e/", f"compression=lz64&data={lz.replace('+', '%2B')}".encode()),  # no Content-Type
        foreign("/e/", base64.b64encode(huge)),
    ):
        req.max_decompressed = 1 << 20
        with pytest.raises(TooLarge):
            posthog.parse(req)


def test_keys_and_bad_input() -> None:
    unknown = posthog.parse(foreign("/e/", {"event": "x", "properties": {"token": "nope"}}))
    assert [b.site for b in only_beacons(unknown)] == [UNKNOWN_SITE]
    shop = posthog.parse(foreign("/capture/", {"api_key": "phc_shop", "event": "x", "distinct_id": 5}))
    assert [(b.site, b.client_id) for b in only_beacons(shop)] == [("shop", "5")]
    mixed = posthog.parse(foreign("/e/", [{"event": "ok", "properties": {"token": "demo"}}, {"nope": 1}, 3]))
    assert [type(b) for b in mixed.beacons] == [Beacon, EventError, EventError]
    no_key = posthog.parse(foreign("/e/", {"event": "x"}))
    assert isinstance(no_key.beacons[0], EventError)
    for body in (b"{not json", b"[]", b"12", b"%%%"):
        with pytest.raises(RequestError):
            posthog.parse(foreign("/e/", body))
    assert posthog.parse(foreign("/engage/", {"$set": {"email": "x"}, "$token": "demo"})).ignored == 1


def test_posthog_js_captures() -> None:
    """posthog-js 1.449.2 in Chromium, with its defaults: gzip bodies (named by magic bytes, not by the
    query), /e/ then /i/v0/e/ once its remote config arrived, a batch sent with sendBeacon at page leave."""
    reqs = [r for r in captured("posthog-js-1.449.2") if r.path in ("/e/", "/i/v0/e/")]
    assert all(r.body[:2] == b"\x1f\x8b" for r in reqs)
    out = [b for r in reqs for b in only_beacons(posthog.parse(r))]
    assert [(b.type, b.name, b.url.rsplit("/", 1)[1]) for b in out] == [
        ("pageview", "pageview", "page?utm_source=news"),
        ("event", "signup", "page?utm_source=news"),
        ("pageview", "pageview", "next"),
        ("event", "$pageleave", "next"),
    ]
    assert len({b.client_id for b in out}) == 1 and out[0].client_id  # its anonymous $device_id
    assert all(b.session_id for b in out)
    assert out[1].props == {"utm_source": "news", "plan": "pro"}
    assert out[3].engagement_ms == 3828
    assert out[0].title == "Pricing" and out[0].screen_width == 1280


def test_lz64_input_is_kept_small_since_it_is_decoded_in_python() -> None:
    rnd = random.Random(3)
    big = lzstring.LZString().compressToBase64(
        "".join(chr(rnd.randint(0x4E00, 0x9FFF)) for _ in range(100_000))
    )
    assert len(big) > posthog.MAX_LZ64_CHARS
    with pytest.raises(TooLarge, match="send gzip instead"):
        posthog.parse(foreign("/e/", big.encode(), query={"compression": "lz64"}, max_decompressed=1 << 24))


@pytest.mark.parametrize("title", ["Страница", "price €5", "日本語", "emoji 🎉", "é"])
def test_data_with_non_latin1_characters_in_a_query_or_form(title: str) -> None:
    """Issue 14: a GET ?data= (or form field) holding JSON with characters outside Latin-1 answered 500."""
    doc = {
        "event": "$pageview",
        "properties": {"token": "demo", "$current_url": "https://e.com/", "title": title},
    }
    text = orjson.dumps(doc).decode()
    [b] = only_beacons(posthog.parse(foreign("/e/", method="GET", query={"data": text})))
    assert b.title == title
    form = f"data={quote(text)}".encode()
    [b] = only_beacons(
        posthog.parse(foreign("/e/", form, headers={"Content-Type": "application/x-www-form-urlencoded"}))
    )
    assert b.title == title
    with pytest.raises(RequestError):  # not JSON, base64 or lz64 once decoded: a clear 400
        posthog.parse(foreign("/e/", method="GET", query={"data": "Страница"}))
