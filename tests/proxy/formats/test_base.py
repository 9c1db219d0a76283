from __future__ import annotations

import gzip
import zlib

import pytest

from proxy.formats.base import (
    TooLarge,
    b64decode,
    clamp_int,
    collect,
    decompress,
    iso_ms,
    same_user_agent,
    scalar_props,
    screen_of,
)
from proxy.model import Beacon
from proxy.parse import Limits, RequestError, UnreadableEvent


def test_decompress_reads_gzip_zlib_and_gzip_members_back_to_back() -> None:
    assert decompress(gzip.compress(b'{"a":1}'), 100) == b'{"a":1}'
    assert decompress(zlib.compress(b"xyz"), 100) == b"xyz"
    assert decompress(gzip.compress(b"ab") + gzip.compress(b"cd"), 100) == b"abcd"


def test_a_decompression_bomb_is_refused_at_the_limit() -> None:
    bomb = gzip.compress(b"\x00" * 50_000_000)
    assert len(bomb) < 100_000
    with pytest.raises(TooLarge, match="expands past 1048576 bytes"):
        decompress(bomb, 1 << 20)
    # exactly at the limit is fine
    assert len(decompress(gzip.compress(b"x" * 1000), 1000)) == 1000
    with pytest.raises(TooLarge):
        decompress(gzip.compress(b"x" * 1001), 1000)


def test_bomb_split_over_many_members_is_refused_too() -> None:
    member = gzip.compress(b"\x00" * 600)
    with pytest.raises(TooLarge):
        decompress(member * 10, 5000)


@pytest.mark.parametrize("data", [b"not gzip", gzip.compress(b"hello world")[:-8], b"\x1f\x8b\x08garbage"])
def test_broken_gzip_is_a_request_error(data: bytes) -> None:
    with pytest.raises(RequestError) as err:
        decompress(data, 1000)
    assert not isinstance(err.value, TooLarge)


def test_b64decode_standard_urlsafe_unpadded_and_form_mangled() -> None:
    assert b64decode("eyJhIjoxfQ==", 100) == b'{"a":1}'
    assert b64decode("eyJhIjoxfQ", 100) == b'{"a":1}'
    assert b64decode("-_8", 100) == b"\xfb\xff"
    assert b64decode("a+b/", 100) == b64decode("a b/", 100)  # '+' read back from a form as ' '
    with pytest.raises(RequestError):
        b64decode("!!!", 100)
    with pytest.raises(TooLarge):
        b64decode("A" * 400, 100)


def test_scalar_props_keeps_what_we_can_store_and_leaves_the_rest_out() -> None:
    props = {
        "plan": "pro",
        "n": 3,
        "x": 1.5,
        "ok": True,
        "nested": {"a": 1},
        "list": [1],
        "none": None,
        "nan": float("nan"),
        "long": "v" * 600,
        "": "empty key",
        "k" * 65: "long key",
        "$lib": "posthog",
    }
    assert scalar_props(props, Limits(), lambda k: k.startswith("$")) == {
        "plan": "pro",
        "n": 3,
        "x": 1.5,
        "ok": True,
    }
    many = {f"p{i}": i for i in range(50)}
    assert list(scalar_props(many, Limits(max_props=5))) == ["p0", "p1", "p2", "p3", "p4"]
    assert scalar_props(["not", "a", "dict"], Limits()) == {}


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("2026-12-01T15:31:31.900630+00:00", 1796139091900),
        ("2026-12-01T15:31:31Z", 1796139091000),
        ("2026-12-01T16:31:31+01:00", 1796139091000),
        ("2026-12-01T15:31:31", None),  # no zone: unknown time
        ("yesterday", None),
        (1796139091900, None),
        (None, None),
    ],
)
def test_iso_ms(value: object, want: int | None) -> None:
    assert iso_ms(value) == want


def test_small_converters() -> None:
    assert screen_of("1920x1080") == {"width": 1920, "height": 1080}
    assert screen_of("1920") is None
    assert screen_of("axb") is None
    assert clamp_int("12", 0, 100) == 12
    assert clamp_int(12.7, 0, 100) == 12
    assert clamp_int(True, 0, 100) is None
    assert clamp_int(101, 0, 100) is None
    assert same_user_agent(["ua1", None, "ua1"]) == "ua1"
    assert same_user_agent(["ua1", "ua2"]) is None
    assert same_user_agent([None, ""]) is None


@pytest.mark.parametrize("value", ["²", "١٢", "9" * 5000, "1e3", "-1", " ", "12x"])
def test_clamp_int_refuses_what_int_would_refuse_or_misread(value: str) -> None:
    # "²" passes str.isdigit() but int() raises; 5000 digits exceed int()'s conversion limit.
    assert clamp_int(value, 0, 10**30) is None
    assert screen_of(f"{value}x{value}") is None


@pytest.mark.parametrize("value", ["€abc", "aGk=\u00e9", "\udc80"])
def test_b64decode_non_ascii_text_is_a_request_error(value: str) -> None:
    with pytest.raises(RequestError):
        b64decode(value, 1000)


def test_collect_keeps_the_batch_when_one_event_fails_unexpectedly() -> None:
    def one(item: object) -> tuple[dict[str, object] | None, object]:
        if item == "boom":
            raise KeyError("a bug")
        return {"site": "demo", "url": f"https://e.com/{item}"}, None

    parsed = collect(["a", "boom", "b"], one, Limits())
    first, failed, last = parsed.beacons
    assert isinstance(failed, UnreadableEvent) and str(failed) == "event could not be read"
    assert isinstance(failed.__cause__, KeyError)
    assert [b.url for b in (first, last) if isinstance(b, Beacon)] == ["https://e.com/a", "https://e.com/b"]
