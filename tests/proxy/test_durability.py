"""The promise "a 2xx means the event is in storage or in a durable spool; nothing acknowledged is lost;
replays do not duplicate rows", with real processes: kill -9, a store that goes away and comes back, a
store that is not there at start, a graceful stop with the store down, and a damaged spool at start-up.

Every event carries a unique number (``props.seq`` and the URL path); only numbers answered with a 202
count as acknowledged. The proxy runs as ``python -m proxy.cli serve``; the remote store is the
ClickHouse-HTTP fixture (``tests.support.ch_http``) started by hand, so it can be stopped and restarted on
the same data directory and port.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import orjson

from sinks.spool import SpoolReader, encode_record, segment_name
from tests.support.serve import (
    REPO,
    STORED_SEQS,
    ChFixture,
    Processes,
    Proxy,
    assert_exactly_once,
    drained,
    post_all,
    sealed_event,
    segment_files,
    spooled_seqs,
    stored,
    wait_until,
)

# --- 1. kill -9 in the middle of a stream ----------------------------------------------------------------


def test_kill_9_mid_stream_loses_no_acknowledged_event_and_duplicates_none(
    tmp_path: Path, processes: Processes
) -> None:
    """Three rounds of: start on the same data directory, stream, kill -9 (the later rounds are killed
    while they also replay what the previous one left). Then a last start drains everything."""
    proxy = Proxy(processes, tmp_path / "data")
    numbers = itertools.count(1)
    lock = threading.Lock()
    acked: set[int] = set()
    sent: set[int] = set()
    unanswered: list[int] = []
    rounds: list[str] = []

    def client(stop: threading.Event) -> None:
        while not stop.is_set():
            with lock:
                seqs = [next(numbers), next(numbers)]
                sent.update(seqs)
            status = proxy.post(seqs, timeout=5)
            with lock:
                if status != 202:  # in flight at the kill, or refused after it: not acknowledged
                    unanswered.extend(seqs)
                    return
                acked.update(seqs)

    for _ in range(3):
        proxy.start()
        before = len(acked)
        stop = threading.Event()
        threads = [threading.Thread(target=client, args=(stop,), daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            wait_until("events to be acknowledged", lambda: len(acked) >= before + 50, timeout=30)  # noqa: B023
            time.sleep(1.0)  # keep streaming; sealed segments are shipped while more arrive
            proxy.kill9()
        finally:
            stop.set()
            for t in threads:
                t.join(15)
        rounds.append(
            f"{len(acked) - before} acked, "
            f"{len(segment_files(proxy.spool_dir, '.open'))} open + "
            f"{len(segment_files(proxy.spool_dir, '.seg'))} sealed segments left"
        )

    proxy.start()
    after = set(range(10**6, 10**6 + 20))
    post_all(proxy, after, acked)  # and it keeps serving
    sent |= after
    wait_until("the spool to drain after the restart", lambda: drained(proxy), timeout=60)
    counts = stored(proxy.query(STORED_SEQS))
    assert_exactly_once(acked, counts, sent)

    unacked_stored = sorted(set(counts) - acked)
    print(
        f"\nkill -9 x3 ({'; '.join(rounds)}): sent {len(sent)}, acknowledged {len(acked)} "
        f"(incl. {len(after)} after the last restart), unanswered {len(unanswered)}; stored "
        f"{sum(counts.values())} rows for {len(counts)} distinct events; every acknowledged event stored "
        f"exactly once; stored but never acknowledged: {len(unacked_stored)}; duplicates: 0"
    )


# --- 2. the store goes away and comes back -------------------------------------------------------------


def test_store_down_for_a_while_then_back_everything_acknowledged_is_stored_once(
    tmp_path: Path, processes: Processes
) -> None:
    store = ChFixture(processes, tmp_path / "remote")
    store.start()
    proxy = Proxy(processes, tmp_path / "data", BEACONPROXY_CLICKHOUSE__DSN=store.dsn)
    proxy.start()
    acked: set[int] = set()

    post_all(proxy, range(1, 21), acked, batch=2)
    wait_until("the first events to be stored", lambda: len(store.query(STORED_SEQS)) == 20)

    store.stop()
    for n in range(21, 61):  # accepted into the spool throughout the outage
        post_all(proxy, [n], acked)
        time.sleep(0.02)

    def sink_reported_down() -> bool:
        status, body = proxy.readyz()
        assert status == 200, body  # ready: the spool accepts
        assert body["status"] == "ready"
        return body["sink_healthy"] is False and body["spool_segments"] > 0

    wait_until("/readyz to report the sink unhealthy", sink_reported_down, timeout=30)
    post_all(proxy, range(61, 71), acked)
    status, body = proxy.readyz()
    assert status == 200 and not body["sink_healthy"]
    assert proxy.stats()["shipper"]["errors"] > 0

    store.start()  # same data directory, same port
    post_all(proxy, range(71, 81), acked, batch=5)
    wait_until("the spool to drain", lambda: drained(proxy), timeout=90)
    counts = stored(store.query(STORED_SEQS))
    assert_exactly_once(acked, counts, set(range(1, 81)))
    assert set(counts) == acked
    assert proxy.readyz()[1]["sink_healthy"] is True
    print(f"\nstore outage: acknowledged {len(acked)}, stored {sum(counts.values())} rows, duplicates 0")


def test_store_killed_during_inserts_replays_without_duplicates(tmp_path: Path, processes: Processes) -> None:
    """The store crashes (kill -9) while batches stream in: some inserts fail after the store may have
    committed them; their retries carry the same token, so nothing is stored twice."""
    store = ChFixture(processes, tmp_path / "remote")
    store.start()
    proxy = Proxy(
        processes,
        tmp_path / "data",
        BEACONPROXY_CLICKHOUSE__DSN=store.dsn,
        BEACONPROXY_BATCH__MAX_AGE_SECONDS="0.05",
    )
    proxy.start()
    numbers = itertools.count(1)
    lock = threading.Lock()
    acked: set[int] = set()
    statuses: Counter[int | None] = Counter()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            with lock:
                seqs = [next(numbers) for _ in range(5)]
            status = proxy.post(seqs)
            with lock:
                statuses[status] += 1
                if status == 202:
                    acked.update(seqs)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(2):
            time.sleep(1.0)
            assert store.proc is not None
            store.proc.kill()
            store.proc.wait(10)
            time.sleep(0.3)
            store.start()
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert set(statuses) == {202}, statuses  # the proxy answered 202 throughout
    wait_until("the spool to drain", lambda: drained(proxy), timeout=90)
    counts = stored(store.query(STORED_SEQS))
    assert_exactly_once(acked, counts, acked)
    assert set(counts) == acked
    shipper = proxy.stats()["shipper"]
    print(
        f"\nstore killed twice mid-stream: acknowledged {len(acked)}, stored {sum(counts.values())} rows, "
        f"duplicates 0, failed inserts retried {shipper['errors']}"
    )


# --- 3. the store is not there when the proxy starts ---------------------------------------------------


def test_proxy_started_while_the_store_is_down_spools_then_ships(
    tmp_path: Path, processes: Processes
) -> None:
    store = ChFixture(processes, tmp_path / "remote")  # not started yet
    proxy = Proxy(processes, tmp_path / "data", BEACONPROXY_CLICKHOUSE__DSN=store.dsn)
    proxy.start()
    acked: set[int] = set()

    post_all(proxy, range(1, 31), acked, batch=3)
    status, body = proxy.readyz()
    assert status == 200, body
    assert body["status"] == "ready" and body["sink_healthy"] is False
    wait_until(
        "the accepted events to be sealed in the spool",
        lambda: proxy.readyz()[1]["spool_segments"] > 0 and not segment_files(proxy.spool_dir, ".open"),
    )
    assert sum(spooled_seqs(proxy.spool_dir).values()) == 30
    assert proxy.stats()["shipper"]["sink_started"] is False

    store.start()
    post_all(proxy, range(31, 41), acked)
    wait_until("the spool to drain", lambda: drained(proxy), timeout=90)
    counts = stored(store.query(STORED_SEQS))
    assert_exactly_once(acked, counts, set(range(1, 41)))
    assert set(counts) == acked
    assert proxy.stats()["shipper"]["sink_started"] is True


# --- 4. graceful shutdown -------------------------------------------------------------------------------


def test_sigterm_with_the_store_up_stores_everything(tmp_path: Path, processes: Processes) -> None:
    proxy = Proxy(processes, tmp_path / "data", BEACONPROXY_BATCH__MAX_AGE_SECONDS="30")
    proxy.start()
    acked: set[int] = set()
    post_all(proxy, range(1, 41), acked, batch=4)  # all still in the open segment (max age 30 s)
    assert segment_files(proxy.spool_dir, ".open")
    proxy.sigterm()

    assert not segment_files(proxy.spool_dir, ".open")
    spooled = spooled_seqs(proxy.spool_dir)
    result = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "query", STORED_SEQS],
        cwd=REPO,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("BEACONPROXY_")},
            "BEACONPROXY_DATA_DIR": str(proxy.data_dir),
        },
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    counts = stored(orjson.loads(line) for line in result.stdout.splitlines() if line)
    assert acked <= set(counts) | set(spooled)
    assert_exactly_once(set(), counts, acked)
    assert not spooled and set(counts) == acked  # the store was up: the grace period shipped it all


def test_sigterm_with_the_store_down_leaves_sealed_segments_then_stores_them_once(
    tmp_path: Path, processes: Processes
) -> None:
    store = ChFixture(processes, tmp_path / "remote")
    store.start()
    grace = {"BEACONPROXY_BATCH__SHUTDOWN_GRACE_SECONDS": "1"}
    proxy = Proxy(processes, tmp_path / "data", BEACONPROXY_CLICKHOUSE__DSN=store.dsn, **grace)
    proxy.start()
    acked: set[int] = set()
    post_all(proxy, range(1, 11), acked)
    wait_until("the first events to be stored", lambda: len(store.query(STORED_SEQS)) == 10)

    store.stop()
    post_all(proxy, range(11, 41), acked, batch=3)
    t0 = time.monotonic()
    proxy.sigterm()
    shutdown_seconds = time.monotonic() - t0

    assert not segment_files(proxy.spool_dir, ".open"), "the open segment was not sealed on shutdown"
    spooled = spooled_seqs(proxy.spool_dir)
    store.start()
    counts = stored(store.query(STORED_SEQS))
    assert acked <= set(counts) | set(spooled), sorted(acked - set(counts) - set(spooled))
    assert counts == Counter(range(1, 11))  # stored before the outage
    assert spooled == Counter(range(11, 41))  # the rest is sealed in the spool, each event once
    print(
        f"\nSIGTERM, store down: acknowledged {len(acked)}, stored {len(counts)}, spooled {len(spooled)}; "
        f"exit took {shutdown_seconds:.1f}s with shutdown_grace_seconds = 1"
    )

    proxy.start()  # the next start ships what was left
    wait_until("the spool to drain", lambda: drained(proxy), timeout=90)
    counts = stored(store.query(STORED_SEQS))
    assert_exactly_once(acked, counts, acked)
    assert set(counts) == acked


# --- 5. a damaged spool found at start-up --------------------------------------------------------------


def test_a_corrupt_spool_tail_is_counted_and_shipping_goes_on(tmp_path: Path, processes: Processes) -> None:
    data = tmp_path / "data"
    spool = data / "spool"
    spool.mkdir(parents=True)
    SpoolReader(spool)  # the spool's id, as a previous run would have left it
    torn = sealed_event(99)
    (spool / segment_name("4242", 1, ".seg")).write_bytes(
        b"".join(sealed_event(n) for n in range(1, 6)) + torn[: len(torn) // 2]
    )
    (spool / segment_name("4242", 2, ".seg")).write_bytes(
        sealed_event(6) + encode_record(b"\x02from the future") + sealed_event(7)
    )
    (spool / segment_name("4242", 3, ".seg")).write_bytes(
        b"".join(sealed_event(n) for n in range(8, 11)) + b"\x00\xde\xad\xbe\xef garbage " * 4
    )

    proxy = Proxy(processes, data)
    proxy.start()
    acked = set(range(1, 11))  # what the previous run had acknowledged (its readable part)
    post_all(proxy, range(11, 21), acked, batch=2)
    wait_until("the spool to drain", lambda: drained(proxy), timeout=60)
    counts = stored(proxy.query(STORED_SEQS))
    assert_exactly_once(acked, counts, acked)
    assert set(counts) == acked  # 99 was torn: never readable, never stored

    shipper = proxy.stats()["shipper"]
    assert shipper["corrupt_records"] == 2  # the torn record, and the garbage tail (at least one)
    assert shipper["undecodable_records"] == 1
    assert shipper["segments"] >= 4
