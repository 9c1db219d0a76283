"""Parse at the edge: request bytes and query strings into typed beacons. No I/O, no clocks.

A whole-request problem (body not JSON, not an object or array, too many events) is a
:class:`RequestError` the route turns into a 4xx. A problem with one event of a batch is an
:class:`EventError` in that event's slot, so the valid events of the batch are kept.

Error messages name the field and the rule, never the value: values can hold e-mails, IPs or tokens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.model import Beacon, Consent, PropValue

EVENT_TYPES = frozenset({"pageview", "event"})
CONSENT_KEYS = ("analytics", "preferences", "marketing", "precise_location")
MAX_SCREEN = 100_000
MAX_ENGAGEMENT_MS = 24 * 3600 * 1000
MAX_ID_LENGTH = 256
MAX_LANGUAGE_LENGTH = 35
MAX_TS_MS = 2**53


@dataclass(frozen=True, slots=True)
class Limits:
    max_events: int = 100
    max_props: int = 30
    max_prop_key_length: int = 64
    max_prop_value_length: int = 512
    max_string_length: int = 2048


class RequestError(ValueError):
    """The request as a whole is unusable; the message is safe to return to the client."""


class EventError(ValueError):
    """One event is invalid; the message names the field, never its value."""


class UnreadableEvent(EventError):
    """An event a parser failed on unexpectedly (a bug, never the client's fault alone): it is dropped as
    invalid like any bad event, so the rest of its batch is kept, and the failure (its ``__cause__``) is
    logged by type and line, never by value. Tests and fuzzers assert that none ever occurs."""

    def __init__(self, cause: Exception) -> None:
        super().__init__("event could not be read")
        self.__cause__ = cause


def parse_body(body: bytes, limits: Limits) -> list[Beacon | EventError]:
    """JSON object or array of objects -> one beacon (or error) per event, in order."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestError("body is not valid JSON") from None
    if isinstance(doc, dict):
        items: list[Any] = [doc]
    elif isinstance(doc, list):
        if not doc:
            raise RequestError("batch is empty")
        if len(doc) > limits.max_events:
            raise RequestError(f"batch has {len(doc)} events; at most {limits.max_events} are accepted")
        items = doc
    else:
        raise RequestError("body must be a JSON object or an array of objects")
    out: list[Beacon | EventError] = []
    for item in items:
        try:
            out.append(parse_event(item, limits))
        except EventError as exc:
            out.append(exc)
        except Exception as exc:  # one event never fails its batch
            out.append(UnreadableEvent(exc))
    return out


def _string(doc: Mapping[str, Any], key: str, max_len: int, default: str = "") -> str:
    value = doc.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise EventError(f"field '{key}' must be a string")
    if len(value) > max_len:
        raise EventError(f"field '{key}' is longer than {max_len} characters")
    return value


def _int(doc: Mapping[str, Any], key: str, lo: int, hi: int) -> int | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise EventError(f"field '{key}' must be an integer")
    if not lo <= value <= hi:
        raise EventError(f"field '{key}' must be between {lo} and {hi}")
    return value


def _client_ts(value: Any) -> int | None:
    """The client's epoch milliseconds, or None when ``value`` is no usable time (a string, a boolean,
    a negative, non-finite or absurdly large number): the event keeps the server's receive time then.
    A fractional number of milliseconds is a time, rounded down."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = int(value)
    return value if 0 <= value <= MAX_TS_MS else None


def _float(doc: Mapping[str, Any], key: str, lo: float, hi: float, where: str) -> float:
    value = doc.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise EventError(f"field '{where}.{key}' must be a number")
    if not lo <= value <= hi:
        raise EventError(f"field '{where}.{key}' must be between {lo} and {hi}")
    return float(value)


def _identifier(doc: Mapping[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise EventError(f"field '{key}' must be a string")
    if len(value) > MAX_ID_LENGTH:
        raise EventError(f"field '{key}' is longer than {MAX_ID_LENGTH} characters")
    return value or None


def _consent(value: Any) -> Consent | None:
    """None when the beacon says nothing about consent (other sources then decide)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise EventError("field 'consent' must be an object of booleans")
    flags = []
    for key in CONSENT_KEYS:
        flag = value.get(key, False)
        if flag is None:
            flag = False
        if not isinstance(flag, bool):
            raise EventError(f"field 'consent.{key}' must be a boolean")
        flags.append(flag)
    return Consent(*flags)


def _props(value: Any, limits: Limits) -> dict[str, PropValue]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventError("field 'props' must be an object")
    if len(value) > limits.max_props:
        raise EventError(f"field 'props' has more than {limits.max_props} entries")
    out: dict[str, PropValue] = {}
    for key, v in value.items():
        if not key or len(key) > limits.max_prop_key_length:
            raise EventError(f"a key in 'props' is empty or longer than {limits.max_prop_key_length}")
        if isinstance(v, str):
            if len(v) > limits.max_prop_value_length:
                raise EventError(f"a value in 'props' is longer than {limits.max_prop_value_length}")
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise EventError("a value in 'props' is not a finite number")
        elif v is None:
            continue
        elif not isinstance(v, int):  # bool is an int
            raise EventError("values in 'props' must be strings, numbers or booleans")
        out[key] = v
    return out


def parse_event(doc: Any, limits: Limits) -> Beacon:
    """Validate one event object. Unknown fields are ignored (never copied anywhere)."""
    if not isinstance(doc, dict):
        raise EventError("event must be a JSON object")
    site = _string(doc, "site", 64)
    if not site:
        raise EventError("field 'site' is required")
    etype = _string(doc, "type", 16, "pageview")
    if etype not in EVENT_TYPES:
        raise EventError("field 'type' must be 'pageview' or 'event'")
    smax = limits.max_string_length
    name = _string(doc, "name", 256)
    if etype == "event" and not name:
        raise EventError("field 'name' is required for type 'event'")
    url = _string(doc, "url", smax)
    if etype == "pageview" and not url:
        raise EventError("field 'url' is required for type 'pageview'")
    beacon = Beacon(
        site=site,
        type=etype,
        name=name or etype,
        url=url,
        referrer=_string(doc, "referrer", smax),
        title=_string(doc, "title", smax),
        props=_props(doc.get("props"), limits),
        consent=_consent(doc.get("consent")),
        client_id=_identifier(doc, "client_id"),
        user_id=_identifier(doc, "user_id"),
        session_id=_identifier(doc, "session_id"),
        language=_string(doc, "language", MAX_LANGUAGE_LENGTH),
        engagement_ms=_int(doc, "engagement_ms", 0, MAX_ENGAGEMENT_MS),
    )
    raw_ts = doc.get("ts")
    if raw_ts is not None:
        beacon.ts_ms = _client_ts(raw_ts)
        beacon.ts_unusable = beacon.ts_ms is None
    screen = doc.get("screen")
    if screen is not None:
        if not isinstance(screen, dict):
            raise EventError("field 'screen' must be an object with 'width' and 'height'")
        beacon.screen_width = _int(screen, "width", 0, MAX_SCREEN)
        beacon.screen_height = _int(screen, "height", 0, MAX_SCREEN)
    location = doc.get("location")
    if location is not None:
        if not isinstance(location, dict):
            raise EventError("field 'location' must be an object with 'lat' and 'lon'")
        beacon.latitude = _float(location, "lat", -90.0, 90.0, "location")
        beacon.longitude = _float(location, "lon", -180.0, 180.0, "location")
    return beacon


def parse_pixel(params: Mapping[str, str], referer_header: str | None, limits: Limits) -> Beacon:
    """``GET /v1/pixel.gif?site=…&url=…&ref=…&name=…[&title=…]``: no consent can be expressed, so none."""
    doc: dict[str, Any] = {
        "site": params.get("site"),
        "url": params.get("url") or referer_header or None,
        "referrer": params.get("ref"),
        "title": params.get("title"),
    }
    name = params.get("name")
    if name:
        doc["type"] = "event"
        doc["name"] = name
    return parse_event(doc, limits)
