"""Fuzz the Posthog format parser (proxy/formats/posthog.py): on any request it returns beacons and
per-event errors, or raises RequestError (TooLarge included), nothing else.
Run: make fuzz FUZZ_TARGETS=posthog."""

from __future__ import annotations

from proxy.formats import posthog
from proxy.parse import RequestError
from tests.fuzz.harness import assert_parsed, main, request


def check(data: bytes) -> None:
    try:
        parsed = posthog.parse(request(data, "/e/"))
    except RequestError:
        return
    assert_parsed(parsed)


if __name__ == "__main__":
    main(check)
