"""Background work that cannot die silently: supervised threads, supervised periodic tasks, and the
state of each that ``/readyz`` and ``/metrics`` report.

A supervised thread runs its ``target`` until it returns (a normal end, e.g. after a stop) or raises.
An unexpected exception is logged once per streak of failures (its type and the line it was raised at:
never its message, which may quote data), counted, and the target is started again after a backoff that
doubles up to ``backoff_max``; a target that ran for ``stable_seconds`` before failing starts a new
streak (logged again, backoff reset). Meanwhile the job's state says it is down, so ``/readyz`` can
report "not ready" while a vital job is down and ``/metrics`` can show it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class JobState:
    """What ``/readyz`` and ``/metrics`` report about one background job."""

    name: str
    vital: bool  # while it is down, the process is not ready
    up: bool = False
    failures: int = 0  # unexpected exceptions since the process started
    last_error: str = ""  # the exception type of the last one

    def failed(self, exc: BaseException, *, first_of_streak: bool) -> None:
        self.up = False
        self.failures += 1
        self.last_error = type(exc).__name__
        if first_of_streak:
            log.error(
                "background job %s failed with %s at %s; restarting it with backoff",
                self.name,
                type(exc).__name__,
                raised_at(exc),
            )

    def snapshot(self) -> dict[str, object]:
        return {"up": self.up, "vital": self.vital, "failures": self.failures, "last_error": self.last_error}


def raised_at(exc: BaseException) -> str:
    """``file:line`` where ``exc`` was raised (the innermost frame)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else "?"


class SupervisedThread:
    """A daemon thread running ``target``, restarted with backoff when it raises.

    ``stopping`` ends the supervision: a target that raises after it is set is not started again, and a
    backoff wait ends early. ``on_failure`` runs (in the thread) after each failure, before the backoff:
    the place to release what the dead run held (an open file, waiters to fail)."""

    def __init__(
        self,
        name: str,
        target: Callable[[], None],
        *,
        vital: bool,
        stopping: threading.Event,
        on_failure: Callable[[BaseException], None] | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        stable_seconds: float = 10.0,
    ) -> None:
        self.job = JobState(name, vital)
        self.target = target
        self.stopping = stopping
        self.on_failure = on_failure
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stable_seconds = stable_seconds
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.job.up = True
        self._thread = threading.Thread(target=self._main, name=self.job.name, daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _main(self) -> None:
        delay = self.backoff_initial
        streak = False
        while True:
            self.job.up = True
            started = time.monotonic()
            try:
                self.target()
            except Exception as exc:
                if time.monotonic() - started >= self.stable_seconds:
                    streak, delay = False, self.backoff_initial
                self.job.failed(exc, first_of_streak=not streak)
                streak = True
                if self.on_failure is not None:
                    try:
                        self.on_failure(exc)
                    except Exception as cleanup:
                        log.error(
                            "background job %s: cleanup failed with %s", self.job.name, type(cleanup).__name__
                        )
                if self.stopping.wait(delay):
                    return
                delay = min(delay * 2, self.backoff_max)
                continue
            self.job.up = False  # returned: stopped on purpose
            return


async def run_periodic(
    job: JobState,
    every: float,
    work: Callable[[], Awaitable[None]],
    *,
    backoff_initial: float = 0.5,
    backoff_max: float = 30.0,
    first_after: float | None = None,
) -> None:
    """Run ``work`` every ``every`` seconds (the first time after ``first_after``, if given) on the event
    loop, for as long as the task is not cancelled.

    A failure is handled as a supervised thread's: logged once per streak, counted, the job reported
    down, and tried again after a doubling backoff (never waiting longer than ``every`` would have); the
    first success reports it up again."""
    job.up = True
    delay = backoff_initial
    wait = every if first_after is None else first_after
    while True:
        await asyncio.sleep(wait)
        try:
            await work()
        except Exception as exc:
            job.failed(exc, first_of_streak=job.up)
            wait = min(delay, backoff_max, max(every, backoff_initial))
            delay = min(delay * 2, backoff_max)
            continue
        if not job.up:
            log.info("background job %s is working again", job.name)
        job.up = True
        delay, wait = backoff_initial, every
