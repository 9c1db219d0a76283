"""Wire-compatible endpoints: other trackers' requests, mapped into our events and run through the same
pipeline. One module per format (parsing only); this table says which paths each one serves and how a
success is answered, in the shape its clients expect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from proxy.formats import plausible, posthog, segment, snowplow, umami
from proxy.formats.base import ForeignRequest, Parsed
from proxy.http import GIF


@dataclass(frozen=True, slots=True)
class Format:
    name: str  # the endpoint label in metrics
    methods: frozenset[str]
    parse: Callable[[ForeignRequest], Parsed]
    ok_status: int
    ok_body: bytes
    ok_type: bytes


_POST = frozenset({"POST"})
_JSON = b"application/json"
_TEXT = b"text/plain; charset=utf-8"

PLAUSIBLE = Format("plausible", _POST, plausible.parse, 202, b"ok", _TEXT)
UMAMI = Format("umami", _POST, umami.parse, 200, b"{}", _JSON)
SEGMENT = Format("segment", _POST, segment.parse, 200, b'{"success":true}', _JSON)
POSTHOG = Format("posthog", frozenset({"POST", "GET"}), posthog.parse, 200, b'{"status":1}', _JSON)
SNOWPLOW = Format("snowplow", _POST, snowplow.parse, 200, b"ok", _TEXT)
SNOWPLOW_PIXEL = Format("snowplow", frozenset({"GET", "HEAD"}), snowplow.parse, 200, GIF, b"image/gif")

# Paths without a trailing slash (PostHog's clients send "/e/", others none): the lookup strips it.
ROUTES: dict[str, Format] = {
    "/api/event": PLAUSIBLE,
    "/api/send": UMAMI,
    **dict.fromkeys(segment.PATHS, SEGMENT),
    **dict.fromkeys(posthog.PATHS, POSTHOG),
    snowplow.TP2_PATH: SNOWPLOW,
    snowplow.PIXEL_PATH: SNOWPLOW_PIXEL,
}


def route(path: str) -> Format | None:
    return ROUTES.get(path[:-1] if path.endswith("/") and len(path) > 1 else path)


def constant_answer(path: str) -> bytes | None:
    """The fixed JSON answer for a client's configuration request (posthog-js's remote config and
    flags), None for any other path. Such requests are answered without reading them."""
    return posthog.static_answer(path)
