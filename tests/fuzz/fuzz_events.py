"""Fuzz the native body parser (proxy/parse.py parse_body, POST /v1/events): on any bytes it returns
beacons and per-event errors, or raises RequestError, nothing else. Run: make fuzz FUZZ_TARGETS=events."""

from __future__ import annotations

from proxy.parse import RequestError, parse_body
from tests.fuzz.harness import LIMITS, assert_beacons, main


def check(data: bytes) -> None:
    try:
        beacons = parse_body(data, LIMITS)
    except RequestError:
        return
    assert 1 <= len(beacons) <= LIMITS.max_events
    assert_beacons(beacons)


if __name__ == "__main__":
    main(check)
