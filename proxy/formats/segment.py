"""The Segment spec: ``POST /v1/t``, ``/v1/p``, ``/v1/i``, ``/v1/batch`` (and the other short and long
names), as analytics.js, Segment's and RudderStack's server SDKs and Jitsu send it.

The write key comes as the Basic-auth user (server SDKs), ``writeKey`` in the body (analytics.js) or an
``X-Write-Key`` header (Jitsu). ``track`` is a custom event, ``page`` a page view, ``screen`` an event
named after the screen; ``identify``, ``group`` and ``alias`` carry identities and traits only: answered,
never stored. ``anonymousId``, ``userId`` and ``context.sessionId`` are identifiers under our consent
rules. ``context.ip`` is never read: the client address comes from the connection and trusted proxies.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from proxy.formats.base import (
    ForeignRequest,
    Parsed,
    clamp_int,
    collect,
    content_decoded,
    events_list,
    iso_ms,
    json_doc,
    scalar_props,
    site_of,
    text,
)
from proxy.parse import EventError, RequestError

# Path -> the call type it implies (None: each message names its own, as in a batch).
PATHS: dict[str, str | None] = {
    "/v1/t": "track",
    "/v1/track": "track",
    "/v1/p": "page",
    "/v1/page": "page",
    "/v1/s": "screen",
    "/v1/screen": "screen",
    "/v1/i": "identify",
    "/v1/identify": "identify",
    "/v1/g": "group",
    "/v1/group": "group",
    "/v1/a": "alias",
    "/v1/alias": "alias",
    "/v1/batch": None,
    "/v1/import": None,
}
IDENTITY_CALLS = frozenset({"identify", "group", "alias"})
# Page properties with a column of their own; the rest of a page's properties are custom props.
_PAGE_FIELDS = frozenset({"url", "referrer", "title", "path", "search", "hash", "keywords", "name"})


def _basic_auth_user(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, _ = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return user or None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _message(msg: Any, kind: str | None, site: str, req: ForeignRequest) -> tuple[dict[str, Any] | None, Any]:
    """One Segment message as a native document (None for identity-only calls) and its User-Agent."""
    if not isinstance(msg, dict):
        raise EventError("each message must be a JSON object")
    kind = kind or msg.get("type")
    if not isinstance(kind, str):
        raise EventError("field 'type' must be track, page, screen, identify, group or alias")
    if kind in IDENTITY_CALLS:
        return None, None
    if kind not in ("track", "page", "screen"):
        raise EventError("field 'type' must be track, page, screen, identify, group or alias")
    context, props = _obj(msg.get("context")), _obj(msg.get("properties"))
    page = _obj(context.get("page"))
    screen = _obj(context.get("screen"))
    native: dict[str, Any] = {
        "site": site,
        "url": text(props.get("url")) or text(page.get("url")),
        "referrer": text(props.get("referrer")) or text(page.get("referrer")),
        "title": text(props.get("title")) or text(page.get("title")),
        "client_id": msg.get("anonymousId"),
        "user_id": msg.get("userId"),
        "session_id": context.get("sessionId"),
        "language": text(context.get("locale")),
        "ts": iso_ms(msg.get("timestamp")) or iso_ms(msg.get("originalTimestamp")),
    }
    if screen:
        native["screen"] = {
            "width": clamp_int(screen.get("width"), 0, 100_000),
            "height": clamp_int(screen.get("height"), 0, 100_000),
        }
    if kind == "page":
        native["type"] = "pageview"
        native["props"] = scalar_props(props, req.limits, lambda k: k in _PAGE_FIELDS)
    else:
        name = msg.get("event") if kind == "track" else msg.get("name") or "screen"
        if not isinstance(name, str) or not name:
            raise EventError("field 'event' is required for track")
        native.update(type="event", name=name, props=scalar_props(props, req.limits))
    return native, context.get("userAgent")


def parse(req: ForeignRequest) -> Parsed:
    doc = json_doc(content_decoded(req))
    if not isinstance(doc, dict):
        raise RequestError("body must be a JSON object")
    kind = PATHS.get(req.path.rstrip("/"))
    messages = events_list(doc.get("batch"), "batch") if kind is None else [doc]
    key = (
        _basic_auth_user(req.headers.get("authorization"))
        or text(doc.get("writeKey"))
        or req.headers.get("x-write-key")
    )
    if not key:
        raise RequestError("a write key is required (Basic auth user, 'writeKey' or X-Write-Key)")
    site = site_of(req, key)
    return collect(messages, lambda msg: _message(msg, kind, site, req), req.limits)
