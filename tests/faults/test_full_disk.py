"""A full disk, on a small tmpfs holding the whole data directory (spool, embedded store, secrets):

* filling up under load: appends are refused with 503 + Retry-After once free space is below the
  reserve (``spool.min_free_bytes``), /readyz says not ready, the log stays short, refused events are
  counted as refused, and when space comes back the proxy drains and accepts again by itself;
* starting on a disk that is already full: the proxy starts, answers 503, and recovers the same way.

Every acknowledged event is stored exactly once. Mounting a tmpfs needs root (CAP_SYS_ADMIN); where the
test cannot, it skips and says so.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.serve import (
    STORED_SEQS,
    Load,
    Processes,
    Proxy,
    assert_exactly_once,
    drained,
    stored,
    wait_until,
)

TMPFS_MB = 160
RESERVE = 24 * 1024 * 1024


@pytest.fixture
def small_disk() -> Iterator[Path]:
    where = Path(f"/tmp/bp-full-{uuid.uuid4().hex[:8]}")
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m,mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'mount failed'}); needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        with contextlib.suppress(OSError):
            where.rmdir()


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(disk: Path, leave: int) -> Path:
    """A filler file that leaves about ``leave`` bytes free."""
    filler = disk / "filler"
    with filler.open("ab") as f:
        chunk = b"\0" * (1 << 20)
        while free_bytes(disk) > leave + len(chunk):
            f.write(chunk)
            f.flush()
        rest = max(0, free_bytes(disk) - leave)
        with contextlib.suppress(OSError):
            f.write(b"\0" * rest)
    return filler


def test_filling_up_under_load_refuses_cleanly_and_recovers(small_disk: Path, processes: Processes) -> None:
    proxy = Proxy(
        processes,
        small_disk / "data",
        BEACONPROXY_SPOOL__MIN_FREE_BYTES=str(RESERVE),
        BEACONPROXY_CLICKHOUSE__RETENTION_DAYS="400",
    )
    proxy.start()
    load = Load(proxy, threads=3, batch=10).start()
    try:
        load.wait_acked(200)
        filler = fill(small_disk, RESERVE + 2 * 1024 * 1024)  # just above the reserve: it runs out soon
        wait_until("appends to be refused", lambda: 503 in load.statuses, 60)
        status, ready = proxy.readyz()
        assert status == 503 and ready["refusing"]
        filler.unlink()  # space comes back
        wait_until("the proxy to be ready again", lambda: proxy.readyz()[0] == 200, 60)
        more = len(load.acked)
        load.wait_acked(more + 100)
    finally:
        load.stop()
    wait_until("the spool to drain", lambda: drained(proxy), 90)
    counts = stored(proxy.query(STORED_SEQS))
    assert_exactly_once(load.acked, counts, load.sent)
    log = proxy.log_tail(10**7)
    refused_requests = load.statuses[503]
    lines = log.count("\n")
    print(
        f"\nFAULT disk fills up under load (tmpfs {TMPFS_MB} MiB, reserve {RESERVE >> 20} MiB): "
        f"{load.summary(counts)}; 503 answers {refused_requests}; log lines in all {lines}"
    )
    assert lines < 200 + refused_requests // 20  # not one or two lines per refused request
    stats = proxy.stats()  # one process ran: its counters saw every request of the test
    assert stats["accepted"] == len(load.acked)  # a refused event is never counted as accepted
    assert sum(stats["refused"].values()) == len(load.refused)
    assert stats["refused"]["disk_reserve"] > 0


def test_starting_on_a_full_disk_serves_503_then_recovers(small_disk: Path, processes: Processes) -> None:
    data = small_disk / "data"
    proxy = Proxy(processes, data, BEACONPROXY_SPOOL__MIN_FREE_BYTES=str(RESERVE))
    proxy.start()  # a first start creates the secrets, the spool's id and the store
    assert proxy.post([1]) == 202
    acked = {1}
    wait_until("the spool to drain", lambda: drained(proxy), 60)
    proxy.sigterm()
    filler = fill(small_disk, 0)  # completely full
    proxy.start()
    assert proxy.post([2]) == 503
    status, ready = proxy.readyz()
    assert status == 503 and ready["refusing"]
    filler.unlink()
    wait_until("the proxy to be ready again", lambda: proxy.readyz()[0] == 200, 60)
    assert proxy.post([3]) == 202
    acked.add(3)
    wait_until("the spool to drain", lambda: drained(proxy), 60)
    counts = stored(proxy.query(STORED_SEQS))
    assert_exactly_once(acked, counts, {1, 2, 3})
    print(f"\nFAULT start on a full disk: acknowledged {sorted(acked)}, stored {sorted(counts)}, refused [2]")
