"""Parse at the edge: bytes -> typed beacons or errors that name the field and the rule, never the value."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from proxy.model import NO_CONSENT, Beacon, Consent
from proxy.parse import EventError, Limits, RequestError, parse_body, parse_event, parse_pixel

LIMITS = Limits()
EMAIL = "jo@example.com"
IP = "203.0.113.77"
PAGE = {"site": "demo", "url": "https://example.com/"}


def event(**fields: Any) -> dict[str, Any]:
    """A valid pageview with ``fields`` changed."""
    return {**PAGE, **fields}


def error_of(doc: Any, limits: Limits = LIMITS) -> str:
    with pytest.raises(EventError) as info:
        parse_event(doc, limits)
    assert len(info.value.args) == 1  # the message is all an error carries
    return str(info.value)


def body(doc: Any) -> bytes:
    return orjson.dumps(doc)


# --------------------------------------------------------------------------------------- valid events


def test_minimal_pageview() -> None:
    assert parse_event(PAGE, LIMITS) == Beacon(
        site="demo", type="pageview", name="pageview", url="https://example.com/"
    )


def test_minimal_event_needs_no_url() -> None:
    assert parse_event({"site": "demo", "type": "event", "name": "signup"}, LIMITS) == Beacon(
        site="demo", type="event", name="signup", url=""
    )


def test_every_field() -> None:
    doc = {
        "site": "shop",
        "type": "event",
        "name": "purchase",
        "url": "https://shop.example.com/cart?utm_source=news",
        "referrer": "https://www.google.com/",
        "title": "Cart",
        "props": {"plan": "pro", "items": 3, "total": 19.99, "gift": False},
        "consent": {"analytics": True, "preferences": False, "marketing": True, "precise_location": True},
        "client_id": "c-1",
        "user_id": "u-1",
        "session_id": "s-1",
        "language": "de-CH",
        "engagement_ms": 5400,
        "ts": 1_717_000_000_000,
        "screen": {"width": 1920, "height": 1080},
        "location": {"lat": 47.37, "lon": 8.54},
    }

    assert parse_event(doc, LIMITS) == Beacon(
        site="shop",
        type="event",
        name="purchase",
        url="https://shop.example.com/cart?utm_source=news",
        referrer="https://www.google.com/",
        title="Cart",
        props={"plan": "pro", "items": 3, "total": 19.99, "gift": False},
        consent=Consent(analytics=True, preferences=False, marketing=True, precise_location=True),
        client_id="c-1",
        user_id="u-1",
        session_id="s-1",
        screen_width=1920,
        screen_height=1080,
        language="de-CH",
        latitude=47.37,
        longitude=8.54,
        engagement_ms=5400,
        ts_ms=1_717_000_000_000,
    )


def test_pageview_keeps_a_given_name() -> None:
    assert parse_event(event(name="home"), LIMITS).name == "home"


def test_unknown_fields_are_ignored() -> None:
    doc = event(ip=IP, email=EMAIL, headers={"x-forwarded-for": IP}, nested={"a": [1, 2]}, __class__="x")

    assert parse_event(doc, LIMITS) == Beacon(site="demo", url="https://example.com/")


@pytest.mark.parametrize(
    ("fields", "attr", "expected"),
    [
        # identifiers: ints are accepted and stringified, empty means absent
        ({"client_id": 12345}, "client_id", "12345"),
        ({"user_id": 0}, "user_id", "0"),
        ({"session_id": -7}, "session_id", "-7"),
        ({"client_id": 2**63}, "client_id", "9223372036854775808"),
        ({"client_id": ""}, "client_id", None),
        ({"user_id": None}, "user_id", None),
        ({"session_id": "GA1.2.3.4"}, "session_id", "GA1.2.3.4"),
        # integers given as whole floats are integers
        ({"engagement_ms": 1500.0}, "engagement_ms", 1500),
        ({"ts": 1.7e12}, "ts_ms", 1_700_000_000_000),
        ({"screen": {"width": 1920.0, "height": 1080}}, "screen_width", 1920),
        # screen halves are independent
        ({"screen": {}}, "screen_width", None),
        ({"screen": {"height": 800}}, "screen_height", 800),
        ({"screen": {"height": 800}}, "screen_width", None),
        ({"screen": None}, "screen_width", None),
        # coordinates: ints become floats
        ({"location": {"lat": 0, "lon": -1}}, "latitude", 0.0),
        ({"location": {"lat": 0, "lon": -1}}, "longitude", -1.0),
        ({"location": None}, "latitude", None),
        # null strings are empty
        ({"referrer": None}, "referrer", ""),
        ({"title": None}, "title", ""),
        ({"language": None}, "language", ""),
        ({"type": None}, "type", "pageview"),
    ],
)
def test_field_values(fields: dict[str, Any], attr: str, expected: object) -> None:
    value = getattr(parse_event(event(**fields), LIMITS), attr)

    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("consent", "expected"),
    [
        (None, None),  # no consent object: other sources (cookie, site defaults) decide
        ({}, NO_CONSENT),
        ({"analytics": True}, Consent(analytics=True)),
        ({"analytics": None, "marketing": True}, Consent(marketing=True)),
        ({"precise_location": True, "unknown_category": "yes"}, Consent(precise_location=True)),
        (
            {"analytics": True, "preferences": True, "marketing": True, "precise_location": True},
            Consent(True, True, True, True),
        ),
    ],
)
def test_consent(consent: Any, expected: Consent | None) -> None:
    assert parse_event(event(consent=consent), LIMITS).consent == expected


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        (None, {}),
        ({}, {}),
        ({"plan": "pro"}, {"plan": "pro"}),
        ({"n": 3, "neg": -2, "big": 2**62}, {"n": 3, "neg": -2, "big": 2**62}),
        (
            {"price": 9.99, "tiny": 1.5e-300, "huge": 1e308, "zero": -0.0},
            {"price": 9.99, "tiny": 1.5e-300, "huge": 1e308, "zero": -0.0},
        ),
        ({"ok": True, "no": False}, {"ok": True, "no": False}),
        ({"dropped": None, "kept": ""}, {"kept": ""}),
        ({"ключ": "значение"}, {"ключ": "значение"}),
    ],
)
def test_props(props: Any, expected: dict[str, Any]) -> None:
    assert parse_event(event(props=props), LIMITS).props == expected


# ------------------------------------------------------------------------------------- limits, accepted

AT_THE_LIMIT = [
    ({"site": "s" * 64}, "site", "s" * 64),
    ({"type": "event", "name": "n" * 256}, "name", "n" * 256),
    ({"url": "u" * 2048}, "url", "u" * 2048),
    ({"referrer": "r" * 2048}, "referrer", "r" * 2048),
    ({"title": "t" * 2048}, "title", "t" * 2048),
    ({"language": "l" * 35}, "language", "l" * 35),
    ({"client_id": "c" * 256}, "client_id", "c" * 256),
    ({"engagement_ms": 0}, "engagement_ms", 0),
    ({"engagement_ms": 86_400_000}, "engagement_ms", 86_400_000),
    ({"ts": 0}, "ts_ms", 0),
    ({"ts": 2**53}, "ts_ms", 2**53),
    ({"screen": {"width": 0, "height": 100_000}}, "screen_height", 100_000),
    ({"location": {"lat": -90, "lon": 180}}, "latitude", -90.0),
    ({"location": {"lat": 90, "lon": -180}}, "longitude", -180.0),
    ({"props": {f"k{i}": i for i in range(30)}}, "props", {f"k{i}": i for i in range(30)}),
    ({"props": {"k" * 64: "v" * 512}}, "props", {"k" * 64: "v" * 512}),
]


@pytest.mark.parametrize(("fields", "attr", "expected"), AT_THE_LIMIT)
def test_values_at_the_limit_are_accepted(fields: dict[str, Any], attr: str, expected: object) -> None:
    assert getattr(parse_event(event(**fields), LIMITS), attr) == expected


# ------------------------------------------------------------------------------------------ field errors

S = "a string"
FIELD_ERRORS = [
    # the event itself
    ({"site": "demo", "url": "u", "type": "event"}, "field 'name' is required for type 'event'"),
    # site
    ({"url": "u"}, "field 'site' is required"),
    ({"site": "", "url": "u"}, "field 'site' is required"),
    ({"site": None, "url": "u"}, "field 'site' is required"),
    ({"site": 7, "url": "u"}, "field 'site' must be a string"),
    ({"site": ["demo"], "url": "u"}, "field 'site' must be a string"),
    ({"site": "s" * 65, "url": "u"}, "field 'site' is longer than 64 characters"),
    # type
    (event(type="click"), "field 'type' must be 'pageview' or 'event'"),
    (event(type="PAGEVIEW"), "field 'type' must be 'pageview' or 'event'"),
    (event(type=""), "field 'type' must be 'pageview' or 'event'"),
    (event(type=1), "field 'type' must be a string"),
    (event(type="t" * 17), "field 'type' is longer than 16 characters"),
    # name
    ({"site": "demo", "type": "event", "name": ""}, "field 'name' is required for type 'event'"),
    ({"site": "demo", "type": "event", "name": 5}, "field 'name' must be a string"),
    ({"site": "demo", "type": "event", "name": "n" * 257}, "field 'name' is longer than 256 characters"),
    # url, referrer, title, language
    ({"site": "demo"}, "field 'url' is required for type 'pageview'"),
    ({"site": "demo", "url": ""}, "field 'url' is required for type 'pageview'"),
    (event(url=["https://example.com/"]), "field 'url' must be a string"),
    (event(url="u" * 2049), "field 'url' is longer than 2048 characters"),
    (event(referrer=1), "field 'referrer' must be a string"),
    (event(referrer="r" * 2049), "field 'referrer' is longer than 2048 characters"),
    (event(title=True), "field 'title' must be a string"),
    (event(title="t" * 2049), "field 'title' is longer than 2048 characters"),
    (event(language=["de"]), "field 'language' must be a string"),
    (event(language="l" * 36), "field 'language' is longer than 35 characters"),
    # identifiers
    (event(client_id=1.5), "field 'client_id' must be a string"),
    (event(client_id=True), "field 'client_id' must be a string"),
    (event(user_id=["u"]), "field 'user_id' must be a string"),
    (event(session_id={"id": "s"}), "field 'session_id' must be a string"),
    (event(client_id="c" * 257), "field 'client_id' is longer than 256 characters"),
    (event(user_id=10**300), "field 'user_id' is longer than 256 characters"),
    # props
    (event(props=[["k", "v"]]), "field 'props' must be an object"),
    (event(props="k=v"), "field 'props' must be an object"),
    (event(props={"nested": {"a": 1}}), "values in 'props' must be strings, numbers or booleans"),
    (event(props={"list": [1, 2]}), "values in 'props' must be strings, numbers or booleans"),
    (event(props={f"k{i}": i for i in range(31)}), "field 'props' has more than 30 entries"),
    (event(props={"": "v"}), "a key in 'props' is empty or longer than 64"),
    (event(props={"k" * 65: "v"}), "a key in 'props' is empty or longer than 64"),
    (event(props={"k": "v" * 513}), "a value in 'props' is longer than 512"),
    # consent
    (event(consent=True), "field 'consent' must be an object of booleans"),
    (event(consent=["analytics"]), "field 'consent' must be an object of booleans"),
    (event(consent="analytics"), "field 'consent' must be an object of booleans"),
    (event(consent={"analytics": "true"}), "field 'consent.analytics' must be a boolean"),
    (event(consent={"analytics": 1}), "field 'consent.analytics' must be a boolean"),
    (event(consent={"preferences": 0}), "field 'consent.preferences' must be a boolean"),
    (event(consent={"marketing": "yes"}), "field 'consent.marketing' must be a boolean"),
    (event(consent={"precise_location": [True]}), "field 'consent.precise_location' must be a boolean"),
    # integers: bool is not an int, strings are not parsed, fractions are refused
    (event(engagement_ms=True), "field 'engagement_ms' must be an integer"),
    (event(engagement_ms="500"), "field 'engagement_ms' must be an integer"),
    (event(engagement_ms=1.5), "field 'engagement_ms' must be an integer"),
    (event(engagement_ms=-1), "field 'engagement_ms' must be between 0 and 86400000"),
    (event(engagement_ms=86_400_001), "field 'engagement_ms' must be between 0 and 86400000"),
    # screen
    (event(screen=[1920, 1080]), "field 'screen' must be an object with 'width' and 'height'"),
    (event(screen="1920x1080"), "field 'screen' must be an object with 'width' and 'height'"),
    (event(screen={"width": True, "height": 1}), "field 'width' must be an integer"),
    (event(screen={"width": "1920"}), "field 'width' must be an integer"),
    (event(screen={"height": 1080.5}), "field 'height' must be an integer"),
    (event(screen={"width": -1}), "field 'width' must be between 0 and 100000"),
    (event(screen={"height": 100_001}), "field 'height' must be between 0 and 100000"),
    # location
    (event(location=[47.3, 8.5]), "field 'location' must be an object with 'lat' and 'lon'"),
    (event(location="47.3,8.5"), "field 'location' must be an object with 'lat' and 'lon'"),
    (event(location={}), "field 'location.lat' must be a number"),
    (event(location={"lat": 47.3}), "field 'location.lon' must be a number"),
    (event(location={"lat": True, "lon": 8.5}), "field 'location.lat' must be a number"),
    (event(location={"lat": "47.3", "lon": 8.5}), "field 'location.lat' must be a number"),
    (event(location={"lat": 90.0001, "lon": 0}), "field 'location.lat' must be between -90.0 and 90.0"),
    (event(location={"lat": -91, "lon": 0}), "field 'location.lat' must be between -90.0 and 90.0"),
    (event(location={"lat": 0, "lon": 180.5}), "field 'location.lon' must be between -180.0 and 180.0"),
    (event(location={"lat": 0, "lon": -181}), "field 'location.lon' must be between -180.0 and 180.0"),
]


@pytest.mark.parametrize(("doc", "message"), FIELD_ERRORS)
def test_field_errors(doc: dict[str, Any], message: str) -> None:
    assert error_of(doc) == message


@pytest.mark.parametrize("doc", ["event", 1, None, True, ["site", "demo"]])
def test_event_must_be_an_object(doc: Any) -> None:
    assert error_of(doc) == "event must be a JSON object"


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"x": float("nan")}, "a value in 'props' is not a finite number"),
        ({"x": float("inf")}, "a value in 'props' is not a finite number"),
        ({"x": float("-inf")}, "a value in 'props' is not a finite number"),
    ],
)
def test_non_finite_props_refused_when_parse_event_is_called_directly(props: Any, message: str) -> None:
    """JSON cannot carry NaN (see parse_body tests), but parse_event is public: it refuses them too."""
    assert error_of(event(props=props)) == message


@pytest.mark.parametrize("lat", [float("nan"), float("inf")])
def test_non_finite_location_refused(lat: float) -> None:
    assert error_of(event(location={"lat": lat, "lon": 0})) == "field 'location.lat' must be a number"


@pytest.mark.parametrize(
    ("limits", "doc", "message"),
    [
        (Limits(max_props=2), event(props={"a": 1, "b": 2, "c": 3}), "field 'props' has more than 2 entries"),
        (Limits(max_props=0), event(props={"a": 1}), "field 'props' has more than 0 entries"),
        (
            Limits(max_prop_key_length=3),
            event(props={"abcd": 1}),
            "a key in 'props' is empty or longer than 3",
        ),
        (Limits(max_prop_value_length=4), event(props={"a": "abcde"}), "a value in 'props' is longer than 4"),
        (Limits(max_string_length=100), event(url="u" * 101), "field 'url' is longer than 100 characters"),
        (
            Limits(max_string_length=100),
            event(title="t" * 101),
            "field 'title' is longer than 100 characters",
        ),
    ],
)
def test_limits_are_configurable(limits: Limits, doc: dict[str, Any], message: str) -> None:
    assert error_of(doc, limits) == message


# --------------------------------------------------------------------------------- values stay out of errors


def leaky_docs() -> list[tuple[str, Any]]:
    """Events with an e-mail or the full IP in a wrong-typed or too-long position."""
    long_email = (EMAIL + " ") * 200
    long_ip = (IP + " ") * 200
    return [
        ("site too long", {"site": long_email, "url": "u"}),
        ("site wrong type", {"site": [EMAIL], "url": "u"}),
        ("type invalid", event(type=EMAIL)),
        ("type invalid ip", event(type=IP)),
        ("type too long", event(type=long_ip)),
        ("name too long", {"site": "demo", "type": "event", "name": long_email}),
        ("name wrong type", {"site": "demo", "type": "event", "name": {"email": EMAIL}}),
        ("url wrong type", event(url={"email": EMAIL})),
        ("url too long", event(url=f"https://example.com/?email={EMAIL}&ip={IP}&" + "p" * 2048)),
        ("referrer too long", event(referrer=f"https://{IP}/" + "r" * 2048)),
        ("title wrong type", event(title=[EMAIL, IP])),
        ("language too long", event(language=EMAIL * 3)),
        ("client_id too long", event(client_id=long_email)),
        ("user_id wrong type", event(user_id=[EMAIL])),
        ("session_id wrong type", event(session_id={IP: EMAIL})),
        ("props not an object", event(props=f"email={EMAIL}")),
        ("props key too long", event(props={EMAIL * 5: "v"})),
        ("props value too long", event(props={"ip": long_ip})),
        ("props value nested", event(props={"contact": {"email": EMAIL, "ip": IP}})),
        ("props too many", event(props={f"{EMAIL}{i}": IP for i in range(31)})),
        ("consent wrong type", event(consent=EMAIL)),
        ("consent flag wrong type", event(consent={"analytics": IP})),
        ("screen wrong type", event(screen=IP)),
        ("screen width wrong type", event(screen={"width": IP})),
        ("location wrong type", event(location=EMAIL)),
        ("location lat wrong type", event(location={"lat": IP, "lon": 1})),
        ("engagement wrong type", event(engagement_ms=IP)),
        ("event is a string", EMAIL),
        ("event is a list", [EMAIL, IP]),
    ]


@pytest.mark.parametrize(("case", "doc"), leaky_docs(), ids=[case for case, _ in leaky_docs()])
def test_error_messages_never_contain_the_value(case: str, doc: Any) -> None:
    message = error_of(doc)

    for secret in (EMAIL, IP, "jo@", "example.com", "203.0.113"):
        assert secret not in message, case


@pytest.mark.parametrize(
    "raw",
    [EMAIL.encode(), IP.encode(), f'{{"site": "{EMAIL}", "url": '.encode(), f"[{IP}]".encode()],
)
def test_request_errors_never_contain_the_body(raw: bytes) -> None:
    with pytest.raises(RequestError) as info:
        parse_body(raw, LIMITS)

    assert str(info.value) == "body is not valid JSON"


def test_errors_in_a_batch_never_contain_the_value() -> None:
    results = parse_body(body([event(client_id=EMAIL * 30), EMAIL, event(screen=IP)]), LIMITS)

    assert [str(r) for r in results] == [
        "field 'client_id' is longer than 256 characters",
        "event must be a JSON object",
        "field 'screen' must be an object with 'width' and 'height'",
    ]


# -------------------------------------------------------------------------------------------- parse_body


def test_body_single_object() -> None:
    assert parse_body(body(PAGE), LIMITS) == [Beacon(site="demo", url="https://example.com/")]


def test_body_array_in_order() -> None:
    docs = [event(url=f"https://example.com/{i}") for i in range(5)]

    assert parse_body(body(docs), LIMITS) == [
        Beacon(site="demo", url=f"https://example.com/{i}") for i in range(5)
    ]


def test_body_with_surrounding_whitespace() -> None:
    assert parse_body(b"\n  " + body(PAGE) + b"  \n", LIMITS) == [
        Beacon(site="demo", url="https://example.com/")
    ]


def test_batch_keeps_valid_events_around_an_invalid_one_in_order() -> None:
    docs = [
        event(url="https://example.com/1"),
        event(type="click"),
        {"site": "demo", "type": "event", "name": "signup"},
        "not an event",
        event(url="https://example.com/5"),
    ]

    results = parse_body(body(docs), LIMITS)

    assert len(results) == 5
    assert results[0] == Beacon(site="demo", url="https://example.com/1")
    assert isinstance(results[1], EventError)
    assert str(results[1]) == "field 'type' must be 'pageview' or 'event'"
    assert results[2] == Beacon(site="demo", type="event", name="signup")
    assert isinstance(results[3], EventError)
    assert str(results[3]) == "event must be a JSON object"
    assert results[4] == Beacon(site="demo", url="https://example.com/5")


@pytest.mark.parametrize(
    ("count", "limits"), [(100, Limits()), (1, Limits(max_events=1)), (3, Limits(max_events=3))]
)
def test_batch_at_the_event_limit_is_accepted(count: int, limits: Limits) -> None:
    assert len(parse_body(body([PAGE] * count), limits)) == count


@pytest.mark.parametrize(
    ("count", "limits", "message"),
    [
        (101, Limits(), "batch has 101 events; at most 100 are accepted"),
        (2, Limits(max_events=1), "batch has 2 events; at most 1 are accepted"),
        (1000, Limits(max_events=10), "batch has 1000 events; at most 10 are accepted"),
    ],
)
def test_batch_over_the_event_limit_is_refused_whole(count: int, limits: Limits, message: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_body(body([PAGE] * count), limits)

    assert str(info.value) == message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[]", "batch is empty"),
        (b"", "body is not valid JSON"),
        (b"{", "body is not valid JSON"),
        (b"site=demo&url=x", "body is not valid JSON"),
        (b"\xff\xfe{}", "body is not valid JSON"),
        (b'{"site": "demo"} {"site": "demo"}', "body is not valid JSON"),
        (b'{"site": "demo", "url": "u", "props": {"x": NaN}}', "body is not valid JSON"),
        (b'{"site": "demo", "url": "u", "props": {"x": Infinity}}', "body is not valid JSON"),
        (b'{"site": "demo", "url": "u", "props": {"x": 1e400}}', "body is not valid JSON"),
        (b'{"site": "demo", "url": "\\ud800"}', "body is not valid JSON"),
        (b"1", "body must be a JSON object or an array of objects"),
        (b"1.5", "body must be a JSON object or an array of objects"),
        (b'"demo"', "body must be a JSON object or an array of objects"),
        (b"true", "body must be a JSON object or an array of objects"),
        (b"null", "body must be a JSON object or an array of objects"),
    ],
)
def test_request_errors(raw: bytes, message: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_body(raw, LIMITS)

    assert str(info.value) == message


def test_floats_are_fine_in_json() -> None:
    raw = b'{"site": "demo", "url": "u", "props": {"a": 1.5, "b": -0.0, "c": 1e-300, "d": 1.79e308}}'

    [beacon] = parse_body(raw, LIMITS)

    assert isinstance(beacon, Beacon)
    assert beacon.props == {"a": 1.5, "b": -0.0, "c": 1e-300, "d": 1.79e308}


# ------------------------------------------------------------------------------------------- parse_pixel

PIXEL_CASES = [
    (
        {"site": "demo", "url": "https://example.com/a", "ref": "https://www.google.com/", "title": "A"},
        None,
        Beacon(site="demo", url="https://example.com/a", referrer="https://www.google.com/", title="A"),
    ),
    # no url parameter: the Referer header is the page that loaded the pixel
    (
        {"site": "demo"},
        "https://example.com/from-header",
        Beacon(site="demo", url="https://example.com/from-header"),
    ),
    ({"site": "demo", "url": ""}, "https://example.com/h", Beacon(site="demo", url="https://example.com/h")),
    # the url parameter wins over the header
    (
        {"site": "demo", "url": "https://example.com/p"},
        "https://example.com/h",
        Beacon(site="demo", url="https://example.com/p"),
    ),
    # a name makes it a custom event
    (
        {"site": "demo", "name": "email_open"},
        None,
        Beacon(site="demo", type="event", name="email_open", url=""),
    ),
    (
        {"site": "demo", "name": "email_open", "url": "https://example.com/n"},
        None,
        Beacon(site="demo", type="event", name="email_open", url="https://example.com/n"),
    ),
    # a pixel cannot express consent or carry identifiers: those parameters are ignored
    (
        {
            "site": "demo",
            "url": "https://example.com/c",
            "consent": "analytics",
            "analytics": "true",
            "client_id": "c-1",
            "user_id": EMAIL,
            "session_id": "s-1",
            "type": "event",
            "ip": IP,
        },
        None,
        # no consent object: only the consent cookie or site defaults can grant anything
        Beacon(site="demo", url="https://example.com/c", consent=None),
    ),
]


@pytest.mark.parametrize(("params", "referer", "expected"), PIXEL_CASES)
def test_parse_pixel(params: dict[str, str], referer: str | None, expected: Beacon) -> None:
    assert parse_pixel(params, referer, LIMITS) == expected


@pytest.mark.parametrize(
    ("params", "referer", "message"),
    [
        ({"url": "https://example.com/"}, None, "field 'site' is required"),
        ({"site": "", "url": "https://example.com/"}, None, "field 'site' is required"),
        ({"site": "demo"}, None, "field 'url' is required for type 'pageview'"),
        ({"site": "demo"}, "", "field 'url' is required for type 'pageview'"),
        ({"site": "demo", "url": "u" * 2049}, None, "field 'url' is longer than 2048 characters"),
        ({"site": "demo"}, "h" * 2049, "field 'url' is longer than 2048 characters"),
        (
            {"site": "demo", "url": "u", "ref": "r" * 2049},
            None,
            "field 'referrer' is longer than 2048 characters",
        ),
        ({"site": "demo", "name": "n" * 257}, None, "field 'name' is longer than 256 characters"),
    ],
)
def test_parse_pixel_errors(params: dict[str, str], referer: str | None, message: str) -> None:
    with pytest.raises(EventError) as info:
        parse_pixel(params, referer, LIMITS)

    assert str(info.value) == message


@pytest.mark.parametrize(
    ("ts", "ts_ms", "unusable"),
    [
        (1_717_000_000_000, 1_717_000_000_000, False),
        (1_717_000_000_000.75, 1_717_000_000_000, False),  # fractional milliseconds: a time, rounded down
        (0, 0, False),
        (2**53, 2**53, False),
        (-1, None, True),
        (-1.5, None, True),
        (2**53 + 1, None, True),
        (10**300, None, True),
        (1e308, None, True),
        (False, None, True),
        (True, None, True),
        ("2024-01-01", None, True),
        ("1717000000000", None, True),
        ([1], None, True),
        ({"ms": 1}, None, True),
        (None, None, False),  # absent: nothing to replace
    ],
)
def test_an_unusable_client_clock_never_refuses_the_event(ts: Any, ts_ms: int | None, unusable: bool) -> None:
    """A bad ``ts`` is the client's clock being wrong, not a bad event: the event is kept with the
    server's time (the pipeline counts it), never answered 400."""
    beacon = parse_event(event(ts=ts), LIMITS)
    assert (beacon.ts_ms, beacon.ts_unusable) == (ts_ms, unusable)


def test_unusable_clocks_in_a_json_batch_keep_every_event() -> None:
    body = (
        b'[{"site":"s","url":"https://e.com/","ts":-5},{"site":"s","url":"https://e.com/","ts":"x"},'
        b'{"site":"s","url":"https://e.com/","ts":1e999999}]'
    )
    with pytest.raises(RequestError):  # 1e999999 is not JSON orjson reads: the body itself is refused
        parse_body(body, LIMITS)
    body = body.replace(b"1e999999", b"1.5e300")
    out = parse_body(body, LIMITS)
    assert [b.ts_unusable for b in out if not isinstance(b, EventError)] == [True, True, True]
