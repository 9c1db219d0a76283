"""Snowplow: ``POST /com.snowplowanalytics.snowplow/tp2`` and the pixel ``GET /i``, tracker protocol 2,
as Snowplow's JavaScript and server-side trackers send them.

tp2 bodies are ``{"schema": "iglu:...payload_data...", "data": [{...}, ...]}``, one flat object of string
fields per event; the pixel carries one event in its query. ``e`` is the event kind: ``pv`` a page view,
``se`` a structured event (named by its action, with category, label, property and value as props),
``ue`` a self-describing event (named after its schema, its scalar fields as props), ``pp`` a page ping.
Transactions (``tr``, ``ti``) are answered, not stored. The app id ``aid`` is the site key. ``duid``,
``uid``, ``sid`` are identifiers under our consent rules; ``nuid``/``tnuid``, contexts (``co``/``cx``)
and any ``ip`` field are never read. ``ua`` is the visitor's User-Agent, which server-side trackers send
for the visitor (used like the header's, then forgotten).
"""

from __future__ import annotations

from typing import Any

from proxy.formats.base import (
    ForeignRequest,
    Parsed,
    b64decode,
    clamp_int,
    collect,
    content_decoded,
    events_list,
    json_doc,
    scalar_props,
    screen_of,
    site_of,
    text,
)
from proxy.parse import EventError, Limits, RequestError

TP2_PATH = "/com.snowplowanalytics.snowplow/tp2"
PIXEL_PATH = "/i"
NOT_STORED = frozenset({"tr", "ti"})


def _self_describing(fields: dict[str, Any], limits: Limits, max_bytes: int) -> tuple[str, dict[str, Any]]:
    """``ue_pr`` (JSON) or ``ue_px`` (base64 JSON): the event's name (its schema's) and its fields."""
    raw: Any = fields.get("ue_pr")
    if raw is None and isinstance(fields.get("ue_px"), str):
        try:
            raw = b64decode(fields["ue_px"], max_bytes)
        except RequestError:
            raise EventError("field 'ue_px' is not valid base64") from None
    if not isinstance(raw, str | bytes):
        raise EventError("a self-describing event needs 'ue_pr' or 'ue_px'")
    try:
        envelope = json_doc(raw)
    except RequestError:
        raise EventError("field 'ue_pr' is not valid JSON") from None
    inner = envelope.get("data") if isinstance(envelope, dict) else None
    if not isinstance(inner, dict):
        raise EventError("a self-describing event needs an iglu schema")
    schema = inner.get("schema")
    if not isinstance(schema, str) or not schema.startswith("iglu:"):
        raise EventError("a self-describing event needs an iglu schema")
    # iglu:com.acme/signup/jsonschema/1-0-0 -> signup
    parts = schema[5:].split("/")
    name = parts[1] if len(parts) >= 2 and parts[1] else schema[5:]
    return name, scalar_props(inner.get("data"), limits)


def _event(fields: Any, req: ForeignRequest) -> dict[str, Any] | None:
    if not isinstance(fields, dict):
        raise EventError("each event must be a JSON object")
    kind = fields.get("e")
    if not isinstance(kind, str):
        raise EventError("field 'e' must be pv, se, ue, pp, tr or ti")
    if kind in NOT_STORED:
        return None
    native: dict[str, Any] = {
        "site": site_of(req, fields.get("aid")),
        "url": text(fields.get("url")),
        "referrer": text(fields.get("refr")),
        "title": text(fields.get("page")),
        "client_id": fields.get("duid") or None,
        "user_id": fields.get("uid") or None,
        "session_id": fields.get("sid") or None,
        "language": text(fields.get("lang")),
        "screen": screen_of(fields.get("res")),
        "ts": clamp_int(fields.get("dtm") or fields.get("ttm"), 0, 2**53),
    }
    if kind == "pv":
        native["type"] = "pageview"
    elif kind == "se":
        action = fields.get("se_ac")
        if not isinstance(action, str) or not action:
            raise EventError("field 'se_ac' is required for a structured event")
        props = {
            "category": fields.get("se_ca"),
            "label": fields.get("se_la"),
            "property": fields.get("se_pr"),
            "value": fields.get("se_va"),
        }
        native.update(type="event", name=action, props=scalar_props(props, req.limits))
    elif kind == "ue":
        name, props = _self_describing(fields, req.limits, req.max_decompressed)
        native.update(type="event", name=name, props=props)
    elif kind == "pp":
        native.update(type="event", name="page_ping")
    else:
        raise EventError("field 'e' must be pv, se, ue, pp, tr or ti")
    return native


def parse(req: ForeignRequest) -> Parsed:
    if req.method == "GET":
        items: list[Any] = [req.query]
    else:
        doc = json_doc(content_decoded(req))
        if not isinstance(doc, dict):
            raise RequestError("body must be a JSON object with 'schema' and 'data'")
        items = events_list(doc.get("data"), "data")
    return collect(items, lambda fields: (_event(fields, req), fields.get("ua")), req.limits)
