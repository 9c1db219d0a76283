"""The shipper: drains sealed spool segments into the sink, in order, and deletes each one only after
the sink confirmed it. It is the only code that writes to the sink.

A segment is immutable and is inserted whole, as one insert whose token is the segment's: after a crash
between "inserted" and "deleted", ClickHouse deduplicates the replay. (Inserts are never cut into chunks
here: chunk boundaries that depend on the current settings would change between a partial shipment and
its replay, and lose or duplicate rows. The writer seals segments at ``batch.max_rows`` instead.) When
the sink is down the
shipper retries with exponential backoff and the spool keeps accepting; when it comes back, shipping
resumes by itself. Segments older than the retention the events would have had in storage are purged.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from proxy.background import JobState, SupervisedThread
from proxy.metrics import LatencyHistogram
from sinks.base import Sink, SinkError
from sinks.codec import EventBlock, block_of
from sinks.request_filter import RequestFilter
from sinks.spool import SpoolReader

log = logging.getLogger(__name__)
MAINTENANCE_SECONDS = 30.0
# Shipping is background work: at this niceness the OS gives the event loop's thread the core first
# when both want it (the store's own threads, started from a shipper thread, inherit it).
SHIPPER_NICENESS = 10


def lower_thread_priority(niceness: int = SHIPPER_NICENESS) -> None:
    """Make the calling thread (only it: Linux keeps a niceness per thread) at least this nice."""
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if current < niceness:
            os.setpriority(os.PRIO_PROCESS, tid, niceness)
    except (AttributeError, OSError):  # not Linux, or not allowed: shipping still works
        pass


@dataclass
class ShipperStats:
    segments: int = 0
    batches: int = 0
    rows: int = 0
    errors: int = 0
    corrupt_records: int = 0
    undecodable_records: int = 0
    purged_segments: int = 0
    orphans_sealed: int = 0
    withheld_rows: int = 0  # events of deleted or withdrawn subjects, not stored (sinks/request_filter.py)
    sink_started: bool = False
    failing: bool = False  # the last store call failed (inserts, or reading what they need)
    last_error: str = ""
    insert_latency: LatencyHistogram = field(default_factory=LatencyHistogram)


class Shipper:
    def __init__(
        self,
        sink: Sink,
        reader: SpoolReader,
        *,
        retention_seconds: float,
        poll_interval: float = 0.1,
        backoff_initial: float = 0.25,
        backoff_max: float = 30.0,
        requests: RequestFilter | None = None,
        name: str = "shipper",
    ) -> None:
        """``requests``: screens every segment against recorded deletions just before its insert."""
        self.sink = sink
        self.requests = requests
        self.reader = reader
        self.retention_seconds = retention_seconds
        self.poll_interval = poll_interval
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stats = ShipperStats()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        # Notified after each shipped segment and at the start of each pass (after maintenance, which
        # seals orphaned segments): wait_idle waits for one pass's listing to be shipped.
        self._progress = threading.Condition()
        self._passes = 0
        self._pass_listing: frozenset[str] = frozenset()
        self._give_up_at = float("inf")  # during stop(): stop retrying after this monotonic time
        self._next_maintenance = 0.0
        # Supervised: an unexpected exception (say EMFILE while listing the spool) restarts it with
        # backoff; the segment it was shipping is shipped again with the same token (deduplicated).
        self._thread = SupervisedThread(name, self._run, vital=True, stopping=self._stopping)

    @property
    def job(self) -> JobState:
        return self._thread.job

    def start(self) -> None:
        self._thread.start()

    def nudge(self) -> None:
        """A segment was sealed: look now rather than at the next poll."""
        self._wake.set()

    def wait_idle(self, timeout: float) -> bool:
        """Block until every segment sealed before this call has been shipped (seal the writer's first).

        What is waited for is the listing of the shipper's next pass (taken after this call and after
        that pass's maintenance, so orphans it sealed count too); segments sealed later are not, so
        steady traffic cannot keep it waiting."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._progress:
            seen = self._passes
            if not self._progress.wait_for(lambda: self._passes > seen, timeout):
                return False
            listing = self._pass_listing
            left = max(0.0, deadline - time.monotonic())
            return self._progress.wait_for(lambda: listing.isdisjoint(self.reader.sealed_segments()), left)

    def stop(self, timeout: float) -> bool:
        """Ship what is sealed for up to ``timeout`` seconds, then stop. True if nothing sealed is left;
        anything left stays in the spool for the next start."""
        self._give_up_at = time.monotonic() + timeout
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout + 5)
        left = self.reader.sealed_segments()
        if left:
            log.warning("shutdown: %d spooled segments left for the next start", len(left))
        return not left

    def _sleep(self, seconds: float) -> None:
        if self._stopping.is_set():  # never sleep past the shutdown deadline
            seconds = min(seconds, max(0.0, self._give_up_at - time.monotonic()))
        self._wake.wait(seconds)
        self._wake.clear()

    def _retrying(self) -> bool:
        return not (self._stopping.is_set() and time.monotonic() >= self._give_up_at)

    def _with_retry(self, call: Callable[[], None]) -> bool:
        """Run ``call`` until it succeeds (True), backing off between tries; False once shutdown gives up."""
        delay = self.backoff_initial
        while True:
            try:
                call()
                return True
            except SinkError as exc:
                self._error(exc, delay)
                if not self._retrying():
                    return False
                self._sleep(delay)
                delay = min(delay * 2, self.backoff_max)

    def _start_sink(self) -> None:
        self.sink.start()  # on a background-priority thread: the store's threads start from it
        self.stats.sink_started = True
        log.info("sink %s started", self.sink.name)

    def _ensure_sink(self) -> bool:
        return self.stats.sink_started or self._with_retry(self._start_sink)

    def healthy(self) -> bool:
        """The sink is started, the shipper runs and its last store call succeeded."""
        return self.sink.healthy() and self.job.up and not self.stats.failing

    def _error(self, exc: SinkError, delay: float) -> None:
        self.stats.failing = True
        self.stats.errors += 1
        self.stats.last_error = str(exc)
        log.warning("sink %s unavailable, retrying in %.2fs: %s", self.sink.name, delay, exc)

    def _maintenance(self) -> None:
        now = time.monotonic()
        if now < self._next_maintenance:
            return
        self._next_maintenance = now + MAINTENANCE_SECONDS
        self.stats.orphans_sealed += self.reader.seal_orphans()
        purged = self.reader.purge_older_than(self.retention_seconds)
        if purged:
            self.stats.purged_segments += purged
            log.warning("purged %d spooled segments older than the retention", purged)

    def try_start_sink(self) -> bool:
        """One attempt, for start-up: the proxy serves (and spools) even while the sink is down.

        Made on a short-lived thread of its own at background priority, so that the store's threads
        inherit that priority and the caller's thread keeps its own."""
        failure: list[BaseException] = []

        def attempt() -> None:
            lower_thread_priority()
            try:
                self._start_sink()
            except BaseException as exc:  # handed to the caller's thread below
                failure.append(exc)

        thread = threading.Thread(target=attempt, name="sink-start")
        thread.start()
        thread.join()
        if not failure:
            return True
        if not isinstance(failure[0], SinkError):
            raise failure[0]
        self._error(failure[0], self.backoff_initial)
        return False

    def _ship(self, name: str) -> bool:
        batch = self.reader.read(name)
        block, bad = EventBlock(b"", 0), 0
        strict = False
        withheld = 0

        def prepare() -> None:
            """The block to insert: screened against recorded deletions afresh before every attempt
            (one may have been recorded since the last), records checked for shape (the store parses
            them) or, once the store refused a block, decoded one by one."""
            nonlocal block, bad, withheld
            records = batch.records
            if self.requests is not None:
                self.requests.refresh()  # a failure is retried like a failed insert
                records, withheld = self.requests.screen(records)
            block, bad = block_of(records, strict=strict)

        def insert() -> None:
            nonlocal strict
            prepare()
            if not block.rows:
                return
            t0 = time.perf_counter()
            try:
                self.sink.write(block, batch.token)
            except SinkError:
                if strict:
                    raise
                # Refused: either the store is down or some well-shaped record is not an event after
                # all. Decode every record once; if that removes any, insert the rest at once.
                shaped_bad = bad
                strict = True
                prepare()
                if bad == shaped_bad:
                    raise
                insert()
                return
            self.stats.insert_latency.observe(time.perf_counter() - t0)

        if not self._with_retry(insert):
            return False
        self.stats.failing = False
        self.stats.corrupt_records += batch.corrupt_records
        self.stats.undecodable_records += bad
        if withheld:
            self.stats.withheld_rows += withheld
            log.info("segment %s: %d events of deleted subjects not stored", name, withheld)
        if batch.corrupt_records or bad:
            log.error(
                "segment %s: %d corrupt, %d undecodable records skipped", name, batch.corrupt_records, bad
            )
        if block.rows:
            self.stats.batches += 1
            self.stats.rows += block.rows
        with self._progress:  # under the lock: wait_idle never sees the file gone before the stats
            self.reader.ack(name)
            self.stats.segments += 1
            self._progress.notify_all()
        return True

    def _run(self) -> None:
        lower_thread_priority()
        if not self._ensure_sink():
            return
        while True:
            self._maintenance()
            with self._progress:
                segments = self.reader.sealed_segments()
                self._passes += 1
                self._pass_listing = frozenset(segments)
                self._progress.notify_all()
            if not segments:
                if self._stopping.is_set():
                    return
                self._sleep(self.poll_interval)
                continue
            for name in segments:
                if not self._ship(name):
                    return  # stopping while the sink is down: the rest stays spooled
