"""Stores and their spools (proxy/stores.py): a site's data goes to its store only; segment names never
repeat, even in a cloned data directory; the store settings are checked at load."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from config.settings import MAIN_STORE, Settings, SettingsError, load_settings
from proxy.stores import Stores, build_store, spool_dir, writer_id
from sinks.spool import SpoolReader, SpoolWriter
from tests.support.serve import sealed_event

EU = {"dsn": "https://u:pw@eu.example:8443", "database": "beacon_eu"}


def with_stores(tmp_path: Path, **sites: str) -> Settings:
    return load_settings(
        environ={},
        data_dir=str(tmp_path),
        clickhouse={"stores": {"eu": EU}},
        sites={name: {"allowed_origins": ["*"], "store": store} for name, store in sites.items()},
    )


def test_each_site_goes_to_its_store(tmp_path: Path) -> None:
    settings = with_stores(tmp_path, demo="", shop="eu")
    stores = Stores(
        settings,
        {name: build_store(settings, name, None, writer="w") for name in (MAIN_STORE, "eu")},
    )
    assert stores.for_site("shop").name == "eu" and stores.for_site("demo").name == MAIN_STORE
    assert stores.for_site("unknown").name == MAIN_STORE
    assert settings.store_of("shop") == "eu"
    assert stores.for_site("shop").spool.directory == tmp_path / "stores" / "eu" / "spool"
    assert spool_dir(settings, MAIN_STORE) == tmp_path / "spool"
    assert stores.for_site("shop").spool.job_name == "spool_writer:eu"


@pytest.mark.parametrize(
    ("stores", "sites", "error"),
    [
        ({}, {"shop": {"store": "eu"}}, "no store 'eu'"),
        ({"main": EU}, {}, "not 'main'"),
        ({"EU": EU}, {}, "must be 1-32 of"),
        ({"eu": {"dsn": "chdb:///tmp/x"}}, {}, "http:// or https://"),
        ({"eu": {"dsn": "https://eu.example", "password": "x"}}, {}, "unknown setting"),
    ],
)
def test_store_settings_are_checked_at_load(
    tmp_path: Path, stores: dict[str, object], sites: dict[str, object], error: str
) -> None:
    with pytest.raises(SettingsError, match=error):
        load_settings(environ={}, data_dir=str(tmp_path), clickhouse={"stores": stores}, sites=sites)


def test_a_store_is_configured_from_the_environment_one_key_at_a_time(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "BEACONPROXY_CLICKHOUSE__STORES__EU__DSN": "https://u:pw@eu.example:8443",
            "BEACONPROXY_CLICKHOUSE__STORES__EU__DATABASE": "beacon_eu",
            "BEACONPROXY_SITES__SHOP__STORE": "eu",
        },
        data_dir=str(tmp_path),
    )
    assert settings.clickhouse.stores["eu"].database == "beacon_eu"
    assert settings.store_of("shop") == "eu"
    with pytest.raises(SettingsError, match="no key 'passwd' in a store"):
        load_settings(environ={"BEACONPROXY_CLICKHOUSE__STORES__EU__PASSWD": "x"}, data_dir=str(tmp_path))


def test_writer_ids_differ_at_every_start_in_one_process() -> None:
    ids = {writer_id() for _ in range(100)}
    assert len(ids) == 100
    pid = next(iter(ids)).split(".")[0]
    assert all(i.startswith(f"{pid}.") for i in ids)


def _tokens_after_clone(tmp_path: Path, make_id: Callable[[], str]) -> tuple[set[str], set[str]]:
    """Seal one segment in a spool, clone the spool directory, seal one more in each: their tokens."""
    original, clone = tmp_path / "a", tmp_path / "b"
    first = SpoolWriter(original, writer=make_id(), max_bytes=1 << 20)
    first.start()
    first.append([sealed_event(1)]).result(5)
    first.close()
    shutil.copytree(original, clone)
    for directory, seq in ((original, 2), (clone, 3)):
        writer = SpoolWriter(directory, writer=make_id(), max_bytes=1 << 20)
        writer.start()
        writer.append([sealed_event(seq)]).result(5)
        writer.close()

    def tokens(directory: Path) -> set[str]:
        reader = SpoolReader(directory)
        return {reader.token(name) for name in reader.sealed_segments()}

    return tokens(original), tokens(clone)


def test_a_cloned_spool_makes_new_tokens_of_its_own(tmp_path: Path) -> None:
    """Both copies hold the segment from before the clone (same token: stored once), and each copy's
    new segment has a token of its own, even when both processes have the same pid (containers)."""
    a, b = _tokens_after_clone(tmp_path, writer_id)
    assert len(a & b) == 1 and len(a | b) == 3


def test_without_the_random_part_a_clone_would_reuse_tokens(tmp_path: Path) -> None:
    """What the random part prevents: pid-only writer ids (pid 1 in two containers) make the clone's new
    segment the same token as the original's, and ClickHouse would drop one as a duplicate."""
    a, b = _tokens_after_clone(tmp_path, lambda: "1")
    assert a == b
