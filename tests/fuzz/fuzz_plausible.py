"""Fuzz the Plausible format parser (proxy/formats/plausible.py): on any request it returns beacons and
per-event errors, or raises RequestError (TooLarge included), nothing else.
Run: make fuzz FUZZ_TARGETS=plausible."""

from __future__ import annotations

from proxy.formats import plausible
from proxy.parse import RequestError
from tests.fuzz.harness import assert_parsed, main, request


def check(data: bytes) -> None:
    try:
        parsed = plausible.parse(request(data, "/api/event"))
    except RequestError:
        return
    assert_parsed(parsed)


if __name__ == "__main__":
    main(check)
