"""Did the proxy count and store what a load test saw it acknowledge? Used by ``locustfile.py``.

What the load test counts (``Tally``), per endpoint: requests answered as expected and the events they
carried, the ``accepted``/``dropped`` counts of ``/v1/events`` answers, requests answered otherwise and
requests never answered. What the proxy counts (``/metrics``, summed over every replica named), before
the run and after it has shipped: ``beacon_events_received{endpoint}``, ``beacon_events_accepted``,
``beacon_events_dropped{reason}``, ``beacon_events_shipped``; and, with an admin token, the rows in
``events`` (``POST /admin/query``). The checks, each exact:

1. per endpoint, events in acknowledged requests = the proxy's received delta;
2. received = accepted + dropped (every event received is accepted or dropped, and counted once);
3. the /v1/events answers' accepted and dropped are within the proxy's deltas; the rest of them is what
   the endpoints that answer without counts (pixel, other trackers' formats) accepted and dropped;
4. shipped delta = accepted delta, once the spool has drained (the proxy's own word that it stored them);
5. stored rows delta = accepted delta (the store's word), when an admin token is given.

Other traffic reaching the proxy during the run makes the deltas larger than what this run sent: the
result then says so instead of agreeing. Requests without an answer (timeouts, users stopped
mid-request) or answered with an error make an exact comparison impossible: the result says
``cannot tell`` and lists them.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prometheus_client.parser import text_string_to_metric_families

AGREE = "AGREE"
DISAGREE = "DISAGREE"
CANNOT_TELL = "CANNOT TELL"
IDLE_SECONDS = 1.5  # shipped unchanged this long and no sealed segment: the proxy has caught up
START_WAIT_SECONDS = 15.0


@dataclass
class Tally:
    """What one load-generating process saw, by the proxy's endpoint label."""

    requests: Counter[str] = field(default_factory=Counter)  # answered as expected, with events
    events: Counter[str] = field(default_factory=Counter)  # events in those requests
    answered_accepted: int = 0  # /v1/events answers: "accepted"
    answered_dropped: int = 0  # /v1/events answers: "dropped"
    rejected_as_expected: Counter[str] = field(default_factory=Counter)  # e.g. malformed bodies, 400
    refused: Counter[str] = field(default_factory=Counter)  # "endpoint status": unexpected answers
    refused_events: Counter[str] = field(default_factory=Counter)
    unanswered: Counter[str] = field(default_factory=Counter)
    unanswered_events: Counter[str] = field(default_factory=Counter)

    def reset(self) -> None:
        for name, value in vars(Tally()).items():
            setattr(self, name, value)

    def record_ack(self, endpoint: str, events: int, counts: tuple[int, int] | None = None) -> None:
        self.requests[endpoint] += 1
        self.events[endpoint] += events
        if counts is not None:
            self.answered_accepted += counts[0]
            self.answered_dropped += counts[1]

    def record_expected_rejection(self, endpoint: str) -> None:
        self.rejected_as_expected[endpoint] += 1

    def record_refused(self, endpoint: str, events: int, status: int) -> None:
        self.refused[f"{endpoint} {status}"] += 1
        self.refused_events[endpoint] += events

    def record_unanswered(self, endpoint: str, events: int) -> None:
        self.unanswered[endpoint] += 1
        self.unanswered_events[endpoint] += events

    def to_dict(self) -> dict[str, Any]:
        return {k: dict(v) if isinstance(v, Counter) else v for k, v in vars(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tally:
        t = cls()
        for name, value in data.items():
            setattr(t, name, Counter(value) if isinstance(getattr(t, name), Counter) else value)
        return t

    def add(self, other: Tally) -> None:
        for name, value in vars(other).items():
            mine = getattr(self, name)
            if isinstance(mine, Counter):
                mine.update(value)
            else:
                setattr(self, name, mine + value)


@dataclass
class Snapshot:
    """The proxy's counters, summed over the replicas scraped."""

    received: Counter[str] = field(default_factory=Counter)  # by endpoint
    accepted: float = 0
    dropped: Counter[str] = field(default_factory=Counter)  # by reason
    shipped: float = 0
    segments: float = 0  # sealed spool segments waiting
    rows: int | None = None  # rows in the store's events table (admin token only)
    cpu: float | None = None  # beacon_cpu_seconds_total: the proxy's CPU time, workers included
    latency: Counter[float] = field(default_factory=Counter)  # beacon_request_seconds: le -> cumulative
    at: float = 0.0

    @classmethod
    def parse(cls, texts: list[str]) -> Snapshot:
        s = cls(at=time.monotonic())
        for text in texts:
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    name, labels, value = sample.name, sample.labels, sample.value
                    if name == "beacon_events_received_total":
                        s.received[labels["endpoint"]] += int(value)
                    elif name == "beacon_events_accepted_total":
                        s.accepted += value
                    elif name == "beacon_events_dropped_total":
                        s.dropped[labels["reason"]] += int(value)
                    elif name == "beacon_events_shipped_total":
                        s.shipped += value
                    elif name == "beacon_spool_segments":
                        s.segments += value
                    elif name == "beacon_cpu_seconds_total":
                        s.cpu = (s.cpu or 0.0) + value
                    elif name == "beacon_request_seconds_bucket":
                        s.latency[float(labels["le"])] += value
        return s


def latency_quantile(before: Snapshot, after: Snapshot, q: float) -> float | None:
    """The proxy's own request latency quantile between two snapshots, as the upper bound of the
    histogram bucket it falls in (seconds); None without requests."""
    bounds = sorted(after.latency)
    counts = [after.latency[b] - before.latency[b] for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    for bound, n in zip(bounds, counts, strict=True):
        if n >= q * counts[-1]:
            return bound
    return bounds[-1]


@dataclass
class Source:
    """Where the proxy's own counts are read: every replica's /metrics, and the store's admin query."""

    metrics_urls: list[str]
    admin_url: str  # the proxy's admin listener: "unix:/path/admin.sock" or a loopback http:// URL
    admin_token: str

    @classmethod
    def from_options(cls, host: str, metrics_urls: str, admin_token: str, admin_url: str = "") -> Source:
        base = host.rstrip("/")
        urls = [u.strip() for u in metrics_urls.split(",") if u.strip()] or [f"{base}/metrics"]
        return cls(urls, admin_url, admin_token)

    def _get(self, url: str) -> str:
        headers = {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
            text: str = r.read().decode()
            return text

    def snapshot(self, with_rows: bool = False) -> Snapshot:
        s = Snapshot.parse([self._get(url) for url in self.metrics_urls])
        if with_rows and self.admin_token and self.admin_url:
            s.rows = self.count_rows()
        return s

    def count_rows(self) -> int:
        """``POST /admin/query`` on the admin listener (admin is never on the public port)."""
        import httpx

        if self.admin_url.startswith("unix:"):
            transport, base = httpx.HTTPTransport(uds=self.admin_url.removeprefix("unix:")), "http://admin"
        else:
            transport, base = httpx.HTTPTransport(), self.admin_url
        with httpx.Client(transport=transport, base_url=base, timeout=60) as client:
            r = client.post(
                "/admin/query",
                content=b"SELECT count() AS n FROM events",
                headers={"Authorization": f"Bearer {self.admin_token}"},
            )
        r.raise_for_status()
        return int(json.loads(r.content.splitlines()[0])["n"])

    def describe(self) -> str:
        return ", ".join(_no_userinfo(u) for u in self.metrics_urls)


def _no_userinfo(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def wait_idle(source: Source, timeout: float, until_shipped: float | None = None) -> tuple[Snapshot, bool]:
    """Scrape until no sealed segment waits and ``shipped`` has not moved for IDLE_SECONDS (and, if
    given, reached ``until_shipped``); returns the last snapshot and whether that happened in time."""
    deadline = time.monotonic() + timeout
    last = source.snapshot()
    still_since = last.at
    while True:
        caught_up = until_shipped is None or last.shipped >= until_shipped
        if caught_up and last.segments == 0 and last.at - still_since >= IDLE_SECONDS:
            return last, True
        if time.monotonic() > deadline:
            return last, False
        time.sleep(0.3)
        now = source.snapshot()
        if now.shipped != last.shipped or now.segments:
            still_since = now.at
        last = now


@dataclass
class Before:
    snapshot: Snapshot | None
    idle: bool
    error: str = ""


def take_before(source: Source, wait: float = START_WAIT_SECONDS) -> Before:
    """The counters at the start, once the proxy has shipped what it had (a previous run's events),
    waiting at most ``wait`` seconds for that."""
    try:
        snap, idle = wait_idle(source, wait)
        if source.admin_token:
            snap.rows = source.count_rows()
        return Before(snap, idle)
    except (OSError, ValueError, KeyError) as exc:  # URLError is an OSError
        return Before(None, False, _reason(exc))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} from the proxy"
    return f"{type(exc).__name__}: {exc}"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Result:
    verdict: str
    checks: list[Check]
    notes: list[str]
    table: list[tuple[str, int, int, int]]  # endpoint, requests, events sent, proxy received
    tally: dict[str, Any]
    deltas: dict[str, Any]
    source: str
    workers: int = 0
    user_agents: str = ""

    def text(self) -> str:
        lines = [f"Reconciliation with the proxy's own counters ({self.source}), before and after the run"]
        if self.table:
            lines.append(
                f"  {'endpoint':<10} {'2xx requests':>13} {'events sent':>12} {'proxy received':>15}"
            )
            for endpoint, requests, sent, received in self.table:
                mark = "" if sent == received else "   <- differs"
                lines.append(f"  {endpoint:<10} {requests:>13,} {sent:>12,} {received:>15,}{mark}")
        for c in self.checks:
            lines.append(f"  [{'ok' if c.ok else 'NO'}] {c.name}: {c.detail}")
        lines += [f"  note: {n}" for n in self.notes]
        if self.workers:
            lines.append(f"  counts from {self.workers} Locust worker(s)")
        lines.append(f"RESULT: {self.verdict}")
        return "\n".join(lines)

    def save(self, prefix: Path) -> None:
        prefix.parent.mkdir(parents=True, exist_ok=True)
        Path(f"{prefix}_reconcile.txt").write_text(self.text() + "\n")
        doc = asdict(self)
        Path(f"{prefix}_reconcile.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")


def compare(tally: Tally, before: Snapshot, after: Snapshot, shipped_in_time: bool) -> Result:
    """The checks above, on counts already taken. Pure: the tests feed it made-up numbers."""
    checks: list[Check] = []
    notes: list[str] = []
    received = {e: after.received[e] - before.received[e] for e in set(after.received) | set(before.received)}
    accepted = int(after.accepted - before.accepted)
    dropped = {r: after.dropped[r] - before.dropped[r] for r in after.dropped}
    dropped_total = sum(dropped.values())
    shipped = int(after.shipped - before.shipped)
    endpoints = sorted(set(tally.events) | {e for e, n in received.items() if n})
    table = [(e, tally.requests[e], tally.events[e], received.get(e, 0)) for e in endpoints]
    sent_total = sum(tally.events.values())
    received_total = sum(received.values())

    more = {
        e: received.get(e, 0) - tally.events[e] for e in endpoints if received.get(e, 0) > tally.events[e]
    }
    fewer = {
        e: tally.events[e] - received.get(e, 0) for e in endpoints if received.get(e, 0) < tally.events[e]
    }
    if not more and not fewer:
        detail = f"{sent_total:,} events on {len(endpoints)} endpoints"
    else:
        parts = [f"{e} +{n:,}" for e, n in more.items()] + [f"{e} -{n:,}" for e, n in fewer.items()]
        detail = "the proxy counted " + ", ".join(parts) + " events against what this run sent"
    checks.append(Check("events sent = received, per endpoint", not more and not fewer, detail))
    if more:
        notes.append(
            "the proxy received events this run did not send (or did not see acknowledged): other traffic "
            "reached it during the run, or requests cut off at the end were still processed; the deltas "
            "cannot be compared exactly while anything else sends to it"
        )

    checks.append(
        Check(
            "received = accepted + dropped",
            received_total == accepted + dropped_total,
            f"{received_total:,} received; {accepted:,} accepted + {dropped_total:,} dropped"
            + (f" ({_reasons(dropped)})" if dropped_total else ""),
        )
    )

    other_accepted = accepted - tally.answered_accepted
    other_dropped = dropped_total - tally.answered_dropped
    others = sent_total - tally.events["events"]
    within = other_accepted >= 0 and other_dropped >= 0
    detail = (
        f"/v1/events answered {tally.answered_accepted:,} accepted, {tally.answered_dropped:,} dropped"
        + (
            f"; so the {others:,} events of endpoints that answer without counts: "
            f"{other_accepted:,} accepted, {other_dropped:,} dropped"
            if within and others
            else ""
        )
    )
    checks.append(Check("answers' counts within the proxy's", within, detail))

    checks.append(
        Check(
            "shipped = accepted",
            shipped == accepted,
            f"{shipped:,} shipped to the store"
            + ("" if shipped_in_time else " (the spool had not drained before the timeout)"),
        )
    )
    if before.rows is not None and after.rows is not None:
        rows = after.rows - before.rows
        checks.append(Check("rows stored = accepted", rows == accepted, f"{rows:,} new rows in events"))
    else:
        notes.append("rows in the store not counted (no admin token given)")

    refused = sum(tally.refused.values())
    unanswered = sum(tally.unanswered.values())
    if refused:
        notes.append(f"{refused:,} requests answered unexpectedly: {_reasons(tally.refused)}")
    if unanswered:
        lost = sum(tally.unanswered_events.values())
        taken = (
            "the counts match without them, so the proxy did not take them"
            if all(c.ok for c in checks)
            else "the proxy may or may not have taken them"
        )
        notes.append(f"{unanswered:,} requests without an answer ({lost:,} events): {taken}")
    if sent_total == 0:
        notes.append("this run had no event acknowledged")
    if all(c.ok for c in checks) and sent_total:
        verdict = AGREE
    elif refused or unanswered:
        verdict = CANNOT_TELL
    else:
        verdict = DISAGREE
    deltas = {
        "received": received,
        "accepted": accepted,
        "dropped": dropped,
        "shipped": shipped,
        "rows": None if before.rows is None or after.rows is None else after.rows - before.rows,
    }
    return Result(verdict, checks, notes, table, tally.to_dict(), deltas, "")


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()) if v)


def reconcile(source: Source, before: Before, tally: Tally, timeout: float) -> Result:
    """Wait for the proxy to ship what it accepted, take the counters again and compare."""
    if before.snapshot is None:
        return Result(
            CANNOT_TELL,
            [],
            [f"no counters at the start: {before.error}"],
            [],
            tally.to_dict(),
            {},
            source.describe(),
        )
    try:
        accepted_now = source.snapshot().accepted
        target = before.snapshot.shipped + (accepted_now - before.snapshot.accepted)
        after, in_time = wait_idle(source, timeout, until_shipped=target)
        if source.admin_token:
            after.rows = source.count_rows()
    except (OSError, ValueError, KeyError) as exc:
        return Result(
            CANNOT_TELL,
            [],
            [f"no counters at the end: {_reason(exc)}"],
            [],
            tally.to_dict(),
            {},
            source.describe(),
        )
    result = compare(tally, before.snapshot, after, in_time)
    result.source = source.describe()
    if not before.idle:
        result.notes.append("the proxy was still shipping earlier events when the run started")
    return result
