"""Anonymised events to spool records and back. A record is a version byte and a JSON array of the
``events`` columns in :data:`proxy.model.EVENT_COLUMNS` order; only what may be stored is ever in it."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

import orjson

from proxy.model import EVENT_COLUMNS, Event

VERSION = b"\x01"
_TS = EVENT_COLUMNS.index("ts")
_ID = EVENT_COLUMNS.index("event_id")


class CodecError(ValueError):
    """A record that is not a version-1 event (the message never quotes it)."""


def encode_event(e: Event) -> bytes:
    return VERSION + orjson.dumps([getattr(e, c) for c in EVENT_COLUMNS])


def decode_event(record: bytes) -> Event:
    if record[:1] != VERSION:
        raise CodecError("unknown record version")
    try:
        values = orjson.loads(record[1:])
        if not isinstance(values, list) or len(values) != len(EVENT_COLUMNS):
            raise CodecError("record does not hold an event")
        values[_TS] = datetime.fromisoformat(values[_TS])
        values[_ID] = uuid.UUID(values[_ID])
        return Event(**dict(zip(EVENT_COLUMNS, values, strict=True)))
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise CodecError(f"record does not hold an event ({type(exc).__name__})") from None


def decode_events(records: Iterable[bytes]) -> tuple[list[Event], int]:
    """The events, and how many records could not be decoded (counted, never fatal)."""
    events, bad = [], 0
    for record in records:
        try:
            events.append(decode_event(record))
        except CodecError:
            bad += 1
    return events, bad
