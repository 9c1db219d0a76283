"""What every wire-compatible format shares: the request it sees, what it returns, and small helpers.

A format module turns another tracker's request (Plausible, Umami, Segment, PostHog, Snowplow) into our
native beacon documents and hands each to :func:`proxy.parse.parse_event`, so one set of rules validates
every event whatever its wire format. A format copies only the fields it maps; everything else in the
foreign payload (traits, contexts, `$set`, IPs in the body, library metadata...) is never read further.
Consent is never taken from a foreign payload: those formats have no consent of ours, so the consent
cookie and the site's configuration decide, as for a native beacon without a ``consent`` object.

No I/O, no clocks. Errors are :class:`~proxy.parse.RequestError` (the whole request, 400),
:class:`TooLarge` (413) or one :class:`~proxy.parse.EventError` per bad event; messages never quote
the request. A format's ``parse`` raises nothing else on any input (tests/fuzz/ checks it); should a bug
make one event fail anyway, :func:`collect` puts an :class:`~proxy.parse.UnreadableEvent` in its slot
and keeps the rest of the batch.
"""

from __future__ import annotations

import base64
import binascii
import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from proxy.model import Beacon, PropValue
from proxy.parse import EventError, Limits, RequestError, UnreadableEvent, parse_event

# The site of a beacon whose key no site lists: not a valid site id, so it is dropped as unknown_site.
UNKNOWN_SITE = "?"
MAX_BATCH = 1000  # events in one foreign request, whatever the format's own batch size


class TooLarge(RequestError):
    """A compressed body that expands past the limit (answered 413)."""


@dataclass(slots=True)
class ForeignRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names, only the ones proxy.ingest reads
    body: bytes
    max_decompressed: int
    site_for_key: Callable[[str], str]  # tracker key -> site id, "" if no site lists it
    limits: Limits


@dataclass(slots=True)
class Parsed:
    beacons: list[Beacon | EventError] = field(default_factory=list)
    # The visitor's User-Agent when the payload carries it (a server-side SDK sends its own in the
    # header): used like the header, for the coarse UA and the visitor hash, then forgotten.
    user_agent: str | None = None
    ignored: int = 0  # calls that carry no analytics (identify, alias, ...): answered, nothing stored


def site_of(req: ForeignRequest, key: Any) -> str:
    """The site id for a tracker key; :data:`UNKNOWN_SITE` when no site lists it."""
    if not isinstance(key, str) or not key:
        return UNKNOWN_SITE
    return req.site_for_key(key) or UNKNOWN_SITE


def decompress(data: bytes, limit: int) -> bytes:
    """gzip or zlib data, refused with :class:`TooLarge` as soon as it would expand past ``limit``."""
    out: list[bytes] = []
    size = 0
    while data:
        d = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, detected
        try:
            chunk = d.decompress(data, limit - size + 1)
        except zlib.error:
            raise RequestError("body is not valid gzip data") from None
        size += len(chunk)
        if size > limit or d.unconsumed_tail:
            raise TooLarge(f"body expands past {limit} bytes")
        if not d.eof:
            raise RequestError("body is truncated gzip data")
        out.append(chunk)
        data = d.unused_data.lstrip(b"\x00")  # gzip allows members back to back
    return b"".join(out)


def content_decoded(req: ForeignRequest) -> bytes:
    """The body after its Content-Encoding (identity, gzip or deflate)."""
    encoding = req.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return req.body
    if encoding in ("gzip", "x-gzip", "deflate"):
        return decompress(req.body, req.max_decompressed)
    raise RequestError("Content-Encoding must be gzip, deflate or identity")


def b64decode(text: str | bytes, limit: int) -> bytes:
    """Standard or URL-safe base64, padding optional."""
    if isinstance(text, str):
        if not text.isascii():
            raise RequestError("body is not valid base64")
        raw = text.encode("ascii")
    else:
        raw = text
    raw = raw.strip().replace(b" ", b"+")  # a '+' read back from a form as a space
    if len(raw) * 3 // 4 > limit:
        raise TooLarge(f"body expands past {limit} bytes")
    raw += b"=" * (-len(raw) % 4)
    try:
        if b"-" in raw or b"_" in raw:
            return base64.urlsafe_b64decode(raw)
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("body is not valid base64") from None


def json_doc(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise RequestError("body is not valid JSON") from None


def events_list(items: Any, what: str) -> list[Any]:
    if not isinstance(items, list):
        raise RequestError(f"'{what}' must be an array")
    if not items:
        raise RequestError(f"'{what}' is empty")
    if len(items) > MAX_BATCH:
        raise RequestError(f"'{what}' has {len(items)} events; at most {MAX_BATCH} are accepted")
    return items


def text(value: Any) -> str | None:
    """A string field as sent, None when absent or not a string (foreign fields are loosely typed)."""
    return value if isinstance(value, str) else None


def scalar_props(
    doc: Any, limits: Limits, skip: Callable[[str], bool] = lambda key: False
) -> dict[str, PropValue]:
    """The custom properties we can store: string, number and boolean values with valid keys, the first
    ``max_props`` of them. Nested objects, arrays, nulls and over-long values are left out, not errors:
    other trackers send plenty we do not store."""
    if not isinstance(doc, Mapping):
        return {}
    out: dict[str, PropValue] = {}
    for key, value in doc.items():
        if len(out) >= limits.max_props:
            break
        if not isinstance(key, str) or not key or len(key) > limits.max_prop_key_length or skip(key):
            continue
        if isinstance(value, str):
            if len(value) <= limits.max_prop_value_length:
                out[key] = value
        elif isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value)):
            out[key] = value
    return out


def iso_ms(value: Any) -> int | None:
    """An ISO-8601 time as epoch milliseconds; None when absent or unreadable (the server time is used)."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None  # a local time of unknown zone is no better than the server's clock
    ms = int(dt.timestamp() * 1000)
    return ms if ms >= 0 else None


def clamp_int(value: Any, lo: int, hi: int) -> int | None:
    """A loosely typed integer (number or string of ASCII digits) within bounds, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        digits = value.strip()
        # str.isdigit() also takes "²" and other digits int() refuses; 20 digits exceed any bound here.
        if not (digits.isascii() and digits.isdigit() and len(digits) <= 20):
            return None
        value = int(digits)
    if isinstance(value, float) and math.isfinite(value):
        value = int(value)
    if isinstance(value, int) and lo <= value <= hi:
        return value
    return None


def screen_of(value: Any) -> dict[str, int] | None:
    """ "1920x1080" (Umami, Snowplow) as our ``screen`` object."""
    if not isinstance(value, str):
        return None
    w, sep, h = value.partition("x")
    width, height = clamp_int(w, 0, 100_000), clamp_int(h, 0, 100_000)
    if not sep or width is None or height is None:
        return None
    return {"width": width, "height": height}


def beacon(doc: dict[str, Any], limits: Limits) -> Beacon | EventError:
    """Our native event document, validated by the native parser: one rule set for every format."""
    try:
        return parse_event({k: v for k, v in doc.items() if v is not None}, limits)
    except EventError as exc:
        return exc
    except Exception as exc:
        return UnreadableEvent(exc)


def same_user_agent(values: list[str | None]) -> str | None:
    """The payload's User-Agent if every event that carries one carries the same one, else None (the
    header's is used then: one request, one User-Agent, as the pipeline's request steps assume)."""
    found = {v for v in values if v}
    return found.pop() if len(found) == 1 else None


def collect(
    items: list[Any], one: Callable[[Any], tuple[dict[str, Any] | None, Any]], limits: Limits
) -> Parsed:
    """A foreign batch: ``one(item)`` maps an item to a native document (None for a call that carries
    no analytics) and the visitor's User-Agent it names, if any; an :class:`EventError` fills that
    item's slot, so the other items of the batch are kept."""
    out = Parsed()
    agents: list[str | None] = []
    for item in items:
        try:
            native, agent = one(item)
        except EventError as exc:
            out.beacons.append(exc)
            continue
        except Exception as exc:  # a bug in a format module: drop this event, keep the batch
            out.beacons.append(UnreadableEvent(exc))
            continue
        if native is None:
            out.ignored += 1
            continue
        agents.append(text(agent))
        out.beacons.append(beacon(native, limits))
    out.user_agent = same_user_agent(agents)
    return out
