"""File-descriptor exhaustion: a low ``ulimit -n`` and a flood of idle connections. Whatever gives out
(accepting connections, opening spool segments, the shipper listing the spool), no background thread
may die for good: while the flood lasts, beacons on a connection opened before it are answered (202, or
503 + Retry-After when a segment cannot be opened), and once it ends the proxy is ready again and ships
everything it acknowledged, exactly once.
"""

from __future__ import annotations

import contextlib
import socket
import time
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

NOFILE = 1024


def flood(port: int, n: int) -> list[socket.socket]:
    """Up to ``n`` idle connections (the kernel completes them even when the server cannot accept)."""
    conns: list[socket.socket] = []
    for _ in range(n):
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            s.close()
            break
        conns.append(s)
    return conns


@pytest.mark.parametrize("workers", [1, 2])
def test_fd_exhaustion_kills_no_background_thread_and_loses_nothing(
    tmp_path: Path, processes: Processes, workers: int
) -> None:
    proxy = Proxy(processes, tmp_path / "data", workers=workers, nofile=NOFILE)
    proxy.start()
    load = Load(proxy, threads=2, batch=5).start()  # connections opened before the flood, kept alive
    conns: list[socket.socket] = []
    try:
        load.wait_acked(50)
        conns = flood(proxy.port, 2 * NOFILE * workers)
        during = len(load.acked)
        time.sleep(3.0)  # the flood holds: the shipper, spool and accept loop live with it
        acked_during = len(load.acked) - during
    finally:
        for s in conns:
            with contextlib.suppress(OSError):
                s.close()
    wait_until("the proxy to be ready again", lambda: proxy.readyz()[0] == 200, 60)
    more = len(load.acked)
    load.wait_acked(more + 50)  # and it takes events again
    load.stop()
    wait_until("the spool to drain", lambda: drained(proxy), 90)
    # A job that failed during the flood (visit_rebuild opens a store connection per run) is retried with
    # a doubling backoff; "not killed" means it comes back, so give its retry the time the backoff takes.
    wait_until(
        "every background job to be up again",
        lambda: all(job["up"] for job in proxy.readyz()[1]["background"].values()),
        45,
    )
    status, ready = proxy.readyz()
    counts = stored(proxy.query(STORED_SEQS))
    assert_exactly_once(load.acked, counts, load.sent)
    failures = {name: job["failures"] for name, job in ready["background"].items()}
    print(
        f"\nFAULT fd exhaustion (ulimit -n {NOFILE}, --workers {workers}, {len(conns)} idle connections): "
        f"{load.summary(counts)}; acknowledged during the flood {acked_during}; "
        f"background failures {failures}"
    )
    assert status == 200 and all(job["up"] for job in ready["background"].values())
