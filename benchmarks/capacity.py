"""Capacity finder: the traffic mix of ``locustfile.py`` offered at a rising request rate, one step at a
time, until a step fails (more than ``--capacity-max-failures`` percent failed, p99 above
``--capacity-p99-ms``, or less than 90% of the offered rate achieved); then a table of every step.
The last step within the limits is what this deployment takes; against one replica, what one replica
takes.

    make capacity                                   # against `make run`; see README "Operating it"
    locust -f benchmarks/capacity.py --headless --host http://127.0.0.1:8080 --stop-timeout 10

Options (besides the traffic mix's, see locustfile.py), or the environment variable in brackets:

    --capacity-start [BEACON_CAPACITY_START] 50     requests/s of the first step
    --capacity-step [BEACON_CAPACITY_STEP] 50       added at each step
    --capacity-max [BEACON_CAPACITY_MAX] 20000      stop after the step at this rate
    --capacity-step-time [BEACON_CAPACITY_STEP_TIME] 20   seconds per step
    --capacity-settle [BEACON_CAPACITY_SETTLE] 5    seconds at the start of each step not measured
    --capacity-p99-ms [BEACON_CAPACITY_P99_MS] 50
    --capacity-max-failures [BEACON_CAPACITY_MAX_FAILURES] 1   percent
    --user-rate [BEACON_USER_RATE] 4                requests/s per simulated user (users = rate / this)

Latency (ms) is Locust's (client side, the whole mix, batches included), measured over each step's
window. The proxy's side comes from its ``/metrics``: events/s received, its own p99 from
``beacon_request_seconds`` (the upper bound of the bucket it falls in: "at most"), and CPU time
(``beacon_cpu_seconds``, workers included) per second of the window, i.e. cores used, from which
events/s per core follow. When
Locust itself ran out of CPU (it warns above 90%), the table says so: the figures are then the load
generator's limit, not the proxy's; add workers (``--master`` with ``--worker`` processes, or
``make capacity WORKERS=N``), on other cores or machines. The table is also written to
``<--results-prefix>_capacity.csv`` and ``.txt``.
"""

from __future__ import annotations

import contextlib
import csv
import math
import time
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

import reconcile
from locust import LoadTestShape, events
from locust.env import Environment
from locust.runners import MasterRunner
from locust.stats import calculate_response_time_percentile, diff_response_time_dicts
from locustfile import Visitor  # the traffic mix; importing it also registers its reconciliation

__all__ = ["CapacityShape", "Visitor"]

DEFAULT_USER_RATE = 4.0
MIN_ACHIEVED = 0.9  # a step that achieved less than this share of its offered rate is not sustained


@events.init_command_line_parser.add_listener
def add_options(parser: Any) -> None:
    def add(name: str, env: str, default: float, help: str) -> None:
        parser.add_argument(name, env_var=env, default=default, type=float, help=help)

    add("--capacity-start", "BEACON_CAPACITY_START", 50, "requests/s of the first step")
    add("--capacity-step", "BEACON_CAPACITY_STEP", 50, "requests/s added at each step")
    add("--capacity-max", "BEACON_CAPACITY_MAX", 20000, "stop after the step at this rate")
    add("--capacity-step-time", "BEACON_CAPACITY_STEP_TIME", 20, "seconds per step")
    add("--capacity-settle", "BEACON_CAPACITY_SETTLE", 5, "seconds of each step not measured")
    add("--capacity-p99-ms", "BEACON_CAPACITY_P99_MS", 50, "p99 limit, ms")
    add("--capacity-max-failures", "BEACON_CAPACITY_MAX_FAILURES", 1, "failure limit, percent")


@events.init.add_listener
def on_init(environment: Environment, **_: Any) -> None:
    opts = environment.parsed_options
    if opts is not None and not opts.user_rate:
        opts.user_rate = DEFAULT_USER_RATE  # sent on to workers with the other options


@dataclass
class Mark:
    """Counters at one moment: Locust's (all workers added up) and the proxy's."""

    at: float
    requests: int
    failures: int
    response_times: dict[int, int]
    proxy: reconcile.Snapshot | None  # the proxy's counters


@dataclass
class Step:
    offered: float  # requests/s
    users: int
    achieved: float  # requests/s
    events: float | None  # events/s received by the proxy
    failures_pct: float
    p50_ms: int
    p99_ms: int
    proxy_p99_ms: float | None  # the proxy's own histogram: the upper bound of the bucket
    cores: float | None  # the proxy's CPU seconds per second
    events_per_core: float | None
    verdict: str

    def row(self) -> str:
        def opt(v: float | None, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        return (
            f"{self.offered:>9,.0f} {self.users:>6} {self.achieved:>9,.1f} {opt(self.events, ',.0f'):>9} "
            f"{self.failures_pct:>8.2f}% {self.p50_ms:>5} {self.p99_ms:>5} {opt(self.proxy_p99_ms, 'g'):>9} "
            f"{opt(self.cores, '.2f'):>6} "
            f"{opt(self.events_per_core, ',.0f'):>10}  {self.verdict}"
        )


HEADER = (
    f"{'offered':>9} {'users':>6} {'req/s':>9} {'events/s':>9} {'failures':>9} {'p50':>5} {'p99':>5} "
    f"{'proxy p99':>9} "
    f"{'cores':>6} {'events/core':>10}  verdict"
)


class CapacityShape(LoadTestShape):
    """Steps of ``--capacity-step-time`` seconds, each at a higher offered rate; stops at the first step
    that fails its limits (or after ``--capacity-max``)."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[Step] = []
        self.stop_reason = ""
        self._index = -1
        self._rate = 0.0
        self._users = 0
        self._window: Mark | None = None
        self._source: reconcile.Source | None = None

    def reset_time(self) -> None:
        super().reset_time()
        self.steps, self.stop_reason, self._index, self._window = [], "", -1, None

    def _opts(self) -> Any:
        assert self.runner is not None
        return self.runner.environment.parsed_options

    def _mark(self) -> Mark:
        assert self.runner is not None
        total = self.runner.stats.total
        proxy = None
        if self._source is not None:
            with contextlib.suppress(OSError, ValueError):  # the table then shows "-" for the proxy's side
                proxy = self._source.snapshot()
        return Mark(
            time.monotonic(), total.num_requests, total.num_failures, dict(total.response_times), proxy
        )

    def tick(self) -> tuple[int, float] | None:
        o = self._opts()
        if self._source is None:
            assert self.runner is not None
            host = self.runner.environment.host or ""
            self._source = reconcile.Source.from_options(host, o.metrics_urls, o.admin_token, o.admin_url)
        t = self.get_run_time()
        index = int(t // o.capacity_step_time)
        if index != self._index:
            if self._index >= 0 and self._close_step():
                return None
            self._index = index
            self._rate = o.capacity_start + index * o.capacity_step
            if self._rate > o.capacity_max:
                self.stop_reason = f"reached --capacity-max ({o.capacity_max:g} requests/s)"
                return None
            self._users = max(1, math.ceil(self._rate / o.user_rate))
            self._window = None
        if self._window is None and t - index * o.capacity_step_time >= o.capacity_settle:
            self._window = self._mark()
        return self._users, float(self._users)

    def _close_step(self) -> bool:
        """Measure the step that just ended; True if it failed (the test stops)."""
        o = self._opts()
        start = self._window
        if start is None:
            return False
        end = self._mark()
        dt = end.at - start.at
        n = end.requests - start.requests
        failed = end.failures - start.failures
        times = diff_response_time_dicts(end.response_times, start.response_times)
        achieved = n / dt if dt > 0 else 0.0
        failures_pct = 100 * failed / n if n else 0.0
        p50 = calculate_response_time_percentile(times, n, 0.5) if n else 0
        p99 = calculate_response_time_percentile(times, n, 0.99) if n else 0
        ev = cores = per_core = proxy_p99 = None
        if start.proxy is not None and end.proxy is not None:
            ev = (sum(end.proxy.received.values()) - sum(start.proxy.received.values())) / dt
            if start.proxy.cpu is not None and end.proxy.cpu is not None:
                cores = (end.proxy.cpu - start.proxy.cpu) / dt
                per_core = ev / cores if cores > 0 else None
            q = reconcile.latency_quantile(start.proxy, end.proxy, 0.99)
            proxy_p99 = None if q is None else q * 1000
        problems = []
        if failures_pct > o.capacity_max_failures:
            problems.append(f"failures {failures_pct:.2f}% > {o.capacity_max_failures:g}%")
        if p99 > o.capacity_p99_ms:
            problems.append(f"p99 {p99} ms > {o.capacity_p99_ms:g} ms")
        if achieved < MIN_ACHIEVED * self._rate:
            problems.append(f"achieved {achieved:,.0f} of {self._rate:,.0f} requests/s")
        verdict = "; ".join(problems) or "ok"
        self.steps.append(
            Step(
                self._rate,
                self._users,
                achieved,
                ev,
                failures_pct,
                p50,
                p99,
                proxy_p99,
                cores,
                per_core,
                verdict,
            )
        )
        if problems:
            self.stop_reason = f"the step at {self._rate:,.0f} requests/s failed: {verdict}"
        return bool(problems)

    def report(self, generator_cpu_bound: bool) -> str:
        o = self._opts()
        lines = [
            f"Capacity: steps of {o.capacity_step_time:g} s (the first {o.capacity_settle:g} s of each not "
            f"measured), limits p99 {o.capacity_p99_ms:g} ms and failures {o.capacity_max_failures:g}%, "
            f"{o.user_rate:g} requests/s per user",
            HEADER,
            *(s.row() for s in self.steps),
            f"stopped: {self.stop_reason or 'before the first step ended'}",
        ]
        good = [s for s in self.steps if s.verdict == "ok"]
        if good:
            best = max(good, key=lambda s: s.achieved)
            extra = f", {best.events:,.0f} events/s" if best.events is not None else ""
            cores = f", using {best.cores:.2f} cores of the proxy" if best.cores is not None else ""
            lines.append(
                f"capacity: {best.achieved:,.0f} requests/s{extra} sustained within the limits{cores}"
            )
        else:
            lines.append("capacity: no step stayed within the limits")
        if generator_cpu_bound:
            lines.append(
                "WARNING: Locust used over 90% of a CPU: the load generator, not the proxy, may have been "
                "the limit; add Locust workers (WORKERS=N) on other cores or machines"
            )
        return "\n".join(lines)

    def save(self, prefix: Path, text: str) -> None:
        prefix.parent.mkdir(parents=True, exist_ok=True)
        Path(f"{prefix}_capacity.txt").write_text(text + "\n")
        with Path(f"{prefix}_capacity.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow([fl.name for fl in fields(Step)])
            w.writerows(astuple(s) for s in self.steps)


@events.test_stop.add_listener
def on_test_stop(environment: Environment, **_: Any) -> None:
    shape = environment.shape_class
    runner = environment.runner
    if not isinstance(shape, CapacityShape) or runner is None or environment.parsed_options is None:
        return
    if isinstance(runner, MasterRunner):
        cpu_bound = runner.worker_cpu_warning_emitted or runner.cpu_warning_emitted
    else:
        cpu_bound = runner.cpu_warning_emitted
    text = shape.report(cpu_bound)
    print(text, flush=True)
    prefix = Path(environment.parsed_options.results_prefix)
    shape.save(prefix, text)
    print(f"capacity table written to {prefix}_capacity.txt and .csv", flush=True)
