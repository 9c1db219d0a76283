"""Spool records <-> events: every column survives the trip; anything else is a counted CodecError."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from proxy.model import EVENT_COLUMNS, Event
from sinks.codec import VERSION, CodecError, decode_event, decode_events, encode_event

SECRET = "do-not-echo-3f9a"


def populated() -> Event:
    """Every column set to a non-default value (and unicode where it is text)."""
    return Event(
        site="shop",
        type="event",
        name="checkout ✓",
        ts=datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=UTC),
        event_id=uuid.UUID("12345678-9abc-4def-8123-456789abcdef"),
        url="https://example.com/cart?utm_source=news",
        referrer="https://news.example.org",
        title="Panier — été",
        utm_source="news",
        utm_medium="mail",
        utm_campaign="spring",
        utm_term="shoes",
        utm_content="banner",
        props={"plan": "pro", "n": "42", "emoji": "🙂", "empty": ""},
        ip="203.0.113.0",
        country="NZ",
        region="Wellington",
        city="Wellington",
        latitude=-41.2865,
        longitude=174.7762,
        browser="Firefox",
        browser_version="121",
        os="Linux",
        os_version="6",
        device="desktop",
        language="fr",
        screen_width=2560,
        screen_height=1440,
        engagement_ms=4_294_967_295,
        visitor_hash=2**64 - 1,
        client_id="c" * 64,
        user_id="u" * 64,
        session_id="s" * 64,
        click_ids={"gclid": "g" * 64, "fbclid": "f" * 64},
        consent=["analytics", "preferences", "marketing", "precise_location"],
    )


def minimal() -> Event:
    """Every optional column None / empty."""
    return Event(
        site="demo",
        type="pageview",
        ts=datetime(2026, 3, 4, 0, 0, 0, 1000, tzinfo=UTC),
        event_id=uuid.UUID(int=7),
        latitude=None,
        longitude=None,
        screen_width=None,
        screen_height=None,
        engagement_ms=None,
        client_id=None,
        user_id=None,
        session_id=None,
    )


def test_the_populated_event_really_sets_every_column() -> None:
    default = Event(site="", type="")
    e = populated()
    unset = [f.name for f in fields(Event) if getattr(e, f.name) == getattr(default, f.name)]
    assert unset == []


@pytest.mark.parametrize("make", [populated, minimal], ids=["populated", "empty"])
def test_round_trip_keeps_every_column(make: Callable[[], Event]) -> None:
    event = make()
    record = encode_event(event)
    assert record[:1] == VERSION
    back = decode_event(record)
    assert back == event
    for column in EVENT_COLUMNS:
        got, want = getattr(back, column), getattr(event, column)
        assert got == want, column
        assert type(got) is type(want), column


def test_timestamp_stays_utc_with_milliseconds() -> None:
    event = populated()
    back = decode_event(encode_event(event))
    assert back.ts.utcoffset() == timedelta(0)
    assert back.ts.microsecond == 891000
    assert back.ts == datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=UTC)
    assert isinstance(back.event_id, uuid.UUID)
    assert back.event_id == event.event_id


def test_maps_and_arrays_keep_their_shape() -> None:
    back = decode_event(encode_event(populated()))
    assert back.props == {"plan": "pro", "n": "42", "emoji": "🙂", "empty": ""}
    assert back.click_ids == {"gclid": "g" * 64, "fbclid": "f" * 64}
    assert back.consent == ["analytics", "preferences", "marketing", "precise_location"]
    assert back.visitor_hash == 2**64 - 1
    assert (back.latitude, back.longitude) == (-41.2865, 174.7762)


def test_encoding_is_stable() -> None:
    """A replay re-reads the same bytes; the encoding of one event must not vary between calls."""
    event = populated()
    assert encode_event(event) == encode_event(event)
    assert encode_event(decode_event(encode_event(event))) == encode_event(event)


def _payload(values: list[object]) -> bytes:
    return VERSION + orjson.dumps(values)


def _valid_values() -> list[object]:
    return list(orjson.loads(encode_event(populated())[1:]))


def _with(index: str, value: object) -> bytes:
    values = _valid_values()
    values[EVENT_COLUMNS.index(index)] = value
    return _payload(values)


BAD_RECORDS = {
    "empty": b"",
    "version-0": b"\x00" + encode_event(populated())[1:],
    "version-2": b"\x02" + encode_event(populated())[1:],
    "ascii-json-without-version": orjson.dumps(_valid_values()),
    "garbage": b"\x01\xff\xfe\x00garbage" + SECRET.encode(),
    "truncated-json": encode_event(populated())[:-7],
    "json-object": VERSION + orjson.dumps({"site": SECRET}),
    "json-scalar": VERSION + b"42",
    "too-few-columns": _payload(_valid_values()[:-1]),
    "too-many-columns": _payload([*_valid_values(), SECRET]),
    "ts-not-a-time": _with("ts", SECRET),
    "ts-null": _with("ts", None),
    "ts-number": _with("ts", 1700000000000),
    "event-id-not-a-uuid": _with("event_id", SECRET),
    "event-id-null": _with("event_id", None),
    "version-only": VERSION,
}


@pytest.mark.parametrize("record", list(BAD_RECORDS.values()), ids=list(BAD_RECORDS))
def test_anything_but_a_version_1_event_is_a_codec_error(record: bytes) -> None:
    with pytest.raises(CodecError) as info:
        decode_event(record)
    assert SECRET not in str(info.value)  # the message never quotes the record


def test_codec_error_is_a_value_error() -> None:
    assert issubclass(CodecError, ValueError)


def test_decode_events_counts_bad_records_and_keeps_the_good_ones_in_order() -> None:
    first, second = populated(), minimal()
    records = [
        BAD_RECORDS["version-2"],
        encode_event(first),
        *BAD_RECORDS.values(),
        encode_event(second),
        BAD_RECORDS["garbage"],
    ]
    events, bad = decode_events(records)
    assert events == [first, second]
    assert bad == len(BAD_RECORDS) + 2


def test_decode_events_of_nothing() -> None:
    assert decode_events([]) == ([], 0)
    assert decode_events(iter([b"junk"])) == ([], 1)
