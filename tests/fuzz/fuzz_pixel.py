"""Fuzz the pixel parser (proxy/parse.py parse_pixel, GET /v1/pixel.gif): on any query string and Referer
it returns a beacon or raises EventError, nothing else. The first line is the query, the rest the
Referer. Run: make fuzz FUZZ_TARGETS=pixel."""

from __future__ import annotations

from urllib.parse import parse_qsl

from proxy.parse import EventError, parse_pixel
from tests.fuzz.harness import LIMITS, assert_beacons, main


def check(data: bytes) -> None:
    query, newline, referer = data.decode("latin-1").partition("\n")  # ASGI headers: latin-1
    params = dict(parse_qsl(query, keep_blank_values=True))  # as proxy.ingest reads the query
    try:
        beacon = parse_pixel(params, referer if newline else None, LIMITS)
    except EventError as exc:
        assert_beacons([exc])
        return
    assert_beacons([beacon])


if __name__ == "__main__":
    main(check)
