"""State replicas share through the store (sinks/shared_state.py, proxy/replicas.py), against the real
engine (embedded chDB): first writer wins for salts and fingerprints, salts are deleted the next day,
heartbeats tell live replicas from quiet ones."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from config.settings import ClickhouseSettings, load_settings
from proxy.keys import SALT_BYTES, DailySalt, unwrap_salt, wrap_salt
from proxy.replicas import Replicas, SecretMismatch, check_secrets, pin_secrets
from sinks.clickhouse import ClickHouseSink
from sinks.shared_state import ReplicaState, SharedState

SECRET = b"s" * 32
# Today, really: a salt table's TTL drops rows of days long gone as they are written.
DAY = datetime.now(UTC).date()


def at(hour: int, minute: int = 0, days: int = 0) -> datetime:
    return datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=UTC) + timedelta(days=days)


@pytest.fixture
def state(chdb_dsn: str, database: str) -> Iterator[SharedState]:
    sink = ClickHouseSink(chdb_dsn, ClickhouseSettings(database=database))
    sink.start()
    yield SharedState(sink)
    sink.close()


def test_the_first_salt_offered_for_a_day_is_everybodys(
    state: SharedState, ch: Client, database: str
) -> None:
    first, second = os.urandom(SALT_BYTES), os.urandom(SALT_BYTES)
    won = state.salt(DAY, wrap_salt(SECRET, DAY, first))
    assert won is not None and unwrap_salt(SECRET, DAY, won) == first
    again = state.salt(DAY, wrap_salt(SECRET, DAY, second))  # a second replica's candidate
    assert again == won
    assert ch.command(f"SELECT count() FROM {database}.salts") == 1
    stored = ch.command(f"SELECT salt FROM {database}.salts")
    assert first.hex() not in str(stored), "the store keeps the salt wrapped"


def test_old_salts_are_deleted_and_a_deleted_day_is_not_drawn_again(
    state: SharedState, ch: Client, database: str
) -> None:
    for day in (DAY - timedelta(days=1), DAY):
        assert state.salt(day, wrap_salt(SECRET, day, os.urandom(SALT_BYTES))) is not None
    assert state.purge_salts(DAY) == 1
    days = ch.query(f"SELECT day FROM {database}.salts").result_rows
    assert days == [(DAY,)]
    # a replica whose clock lags asks for yesterday again: nothing comes back (it is gone for good)
    assert state.salt(DAY - timedelta(days=1), wrap_salt(SECRET, DAY, os.urandom(SALT_BYTES))) is None


def test_replicas_sync_the_days_salt_through_the_store(state: SharedState, tmp_path: Path) -> None:
    settings = load_settings(environ={}, data_dir=str(tmp_path))
    one, two = Replicas(settings, SECRET, b"t" * 20), Replicas(settings, SECRET, b"t" * 20)
    salts = [DailySalt(tmp_path / "a"), DailySalt(tmp_path / "b")]
    morning = at(9)
    one.sync_salts(salts[0], state, morning)
    two.sync_salts(salts[1], state, morning)
    assert salts[0].current(morning) == salts[1].current(morning)
    assert not salts[0].has(DAY + timedelta(days=1)), "before noon: only today's"
    afternoon = at(14)
    one.sync_salts(salts[0], state, afternoon)
    two.sync_salts(salts[1], state, afternoon)
    tomorrow = afternoon + timedelta(days=1)
    assert salts[0].read(tomorrow.date()) == salts[1].read(tomorrow.date()) is not None
    # the next day, after the grace: yesterday's salt is gone from the store and from the caches
    one.sync_salts(salts[0], state, at(0, 10, days=1))
    assert salts[0].read(DAY) is None
    assert state.salt(DAY, wrap_salt(SECRET, DAY, os.urandom(SALT_BYTES))) is None


def test_a_provisional_salt_offered_first_becomes_everybodys(state: SharedState, tmp_path: Path) -> None:
    settings = load_settings(environ={}, data_dir=str(tmp_path))
    now = at(9)
    cut_off = DailySalt(tmp_path / "a", provisional=True)
    provisional = cut_off.current(now)  # drawn while the store was out of reach
    Replicas(settings, SECRET, b"t" * 20).sync_salts(cut_off, state, now)
    assert cut_off.current(now) == provisional
    late = DailySalt(tmp_path / "b", provisional=True)
    late_provisional = late.current(now)
    Replicas(settings, SECRET, b"t" * 20).sync_salts(late, state, now)
    assert late.current(now) == provisional != late_provisional


def test_fingerprints_first_writer_wins_then_a_mismatch_is_named(state: SharedState) -> None:
    wanted = {"pseudonym_secret": "a" * 32, "admin_token": "b" * 32}
    check_secrets(state, wanted)
    check_secrets(state, wanted)  # the same again: fine
    with pytest.raises(SecretMismatch) as caught:
        check_secrets(state, {**wanted, "admin_token": "c" * 32})
    assert "admin_token" in str(caught.value) and "c" * 32 not in str(caught.value)
    assert pin_secrets(state, {**wanted, "admin_token": "c" * 32}) == ["admin_token"]
    check_secrets(state, {**wanted, "admin_token": "c" * 32})  # a deliberate change, pinned
    assert state.fingerprints()["admin_token"] == ("c" * 32, 2)


def test_heartbeats_tell_live_replicas_and_what_they_hold(state: SharedState, tmp_path: Path) -> None:
    settings = load_settings(
        environ={},
        data_dir=str(tmp_path),
        server={"replica_heartbeat_seconds": 0.5},
        clickhouse={"dsn": "http://store.example:8123"},  # a remote store: other replicas may be there
    )
    me = Replicas(settings, SECRET, b"t" * 20)
    now = datetime.now(UTC)
    old = now - timedelta(minutes=5)
    state.heartbeat(ReplicaState("quiet-crashed", "h1", old, 0, 0, 0.0), old)
    state.heartbeat(ReplicaState("quiet-stopped", "h1", old, 0, 0, 0.0, stopped=True), old)
    state.heartbeat(ReplicaState("busy", "h2", now, 3, 100, 1.5), now)
    me.heartbeat("main", state, {"spool_segments": 0, "spool_bytes": 0, "oldest_spooled_seconds": 0.0})
    summary = me.summary()
    assert summary["live_replicas"] == 2  # busy and this one
    assert summary["config_mixed"] is True and "h2" in summary["config_hashes"]
    assert me.pending_elsewhere(state) == ["busy", "quiet-crashed"]
