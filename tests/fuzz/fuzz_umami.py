"""Fuzz the Umami format parser (proxy/formats/umami.py): on any request it returns beacons and
per-event errors, or raises RequestError (TooLarge included), nothing else.
Run: make fuzz FUZZ_TARGETS=umami."""

from __future__ import annotations

from proxy.formats import umami
from proxy.parse import RequestError
from tests.fuzz.harness import assert_parsed, main, request


def check(data: bytes) -> None:
    try:
        parsed = umami.parse(request(data, "/api/send"))
    except RequestError:
        return
    assert_parsed(parsed)


if __name__ == "__main__":
    main(check)
