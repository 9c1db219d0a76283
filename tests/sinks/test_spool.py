"""The spool keeps every acknowledged record: order, sealing, group commit, limits, corruption, crashes."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from sinks.spool import (
    MAX_RECORD_BYTES,
    LoopAppender,
    SpoolClosed,
    SpoolError,
    SpoolFull,
    SpoolLowDisk,
    SpoolReader,
    SpoolWriter,
    encode_record,
    segment_name,
)

REPO = Path(__file__).resolve().parents[2]


def make_writer(directory: Path, writer: str = "main", **kwargs: Any) -> SpoolWriter:
    options: dict[str, Any] = {"max_bytes": 64 << 20, "segment_max_age": 60.0, **kwargs}
    w = SpoolWriter(directory, writer=writer, **options)
    w.start()
    return w


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def read_all(reader: SpoolReader) -> list[bytes]:
    return [r for name in reader.sealed_segments() for r in reader.read(name).records]


def fd_is_open_segment(fd: int) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}").endswith(".open")
    except OSError:
        return False


@pytest.fixture
def gated_fsync(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[list[int], threading.Event, threading.Event]]:
    """os.fsync on an open segment is counted and blocks until ``gate`` is set; ``entered`` tells it began."""
    real_fsync = os.fsync
    calls: list[int] = []
    entered, gate = threading.Event(), threading.Event()

    def fsync(fd: int) -> None:
        if fd_is_open_segment(fd):
            calls.append(fd)
            entered.set()
            gate.wait(10)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    yield calls, entered, gate
    gate.set()


# --- order and sealing ----------------------------------------------------------------------------------


def test_round_trip_keeps_order_and_tokens_are_stable(tmp_path: Path) -> None:
    w = make_writer(tmp_path)
    sent = [f"event-{i}".encode() * (1 + i % 7) for i in range(500)]
    futures = [w.append(sent[i : i + 10]) for i in range(0, len(sent), 10)]
    for f in futures:
        f.result(5)
    w.close()

    reader = SpoolReader(tmp_path)
    assert read_all(reader) == sent
    [name] = reader.sealed_segments()
    batch = reader.read(name)
    assert batch.name == name
    assert batch.token == f"{reader.spool_id}:{name.removesuffix('.seg')}"
    assert SpoolReader(tmp_path).read(name).token == batch.token  # same after a restart
    assert (batch.corrupt_records, batch.corrupt_bytes) == (0, 0)
    assert not list(tmp_path.glob("*.open"))


def test_largest_record_round_trips_and_bad_records_are_refused(tmp_path: Path) -> None:
    w = make_writer(tmp_path)
    with pytest.raises(ValueError):
        w.append([b"ok", b""])
    with pytest.raises(ValueError):
        w.append([b"x" * (MAX_RECORD_BYTES + 1)])
    w.append([b"y" * MAX_RECORD_BYTES]).result(5)
    w.append([]).result(0)  # nothing to store is trivially stored
    w.close()
    assert read_all(SpoolReader(tmp_path)) == [b"y" * MAX_RECORD_BYTES]


def test_seals_by_size(tmp_path: Path) -> None:
    w = make_writer(tmp_path, segment_max_bytes=1000)
    sent = [f"{i:04d}".encode() * 25 for i in range(40)]  # 100-byte payloads, 108-byte frames
    for i in range(0, 40, 3):  # 1-3 records per append
        w.append(sent[i : i + 3]).result(5)
    w.close()

    reader = SpoolReader(tmp_path)
    names = reader.sealed_segments()
    assert len(names) >= 4
    assert all((tmp_path / n).stat().st_size <= 1000 for n in names)
    assert read_all(reader) == sent


def record_counts(reader: SpoolReader) -> list[int]:
    return [len(reader.read(name).records) for name in reader.sealed_segments()]


def test_seals_at_exactly_max_records_across_small_appends(tmp_path: Path) -> None:
    w = make_writer(tmp_path, segment_max_records=4)
    reader = SpoolReader(tmp_path)
    sent = [b"r%d" % i for i in range(12)]
    w.append(sent[0:1]).result(5)
    w.append(sent[1:2]).result(5)
    assert reader.sealed_segments() == []  # 2 of 4
    w.append(sent[2:4]).result(5)  # 4 of 4: sealed at once, before the append is acknowledged
    assert record_counts(reader) == [4]
    assert not list(tmp_path.glob("*.open"))

    w.append(sent[4:7]).result(5)  # 3 of 4 in a new segment
    assert record_counts(reader) == [4]
    w.append(sent[7:9]).result(5)  # would make 5: the 3 are sealed first, the 2 start the next segment
    assert record_counts(reader) == [4, 3]
    w.append(sent[9:11]).result(5)  # 2 + 2 = 4: sealed
    assert record_counts(reader) == [4, 3, 4]
    w.append(sent[11:12]).result(5)
    w.close()
    assert record_counts(reader) == [4, 3, 4, 1]
    assert read_all(reader) == sent


def test_an_append_larger_than_max_records_is_kept_whole_in_one_segment(tmp_path: Path) -> None:
    w = make_writer(tmp_path, segment_max_records=3)
    reader = SpoolReader(tmp_path)
    big = [b"big-%d" % i for i in range(7)]
    w.append(big).result(5)  # never split: one segment of 7, sealed at once
    assert record_counts(reader) == [7]
    w.append([b"one"]).result(5)
    w.append([b"x-%d" % i for i in range(5)]).result(5)  # the open segment's 1 is sealed on its own first
    assert record_counts(reader) == [7, 1, 5]
    assert not list(tmp_path.glob("*.open"))
    w.close()
    assert read_all(reader) == [*big, b"one", *(b"x-%d" % i for i in range(5))]


def test_seals_at_whichever_of_the_byte_and_record_limits_comes_first(tmp_path: Path) -> None:
    small = [b"s%03d" % i + b"." * 96 for i in range(12)]  # 100-byte payloads, 108-byte frames
    large = [b"L%03d" % i + b"." * 296 for i in range(7)]  # 300-byte payloads, 308-byte frames
    w = make_writer(tmp_path, segment_max_bytes=1000, segment_max_records=5)
    for record in small:  # 5 records are 540 bytes: the record limit seals
        w.append([record]).result(5)
    for record in large:  # 3 records are 924 bytes, a 4th would pass 1000: the byte limit seals
        w.append([record]).result(5)
    w.close()
    reader = SpoolReader(tmp_path)
    names = reader.sealed_segments()
    # 5 + 5 small; 2 small + 2 large (832 bytes, a 3rd large would pass 1000); 3 large; the last 2 large
    assert record_counts(reader) == [5, 5, 4, 3, 2]
    assert [(tmp_path / n).stat().st_size for n in names] == [540, 540, 832, 924, 616]
    assert read_all(reader) == small + large


@pytest.mark.parametrize("limit", [0, -1])
def test_invalid_segment_max_records_is_refused(tmp_path: Path, limit: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        SpoolWriter(tmp_path, writer="main", max_bytes=1 << 20, segment_max_records=limit)
    assert not list(tmp_path.glob("*.open"))


def test_seals_by_age_without_further_appends(tmp_path: Path) -> None:
    w = make_writer(tmp_path, segment_max_age=0.2)
    w.append([b"lonely"]).result(5)
    reader = SpoolReader(tmp_path)
    assert wait_for(lambda: len(reader.sealed_segments()) == 1)
    assert not list(tmp_path.glob("*.open"))
    assert read_all(reader) == [b"lonely"]
    w.append([b"next"]).result(5)  # still running; a new segment
    w.close()
    assert read_all(reader) == [b"lonely", b"next"]


def test_flush_seals_the_open_segment(tmp_path: Path) -> None:
    w = make_writer(tmp_path)
    w.append([b"a"]).result(5)
    assert w.flush(5)
    assert len(SpoolReader(tmp_path).sealed_segments()) == 1
    assert w.flush(5)  # nothing open: still fine
    w.close()


# --- group commit ---------------------------------------------------------------------------------------


def test_always_group_commit_shares_one_fsync(
    tmp_path: Path, gated_fsync: tuple[list[int], threading.Event, threading.Event]
) -> None:
    calls, entered, gate = gated_fsync
    w = make_writer(tmp_path, fsync="always")
    first = w.append([b"first"])
    assert entered.wait(5)  # the writer thread is inside the first group's fsync

    futures: list[Future[None]] = []

    def client(t: int) -> None:
        for i in range(25):
            futures.append(w.append([f"{t}-{i}".encode()]))

    threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not first.done()  # not durable yet, so not acknowledged
    assert not any(f.done() for f in futures)
    gate.set()
    for f in futures:
        f.result(5)
    assert first.done()
    assert len(calls) == 2  # 201 appends, 2 fsyncs: the first group and all 200 that queued meanwhile
    w.close()
    assert len(read_all(SpoolReader(tmp_path))) == 201


def test_interval_resolves_before_fsync(
    tmp_path: Path, gated_fsync: tuple[list[int], threading.Event, threading.Event]
) -> None:
    _, entered, gate = gated_fsync
    w = make_writer(tmp_path, fsync="interval", fsync_interval=0.0)
    f = w.append([b"cached"])
    assert entered.wait(5)  # the fsync has started and is blocked...
    f.result(5)  # ...yet the append is acknowledged: it is in the page cache
    gate.set()
    w.close()
    assert read_all(SpoolReader(tmp_path)) == [b"cached"]


def test_interval_fsyncs_at_most_every_interval(
    tmp_path: Path, gated_fsync: tuple[list[int], threading.Event, threading.Event]
) -> None:
    calls, _, gate = gated_fsync
    gate.set()
    w = make_writer(tmp_path, fsync="interval", fsync_interval=30.0)
    for i in range(50):
        w.append([b"%d" % i]).result(5)
    assert calls == []  # within the first interval: no fsync at all
    w.close()
    assert len(calls) == 1  # the seal
    assert len(read_all(SpoolReader(tmp_path))) == 50


def test_future_cancelled_before_the_write_is_not_stored(
    tmp_path: Path, gated_fsync: tuple[list[int], threading.Event, threading.Event]
) -> None:
    _, entered, gate = gated_fsync
    w = make_writer(tmp_path)
    kept = w.append([b"kept"])
    assert entered.wait(5)
    dropped = w.append([b"dropped"])
    assert dropped.cancel()  # e.g. the request went away before it was acknowledged
    gate.set()
    kept.result(5)
    w.close()
    assert read_all(SpoolReader(tmp_path)) == [b"kept"]


def test_awaitable_from_asyncio(tmp_path: Path) -> None:
    w = make_writer(tmp_path)

    async def handle(i: int) -> None:
        await asyncio.wrap_future(w.append([b"req-%d" % i]))

    async def main() -> None:
        await asyncio.gather(*(handle(i) for i in range(100)))

    asyncio.run(main())
    w.close()
    assert sorted(read_all(SpoolReader(tmp_path))) == sorted(b"req-%d" % i for i in range(100))


def test_failed_write_fails_the_future_and_the_writer_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = make_writer(tmp_path)
    w.append([b"before"]).result(5)
    real_write = os.write
    failures = [1]

    def write(fd: int, data: Any) -> int:
        if failures and fd_is_open_segment(fd):
            failures.pop()
            real_write(fd, bytes(data[:5]))  # a partial write, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    failed = w.append([b"lost-1", b"lost-2"])
    with pytest.raises(SpoolError, match="No space left"):
        failed.result(5)
    w.append([b"after"]).result(5)
    w.close()
    reader = SpoolReader(tmp_path)
    assert read_all(reader) == [b"before", b"after"]
    assert reader.stats().corrupt_records == 0  # the half-written bytes were cut before sealing


def test_unexpected_writer_failure_fails_futures_refuses_appends_and_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer thread is supervised: an unexpected exception fails what it held (never a 202), appends
    are refused while it is down, and it is started again after a backoff, writing as before."""
    import sinks.spool

    w = make_writer(tmp_path, restart_backoff=1.0)
    real = sinks.spool._allocate_seq
    faults = {"left": 1}

    def broken(directory: Path, *, durable: bool) -> int:
        if faults["left"] > 0:
            faults["left"] -= 1
            raise RuntimeError("injected")
        return real(directory, durable=durable)

    monkeypatch.setattr(sinks.spool, "_allocate_seq", broken)
    with pytest.raises(SpoolClosed):
        w.append([b"x"]).result(5)
    assert w.job is not None
    assert (w.state, w.job.up, w.job.failures, w.job.last_error) == ("restarting", False, 1, "RuntimeError")
    with pytest.raises(SpoolClosed):  # down: refused at once, never queued
        w.append([b"refused"])
    assert wait_for(lambda: w.state == "running" and w.job.up)  # type: ignore[union-attr]
    w.append([b"y"]).result(5)
    w.close()
    assert read_all(SpoolReader(tmp_path)) == [b"y"]  # "x" and "refused" were never written


# --- limits ---------------------------------------------------------------------------------------------


def test_spool_full_at_the_limit_and_recovery_after_ack(tmp_path: Path) -> None:
    w = make_writer(tmp_path, max_bytes=4096, segment_max_bytes=1024, rescan_interval=0.0)
    record = b"r" * 100  # 108 bytes framed
    accepted = 0
    with pytest.raises(SpoolFull):
        for _ in range(100):
            w.append([record]).result(5)
            accepted += 1
    assert 4096 - 108 < w.bytes_used() <= 4096  # spool.id and spool.seq count too
    assert accepted >= 30
    with pytest.raises(SpoolFull):
        w.append([record])

    assert w.flush(5)
    reader = SpoolReader(tmp_path)
    shipped = 0
    for name in reader.sealed_segments():
        shipped += len(reader.read(name).records)
        reader.ack(name)
    assert shipped == accepted
    w.append([record]).result(5)  # room again
    assert w.bytes_used() < 1024
    w.close()


def test_limit_counts_other_writers_files(tmp_path: Path) -> None:
    other = make_writer(tmp_path, writer="other", max_bytes=1 << 20)
    other.append([b"o" * 3000]).result(5)
    other.close()
    w = make_writer(tmp_path, max_bytes=4096)
    with pytest.raises(SpoolFull):
        w.append([b"m" * 1100])
    w.append([b"m" * 900]).result(5)
    w.close()


# --- corruption -----------------------------------------------------------------------------------------

PAYLOADS = [b"alpha", b"bravo-bravo", b"c" * 300, b"delta" * 9, b"echo"]
OFFSETS = [sum(8 + len(p) for p in PAYLOADS[:i]) for i in range(len(PAYLOADS) + 1)]


def _flip(at: int) -> Callable[[bytes], bytes]:
    return lambda data: data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.mark.parametrize(
    ("mutate", "good", "lost"),
    [
        pytest.param(_flip(OFFSETS[0] + 8), 0, 5, id="first-payload"),
        pytest.param(_flip(OFFSETS[2]), 2, None, id="length-field"),
        pytest.param(_flip(OFFSETS[2] + 5), 2, 3, id="crc-field"),
        pytest.param(_flip(OFFSETS[3] + 8 + 20), 3, 2, id="payload"),
        pytest.param(_flip(OFFSETS[5] - 1), 4, 1, id="last-byte"),
        pytest.param(lambda d: d[: OFFSETS[4] + 3], 4, 1, id="torn-header"),
        pytest.param(lambda d: d[: OFFSETS[4] + 10], 4, 1, id="torn-payload"),
        pytest.param(lambda d: d + b"\x01\x02\x03", 5, 1, id="trailing-garbage"),
        pytest.param(lambda d: d + bytes(4096), 5, 1, id="zero-filled-tail"),
        pytest.param(lambda d: d[: OFFSETS[2]] + b"\xff" * 8 + d[OFFSETS[2] + 8 :], 2, 1, id="huge-length"),
    ],
)
def test_corrupt_records_end_the_segment_and_are_counted(
    tmp_path: Path, mutate: Callable[[bytes], bytes], good: int, lost: int | None
) -> None:
    w = make_writer(tmp_path)
    for tag in (b"1:", b"2:", b"3:"):
        w.append([tag + p for p in PAYLOADS]).result(5)
        assert w.flush(5)
    w.close()
    reader = SpoolReader(tmp_path)
    first, middle, last = reader.sealed_segments()
    path = tmp_path / middle
    # Re-frame the middle segment without the tag so that OFFSETS match it exactly.
    clean = b"".join(encode_record(p) for p in PAYLOADS)
    damaged = mutate(clean)
    path.write_bytes(damaged)

    batch = reader.read(middle)
    assert batch.records == PAYLOADS[:good]
    assert batch.corrupt_bytes == len(damaged) - OFFSETS[good]
    if lost is None:
        assert batch.corrupt_records >= 1
    else:
        assert batch.corrupt_records == lost
    assert reader.read(first).records == [b"1:" + p for p in PAYLOADS]
    assert reader.read(last).records == [b"3:" + p for p in PAYLOADS]
    reader.read(middle)  # a retry does not count it twice
    stats = reader.stats()
    assert (stats.corrupt_records, stats.corrupt_bytes) == (batch.corrupt_records, batch.corrupt_bytes)


# --- several writers, restarts, orphans, retention -------------------------------------------------------


def test_two_writers_share_a_directory(tmp_path: Path) -> None:
    writers = [make_writer(tmp_path, writer=name, segment_max_bytes=2000) for name in ("a", "b")]

    def produce(w: SpoolWriter) -> None:
        for i in range(200):
            w.append([f"{w.writer}:{i}".encode()]).result(5)

    threads = [threading.Thread(target=produce, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in writers:
        w.close()

    reader = SpoolReader(tmp_path)
    names = reader.sealed_segments()
    assert {n[1] for n in names} == {"a", "b"}
    records = read_all(reader)
    for name in ("a", "b"):
        assert [r for r in records if r.startswith(name.encode() + b":")] == [
            f"{name}:{i}".encode() for i in range(200)
        ]
    tokens = [reader.read(n).token for n in names]
    assert len(set(tokens)) == len(tokens)


def _seqs(directory: Path) -> list[int]:
    return sorted(int(p.stem.rsplit("-", 1)[1]) for p in directory.glob("*.seg"))


def test_seq_continues_after_restart_and_is_never_reused(tmp_path: Path) -> None:
    w = make_writer(tmp_path)
    w.append([b"one"]).result(5)
    w.close()
    [first] = _seqs(tmp_path)
    w = make_writer(tmp_path)
    w.append([b"two"]).result(5)
    w.close()
    assert _seqs(tmp_path) == [first, first + 1]

    reader = SpoolReader(tmp_path)
    for name in reader.sealed_segments():
        reader.ack(name)
    assert reader.sealed_segments() == []
    w = make_writer(tmp_path)  # nothing of "main" is left, yet its next token is new
    w.append([b"three"]).result(5)
    w.close()
    assert _seqs(tmp_path) == [first + 2]


def test_tokens_differ_between_spool_directories(tmp_path: Path) -> None:
    tokens = []
    for d in (tmp_path / "host1", tmp_path / "host2"):
        w = make_writer(d)
        w.append([b"same"]).result(5)
        w.close()
        reader = SpoolReader(d)
        [name] = reader.sealed_segments()
        tokens.append(reader.read(name).token)
    assert tokens[0].split(":")[1] == tokens[1].split(":")[1]
    assert tokens[0] != tokens[1]


def test_seal_orphans(tmp_path: Path) -> None:
    tail = encode_record(b"c")[:-2]
    (tmp_path / segment_name("dead", 1, ".open")).write_bytes(
        encode_record(b"a") + encode_record(b"b") + tail
    )
    (tmp_path / segment_name("dead", 2, ".open")).write_bytes(b"")  # died right after creating it
    (tmp_path / segment_name("paused", 3, ".open")).write_bytes(encode_record(b"p"))
    live = make_writer(tmp_path, writer="live")
    live.append([b"live"]).result(5)  # its open segment is locked by a running writer

    reader = SpoolReader(tmp_path)
    assert reader.seal_orphans(alive=lambda writer: writer == "paused") == 1
    assert reader.sealed_segments() == [segment_name("dead", 1, ".seg")]
    batch = reader.read(segment_name("dead", 1, ".seg"))
    assert batch.records == [b"a", b"b"]
    assert (batch.corrupt_records, batch.corrupt_bytes) == (0, 0)  # the tail was cut when sealing
    stats = reader.stats()
    assert (stats.corrupt_records, stats.corrupt_bytes) == (1, len(tail))
    assert not (tmp_path / segment_name("dead", 2, ".open")).exists()
    assert (tmp_path / segment_name("paused", 3, ".open")).exists()
    assert stats.open_segments == 2  # paused, and live's

    assert reader.seal_orphans() == 1  # no callable: the lock alone decides; live keeps its segment
    assert len(list(tmp_path.glob("*.open"))) == 1
    live.close()
    assert read_all(reader) == [b"a", b"b", b"p", b"live"]


def test_purge_older_than(tmp_path: Path) -> None:
    w = make_writer(tmp_path)
    for i in range(3):
        w.append([b"%d" % i]).result(5)
        assert w.flush(5)
    w.close()
    reader = SpoolReader(tmp_path)
    old = reader.sealed_segments()[:2]
    an_hour_ago = time.time() - 3600
    for name in old:
        os.utime(tmp_path / name, (an_hour_ago, an_hour_ago))
    assert reader.stats().oldest_age_seconds >= 3500
    assert reader.purge_older_than(600) == 2
    assert read_all(reader) == [b"2"]
    stats = reader.stats()
    assert (stats.segments, stats.purged_segments) == (1, 2)
    assert stats.purged_bytes > 0
    assert stats.oldest_age_seconds < 600
    assert reader.purge_older_than(600) == 0


def test_ack_is_idempotent(tmp_path: Path) -> None:
    w = make_writer(tmp_path)
    w.append([b"x"]).result(5)
    w.close()
    reader = SpoolReader(tmp_path)
    [name] = reader.sealed_segments()
    reader.ack(name)
    reader.ack(name)
    assert reader.sealed_segments() == []
    with pytest.raises(ValueError):
        reader.read("../etc/passwd")


# --- lifecycle ------------------------------------------------------------------------------------------


def test_closed_or_unstarted_writer_refuses_appends(tmp_path: Path) -> None:
    unstarted = SpoolWriter(tmp_path, writer="main", max_bytes=1 << 20)
    with pytest.raises(SpoolClosed):
        unstarted.append([b"x"])
    w = make_writer(tmp_path)
    w.append([b"x"]).result(5)
    w.close()
    with pytest.raises(SpoolClosed):
        w.append([b"y"])
    assert w.flush(1)
    w.close()  # twice is fine
    assert read_all(SpoolReader(tmp_path)) == [b"x"]


def test_invalid_writer_id(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SpoolWriter(tmp_path, writer="../x", max_bytes=1 << 20)


# --- crash safety ---------------------------------------------------------------------------------------

CHILD = r"""
import collections, sys
from pathlib import Path
from sinks.spool import SpoolWriter

w = SpoolWriter(Path(sys.argv[1]), writer="child", max_bytes=1 << 30, segment_max_bytes=16384,
                segment_max_age=0.05, fsync=sys.argv[2])
w.start()
window = collections.deque()
i = 0
while True:
    while len(window) < 32:
        window.append((i, w.append([b"%d:" % i + b"x" * 200])))
        i += 1
    n, future = window.popleft()
    future.result()
    sys.stdout.write(f"{n}\n")
    sys.stdout.flush()
"""


@pytest.mark.parametrize("policy", ["always", "interval"])
def test_kill_9_loses_no_acknowledged_record(tmp_path: Path, policy: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    spool, stderr_path = tmp_path / "spool", tmp_path / "stderr"
    acked: list[int] = []
    with (
        stderr_path.open("wb") as stderr,
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(spool), policy],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
        ) as child,
    ):
        assert child.stdout is not None
        deadline = time.monotonic() + 20
        while len(acked) < 400 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acked.append(int(line))
        child.send_signal(signal.SIGKILL)
        acked += [int(n) for n in child.stdout.read().split()]  # what it acknowledged before it died
        child.wait(10)
    assert len(acked) >= 400, stderr_path.read_text(errors="replace")

    reader = SpoolReader(spool)
    reader.seal_orphans()
    assert not list(spool.glob("*.open"))
    numbers = [int(r.split(b":")[0]) for r in read_all(reader)]
    assert numbers == list(range(len(numbers)))  # in order, exactly once, no gaps
    assert acked == list(range(len(acked)))
    assert len(numbers) >= len(acked)  # every acknowledged record is there (and maybe a few more)
    assert len(reader.sealed_segments()) > 1


# --- the event loop's appender -------------------------------------------------------------------------


def test_loop_appends_of_one_iteration_go_to_the_writer_together_and_resolve_in_order(tmp_path: Path) -> None:
    w = make_writer(tmp_path)
    calls: list[int] = []
    real = w.append_many

    def counting(batches: Any) -> Any:
        calls.append(len(batches))
        return real(batches)

    w.append_many = counting  # type: ignore[method-assign]
    appender = LoopAppender(w)

    async def main() -> None:
        waiters = [appender.append([f"r{i}".encode(), f"r{i}b".encode()]) for i in range(50)]
        await asyncio.gather(*waiters)
        await appender.append([b"later"])  # a later iteration: its own hand-off

    asyncio.run(main())
    assert calls == [50, 1]
    assert w.flush(5)
    w.close()
    expected = [x for i in range(50) for x in (f"r{i}".encode(), f"r{i}b".encode())] + [b"later"]
    assert read_all(SpoolReader(tmp_path)) == expected


def test_loop_appends_succeed_or_fail_one_by_one(tmp_path: Path) -> None:
    w = make_writer(tmp_path, max_bytes=4096)
    appender = LoopAppender(w)
    too_big = [b"x" * 3000, b"y" * 3000]  # fits no spool of 4 KiB
    outcomes: list[object] = []

    async def main() -> None:
        waiters = [appender.append([b"small-1"]), appender.append(too_big), appender.append([b"small-2"])]
        for result in await asyncio.gather(*waiters, return_exceptions=True):
            outcomes.append(result)

    asyncio.run(main())
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], SpoolFull)
    assert w.flush(5)
    w.close()
    assert read_all(SpoolReader(tmp_path)) == [b"small-1", b"small-2"]


def test_loop_appends_to_a_closed_writer_fail_with_spool_closed(tmp_path: Path) -> None:
    w = make_writer(tmp_path)
    w.close()
    appender = LoopAppender(w)

    async def main() -> list[BaseException | None]:
        return await asyncio.gather(appender.append([b"a"]), appender.append([b"b"]), return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, SpoolClosed) for r in results)


def test_a_loop_append_with_an_oversized_record_fails_alone(tmp_path: Path) -> None:
    w = make_writer(tmp_path)
    appender = LoopAppender(w)

    async def main() -> list[BaseException | None]:
        waiters = [appender.append([b"ok"]), appender.append([b"z" * (MAX_RECORD_BYTES + 1)])]
        return await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 5)

    ok, oversized = asyncio.run(main())
    assert ok is None
    assert isinstance(oversized, ValueError)
    assert w.flush(5)
    w.close()
    assert read_all(SpoolReader(tmp_path)) == [b"ok"]


# --- free disk reserve and readiness ---------------------------------------------------------------------


def test_appends_are_refused_below_the_free_disk_reserve(tmp_path: Path) -> None:
    st = os.statvfs(tmp_path)
    free = st.f_bavail * st.f_frsize
    w = make_writer(tmp_path, min_free_bytes=free + (1 << 30), rescan_interval=0.0)  # never enough
    assert w.refusal() == "free disk is below the reserve"
    with pytest.raises(SpoolLowDisk):
        w.append([b"x"])
    w.close()
    w = make_writer(tmp_path, min_free_bytes=max(0, free - (256 << 20)), rescan_interval=0.0)
    assert w.refusal() is None
    w.append([b"x"]).result(5)
    w.close()
    assert read_all(SpoolReader(tmp_path)) == [b"x"]


def test_readiness_follows_a_refused_append_until_a_write_succeeds_or_the_hold_passes(tmp_path: Path) -> None:
    w = make_writer(tmp_path, max_bytes=4096, rescan_interval=0.0, error_hold_seconds=0.3)
    with pytest.raises(SpoolFull):
        w.append([b"r" * 5000])  # this one cannot fit, although the spool is nearly empty
    assert w.refusal() == "spool is full"
    time.sleep(0.35)
    assert w.refusal() is None  # recovers by itself: a not-ready proxy gets no traffic to clear it
    with pytest.raises(SpoolFull):
        w.append([b"r" * 5000])
    w.append([b"small"]).result(5)
    assert w.refusal() is None  # a write succeeded since
    w.close()


def test_a_failed_write_is_reported_by_refusal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sinks.spool

    w = make_writer(tmp_path, error_hold_seconds=60.0)

    def no_space(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sinks.spool, "_write_all", no_space)
    with pytest.raises(SpoolError):
        w.append([b"x"]).result(5)
    assert w.refusal() == "the last spool write failed"
    monkeypatch.undo()
    w.append([b"y"]).result(5)
    assert w.refusal() is None
    w.close()
    assert read_all(SpoolReader(tmp_path)) == [b"y"]
