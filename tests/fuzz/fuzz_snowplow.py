"""Fuzz the Snowplow format parser (proxy/formats/snowplow.py): on any request it returns beacons and
per-event errors, or raises RequestError (TooLarge included), nothing else.
Run: make fuzz FUZZ_TARGETS=snowplow."""

from __future__ import annotations

from proxy.formats import snowplow
from proxy.parse import RequestError
from tests.fuzz.harness import assert_parsed, main, request


def check(data: bytes) -> None:
    try:
        parsed = snowplow.parse(request(data, "/com.snowplowanalytics.snowplow/tp2"))
    except RequestError:
        return
    assert_parsed(parsed)


if __name__ == "__main__":
    main(check)
