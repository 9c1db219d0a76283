"""SIGTERM under load, with kept-alive connections: stop accepting, answer every request that was
received, then close, within the grace period; everything acknowledged is stored exactly once.

"Received" is what matters here: a request that the client wrote on an open connection must get an
answer (202, or a clean close before it was read is impossible to tell apart from the wire, so the
count of requests written and never answered must be zero). Connections refused after the stop are
fine: the client knows nothing was taken.
"""

from __future__ import annotations

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


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_under_load_answers_every_request_it_received(
    tmp_path: Path, processes: Processes, workers: int
) -> None:
    proxy = Proxy(processes, tmp_path / "data", workers=workers)
    proxy.start()
    load = Load(proxy, threads=8, batch=2).start()
    try:
        load.wait_acked(400)
        proxy.sigterm(120)
    finally:
        load.stop()
    proxy.start()
    wait_until("the spool to drain", lambda: drained(proxy), 90)
    counts = stored(proxy.query(STORED_SEQS))
    print(f"\nFAULT SIGTERM under load (--workers {workers}): {load.summary(counts)}")
    assert_exactly_once(load.acked, counts, load.sent)
    assert load.unanswered == set(), f"{len(load.unanswered)} requests were written and never answered"
