"""benchmarks/reconcile.py: the comparison agrees only when every count matches, and says why not."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import reconcile
from reconcile import AGREE, CANNOT_TELL, DISAGREE, Snapshot, Tally, compare


def tally() -> Tally:
    t = Tally()
    t.record_ack("events", 10, (8, 2))  # a batch of 10: 8 accepted, 2 dropped (say, bots)
    t.record_ack("events", 1, (1, 0))
    t.record_ack("pixel", 1)
    t.record_ack("posthog", 2)
    t.record_expected_rejection("events")  # malformed: never counted by the proxy
    return t


def before() -> Snapshot:
    return Snapshot(Counter({"events": 100, "pixel": 5}), 90, Counter({"bot": 15}), 90, 0, 1000)


def after(**changes: object) -> Snapshot:
    s = Snapshot(Counter({"events": 111, "pixel": 6, "posthog": 2}), 102, Counter({"bot": 17}), 102, 0, 1012)
    for k, v in changes.items():
        setattr(s, k, v)
    return s


def test_every_count_matching_agrees() -> None:
    r = compare(tally(), before(), after(), shipped_in_time=True)
    assert r.verdict == AGREE, r.text()
    assert [c.ok for c in r.checks] == [True] * 5
    assert r.table == [("events", 2, 11, 11), ("pixel", 1, 1, 1), ("posthog", 1, 2, 2)]
    # the events of endpoints that answer without counts: 12 - 9 accepted, 2 - 2 dropped
    assert "the 3 events of endpoints that answer without counts: 3 accepted, 0 dropped" in r.text()


def test_other_traffic_is_named_not_agreed() -> None:
    s = after(
        received=Counter({"events": 112, "pixel": 6, "posthog": 2}), accepted=104, shipped=104, rows=1014
    )
    r = compare(tally(), before(), s, shipped_in_time=True)
    assert r.verdict == DISAGREE
    assert "events +1" in r.text() and "other traffic" in r.text()


def test_events_accepted_but_not_shipped_or_stored_disagree() -> None:
    r = compare(tally(), before(), after(shipped=101), shipped_in_time=False)
    assert r.verdict == DISAGREE and "spool had not drained" in r.text()
    r = compare(tally(), before(), after(rows=1011), shipped_in_time=True)
    assert r.verdict == DISAGREE and "[NO] rows stored = accepted" in r.text()


def test_a_received_event_neither_accepted_nor_dropped_disagrees() -> None:
    r = compare(tally(), before(), after(accepted=101, shipped=101, rows=1011), shipped_in_time=True)
    assert r.verdict == DISAGREE and "[NO] received = accepted + dropped" in r.text()


def test_answers_counting_more_than_the_proxy_disagree() -> None:
    t = tally()
    t.answered_accepted += 5  # the answers claim more accepted events than the proxy counted
    assert compare(t, before(), after(), shipped_in_time=True).verdict == DISAGREE


def test_requests_without_an_answer_make_it_impossible_to_tell() -> None:
    t = tally()
    t.record_unanswered("events", 1)
    s = after(
        received=Counter({"events": 112, "pixel": 6, "posthog": 2}), accepted=104, shipped=104, rows=1014
    )
    r = compare(t, before(), s, shipped_in_time=True)
    assert r.verdict == CANNOT_TELL and "1 requests without an answer" in r.text()


def test_without_rows_the_result_says_they_were_not_counted() -> None:
    r = compare(tally(), before(), after(rows=None), shipped_in_time=True)
    assert r.verdict == AGREE and len(r.checks) == 4 and "no admin token" in r.text()


def test_tallies_travel_from_workers_and_add_up() -> None:
    total = Tally()
    for _ in range(2):
        total.add(Tally.from_dict(tally().to_dict()))
    assert total.events == Counter({"events": 22, "pixel": 2, "posthog": 4})
    assert (total.answered_accepted, total.answered_dropped) == (18, 4)


def test_snapshots_add_up_replicas_and_read_the_latency_histogram() -> None:
    text = """
beacon_events_received_total{endpoint="events",site="demo"} 7
beacon_events_accepted_total{site="demo"} 6
beacon_events_dropped_total{reason="bot"} 1
beacon_events_shipped_total 6
beacon_spool_segments 0
beacon_cpu_seconds_total 1.5
beacon_request_seconds_bucket{endpoint="events",le="0.001"} 90
beacon_request_seconds_bucket{endpoint="events",le="0.01"} 99
beacon_request_seconds_bucket{endpoint="events",le="+Inf"} 100
"""
    s = Snapshot.parse([text, text])
    assert (s.received["events"], s.accepted, s.dropped["bot"], s.shipped, s.cpu) == (14, 12, 2, 12, 3.0)
    assert reconcile.latency_quantile(Snapshot(), s, 0.5) == 0.001
    assert reconcile.latency_quantile(Snapshot(), s, 0.99) == 0.01
    assert reconcile.latency_quantile(s, s, 0.99) is None
