"""Anonymised events to spool records and back. A record is a version byte and a JSON array of the
``events`` columns in :data:`proxy.model.EVENT_COLUMNS` order; only what may be stored is ever in it.

That array is exactly a line of ClickHouse's ``JSONCompactEachRow`` input, so the shipper inserts a
segment's records as they are (:class:`EventBlock`): ClickHouse parses them in native code, with the
GIL released, instead of Python building Event objects and column lists for every row."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from proxy.model import EVENT_COLUMNS, Event

VERSION = b"\x01"
_TS = EVENT_COLUMNS.index("ts")
_ID = EVENT_COLUMNS.index("event_id")
_WIDTH = len(EVENT_COLUMNS)


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


@dataclass(frozen=True, slots=True)
class EventBlock:
    """Rows for one insert: ``JSONCompactEachRow`` lines (``EVENT_COLUMNS`` order), and their count."""

    data: bytes
    rows: int

    @classmethod
    def of(cls, events: Iterable[Event]) -> EventBlock:
        lines = [encode_event(e)[1:] for e in events]
        return cls(b"\n".join(lines), len(lines))

    def events(self) -> list[Event]:
        """The rows as events (for sinks and tests that want objects; the ClickHouse sink does not)."""
        return [decode_event(VERSION + line) for line in self.data.split(b"\n")] if self.rows else []


def _is_event_shaped(record: bytes) -> bool:
    if record[:1] != VERSION:
        return False
    try:
        values = orjson.loads(record[1:])
    except orjson.JSONDecodeError:
        return False
    return type(values) is list and len(values) == _WIDTH


def _is_event(record: bytes) -> bool:
    try:
        decode_event(record)
    except CodecError:
        return False
    return True


def block_of(records: Sequence[bytes], *, strict: bool = False) -> tuple[EventBlock, int]:
    """The block of the records that hold an event, and how many did not (counted, never fatal).

    By default a record is checked for shape only (version 1, a JSON array of every column: ~2 us);
    ``strict`` decodes each one fully, for when the store refused a block of well-shaped records."""
    keep = _is_event if strict else _is_event_shaped
    lines = [record[1:] for record in records if keep(record)]
    return EventBlock(b"\n".join(lines), len(lines)), len(records) - len(lines)
