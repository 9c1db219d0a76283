"""Umami: ``POST /api/send``, as Umami's tracker script and its API clients send it.

``{"type": "event", "payload": {"website": "<id>", "hostname": "example.com", "url": "/p?q",
"referrer": "...", "title": "...", "screen": "1920x1080", "language": "en-US", "name": "signup",
"data": {...}, "id": "<distinct id>"}}``. Without ``name`` the event is a page view. ``url`` may be a
path: the page is then ``https://<hostname><url>``. ``type: "identify"`` carries session data only (an
identity and its traits): answered, never stored. The ``x-umami-cache`` session token is not read and
none is ever handed out; ``payload.id`` is an identifier under our consent rules.
"""

from __future__ import annotations

from typing import Any

from proxy.formats.base import (
    ForeignRequest,
    Parsed,
    beacon,
    content_decoded,
    json_doc,
    scalar_props,
    screen_of,
    site_of,
    text,
)
from proxy.parse import RequestError


def _page_url(url: str | None, hostname: str | None) -> str | None:
    if url and url.startswith("/") and not url.startswith("//") and hostname:
        return f"https://{hostname}{url}"
    return url


def parse(req: ForeignRequest) -> Parsed:
    doc = json_doc(content_decoded(req))
    if not isinstance(doc, dict) or not isinstance(doc.get("payload"), dict):
        raise RequestError("body must be an object with a 'payload' object")
    kind, payload = doc.get("type", "event"), doc["payload"]
    if not isinstance(payload.get("website"), str) or not payload["website"]:
        raise RequestError("field 'payload.website' is required")
    if kind == "identify":
        return Parsed(ignored=1)
    if kind != "event":
        raise RequestError("field 'type' must be 'event' or 'identify'")
    native: dict[str, Any] = {
        "site": site_of(req, payload["website"]),
        "url": _page_url(text(payload.get("url")), text(payload.get("hostname"))),
        "referrer": payload.get("referrer") or None,
        "title": payload.get("title") or None,
        "language": text(payload.get("language")),
        "screen": screen_of(payload.get("screen")),
        "user_id": payload.get("id") or None,
    }
    name = payload.get("name")
    if name:
        native.update(type="event", name=name, props=scalar_props(payload.get("data"), req.limits))
    return Parsed([beacon(native, req.limits)])
