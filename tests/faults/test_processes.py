"""Killed processes under load, with real ``beaconproxy serve`` processes: a worker, the supervisor of
``serve --workers 2`` (its workers and primary must stop with it, and no second ``serve`` may start on
the data directory while any of them lives), then a restart that ships what they left.

Each test prints one line: acknowledged / stored / duplicated, as counted by sequence numbers.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from proxy.datalock import is_locked
from tests.support.serve import (
    STORED_SEQS,
    Load,
    Processes,
    Proxy,
    alive,
    assert_exactly_once,
    drained,
    stored,
    wait_until,
)


def test_a_killed_worker_is_replaced_and_nothing_acknowledged_is_lost(
    tmp_path: Path, processes: Processes
) -> None:
    proxy = Proxy(processes, tmp_path / "data", workers=2)
    proxy.start()
    load = Load(proxy, threads=4).start()
    try:
        load.wait_acked(100)
        workers = [
            pid for pid in proxy.descendants() if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        wait_until(
            "a replacement worker",
            lambda: len([p for p in proxy.descendants() if p not in workers and alive(p)]) >= 2,
            60,
        )
        before = len(load.acked)
        load.wait_acked(before + 100)  # the replacement and the other worker keep taking events
    finally:
        load.stop()
    proxy.sigterm(120)
    proxy.start()
    wait_until("the spool to drain", lambda: drained(proxy), 90)
    counts = stored(proxy.query(STORED_SEQS))
    assert_exactly_once(load.acked, counts, load.sent)
    print(f"\nFAULT kill -9 of a worker (--workers 2): {load.summary(counts)}")


def test_a_killed_supervisor_takes_its_workers_with_it_and_holds_the_data_dir_until_they_are_gone(
    tmp_path: Path, processes: Processes
) -> None:
    data = tmp_path / "data"
    proxy = Proxy(processes, data, workers=2)
    proxy.start()
    children = proxy.descendants()  # two workers and the primary
    assert len(children) >= 3
    load = Load(proxy, threads=4).start()
    try:
        load.wait_acked(100)
        assert proxy.proc is not None
        proxy.proc.send_signal(signal.SIGKILL)  # the supervisor only, as an OOM killer might
        proxy.proc.wait(30)
        # Its children are told by the kernel (PR_SET_PDEATHSIG) and stop gracefully. While any of them
        # lives, the data directory stays locked: a new serve would refuse to start.
        overlaps = 0
        deadline = time.monotonic() + 60
        while any(alive(pid) for pid in children):
            assert time.monotonic() < deadline, "orphaned workers kept running"
            if not is_locked(data) and any(alive(pid) for pid in children):
                overlaps += 1
            time.sleep(0.05)
        assert overlaps == 0, "the data directory was free while an orphan still ran"
    finally:
        load.stop()
    assert not is_locked(data)
    gone = Proxy(processes, data)  # nothing answers on the old port any more
    gone.port = proxy.port
    assert gone.post([10**9]) is None
    proxy.start()  # on the same data directory: ships what the orphans sealed
    wait_until("the spool to drain", lambda: drained(proxy), 90)
    counts = stored(proxy.query(STORED_SEQS))
    assert_exactly_once(load.acked, counts, load.sent)
    print(f"\nFAULT kill -9 of the supervisor (--workers 2): {load.summary(counts)}")


def test_a_second_serve_refuses_while_the_first_runs_with_workers(
    tmp_path: Path, processes: Processes
) -> None:
    data = tmp_path / "data"
    first = Proxy(processes, data, workers=2)
    first.start()
    second = Proxy(processes, data)
    try:
        second.start(timeout=30)
    except AssertionError as exc:
        assert "holds" in str(exc) and "exited with 1" in str(exc)
    else:
        raise AssertionError("a second serve started on a data directory in use")
    assert first.post([1]) == 202
