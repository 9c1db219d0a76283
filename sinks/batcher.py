"""The only place that decides when to flush: by row count, by bytes, by age, and on shutdown.

``submit`` is called on the event loop and only appends under a lock. One worker thread takes whole
batches, in order, and hands them to the sink; a failed batch is retried with the same deduplication
token (exponential backoff) and nothing behind it overtakes it. When more than ``max_pending_rows`` wait,
``submit`` raises :class:`Backpressure` and the route answers 503 with Retry-After: never a silent drop.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from proxy.model import Event
from sinks.base import Sink, SinkError

log = logging.getLogger(__name__)


class Backpressure(Exception):
    """Too much is waiting for the sink; try again later."""


@dataclass
class BatchStats:
    batches: int = 0
    rows: int = 0
    errors: int = 0
    last_error: str = ""


class Batcher:
    def __init__(
        self,
        sink: Sink,
        *,
        max_rows: int,
        max_bytes: int,
        max_age_seconds: float,
        max_pending_rows: int,
        backoff_initial: float = 0.25,
        backoff_max: float = 30.0,
    ) -> None:
        self.sink = sink
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.max_age = max_age_seconds
        self.max_pending = max_pending_rows
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stats = BatchStats()
        self._queue: deque[Event] = deque()
        self._bytes = 0
        self._oldest = 0.0  # monotonic time of the oldest queued event
        self._in_flight = 0
        self._cond = threading.Condition()
        self._closing = False
        self._give_up = False  # set when close() times out while the sink is failing
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        return len(self._queue) + self._in_flight

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
        self._thread.start()

    def submit(self, events: Sequence[Event]) -> None:
        if not events:
            return
        size = sum(e.approx_bytes() for e in events)
        with self._cond:
            if self._closing:
                raise Backpressure("shutting down")
            if len(self._queue) + self._in_flight + len(events) > self.max_pending:
                raise Backpressure("sink is behind")
            was_empty = not self._queue
            if was_empty:
                self._oldest = time.monotonic()
            self._queue.extend(events)
            self._bytes += size
            # Wake the worker to start the age timer, or because a batch is full: not on every submit.
            if was_empty or len(self._queue) >= self.max_rows or self._bytes >= self.max_bytes:
                self._cond.notify()

    def _due(self, now: float) -> bool:
        return bool(self._queue) and (
            self._closing
            or len(self._queue) >= self.max_rows
            or self._bytes >= self.max_bytes
            or now - self._oldest >= self.max_age
        )

    def _take(self) -> list[Event] | None:
        """Wait until a batch is due; None when closing with nothing left."""
        with self._cond:
            while True:
                now = time.monotonic()
                if self._due(now):
                    break
                if self._closing and not self._queue:
                    return None
                timeout = self.max_age - (now - self._oldest) if self._queue else None
                self._cond.wait(timeout)
            n = min(len(self._queue), self.max_rows)
            batch = [self._queue.popleft() for _ in range(n)]
            self._bytes = sum(e.approx_bytes() for e in self._queue) if self._queue else 0
            if self._queue:
                self._oldest = time.monotonic()
            self._in_flight = n
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            token = uuid.uuid4().hex
            delay = self.backoff_initial
            while True:
                try:
                    self.sink.write(batch, token)
                    break
                except SinkError as exc:
                    self.stats.errors += 1
                    self.stats.last_error = str(exc)
                    log.warning("sink write failed, retrying in %.1fs: %s", delay, exc)
                    with self._cond:
                        if self._give_up:
                            log.error("shutdown: %d rows could not be written", len(batch) + len(self._queue))
                            return
                        self._cond.wait(delay)
                    delay = min(delay * 2, self.backoff_max)
            with self._cond:
                self._in_flight = 0
                self.stats.batches += 1
                self.stats.rows += len(batch)
                self._cond.notify_all()

    def flush(self, timeout: float = 30.0) -> bool:
        """Write everything queued now; True when nothing is pending."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._oldest = min(self._oldest, time.monotonic() - self.max_age)
            self._cond.notify_all()
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
                if self._queue:
                    self._oldest = min(self._oldest, time.monotonic() - self.max_age)
                    self._cond.notify_all()
        return True

    def close(self, timeout: float = 30.0) -> bool:
        """Stop accepting, write what is queued within ``timeout``; True if nothing was left behind."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                self._give_up = True
                with self._cond:
                    self._cond.notify_all()
                thread.join(5)
        left = self.pending
        if left:
            log.error("shutdown: %d accepted rows were not written (no spool yet)", left)
        return left == 0
