"""The shipper drains sealed spool segments into the sink, in order, and deletes one only after the sink
confirmed it. Each segment is one insert under the segment's own token (no chunks: the writer seals at
``batch.max_rows``), so a retry or a replay is the same insert and the real store keeps each row once.

Most tests use a fake sink that records ``(token, rows)`` and can be told to fail; the spool is real.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from config.settings import ClickhouseSettings
from proxy.model import Event
from sinks.base import SinkError
from sinks.clickhouse import ClickHouseSink
from sinks.codec import EventBlock, encode_event
from sinks.shipper import SHIPPER_NICENESS, Shipper, lower_thread_priority
from sinks.spool import OPEN_SUFFIX, SEALED_SUFFIX, SpoolReader, SpoolWriter, encode_record, segment_name


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


NOW = datetime.now(UTC).replace(microsecond=0)  # recent: inside the store's retention


def ev(n: int, *, type_: str = "pageview") -> Event:
    """The same event every time it is called with the same arguments."""
    return Event(
        site="demo",
        type=type_,
        name="pageview" if type_ == "pageview" else f"e{n}",
        ts=NOW + timedelta(milliseconds=n),
        event_id=uuid.UUID(int=n + 1),
        url=f"https://example.com/p/{n}",
        props={"n": str(n)},
        visitor_hash=n,
    )


class FakeSink:
    """Records every attempt and every write that was stored; fails when told to: before storing
    (``fail_*``), or after storing, as if the reply were lost (``lose_replies``)."""

    name = "fake"

    def __init__(
        self, spool_dir: Path, *, up: bool = True, fail_writes: int = 0, fail_starts: int = 0
    ) -> None:
        self.spool_dir = spool_dir
        self.up = threading.Event()
        if up:
            self.up.set()
        self.fail_writes = fail_writes
        self.fail_starts = fail_starts
        self.fail_tokens: dict[str, int] = {}  # token -> failures left
        self.lose_replies: dict[str, int] = {}  # token -> inserts that land, then fail (reply lost)
        self.gate: threading.Event | None = None  # when set: a write blocks until the gate opens
        self.in_write = threading.Event()
        self.lock = threading.Lock()
        self.start_calls = 0
        self.attempts: list[str] = []
        self.writes: list[tuple[str, list[Event]]] = []
        self.on_disk_at_write: list[bool] = []

    def start(self) -> None:
        with self.lock:
            self.start_calls += 1
            if not self.up.is_set():
                raise SinkError("fake sink is down")
            if self.fail_starts > 0:
                self.fail_starts -= 1
                raise SinkError("fake sink start failed")

    def write(self, block: EventBlock, token: str) -> None:
        batch = block.events()
        segment = token.split(":")[1] + ".seg"
        with self.lock:
            self.attempts.append(token)
            self.on_disk_at_write.append((self.spool_dir / segment).exists())
            if not self.up.is_set():
                raise SinkError("fake sink is down")
            if self.fail_writes > 0:
                self.fail_writes -= 1
                raise SinkError("fake insert failed")
            if self.fail_tokens.get(token, 0) > 0:
                self.fail_tokens[token] -= 1
                raise SinkError("fake insert failed")
        if self.gate is not None:
            self.in_write.set()
            assert self.gate.wait(10)
        with self.lock:
            self.writes.append((token, list(batch)))
            if self.lose_replies.get(token, 0) > 0:
                self.lose_replies[token] -= 1
                raise SinkError("fake insert stored, reply lost")

    def healthy(self) -> bool:
        return self.up.is_set()

    def close(self) -> None:
        pass

    def tokens(self) -> list[str]:
        with self.lock:
            return [t for t, _ in self.writes]

    def rows(self) -> list[Event]:
        with self.lock:
            return [e for _, batch in self.writes for e in batch]


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    d = tmp_path / "spool"
    d.mkdir()
    return d


@pytest.fixture
def writers(spool_dir: Path) -> Iterator[Callable[..., SpoolWriter]]:
    made: list[SpoolWriter] = []

    def make(writer: str = "main", **kwargs: Any) -> SpoolWriter:
        options: dict[str, Any] = {"max_bytes": 64 << 20, "segment_max_age": 60.0, **kwargs}
        w = SpoolWriter(spool_dir, writer=writer, **options)
        w.start()
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


@pytest.fixture
def shippers() -> Iterator[Callable[..., Shipper]]:
    made: list[Shipper] = []

    def make(sink: Any, reader: SpoolReader, **kwargs: Any) -> Shipper:
        options: dict[str, Any] = {
            "retention_seconds": 3600.0,
            "poll_interval": 0.01,
            "backoff_initial": 0.01,
            "backoff_max": 0.05,
            **kwargs,
        }
        s = Shipper(sink, reader, **options)
        made.append(s)
        return s

    yield make
    for s in made:
        if s._thread is not None and s._thread.is_alive():
            s.stop(0.5)


def seal(writer: SpoolWriter, records: Sequence[bytes]) -> str:
    """Append records to the writer's segment, seal it, return the sealed segment's name (known from
    the open segment's: a running shipper may ship and delete it before the spool could be listed)."""
    writer.append(records).result(5)
    open_segment = writer._path
    assert open_segment.suffix == OPEN_SUFFIX
    assert writer.flush(5)
    return open_segment.with_suffix(SEALED_SUFFIX).name


def seal_events(writer: SpoolWriter, events: Sequence[Event]) -> str:
    return seal(writer, [encode_event(e) for e in events])


# --- order and acknowledgement ------------------------------------------------------------------------


def test_ships_sealed_segments_in_seq_order_and_acks_after_the_sink_confirmed(
    spool_dir: Path, writers: Callable[..., SpoolWriter], shippers: Callable[..., Shipper]
) -> None:
    a, b = writers("a"), writers("b")
    batches = [[ev(0), ev(1)], [ev(2)], [ev(3), ev(4), ev(5)], [ev(6)]]
    names = [seal_events(w, batch) for w, batch in zip([a, b, a, b], batches, strict=True)]
    assert names == sorted(names, key=lambda n: int(n.split("-")[1].split(".")[0]))
    a.append([encode_event(ev(99))]).result(5)  # in the open segment: not shipped yet

    reader = SpoolReader(spool_dir)
    sink = FakeSink(spool_dir)
    shipper = shippers(sink, reader)
    assert shipper.try_start_sink()
    shipper.start()
    assert shipper.wait_idle(10)

    assert sink.tokens() == [reader.token(n) for n in names]
    assert [b for _, b in sink.writes] == batches
    assert sink.on_disk_at_write == [True] * len(names)  # each segment was there while being inserted
    assert reader.sealed_segments() == []
    assert [p.suffix for p in spool_dir.glob("w*")] == [".open"]
    assert ev(99) not in sink.rows()
    s = shipper.stats
    assert (s.segments, s.batches, s.rows, s.errors) == (4, 4, 7, 0)

    assert a.flush(5)  # now it is sealed: the shipper picks it up
    assert shipper.wait_idle(10)
    assert sink.rows()[-1] == ev(99)
    assert shipper.stop(5)


class SlowSink(FakeSink):
    def write(self, batch: EventBlock, token: str) -> None:
        time.sleep(0.05)  # well below what a loaded box's producer manages: the backlog always grows
        super().write(batch, token)


def test_wait_idle_waits_only_for_segments_sealed_before_the_call_under_steady_traffic(
    spool_dir: Path, writers: Callable[..., SpoolWriter], shippers: Callable[..., Shipper]
) -> None:
    # Segments are sealed several times faster than the sink takes them: the spool is never empty, so a
    # wait for "nothing left" would never end; the segments sealed before the call still get shipped.
    w = writers()
    reader = SpoolReader(spool_dir)
    sink = SlowSink(spool_dir)
    shipper = shippers(sink, reader)
    shipper.start()
    stop = threading.Event()

    def produce() -> None:
        for n in range(2000):  # bounded: at most ~10 s of traffic
            if stop.is_set():
                return
            seal_events(w, [ev(n)])
            time.sleep(0.005)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        assert wait_for(lambda: len(reader.sealed_segments()) >= 20)
        before = reader.sealed_segments()
        assert shipper.wait_idle(20)
        left = reader.sealed_segments()
        shipped = set(sink.tokens())
    finally:
        stop.set()
        producer.join()
    assert {reader.token(n) for n in before} <= shipped
    assert set(before).isdisjoint(left)
    assert left, "traffic kept sealing segments: the spool was not empty when wait_idle returned"


def test_a_segment_is_deleted_only_once_its_insert_returned(
    spool_dir: Path, writers: Callable[..., SpoolWriter], shippers: Callable[..., Shipper]
) -> None:
    name = seal_events(writers(), [ev(1)])
    sink = FakeSink(spool_dir)
    sink.gate = threading.Event()
    shipper = shippers(sink, SpoolReader(spool_dir))
    shipper.start()
    assert sink.in_write.wait(10)
    time.sleep(0.1)  # the insert is "in flight": nothing may be deleted yet
    assert (spool_dir / name).exists()
    assert sink.writes == []
    sink.gate.set()
    assert shipper.wait_idle(10)
    assert not (spool_dir / name).exists()
    assert sink.rows() == [ev(1)]


# --- failures and retries -----------------------------------------------------------------------------


def test_while_the_sink_fails_nothing_is_acked_and_retries_reuse_the_token(
    spool_dir: Path, writers: Callable[..., SpoolWriter], shippers: Callable[..., Shipper]
) -> None:
    w = writers()
    names = [seal_events(w, [ev(1), ev(2)]), seal_events(w, [ev(3)])]
    reader = SpoolReader(spool_dir)
    sink = FakeSink(spool_dir)
    shipper = shippers(sink, reader)
    assert shipper.try_start_sink()
    sink.up.clear()
    shipper.start()

    assert wait_for(lambda: len(sink.attempts) >= 5 and shipper.stats.errors >= 5)  # (counted after)
    first = reader.token(names[0])
    assert set(sink.attempts) == {first}  # the same batch, the same token; later segments wait
    assert sink.writes == []
    assert reader.sealed_segments() == names
    assert shipper.stats.errors >= 5
    assert shipper.stats.segments == 0
    assert shipper.stats.last_error == "fake sink is down"

    sink.up.set()
    assert shipper.wait_idle(10)
    assert sink.tokens() == [first, reader.token(names[1])]
    assert sink.rows() == [ev(1), ev(2), ev(3)]
    assert reader.sealed_segments() == []


def test_fails_n_times_then_succeeds_once(
    spool_dir: Path, writers: Callable[..., SpoolWriter], shippers: Callable[..., Shipper]
) -> None:
    name = seal_events(writers(), [ev(1)])
    reader = SpoolReader(spool_dir)
    sink = FakeSink(spool_dir, fail_writes=3)
    shipper = shippers(sink, reader)
    shipper.start()
    assert shipper.wait_idle(10)
    token = reader.token(name)
    assert sink.attempts == [token] * 4
    assert sink.writes == [(token, [ev(1)])]
    assert (shipper.stats.errors, shipper.stats.segments, shipper.stats.rows) == (3, 1, 1)


def test_a_failing_segment_is_retried_whole_with_its_own_token(
    spool_dir: Path, writers: Callable[..., SpoolWriter], shippers: Callable[..., Shipper]
) -> None:
    events = [ev(i) for i in range(5)]
    # one append is never split: 5 rows in one segment although the writer seals at 2
    name = seal_events(writers(segment_max_records=2), events)
    reader = SpoolReader(spool_dir)
    token = reader.token(name)
    sink = FakeSink(spool_dir)
    sink.fail_tokens[token] = 2
    shipper = shippers(sink, reader)
    shipper.start()
    assert shipper.wait_idle(10)
    assert sink.attempts == [token] * 3  # the whole segment each time, under the segment's own token
    assert sink.writes == [(token, events)]
    s = shipper.stats
    assert (s.batches, s.rows, s.segments, s.errors) == (1, 5, 1, 2)
    assert reader.sealed_segments() == []


def test_segments_sealed_at_max_records_are_shipped_one_insert_each(
    spool_dir: Path, writers: Callable[..., SpoolWriter], shippers: Callable[..., Shipper]
) -> None:
    w = writers(segment_max_records=2)
    events = [ev(i) for i in range(5)]
    for e in events:
        w.append([encode_event(e)]).result(5)
    assert w.flush(5)  # seals the last, partial segment
    reader = SpoolReader(spool_dir)
    names = reader.sealed_segments()
    sink = FakeSink(spool_dir)
    shipper = shippers(sink, reader)
    shipper.start()
    assert shipper.wait_idle(10)
    assert sink.writes == [
        (reader.token(names[0]), events[0:2]),
        (reader.token(names[1]), events[2:4]),
        (reader.token(names[2]), events[4:5]),
    ]
    assert (shipper.stats.batches, shipper.stats.rows, shipper.stats.segments) == (3, 5, 3)


def test_an_insert_whose_reply_was_lost_is_replayed_whole_with_the_same_token(
    spool_dir: Path, writers: Callable[..., SpoolWriter], shippers: Callable[..., Shipper]
) -> None:
    events = [ev(i) for i in range(5)]
    name = seal_events(writers(), events)
    reader = SpoolReader(spool_dir)
    token = reader.token(name)
    sink = FakeSink(spool_dir)
    sink.lose_replies[token] = 10**6  # every insert lands, but the shipper never hears back
    first = shippers(sink, reader)
    first.start()
    assert wait_for(lambda: len(sink.writes) >= 2)
    assert not first.stop(0.2)
    assert reader.sealed_segments() == [name]  # never confirmed, so never acked
    assert first.stats.segments == 0

    sink.lose_replies.clear()
    again = shippers(sink, SpoolReader(spool_dir))
    again.start()
    assert again.wait_idle(10)
    assert len(sink.writes) >= 3
    # every attempt, before and after the restart, is the same insert: the store keeps one of them
    assert sink.writes == [(token, events)] * len(sink.writes)
    assert sink.attempts == [token] * len(sink.writes)
    assert reader.sealed_segments() == []
    assert (again.stats.batches, again.stats.rows, again.stats.segments) == (1, 5, 1)


# --- damaged segments ---------------------------------------------------------------------------------


def _torn(path: Path) -> None:
    with path.open("ab") as f:
        f.write(encode_record(encode_event(ev(500)))[:-5])


def _garbage(path: Path) -> None:
    with path.open("ab") as f:
        f.write(b"\x00\xffthis is not a record\x13\x37" * 3)


def _bad_crc(path: Path) -> None:
    with path.open("ab") as f:
        record = bytearray(encode_record(encode_event(ev(500))))
        record[-3] ^= 0xFF
        f.write(bytes(record))


@pytest.mark.parametrize("damage", [_torn, _garbage, _bad_crc], ids=["torn", "garbage", "bad-crc"])
def test_a_corrupt_tail_ships_the_good_records_and_is_counted(
    spool_dir: Path,
    writers: Callable[..., SpoolWriter],
    shippers: Callable[..., Shipper],
    damage: Callable[[Path], None],
) -> None:
    w = writers()
    damaged = seal_events(w, [ev(1), ev(2), ev(3)])
    damage(spool_dir / damaged)
    later = seal_events(w, [ev(4)])
    reader = SpoolReader(spool_dir)
    sink = FakeSink(spool_dir)
    shipper = shippers(sink, reader)
    shipper.start()
    assert shipper.wait_idle(10)
    assert sink.tokens() == [reader.token(damaged), reader.token(later)]
    assert sink.rows() == [ev(1), ev(2), ev(3), ev(4)]
    assert shipper.stats.corrupt_records >= 1
    assert reader.stats().corrupt_records == shipper.stats.corrupt_records
    assert reader.stats().corrupt_bytes > 0
    assert shipper.stats.segments == 2
    assert reader.sealed_segments() == []


def test_corruption_in_the_middle_loses_the_rest_of_that_segment_only(
    spool_dir: Path, writers: Callable[..., SpoolWriter], shippers: Callable[..., Shipper]
) -> None:
    w = writers()
    damaged = seal_events(w, [ev(i) for i in range(4)])
    data = bytearray((spool_dir / damaged).read_bytes())
    second = len(encode_record(encode_event(ev(0))))
    data[second + 10] ^= 0xFF  # inside record 2 of 4
    (spool_dir / damaged).write_bytes(bytes(data))
    later = seal_events(w, [ev(9)])
    sink = FakeSink(spool_dir)
    shipper = shippers(sink, SpoolReader(spool_dir))
    shipper.start()
    assert shipper.wait_idle(10)
    assert sink.rows() == [ev(0), ev(9)]
    assert shipper.stats.corrupt_records == 3
    assert not (spool_dir / later).exists()


def test_undecodable_records_are_counted_and_skipped(
    spool_dir: Path, writers: Callable[..., SpoolWriter], shippers: Callable[..., Shipper]
) -> None:
    w = writers()
    mixed = seal(
        w, [encode_event(ev(1)), b"\x02future", encode_event(ev(2)), b"\x01{}", b"junk", encode_event(ev(3))]
    )
    only_bad = seal(w, [b"\x01[]", b"nope"])
    reader = SpoolReader(spool_dir)
    sink = FakeSink(spool_dir)
    shipper = shippers(sink, reader)
    shipper.start()
    assert shipper.wait_idle(10)
    assert sink.writes == [(reader.token(mixed), [ev(1), ev(2), ev(3)])]  # no empty insert
    assert shipper.stats.undecodable_records == 5
    assert shipper.stats.corrupt_records == 0
    assert (shipper.stats.segments, shipper.stats.rows) == (2, 3)
    assert not (spool_dir / only_bad).exists()


# --- the sink's start-up and the shipper's stop -------------------------------------------------------


def test_sink_down_at_start_then_started_by_the_shipper_thread(
    spool_dir: Path, writers: Callable[..., SpoolWriter], shippers: Callable[..., Shipper]
) -> None:
    name = seal_events(writers(), [ev(1)])
    sink = FakeSink(spool_dir, up=False)
    shipper = shippers(sink, SpoolReader(spool_dir))
    assert not shipper.try_start_sink()
    assert not shipper.stats.sink_started
    assert shipper.stats.errors == 1
    shipper.start()
    assert wait_for(lambda: sink.start_calls >= 3)
    assert sink.attempts == []
    assert (spool_dir / name).exists()

    sink.up.set()
    assert shipper.wait_idle(10)
    assert shipper.stats.sink_started
    assert sink.rows() == [ev(1)]
    assert not (spool_dir / name).exists()


def test_start_failing_a_few_times_is_retried(
    spool_dir: Path, writers: Callable[..., SpoolWriter], shippers: Callable[..., Shipper]
) -> None:
    seal_events(writers(), [ev(1)])
    sink = FakeSink(spool_dir, fail_starts=3)
    shipper = shippers(sink, SpoolReader(spool_dir))
    shipper.start()
    assert shipper.wait_idle(10)
    assert sink.start_calls == 4
    assert sink.rows() == [ev(1)]


def test_stop_with_a_dead_sink_returns_false_and_leaves_the_segments(
    spool_dir: Path, writers: Callable[..., SpoolWriter], shippers: Callable[..., Shipper]
) -> None:
    w = writers()
    names = [seal_events(w, [ev(1)]), seal_events(w, [ev(2)])]
    reader = SpoolReader(spool_dir)
    sink = FakeSink(spool_dir)
    shipper = shippers(sink, reader)
    assert shipper.try_start_sink()
    sink.up.clear()
    shipper.start()
    assert wait_for(lambda: len(sink.attempts) >= 2)
    assert not shipper.stop(0.2)
    assert shipper._thread is not None and not shipper._thread.is_alive()
    assert reader.sealed_segments() == names

    # the next start ships them, with the tokens the first attempts used
    sink.up.set()
    again = shippers(sink, SpoolReader(spool_dir))
    again.start()
    assert again.wait_idle(10)
    assert sink.tokens() == [reader.token(n) for n in names]
    assert set(sink.attempts[: len(sink.attempts) - 2]) == {reader.token(names[0])}


def test_stop_while_the_sink_never_started(
    spool_dir: Path, writers: Callable[..., SpoolWriter], shippers: Callable[..., Shipper]
) -> None:
    name = seal_events(writers(), [ev(1)])
    sink = FakeSink(spool_dir, up=False)
    shipper = shippers(sink, SpoolReader(spool_dir))
    shipper.start()
    assert wait_for(lambda: sink.start_calls >= 2)
    assert not shipper.stop(0.2)
    assert shipper._thread is not None and not shipper._thread.is_alive()
    assert (spool_dir / name).exists()


def test_stop_with_a_healthy_sink_ships_everything(
    spool_dir: Path, writers: Callable[..., SpoolWriter], shippers: Callable[..., Shipper]
) -> None:
    w = writers()
    sink = FakeSink(spool_dir)
    shipper = shippers(sink, SpoolReader(spool_dir))
    shipper.start()
    for i in range(5):
        seal_events(w, [ev(i)])
    assert shipper.stop(5)
    assert sorted(e.event_id.int for e in sink.rows()) == [1, 2, 3, 4, 5]
    assert SpoolReader(spool_dir).sealed_segments() == []


def test_stop_returns_only_after_the_shipper_thread_ended(
    spool_dir: Path, writers: Callable[..., SpoolWriter], shippers: Callable[..., Shipper]
) -> None:
    name = seal_events(writers(), [ev(1)])
    sink = FakeSink(spool_dir)
    shipper = shippers(sink, SpoolReader(spool_dir), backoff_initial=10.0, backoff_max=30.0)
    assert shipper.try_start_sink()
    sink.up.clear()
    shipper.start()
    assert wait_for(lambda: len(sink.attempts) >= 1)  # now in a 10 s backoff sleep
    t0 = time.monotonic()
    assert not shipper.stop(1.0)
    elapsed = time.monotonic() - t0
    assert shipper._thread is not None
    assert not shipper._thread.is_alive(), "stop() returned while the shipper still runs"
    assert 0.9 <= elapsed < 3.0, elapsed  # it retried up to its deadline, and slept no backoff past it
    assert len(sink.attempts) >= 2  # woken by stop(), it tried again before giving up
    assert sink.writes == []
    assert (spool_dir / name).exists()


# --- maintenance --------------------------------------------------------------------------------------


def test_segments_older_than_the_retention_are_purged_and_counted(
    spool_dir: Path, writers: Callable[..., SpoolWriter], shippers: Callable[..., Shipper]
) -> None:
    w = writers()
    old = seal_events(w, [ev(1)])
    fresh = seal_events(w, [ev(2)])
    long_ago = time.time() - 7200
    os.utime(spool_dir / old, (long_ago, long_ago))
    reader = SpoolReader(spool_dir)
    sink = FakeSink(spool_dir)
    shipper = shippers(sink, reader, retention_seconds=3600.0)
    shipper.start()
    assert shipper.wait_idle(10)
    assert sink.tokens() == [reader.token(fresh)]
    assert sink.rows() == [ev(2)]
    assert shipper.stats.purged_segments == 1
    assert reader.stats().purged_segments == 1
    assert reader.stats().purged_bytes > 0
    assert not (spool_dir / old).exists()


def test_an_orphaned_open_segment_is_sealed_and_shipped(
    spool_dir: Path, shippers: Callable[..., Shipper]
) -> None:
    reader = SpoolReader(spool_dir)  # creates spool.id
    orphan = spool_dir / segment_name("12345", 7, ".open")
    orphan.write_bytes(
        encode_record(encode_event(ev(1)))
        + encode_record(encode_event(ev(2)))
        + encode_record(encode_event(ev(3)))[:-1]  # torn by the crash: never acknowledged
    )
    sink = FakeSink(spool_dir)
    shipper = shippers(sink, reader)
    shipper.start()
    assert shipper.wait_idle(10)
    assert sink.tokens() == [f"{reader.spool_id}:{orphan.stem}"]
    assert sink.rows() == [ev(1), ev(2)]
    assert shipper.stats.orphans_sealed == 1
    assert reader.stats().corrupt_records == 1
    assert list(spool_dir.glob("w*")) == []


# --- wait_idle ----------------------------------------------------------------------------------------


class PausingReader(SpoolReader):
    """Pauses the shipper thread right after it listed the sealed segments, once, when asked."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.pause_next = threading.Event()
        self.paused = threading.Event()
        self.resume = threading.Event()

    def sealed_segments(self) -> list[str]:
        found = super().sealed_segments()
        if threading.current_thread().name == "shipper" and self.pause_next.is_set():
            self.pause_next.clear()
            self.paused.set()
            self.resume.wait(10)
        return found


class SetHook(threading.Event):
    """An Event that runs a hook once, right after it is next set (to order a race deterministically)."""

    hook: Callable[[], None] | None = None

    def set(self) -> None:
        super().set()
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()


def test_wait_idle_does_not_trust_a_listing_older_than_the_call(
    spool_dir: Path, writers: Callable[..., SpoolWriter], shippers: Callable[..., Shipper]
) -> None:
    w = writers()
    reader = PausingReader(spool_dir)
    sink = FakeSink(spool_dir)
    sink.gate = threading.Event()  # inserts block, so "idle" can only be a false report
    shipper = shippers(sink, reader)
    wake = SetHook()
    shipper._wake = wake
    shipper.start()
    try:
        assert shipper.wait_idle(10)
        w.append([encode_event(ev(1))]).result(5)  # accepted, still in the open segment
        reader.pause_next.set()
        assert reader.paused.wait(10)  # the shipper has just listed: nothing sealed
        assert w.flush(5)  # Runtime.flush: seal, then wait for the shipper
        # wait_idle wakes the shipper once it has registered the call: only then does the shipper go on
        # with its listing from before the seal
        wake.hook = reader.resume.set
        idle = shipper.wait_idle(2)
        assert wake.hook is None  # the race was run as intended
        assert not idle, "idle reported with a sealed segment waiting"
        assert sink.in_write.wait(10)  # the shipper listed again, found the segment, and is inserting it
        assert reader.sealed_segments() != []
    finally:
        reader.resume.set()
        sink.gate.set()
    assert shipper.wait_idle(10)
    assert sink.rows() == [ev(1)]
    assert reader.sealed_segments() == []


# --- replays against the real store -------------------------------------------------------------------


def count(ch: Client, sql: str) -> int:
    return int(ch.command(sql))


def stored_ids(ch: Client, database: str) -> list[int]:
    result = ch.query(f"SELECT event_id FROM {database}.events ORDER BY event_id")
    return [row[0].int for row in result.result_rows]


def daily_pageviews(ch: Client, database: str) -> int:
    return count(ch, f"SELECT sum(pageviews) FROM {database}.events_daily")


@pytest.fixture
def ch_sink(chdb_dsn: str, database: str) -> Iterator[ClickHouseSink]:
    s = ClickHouseSink(chdb_dsn, ClickhouseSettings(database=database))
    s.start()
    yield s
    s.close()


def ship_once(shippers: Callable[..., Shipper], sink: Any, spool_dir: Path) -> Shipper:
    shipper = shippers(sink, SpoolReader(spool_dir))
    assert shipper.try_start_sink()
    shipper.start()
    assert shipper.wait_idle(30)
    assert shipper.stop(5)
    return shipper


def spool_one_by_one(writer: SpoolWriter, events: Sequence[Event]) -> list[str]:
    """Append the events one per append (as single requests would), seal; the new segments' names."""
    before = set(SpoolReader(writer.directory).sealed_segments())
    for e in events:
        writer.append([encode_event(e)]).result(5)
    assert writer.flush(5)
    return sorted(set(SpoolReader(writer.directory).sealed_segments()) - before)


@pytest.mark.parametrize(
    ("written_max_rows", "restarted_max_rows"),
    [(1000, 1000), (2, 2), (3, 2), (2, 3)],
    ids=["one-segment", "three-segments", "max-rows-shrank", "max-rows-grew"],
)
def test_a_replay_after_a_lost_ack_stores_each_row_once(
    spool_dir: Path,
    writers: Callable[..., SpoolWriter],
    shippers: Callable[..., Shipper],
    ch_sink: ClickHouseSink,
    ch: Client,
    database: str,
    written_max_rows: int,
    restarted_max_rows: int,
) -> None:
    """batch.max_rows only decides where the writer seals; a sealed segment is one insert under its own
    token whatever max_rows is at the replay, so there is no chunk layout that a restart could change."""
    events = [ev(i) for i in range(5)] + [ev(5, type_="event")]
    names = spool_one_by_one(writers(segment_max_records=written_max_rows), events)
    assert len(names) == -(-6 // written_max_rows)
    segments = {name: (spool_dir / name).read_bytes() for name in names}

    ship_once(shippers, ch_sink, spool_dir)
    assert SpoolReader(spool_dir).sealed_segments() == []
    assert stored_ids(ch, database) == [1, 2, 3, 4, 5, 6]

    # the inserts went through but the acks were lost (crash before the unlinks): the segments are back,
    # and the proxy restarts with batch.max_rows = restarted_max_rows
    restarted = writers("restarted", segment_max_records=restarted_max_rows)
    for _ in range(2):
        for name, data in segments.items():
            (spool_dir / name).write_bytes(data)
        replay = ship_once(shippers, ch_sink, spool_dir)
        assert (replay.stats.rows, replay.stats.batches) == (6, len(names))  # sent again ...
        assert stored_ids(ch, database) == [1, 2, 3, 4, 5, 6]  # ... and stored once
        assert daily_pageviews(ch, database) == 5
        assert count(ch, f"SELECT sum(events) FROM {database}.events_daily") == 1

    # a new segment with the same rows is new data, not a replay
    seal_events(restarted, events[:1])
    ship_once(shippers, ch_sink, spool_dir)
    assert count(ch, f"SELECT count() FROM {database}.events") == 7
    assert daily_pageviews(ch, database) == 6


class FlakySink:
    """The real sink with some inserts failing: ``fails(token)`` before the insert (the connection is lost
    first), ``loses_reply(token)`` after it was stored (the reply is lost). Records the tokens tried."""

    name = "clickhouse"

    def __init__(
        self,
        inner: ClickHouseSink,
        *,
        fails: Callable[[str], bool] = lambda token: False,
        loses_reply: Callable[[str], bool] = lambda token: False,
    ) -> None:
        self.inner = inner
        self.fails = fails
        self.loses_reply = loses_reply
        self.attempts: list[str] = []

    def start(self) -> None:
        self.inner.start()

    def write(self, batch: EventBlock, token: str) -> None:
        self.attempts.append(token)
        if self.fails(token):
            raise SinkError("connection lost")
        self.inner.write(batch, token)
        if self.loses_reply(token):
            raise SinkError("connection lost before the reply")

    def healthy(self) -> bool:
        return True

    def close(self) -> None:
        pass


def test_a_failing_segment_is_retried_whole_and_stored_once(
    spool_dir: Path,
    writers: Callable[..., SpoolWriter],
    shippers: Callable[..., Shipper],
    ch_sink: ClickHouseSink,
    ch: Client,
    database: str,
) -> None:
    events = [ev(i) for i in range(6)]
    # one append of 6 rows with batch.max_rows = 2: kept whole, one segment, one insert
    name = seal_events(writers(segment_max_records=2), events)
    token = SpoolReader(spool_dir).token(name)
    # attempts 1 and 2 are stored but unanswered, attempt 3 never reaches the store, attempt 4 succeeds
    flaky = FlakySink(
        ch_sink,
        fails=lambda t: len(flaky.attempts) == 3,
        loses_reply=lambda t: len(flaky.attempts) <= 2,
    )
    shipper = shippers(flaky, SpoolReader(spool_dir))
    shipper.start()
    assert shipper.wait_idle(30)
    assert flaky.attempts == [token] * 4
    s = shipper.stats
    assert (s.errors, s.batches, s.rows, s.segments) == (3, 1, 6, 1)
    assert stored_ids(ch, database) == [1, 2, 3, 4, 5, 6]
    assert daily_pageviews(ch, database) == 6
    assert not (spool_dir / name).exists()


def test_a_restart_after_a_failed_insert_stores_every_row_once(
    spool_dir: Path,
    writers: Callable[..., SpoolWriter],
    shippers: Callable[..., Shipper],
    ch_sink: ClickHouseSink,
    ch: Client,
    database: str,
) -> None:
    names = spool_one_by_one(writers(segment_max_records=2), [ev(i) for i in range(6)])
    assert len(names) == 3
    reader = SpoolReader(spool_dir)
    tokens = [reader.token(n) for n in names]
    flaky = FlakySink(ch_sink, fails=lambda token: token == tokens[1])
    first = shippers(flaky, SpoolReader(spool_dir))
    first.start()
    assert wait_for(lambda: first.stats.errors >= 2)
    assert not first.stop(0.2)
    assert flaky.attempts[0] == tokens[0]
    assert set(flaky.attempts[1:]) == {tokens[1]}  # the failing segment, whole; the next one waits
    assert stored_ids(ch, database) == [1, 2]
    assert reader.sealed_segments() == names[1:]

    # restarted with batch.max_rows = 3: the spooled segments keep their layout and tokens
    later = spool_one_by_one(writers("restarted", segment_max_records=3), [ev(6), ev(7), ev(8)])
    assert len(later) == 1
    ship_once(shippers, ch_sink, spool_dir)
    assert stored_ids(ch, database) == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert daily_pageviews(ch, database) == 9
    assert reader.sealed_segments() == []


def test_a_restart_after_an_insert_whose_reply_was_lost_stores_every_row_once(
    spool_dir: Path,
    writers: Callable[..., SpoolWriter],
    shippers: Callable[..., Shipper],
    ch_sink: ClickHouseSink,
    ch: Client,
    database: str,
) -> None:
    names = spool_one_by_one(writers(segment_max_records=3), [ev(i) for i in range(6)])
    assert len(names) == 2
    reader = SpoolReader(spool_dir)
    lost = reader.token(names[1])
    flaky = FlakySink(ch_sink, loses_reply=lambda token: token == lost)
    first = shippers(flaky, SpoolReader(spool_dir))
    first.start()
    assert wait_for(lambda: first.stats.errors >= 2)  # stored, unanswered, retried: the store dedups
    assert not first.stop(0.2)
    assert set(flaky.attempts[1:]) == {lost}
    assert stored_ids(ch, database) == [1, 2, 3, 4, 5, 6]
    assert reader.sealed_segments() == names[1:]  # never confirmed, so still spooled

    # restarted with batch.max_rows = 2: the replay is the same insert, and is dropped as a duplicate
    writers("restarted", segment_max_records=2)
    replay = ship_once(shippers, ch_sink, spool_dir)
    assert (replay.stats.rows, replay.stats.batches, replay.stats.segments) == (3, 1, 1)
    assert stored_ids(ch, database) == [1, 2, 3, 4, 5, 6]
    assert daily_pageviews(ch, database) == 6
    assert reader.sealed_segments() == []


def test_lower_thread_priority_changes_only_the_calling_thread() -> None:
    main_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[int] = []

    def background() -> None:
        lower_thread_priority(SHIPPER_NICENESS)
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        lower_thread_priority(SHIPPER_NICENESS - 5)  # never raises a thread's priority back
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    t = threading.Thread(target=background)
    t.start()
    t.join()
    assert seen == [max(SHIPPER_NICENESS, main_before)] * 2
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_before


def test_starting_the_sink_leaves_the_callers_priority_alone(
    spool_dir: Path, shippers: Callable[..., Shipper]
) -> None:
    seen: list[int] = []

    class Recording(FakeSink):
        def start(self) -> None:
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            super().start()

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert shippers(Recording(spool_dir), SpoolReader(spool_dir)).try_start_sink()
    assert seen == [max(SHIPPER_NICENESS, before)]  # the store started at background priority
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


def test_an_unexpected_error_starting_the_sink_reaches_the_caller(
    spool_dir: Path, shippers: Callable[..., Shipper]
) -> None:
    class Broken(FakeSink):
        def start(self) -> None:
            raise ValueError("not a sink error")

    with pytest.raises(ValueError, match="not a sink error"):
        shippers(Broken(spool_dir), SpoolReader(spool_dir)).try_start_sink()
