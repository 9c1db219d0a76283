"""The one small interface every sink implements. The shipper is the only caller of ``write``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from proxy.model import Event


class SinkError(RuntimeError):
    """A write failed; the batch is intact and may be retried. The message carries no row data."""


class Sink(Protocol):
    name: str

    def start(self) -> None:
        """Connect and prepare storage (idempotent DDL). Raises SinkError if unreachable."""

    def write(self, batch: Sequence[Event], token: str) -> None:
        """Store a whole batch, or raise SinkError. ``token`` identifies the batch for deduplication."""

    def healthy(self) -> bool: ...

    def close(self) -> None: ...
