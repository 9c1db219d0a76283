"""Counters kept in process, and their Prometheus exposition at ``/metrics``.

Counting on the hot path is plain integer arithmetic on these objects; the Prometheus collector reads
them only when scraped. Labels are closed sets (endpoint, configured site id or "unknown", drop reason,
step name, HTTP status); no IP, identifier, User-Agent or URL is ever a label.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from proxy.model import DropReason, Event

log = logging.getLogger(__name__)

# Why valid events were refused (503): the spool at its size limit, free disk below the reserve, a failed
# write (e.g. the disk filled up under it), or the spool writer down (being restarted).
REFUSAL_REASONS = ("spool_full", "disk_reserve", "write_failed", "spool_down")
# Why an event's client clock was not used: no usable time at all, or a time outside the trusted window.
CLOCK_REASONS = ("unusable", "too_old", "in_future")


class LatencyHistogram:
    """Cumulative-bucket histogram of seconds, cheap to observe from one thread."""

    BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

    def __init__(self) -> None:
        self.counts = [0] * (len(self.BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.BUCKETS, seconds)] += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        out, total = [], 0
        for bound, n in zip([*map(str, self.BUCKETS), "+Inf"], self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


class RequestHistogram(LatencyHistogram):
    """Time to answer one ingestion request: finer buckets, as an idle proxy answers in well under a
    millisecond and the alerting threshold is tens of milliseconds."""

    BUCKETS: tuple[float, ...] = (
        0.0005,
        0.001,
        0.0025,
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1.0,
        2.5,
        5.0,
        10.0,
    )


@dataclass
class Metrics:
    received: Counter[str] = field(default_factory=Counter)  # requests, by endpoint
    received_events: Counter[tuple[str, str]] = field(default_factory=Counter)  # (endpoint, site)
    accepted: int = 0
    accepted_by_site: Counter[str] = field(default_factory=Counter)
    dropped: Counter[DropReason] = field(default_factory=Counter)
    rejected_requests: Counter[int] = field(default_factory=Counter)  # by HTTP status
    # Valid events the spool could not take (answered 503, never acknowledged), by reason.
    refused: Counter[str] = field(default_factory=Counter)
    # Events whose client clock was not used (the server's receive time was), by reason.
    clock_replaced: Counter[str] = field(default_factory=Counter)
    # Background jobs (proxy/background.py), refreshed from their states before each read: how many of
    # this process's (and, added up, every worker's) instances are down, and their failures so far.
    jobs_down: Counter[str] = field(default_factory=Counter)
    job_failures: Counter[str] = field(default_factory=Counter)
    step_ns: Counter[str] = field(default_factory=Counter)  # summed over sampled runs
    step_runs: Counter[str] = field(default_factory=Counter)
    # by endpoint (the same closed set as ``received``)
    request_seconds: defaultdict[str, RequestHistogram] = field(
        default_factory=lambda: defaultdict(RequestHistogram)
    )
    cpu_seconds: float = 0.0  # in a total (``with_snapshots``): the CPU time of every process counted

    def count_accepted(self, events: Sequence[Event]) -> None:
        self.accepted += len(events)
        for event in events:  # events are only accepted for configured sites
            self.accepted_by_site[event.site] += 1

    def to_json(self) -> bytes:
        """Every counter, for another process to add up (workers -> primary)."""
        return orjson.dumps(
            {
                "received": self.received,
                "received_events": [[e, s, n] for (e, s), n in self.received_events.items()],
                "accepted": self.accepted,
                "accepted_by_site": self.accepted_by_site,
                "dropped": {str(k): v for k, v in self.dropped.items()},
                "rejected_requests": {str(k): v for k, v in self.rejected_requests.items()},
                "refused": self.refused,
                "clock_replaced": self.clock_replaced,
                "jobs_down": self.jobs_down,
                "job_failures": self.job_failures,
                "step_ns": self.step_ns,
                "step_runs": self.step_runs,
                "request_seconds": {e: [h.counts, h.sum] for e, h in self.request_seconds.items()},
                "cpu_seconds": self.cpu_seconds + time.process_time(),  # this process, all its threads
            }
        )

    def add(self, data: bytes) -> None:
        """Add another process's counters (from ``to_json``); unreadable data is ignored."""
        try:
            d = orjson.loads(data)
            self.received.update(d["received"])
            self.received_events.update({(e, s): n for e, s, n in d["received_events"]})
            self.accepted += d["accepted"]
            self.accepted_by_site.update(d["accepted_by_site"])
            self.dropped.update({DropReason(k): v for k, v in d["dropped"].items()})
            self.rejected_requests.update({int(k): v for k, v in d["rejected_requests"].items()})
            self.refused.update(d.get("refused", {}))
            self.clock_replaced.update(d.get("clock_replaced", {}))
            self.jobs_down.update(d.get("jobs_down", {}))
            self.job_failures.update(d.get("job_failures", {}))
            self.step_ns.update(d["step_ns"])
            self.step_runs.update(d["step_runs"])
            for endpoint, (counts, total) in d.get("request_seconds", {}).items():
                h = self.request_seconds[endpoint]
                if len(counts) == len(h.counts):
                    h.counts = [a + b for a, b in zip(h.counts, counts, strict=True)]
                    h.sum += total
            self.cpu_seconds += d.get("cpu_seconds", 0.0)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("a worker's metrics snapshot is unreadable; skipped")

    def with_snapshots(self, directory: Path | None) -> Metrics:
        """A new total: these counters plus every worker's snapshot in ``directory`` (the primary adds
        them up), with the CPU time of each process counted."""
        total = Metrics()
        total.add(self.to_json())
        for path in sorted(directory.glob("*.json")) if directory is not None else ():
            with contextlib.suppress(FileNotFoundError):
                total.add(path.read_bytes())
        return total

    def snapshot(self) -> dict[str, object]:
        return {
            "received": dict(self.received),
            "accepted": self.accepted,
            "dropped": {str(k): v for k, v in self.dropped.items()},
            "rejected_requests": {str(k): v for k, v in self.rejected_requests.items()},
            "refused": dict(self.refused),
            "clock_replaced": dict(self.clock_replaced),
            "step_us_per_run": {
                name: round(self.step_ns[name] / runs / 1000, 3)
                for name, runs in self.step_runs.items()
                if runs
            },
        }


class RuntimeCollector(Collector):
    """Reads the proxy's counters, the shipper's stats and the spool's state at scrape time."""

    def __init__(
        self,
        counters: Callable[[], Metrics],
        shipper: Callable[[], Any],
        spool: Callable[[], dict[str, Any]],
        extra: Callable[[], Iterable[Metric]] | None = None,
    ) -> None:
        self.counters = counters  # the primary's include what its workers counted
        self.shipper = shipper
        self.spool = spool
        self.extra = extra  # more families, read at scrape time (stores, replicas: scale_out_metrics)

    def collect(self) -> Iterator[Metric]:
        m = self.counters()
        requests = CounterMetricFamily("beacon_requests", "Ingestion requests received", labels=["endpoint"])
        for endpoint, n in sorted(m.received.items()):
            requests.add_metric([endpoint], n)
        yield requests
        events = CounterMetricFamily(
            "beacon_events_received",
            "Events received (parsed), by endpoint and site",
            labels=["endpoint", "site"],
        )
        for (endpoint, site), n in sorted(m.received_events.items()):
            events.add_metric([endpoint, site], n)
        yield events
        accepted = CounterMetricFamily(
            "beacon_events_accepted", "Events accepted into the spool", labels=["site"]
        )
        for site, n in sorted(m.accepted_by_site.items()):
            accepted.add_metric([site], n)
        yield accepted
        dropped = CounterMetricFamily("beacon_events_dropped", "Events dropped, by reason", labels=["reason"])
        for reason in DropReason:
            dropped.add_metric([reason.value], m.dropped.get(reason, 0))
        yield dropped
        rejected = CounterMetricFamily(
            "beacon_requests_rejected", "Requests answered 4xx/5xx", labels=["status"]
        )
        for status, n in sorted(m.rejected_requests.items()):
            rejected.add_metric([str(status)], n)
        yield rejected
        yield _by_reason(
            "beacon_events_refused",
            "Valid events the spool could not take (answered 503, not acknowledged), by reason",
            REFUSAL_REASONS,
            m.refused,
        )
        yield _by_reason(
            "beacon_client_clock_replaced",
            "Events stored with the server's receive time instead of their ts, by reason",
            CLOCK_REASONS,
            m.clock_replaced,
        )
        up = GaugeMetricFamily(
            "beacon_background_up",
            "1 while every process's instance of this background job runs, 0 while one is down",
            labels=["name"],
        )
        failures = CounterMetricFamily(
            "beacon_background_failures",
            "Unexpected failures of a background job (each one restarted with backoff)",
            labels=["name"],
        )
        for job in sorted(m.job_failures.keys() | m.jobs_down.keys()):
            up.add_metric([job], 0 if m.jobs_down.get(job, 0) else 1)
            failures.add_metric([job], m.job_failures.get(job, 0))
        yield up
        yield failures
        steps = SummaryMetricFamily(
            "beacon_pipeline_step_seconds", "Time per pipeline step (sampled runs)", labels=["step"]
        )
        for step, runs in sorted(m.step_runs.items()):
            steps.add_metric([step], count_value=runs, sum_value=m.step_ns[step] / 1e9)
        yield steps
        latency = HistogramMetricFamily(
            "beacon_request_seconds", "Time to answer an ingestion request, by endpoint", labels=["endpoint"]
        )
        for endpoint, h in sorted(m.request_seconds.items()):
            latency.add_metric([endpoint], h.cumulative(), sum_value=h.sum)
        yield latency
        yield CounterMetricFamily(
            "beacon_cpu_seconds", "CPU time of the proxy's processes (workers included)", value=m.cpu_seconds
        )

        s = self.shipper()
        yield CounterMetricFamily("beacon_events_shipped", "Events inserted into the sink", value=s.rows)
        yield CounterMetricFamily("beacon_batches_shipped", "Inserts confirmed by the sink", value=s.batches)
        yield CounterMetricFamily("beacon_sink_errors", "Failed sink calls (retried)", value=s.errors)
        yield CounterMetricFamily(
            "beacon_spool_corrupt_records", "Torn or corrupt spool records skipped", value=s.corrupt_records
        )
        yield CounterMetricFamily(
            "beacon_spool_purged_segments", "Spooled segments deleted past retention", value=s.purged_segments
        )
        yield GaugeMetricFamily("beacon_sink_up", "1 once the sink is started", value=int(s.sink_started))
        inserts = HistogramMetricFamily("beacon_insert_seconds", "Latency of inserts into the sink")
        inserts.add_metric([], s.insert_latency.cumulative(), sum_value=s.insert_latency.sum)
        yield inserts

        spool = self.spool()
        yield GaugeMetricFamily("beacon_spool_bytes", "Bytes in the spool", value=spool["bytes_used"])
        yield GaugeMetricFamily(
            "beacon_spool_limit_bytes", "spool.max_bytes: from this size on, 503", value=spool["max_bytes"]
        )
        yield GaugeMetricFamily(
            "beacon_ready", "1 while the spool accepts events (what /readyz says)", value=int(spool["ready"])
        )
        yield GaugeMetricFamily("beacon_spool_segments", "Sealed segments waiting", value=spool["segments"])
        yield GaugeMetricFamily(
            "beacon_spool_oldest_seconds",
            "Age of the oldest sealed segment",
            value=spool["oldest_age_seconds"],
        )
        if self.extra is not None:
            yield from self.extra()


def scale_out_metrics(
    stores: Mapping[str, Mapping[str, Any]], replica: Mapping[str, Any]
) -> Iterator[Metric]:
    """Every store's spool and sink (labelled by store name, the main one included), and what this
    replica knows of the others: its configuration hash and, with a remote store, how many replicas are
    live and how many configurations they run (more than one: a rolling deploy, or one left behind)."""
    families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
        "up": GaugeMetricFamily("beacon_store_up", "1 once the store's sink is started", labels=["store"]),
        "bytes": GaugeMetricFamily(
            "beacon_store_spool_bytes", "Bytes in the store's spool", labels=["store"]
        ),
        "segments": GaugeMetricFamily(
            "beacon_store_spool_segments", "Segments in the store's spool not yet shipped", labels=["store"]
        ),
        "oldest": GaugeMetricFamily(
            "beacon_store_spool_oldest_seconds", "Age of the store's oldest sealed segment", labels=["store"]
        ),
        "accepting": GaugeMetricFamily(
            "beacon_store_accepting", "1 while the store's spool accepts events", labels=["store"]
        ),
        "withheld": CounterMetricFamily(
            "beacon_store_withheld_events",
            "Events not stored because their subject's data was deleted or withdrawn",
            labels=["store"],
        ),
    }
    for name, st in sorted(stores.items()):
        families["up"].add_metric([name], int(bool(st.get("sink_started", False))))
        families["bytes"].add_metric([name], st["spool_bytes"])
        families["segments"].add_metric([name], st["spool_segments"])
        families["oldest"].add_metric([name], st["oldest_spooled_seconds"])
        families["accepting"].add_metric([name], int(st["accepting"]))
        families["withheld"].add_metric([name], st.get("withheld_rows", 0))
    yield from families.values()
    info = GaugeMetricFamily(
        "beacon_config_info",
        "This replica's configuration hash (replicas should agree)",
        labels=["config_hash"],
    )
    info.add_metric([str(replica["config_hash"])], 1)
    yield info
    if "live_replicas" in replica:
        yield GaugeMetricFamily(
            "beacon_replicas_live",
            "Replicas heard from recently (their heartbeats in the store)",
            value=replica["live_replicas"],
        )
        yield GaugeMetricFamily(
            "beacon_config_hashes_live",
            "Distinct configuration hashes among the live replicas (over 1: mixed configuration)",
            value=len(replica["config_hashes"]),
        )
        yield GaugeMetricFamily(
            "beacon_secrets_match",
            "1 while this replica's secrets match the store's fingerprints",
            value=int(replica["secrets_match"]),
        )


def _by_reason(name: str, documentation: str, reasons: Sequence[str], counts: Counter[str]) -> Metric:
    """A counter over a closed set of reasons, every one present (0 until it happens)."""
    family = CounterMetricFamily(name, documentation, labels=["reason"])
    for reason in reasons:
        family.add_metric([reason], counts.get(reason, 0))
    return family
