"""The batcher flushes by rows, bytes, age and on close; keeps order; retries with the same token."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from proxy.model import Event
from sinks.base import SinkError
from sinks.batcher import Backpressure, Batcher


class RecordingSink:
    name = "recording"

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.batches: list[tuple[str, list[str]]] = []
        self.attempts: list[str] = []
        self.written = threading.Event()

    def start(self) -> None:
        pass

    def write(self, batch: Sequence[Event], token: str) -> None:
        self.attempts.append(token)
        if self.failures:
            self.failures -= 1
            raise SinkError("down")
        self.batches.append((token, [e.name for e in batch]))
        self.written.set()

    def healthy(self) -> bool:
        return True

    def close(self) -> None:
        pass


def events(n: int, start: int = 0, url: str = "") -> list[Event]:
    return [Event(site="s", type="event", name=str(i), url=url) for i in range(start, start + n)]


def make(sink: RecordingSink, **kw: float) -> Batcher:
    args: dict[str, float] = {
        "max_rows": 10,
        "max_bytes": 10**9,
        "max_age_seconds": 3600,
        "max_pending_rows": 1000,
    }
    args.update(kw)
    b = Batcher(sink, backoff_initial=0.01, **args)  # type: ignore[arg-type]
    b.start()
    return b


def test_flushes_when_max_rows_reached() -> None:
    sink = RecordingSink()
    b = make(sink)
    b.submit(events(9))
    time.sleep(0.1)
    assert sink.batches == []  # neither full nor old
    b.submit(events(1, 9))
    assert sink.written.wait(5)
    assert sink.batches[0][1] == [str(i) for i in range(10)]
    b.close()


def test_flushes_by_bytes() -> None:
    sink = RecordingSink()
    b = make(sink, max_bytes=5000)
    b.submit(events(3, url="x" * 2000))
    assert sink.written.wait(5)
    assert len(sink.batches[0][1]) == 3
    b.close()


def test_flushes_by_age() -> None:
    sink = RecordingSink()
    b = make(sink, max_age_seconds=0.05)
    b.submit(events(2))
    assert sink.written.wait(5)
    assert sink.batches[0][1] == ["0", "1"]
    b.close()


def test_close_writes_what_is_queued() -> None:
    sink = RecordingSink()
    b = make(sink)
    b.submit(events(25))
    assert b.close(5)
    assert [n for _, names in sink.batches for n in names] == [str(i) for i in range(25)]
    assert [len(names) for _, names in sink.batches] == [10, 10, 5]


def test_failed_batch_is_retried_with_the_same_token_and_order_is_kept() -> None:
    sink = RecordingSink(failures=3)
    b = make(sink)
    b.submit(events(10))
    b.submit(events(10, 10))
    assert b.flush(10)
    assert sink.attempts[0] == sink.attempts[1] == sink.attempts[2] == sink.attempts[3]
    assert [names for _, names in sink.batches] == [
        [str(i) for i in range(10)],
        [str(i) for i in range(10, 20)],
    ]
    assert b.stats.errors == 3
    assert b.stats.rows == 20
    b.close()


def test_backpressure_instead_of_silent_drop() -> None:
    sink = RecordingSink(failures=10**6)  # sink down
    b = make(sink, max_pending_rows=15)
    b.submit(events(10))
    with pytest.raises(Backpressure):
        b.submit(events(6))
    b.submit(events(5))
    assert b.pending == 15
    sink.failures = 0  # sink back
    assert b.flush(10)
    assert b.pending == 0
    b.close()


def test_close_gives_up_on_a_dead_sink_and_reports_it() -> None:
    sink = RecordingSink(failures=10**6)
    b = make(sink)
    b.submit(events(3))
    assert b.close(0.2) is False
    with pytest.raises(Backpressure):
        b.submit(events(1))
