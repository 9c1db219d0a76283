"""Background work that cannot die silently: supervised threads and periodic tasks."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable

import pytest

from proxy.background import JobState, SupervisedThread, run_periodic


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def failures_logged(caplog: pytest.LogCaptureFixture, name: str) -> int:
    return sum(1 for r in caplog.records if f"background job {name} failed" in r.getMessage())


def test_a_failing_thread_is_restarted_with_backoff_and_logged_once_per_streak(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stopping = threading.Event()
    runs: list[float] = []
    cleaned: list[str] = []

    def target() -> None:
        runs.append(time.monotonic())
        if len(runs) <= 4:
            raise OSError(24, "Too many open files: /secret/path/of/some/file")
        stopping.wait()  # the fifth run works until it is stopped

    t = SupervisedThread(
        "worker_job",
        target,
        vital=True,
        stopping=stopping,
        on_failure=lambda exc: cleaned.append(type(exc).__name__),
        backoff_initial=0.02,
        backoff_max=0.08,
    )
    with caplog.at_level(logging.INFO):
        t.start()
        assert wait_for(lambda: len(runs) == 5 and t.job.up)
    assert t.job.failures == 4
    assert t.job.last_error == "OSError"
    assert cleaned == ["OSError"] * 4
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert gaps[3] >= gaps[0]  # the backoff doubled (0.02, 0.04, 0.08, 0.08)
    assert failures_logged(caplog, "worker_job") == 1  # once per streak, not once per failure
    assert "/secret/path" not in caplog.text  # the exception's text is never logged, only its type
    stopping.set()
    t.join(5)
    assert not t.is_alive()
    assert not t.job.up  # stopped on purpose


def test_a_thread_that_ran_long_enough_before_failing_starts_a_new_streak(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stopping = threading.Event()
    runs: list[int] = []

    def target() -> None:
        runs.append(1)
        if len(runs) in (1, 3):
            time.sleep(0.06)  # ran "stable" for longer than stable_seconds, then failed
        if len(runs) <= 3:
            raise RuntimeError("injected")
        stopping.wait()

    t = SupervisedThread(
        "streaky", target, vital=False, stopping=stopping, backoff_initial=0.01, stable_seconds=0.05
    )
    t.start()
    assert wait_for(lambda: len(runs) == 4)
    assert failures_logged(caplog, "streaky") == 2  # runs 1 and 3 began new streaks; run 2 did not
    stopping.set()
    t.join(5)


def test_stopping_during_the_backoff_ends_the_supervision() -> None:
    stopping = threading.Event()
    calls: list[int] = []

    def target() -> None:
        calls.append(1)
        raise RuntimeError("injected")

    t = SupervisedThread("stopper", target, vital=True, stopping=stopping, backoff_initial=30.0)
    t.start()
    assert wait_for(lambda: t.job.failures == 1)
    stopping.set()
    t.join(5)
    assert not t.is_alive()
    assert calls == [1]  # not restarted after the stop


def test_a_periodic_task_reports_down_while_failing_and_up_once_it_works(
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = JobState("reload", vital=False)
    outcomes = [ValueError("bad"), ValueError("bad"), None, None]
    seen: list[bool] = []

    async def work() -> None:
        outcome = outcomes.pop(0) if outcomes else None
        if outcome is not None:
            raise outcome

    async def main() -> None:
        task = asyncio.create_task(run_periodic(job, 0.01, work, backoff_initial=0.01))
        while outcomes:
            seen.append(job.up)
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert False in seen  # reported down while failing
    assert job.up
    assert (job.failures, job.last_error) == (2, "ValueError")
    assert failures_logged(caplog, "reload") == 1
