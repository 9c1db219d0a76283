"""A deleted subject's late events stay out of the store (sinks/request_filter.py): every shipper screens
each segment against the deletions recorded in its store, just before the insert."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from config.settings import ClickhouseSettings
from proxy.model import Event
from sinks.clickhouse import ClickHouseSink
from sinks.codec import encode_event
from sinks.request_filter import RequestFilter
from sinks.shipper import Shipper
from sinks.spool import SpoolReader, SpoolWriter
from sinks.subject_store import SubjectRequest, SubjectStore

NOW = datetime.now(UTC)
GONE, KEPT = "a" * 32, "b" * 32


def event(
    site: str = "demo", ts: datetime = NOW, client_id: str | None = None, user_id: str | None = None
) -> Event:
    return Event(
        site=site,
        type="pageview",
        name="pageview",
        ts=ts,
        event_id=uuid.uuid4(),
        url="https://example.com/",
        client_id=client_id,
        user_id=user_id,
    )


@pytest.fixture
def store(chdb_dsn: str, database: str) -> Iterator[SubjectStore]:
    sink = ClickHouseSink(chdb_dsn, ClickhouseSettings(database=database))
    sink.start()
    yield SubjectStore(sink)
    sink.close()


def test_the_subjects_events_up_to_the_cutoff_are_withheld(store: SubjectStore) -> None:
    screen = RequestFilter(store, shared=False)
    screen.add([SubjectRequest("demo", "client_id", GONE, NOW)])
    records = [
        encode_event(event(client_id=GONE, ts=NOW - timedelta(hours=3))),  # before: withheld
        encode_event(event(client_id=GONE, ts=NOW)),  # at the cutoff: withheld
        encode_event(event(client_id=GONE, ts=NOW + timedelta(seconds=1))),  # after: a new event, kept
        encode_event(event(client_id=KEPT, ts=NOW - timedelta(hours=3))),  # another subject
        encode_event(event(site="shop", client_id=GONE, ts=NOW)),  # another site's subject
        encode_event(event(user_id=GONE, ts=NOW)),  # the same value as another kind of id
        b"\x01not json",  # not an event: left to the shipper, which counts it
    ]
    kept, withheld = screen.screen(records)
    assert withheld == 2 and kept == records[2:]
    assert screen.withheld == 2


def test_a_user_id_request_screens_user_ids(store: SubjectStore) -> None:
    screen = RequestFilter(store, shared=False)
    screen.add([SubjectRequest("demo", "user_id", GONE, NOW)])
    kept, withheld = screen.screen([encode_event(event(user_id=GONE)), encode_event(event(client_id=GONE))])
    assert withheld == 1 and len(kept) == 1


def test_nothing_recorded_passes_everything_untouched(store: SubjectStore) -> None:
    screen = RequestFilter(store, shared=True)
    screen.refresh()
    records = [encode_event(event(client_id=GONE))]
    assert screen.screen(records) == (records, 0)


def test_a_request_another_replica_records_applies_from_the_next_refresh(store: SubjectStore) -> None:
    """On a shared store the records are read again before each insert: what another replica recorded
    applies at once (a count first, everything only when it changed)."""
    here = RequestFilter(store, shared=True, full_reload_seconds=3600)
    here.refresh()
    assert len(here) == 0
    elsewhere = SubjectStore(store.sink)
    elsewhere.record_request("delete", "demo", "client_id", [GONE, "c" * 32], NOW)
    here.refresh()
    assert len(here) == 2
    assert here.screen([encode_event(event(client_id=GONE, ts=NOW - timedelta(minutes=1)))])[1] == 1


def test_an_embedded_store_is_read_once_and_told_the_rest(store: SubjectStore) -> None:
    here = RequestFilter(store, shared=False)
    here.refresh()
    store.record_request("delete", "demo", "client_id", [GONE], NOW)
    here.refresh()
    assert len(here) == 0, "no re-read: this process records them and adds them itself"


def test_the_shipper_stores_what_the_screen_keeps(
    store: SubjectStore, tmp_path: Path, ch: Client, database: str
) -> None:
    spool = tmp_path / "spool"
    writer = SpoolWriter(spool, writer="w", max_bytes=1 << 20, segment_max_age=60)
    writer.start()
    writer.append(
        [
            encode_event(event(client_id=GONE, ts=NOW - timedelta(minutes=5))),
            encode_event(event(client_id=KEPT)),
        ]
    ).result(5)
    writer.flush(5)
    writer.close()
    store.record_request("withdraw", "demo", "client_id", [GONE], NOW)
    screen = RequestFilter(store, shared=True)
    shipper = Shipper(
        store.sink, SpoolReader(spool), retention_seconds=3600, poll_interval=0.01, requests=screen
    )
    shipper.start()
    try:
        assert shipper.wait_idle(30)
    finally:
        shipper.stop(5)
    rows = ch.query(f"SELECT client_id FROM {database}.events").result_rows
    assert rows == [(KEPT,)]
    assert shipper.stats.withheld_rows == 1 and shipper.stats.rows == 1
