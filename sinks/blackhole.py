"""A sink that counts and discards: for benchmarks and tests of everything before storage."""

from __future__ import annotations

from sinks.codec import EventBlock


class BlackholeSink:
    name = "blackhole"

    def __init__(self) -> None:
        self.rows = 0
        self.batches = 0

    def start(self) -> None:
        pass

    def write(self, batch: EventBlock, token: str) -> None:
        self.rows += batch.rows
        self.batches += 1

    def healthy(self) -> bool:
        return True

    def close(self) -> None:
        pass
