"""Plausible: ``POST /api/event``, as Plausible's script and its Events API send it.

``{"n": "pageview", "u": "https://example.com/p", "d": "example.com", "r": "https://ref/", "p": {...}}``
(long names ``name``/``url``/``domain``/``referrer``/``props`` too). ``d`` may list several domains,
comma-separated: the event is kept once for each site that lists one of them. ``p`` may be an object or
a JSON string. The ``engagement`` event's ``e`` is its engagement time in ms. Plausible sends no
identifiers; revenue, scroll depth and hash-mode flags are not stored.
"""

from __future__ import annotations

from typing import Any

from proxy.formats.base import (
    UNKNOWN_SITE,
    ForeignRequest,
    Parsed,
    beacon,
    clamp_int,
    content_decoded,
    json_doc,
    scalar_props,
    site_of,
    text,
)
from proxy.parse import MAX_ENGAGEMENT_MS, RequestError

MAX_DOMAINS = 10


def _field(doc: dict[str, Any], short: str, long: str) -> Any:
    value = doc.get(short)
    return doc.get(long) if value is None else value


def parse(req: ForeignRequest) -> Parsed:
    doc = json_doc(content_decoded(req))
    if not isinstance(doc, dict):
        raise RequestError("body must be a JSON object")
    domains = text(_field(doc, "d", "domain"))
    if not domains:
        raise RequestError("field 'd' (domain) is required")
    name = text(_field(doc, "n", "name"))
    if not name:
        raise RequestError("field 'n' (event name) is required")
    props = _field(doc, "p", "props")
    if isinstance(props, str):
        try:
            props = json_doc(props)
        except RequestError:
            props = None
    native: dict[str, Any] = {
        "url": _field(doc, "u", "url"),
        "referrer": _field(doc, "r", "referrer"),
        "props": scalar_props(props, req.limits),
    }
    if name == "pageview":
        native["type"] = "pageview"
    else:
        native["type"], native["name"] = "event", name
    if name == "engagement":
        native["engagement_ms"] = clamp_int(doc.get("e"), 0, MAX_ENGAGEMENT_MS)
    width = clamp_int(doc.get("w"), 0, 100_000)
    if width is not None:
        native["screen"] = {"width": width}
    sites = [site_of(req, d.strip()) for d in domains.split(",")[:MAX_DOMAINS]]
    known = list(dict.fromkeys(s for s in sites if s != UNKNOWN_SITE)) or [UNKNOWN_SITE]
    return Parsed([beacon({**native, "site": site}, req.limits) for site in known])
