"""The one small interface every sink implements. The shipper is the only caller of ``write``."""

from __future__ import annotations

from typing import Protocol

from sinks.codec import EventBlock


class SinkError(RuntimeError):
    """A write failed; the batch is intact and may be retried. The message carries no row data."""


class Sink(Protocol):
    name: str

    def start(self) -> None:
        """Connect and prepare storage (idempotent DDL). Raises SinkError if unreachable."""

    def write(self, batch: EventBlock, token: str) -> None:
        """Store a whole batch, or raise SinkError. ``token`` identifies the batch for deduplication."""

    def healthy(self) -> bool: ...

    def close(self) -> None: ...
