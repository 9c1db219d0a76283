"""Fuzz the Segment format parser (proxy/formats/segment.py): on any request it returns beacons and
per-event errors, or raises RequestError (TooLarge included), nothing else.
Run: make fuzz FUZZ_TARGETS=segment."""

from __future__ import annotations

from proxy.formats import segment
from proxy.parse import RequestError
from tests.fuzz.harness import assert_parsed, main, request


def check(data: bytes) -> None:
    try:
        parsed = segment.parse(request(data, "/v1/batch"))
    except RequestError:
        return
    assert_parsed(parsed)


if __name__ == "__main__":
    main(check)
