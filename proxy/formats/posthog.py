"""PostHog: ``POST /e/``, ``/i/v0/e/``, ``/capture/``, ``/batch/`` (also ``GET /e/?data=``), as posthog-js
and PostHog's server SDKs send them.

Bodies come as JSON, gzip (``Content-Encoding: gzip`` or ``?compression=gzip-js``), LZ-String
(``compression=lz64``), base64, or a form with ``data=`` (and ``compression=``) in it; each decoded form
is bounded by ``server.max_decompressed_bytes``. The payload is one event, an array of events, or
``{"batch": [...]}``; the project key is ``api_key`` (top level) or ``token`` in an event's properties.

``$pageview`` is a page view (``$current_url``, ``$referrer``, ``title``); other events keep their name.
Identity and recording calls (``$identify``, ``$set``, ``$create_alias``, ``$snapshot``...) are answered,
never stored. Custom properties are those whose names do not start with ``$``: PostHog's own (``$os``,
``$ip``, ``$device_id``...) are not stored, since the proxy derives its coarse facts itself.
``distinct_id``, ``$device_id`` and ``$session_id`` are identifiers under our consent rules.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson

from proxy.formats.base import (
    ForeignRequest,
    Parsed,
    TooLarge,
    b64decode,
    clamp_int,
    collect,
    content_decoded,
    decompress,
    events_list,
    iso_ms,
    json_doc,
    scalar_props,
    site_of,
    text,
)
from proxy.formats.lzstring import LZStringError, decompress_from_base64
from proxy.parse import EventError, RequestError

PATHS = ("/e", "/i/v0/e", "/capture", "/batch", "/track", "/engage")
NOT_ANALYTICS = frozenset(
    {
        "$identify",
        "$set",
        "$set_once",
        "$create_alias",
        "$merge_dangerously",
        "$groupidentify",
        "$snapshot",
        "$feature_flag_called",
        "$feature_view",
        "$feature_interaction",
        "$opt_in",
        "$$heatmap",
        "$exception",
        "$web_vitals",
        "$dead_click",
        "$rageclick",
        "$copy_autocapture",
    }
)
_SKIP_PROP = {"token", "distinct_id", "title"}

# posthog-js asks for its remote config and feature flags at start. Neither is served here, so the
# answers say "nothing enabled": no flags, no recording, surveys or heatmaps, no autocapture (whose
# element texts are not stored anyway). They also steer the client to gzip and to /i/v0/e/. The
# request's body (it carries distinct_id) is never read, and the answers are the same for everyone.
REMOTE_CONFIG = orjson.dumps(
    {
        "supportedCompression": ["gzip-js", "base64"],
        "analytics": {"endpoint": "/i/v0/e/"},
        "hasFeatureFlags": False,
        "sessionRecording": False,
        "heatmaps": False,
        "surveys": False,
        "autocapture_opt_out": True,
        "captureDeadClicks": False,
        "capturePerformance": False,
        "autocaptureExceptions": False,
        "siteApps": [],
    }
)
NO_FLAGS = orjson.dumps(
    {
        "flags": {},
        "featureFlags": {},
        "featureFlagPayloads": {},
        "errorsWhileComputingFlags": False,
        "quotaLimited": [],
        "sessionRecording": False,
    }
)


def static_answer(path: str) -> bytes | None:
    """The constant JSON answer for posthog-js's config and flag requests, None for other paths."""
    path = path.rstrip("/")
    if path in ("/flags", "/decide"):
        return NO_FLAGS
    if path.startswith("/array/") and path.endswith("/config") and path.count("/") == 3:
        return REMOTE_CONFIG
    return None


# LZ-String is decoded in Python, at about 0.2 us per output character (benchmarks/formats_bench.py):
# its input is kept small so that one request cannot cost much CPU (up to ~40 ms at this size, on a
# worker thread: see proxy.ingest). Only old posthog-js versions send lz64; current ones send gzip.
MAX_LZ64_CHARS = 64 * 1024


def _lz64(data: str, limit: int) -> bytes:
    if len(data) > MAX_LZ64_CHARS:
        raise TooLarge(f"lz64 bodies are limited to {MAX_LZ64_CHARS} characters; send gzip instead")
    try:
        return decompress_from_base64(data, limit).encode()
    except LZStringError as exc:
        if exc.too_large:
            raise TooLarge(f"body expands past {limit} bytes") from None
        raise RequestError("body is not valid lz64 data") from None


def _decode(data: bytes, compression: str, limit: int) -> bytes:
    if compression == "gzip-js" or compression == "gzip" or data[:2] == b"\x1f\x8b":
        return decompress(data, limit)
    if compression == "lz64":
        return _lz64(data.decode("latin-1"), limit)
    if compression == "base64":
        return b64decode(data, limit)
    stripped = data.lstrip()
    if stripped[:1] in (b"{", b"["):
        return data
    return b64decode(data, limit)  # older clients: base64 of the JSON, no compression named


def payload_bytes(req: ForeignRequest) -> bytes:
    """The JSON text of a PostHog request, from any of the encodings its clients use."""
    limit = req.max_decompressed
    compression = req.query.get("compression", "").lower()
    if req.method == "GET":
        data = req.query.get("data")
        if not data:
            raise RequestError("query parameter 'data' is required")
        # Query values are text (percent-escapes decoded as UTF-8): JSON in them is UTF-8 again.
        return _decode(data.encode("utf-8"), compression, limit)
    body = content_decoded(req)
    ctype = req.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    is_form = body.startswith((b"data=", b"compression="))
    if not is_form and ctype == "application/x-www-form-urlencoded":
        is_form = body.lstrip()[:1] not in (b"{", b"[")  # JSON sent as curl -d sends it, mislabelled
    if is_form:
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        data = form.get("data")
        if not data:
            raise RequestError("form field 'data' is required")
        return _decode(data.encode("utf-8"), form.get("compression", compression).lower(), limit)
    return _decode(body, compression, limit)


def _event(ev: Any, default_key: str | None, req: ForeignRequest) -> tuple[dict[str, Any] | None, Any]:
    """One PostHog event as a native document (None when it carries no analytics), and its UA."""
    if not isinstance(ev, dict):
        raise EventError("each event must be a JSON object")
    name = ev.get("event")
    if not isinstance(name, str) or not name:
        raise EventError("field 'event' is required")
    props = ev.get("properties")
    props = props if isinstance(props, dict) else {}
    if name in NOT_ANALYTICS:
        return None, None
    key = text(ev.get("api_key")) or text(props.get("token")) or default_key
    if not key:
        raise EventError("an API key is required ('api_key' or properties.token)")
    distinct = ev.get("distinct_id", props.get("distinct_id"))
    device = props.get("$device_id")
    referrer = text(props.get("$referrer"))
    native: dict[str, Any] = {
        "site": site_of(req, key),
        "url": text(props.get("$current_url")),
        "referrer": None if referrer == "$direct" else referrer,
        "title": text(props.get("title")),
        "client_id": device or distinct,
        "user_id": distinct if device and distinct != device else None,
        "session_id": props.get("$session_id"),
        "language": text(props.get("$browser_language")),
        "ts": iso_ms(ev.get("timestamp")),
    }
    width, height = props.get("$screen_width"), props.get("$screen_height")
    if width is not None or height is not None:
        native["screen"] = {"width": clamp_int(width, 0, 100_000), "height": clamp_int(height, 0, 100_000)}
    if name == "$pageview":
        native["type"] = "pageview"
    else:
        native.update(type="event", name=name)
        if name == "$pageleave":
            seconds = props.get("$prev_pageview_duration")
            if isinstance(seconds, int | float) and not isinstance(seconds, bool):
                native["engagement_ms"] = clamp_int(seconds * 1000, 0, 24 * 3600 * 1000)
    native["props"] = scalar_props(props, req.limits, lambda k: k.startswith("$") or k in _SKIP_PROP)
    return native, props.get("$raw_user_agent")


def parse(req: ForeignRequest) -> Parsed:
    doc = json_doc(payload_bytes(req))
    if req.path.rstrip("/") == "/engage":  # person-profile updates only: identities and traits
        return Parsed(ignored=len(doc) if isinstance(doc, list) else 1)
    default_key = None
    if isinstance(doc, dict) and "batch" in doc:
        default_key = text(doc.get("api_key")) or text(doc.get("token"))
        items = events_list(doc["batch"], "batch")
    elif isinstance(doc, list):
        items = events_list(doc, "events")
    elif isinstance(doc, dict):
        items = [doc]
    else:
        raise RequestError("body must be an event, an array of events or {'batch': [...]}")
    return collect(items, lambda ev: _event(ev, default_key, req), req.limits)
