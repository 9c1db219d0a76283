"""Several replicas, one store, the same answers as one process (README "Running several replicas").

Real ``serve`` processes with their own data directories and ports share one store: the ClickHouse-HTTP
fixture, or a real server when ``CLICKHOUSE_TEST_DSN`` is set. Each replica reaches it through a TCP relay
of its own, which a test cuts to take the store away from that replica only.

The fixture is one chDB process: it has no Keeper, no replication lag and no grants beyond the one
restricted user it emulates, so what these tests show about replicated tables, quorum reads and real
GRANTs needs a real cluster too (see the README).
"""

from __future__ import annotations

import random
import shutil
import string
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from config.schema import schema_objects
from config.settings import ClickhouseSettings
from tests.conftest import CHROME_UA
from tests.support.relay import Relay
from tests.support.replicas import (
    SharedStore,
    admin_json,
    fixture_only,
    log_text,
    post,
    readyz_body,
    replica,
    sink_started,
    subject,
)
from tests.support.serve import (
    REPO,
    TEST_SECRETS,
    Load,
    Processes,
    Proxy,
    assert_exactly_once,
    drained,
    post_all,
    wait_until,
)

FIREFOX_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SEQS = "SELECT props['seq'] AS seq FROM {db}.events WHERE props['seq'] != ''"


@dataclass
class Pair:
    store: SharedStore
    a: Proxy
    b: Proxy
    relay_a: Relay
    relay_b: Relay


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Replicas A and B of one store, each behind its own relay."""
    tmp = tmp_path_factory.mktemp("pair")
    processes = Processes(tmp)
    store = SharedStore(processes, tmp / "store")
    try:
        relay_a, relay_b = store.relay(), store.relay()
        a = replica(processes, tmp / "a", store.env(relay_a))
        b = replica(processes, tmp / "b", store.env(relay_b))
        for proxy in (a, b):
            wait_until("the replica to reach the store", lambda p=proxy: sink_started(p), 60)  # type: ignore[misc]
        yield Pair(store, a, b, relay_a, relay_b)
    finally:
        processes.cleanup()
        store.close()


def marked(mark: str, n: int = 1, **fields: Any) -> list[dict[str, Any]]:
    return [
        {
            "site": "demo",
            "url": f"https://example.com/m/{mark}",
            "props": {"mark": mark, "i": str(i)},
            **fields,
        }
        for i in range(n)
    ]


def stored_marked(store: SharedStore, mark: str) -> list[dict[str, Any]]:
    return store.rows(
        "SELECT visitor_hash, client_id, consent, ip FROM {db}.events WHERE props['mark'] = {m:String}",
        m=mark,
    )


def rollup_mark() -> str:
    """A mark the daily rollup keeps as a page segment: letters only (one with digits is written ``:id``)."""
    return "".join(random.choices(string.ascii_lowercase, k=12))


def wait_stored(store: SharedStore, mark: str, n: int) -> list[dict[str, Any]]:
    wait_until(f"{n} rows marked {mark}", lambda: len(stored_marked(store, mark)) >= n, 60)
    rows = stored_marked(store, mark)
    assert len(rows) == n, rows
    return rows


# --- what replicas agree on ------------------------------------------------------------------------------


def test_one_visitor_on_two_replicas_has_one_visitor_hash(pair: Pair) -> None:
    """The same address and User-Agent through A and through B is one visitor (the day's salt is the
    store's, drawn once); another address is another visitor."""
    mark = rollup_mark()
    assert post(pair.a, marked(mark), ip="203.0.113.9", ua=FIREFOX_UA) == 202
    assert post(pair.b, marked(mark), ip="203.0.113.9", ua=FIREFOX_UA) == 202
    assert post(pair.b, marked(mark), ip="203.0.113.77", ua=FIREFOX_UA) == 202
    rows = wait_stored(pair.store, mark, 3)
    assert sorted(Counter(r["visitor_hash"] for r in rows).values()) == [1, 2]
    visitors = pair.store.count(
        "SELECT uniqMerge(visitors) AS n FROM {db}.events_daily WHERE page = {p:String}", p=f"/m/{mark}"
    )
    assert visitors == 2
    salts = pair.store.rows("SELECT day, salt FROM {db}.salts")
    assert len({r["day"] for r in salts}) == len(salts) >= 1, "one salt per day, whoever drew it"


def test_one_client_id_on_two_replicas_has_one_pseudonym(pair: Pair) -> None:
    mark, cid = uuid.uuid4().hex[:10], f"cid-{uuid.uuid4()}"
    event = marked(mark, client_id=cid, consent={"analytics": True})
    assert post(pair.a, event) == 202
    assert post(pair.b, event) == 202
    rows = wait_stored(pair.store, mark, 2)
    pseudonyms = {r["client_id"] for r in rows}
    assert len(pseudonyms) == 1 and cid not in pseudonyms and len(next(iter(pseudonyms))) == 32
    exported = subject(pair.b, "export", "demo", cid)  # B finds the row A wrote, and A the one B wrote
    assert exported["rows"] == 2 == subject(pair.a, "export", "demo", cid)["rows"]


def test_replicas_report_one_configuration(pair: Pair) -> None:
    def seen() -> dict[str, Any]:
        summary: dict[str, Any] = readyz_body(pair.a)["replica"]
        return summary

    wait_until("A to see both replicas", lambda: seen().get("live_replicas", 0) >= 2, 30)
    summary = seen()
    assert summary["config_mixed"] is False and summary["secrets_match"] is True
    assert (
        summary["config_hashes"]
        == [summary["config_hash"]]
        == [readyz_body(pair.b)["replica"]["config_hash"]]
    )
    metrics = pair.a.metrics_text()
    assert f'beacon_config_info{{config_hash="{summary["config_hash"]}"}} 1.0' in metrics
    assert "beacon_config_hashes_live 1.0" in metrics


def test_a_replica_with_other_settings_shows_as_mixed_configuration(
    pair: Pair, tmp_path: Path, processes: Processes
) -> None:
    """A rolling deploy half done: C runs with another retention; every replica's /readyz and /metrics
    say the live replicas' configurations differ, until C is gone."""
    env = pair.store.env(
        pair.store.relay(),
        BEACONPROXY_CLICKHOUSE__RETENTION_DAYS="200",
        BEACONPROXY_CLICKHOUSE__MANAGE_SCHEMA="false",  # the operator did not migrate: C changes nothing
    )
    c = replica(processes, tmp_path / "c", env)
    try:
        wait_until("A to see two configurations", lambda: readyz_body(pair.a)["replica"]["config_mixed"], 30)
        assert "beacon_config_hashes_live 2.0" in pair.a.metrics_text()
        assert readyz_body(c)["replica"]["config_mixed"] is True
        assert "events differs from this replica's settings" in c.log_tail(20000)
    finally:
        c.sigterm()
    wait_until("C to drop out", lambda: not readyz_body(pair.a)["replica"]["config_mixed"], 30)


@pytest.mark.parametrize(
    ("setting", "other", "named"),
    [
        ("BEACONPROXY_PRIVACY__PSEUDONYM_SECRET", "another-pseudonym-secret-8765", "pseudonym_secret"),
        ("BEACONPROXY_SERVER__ADMIN_TOKEN", "another-admin-token-87654321", "admin_token"),
        ("BEACONPROXY_SITES__DEMO__PSEUDONYM_KEYS", '["another-site-key-0123456789"]', "site_key:demo"),
    ],
)
def test_a_replica_with_another_secret_is_refused(
    pair: Pair, tmp_path: Path, processes: Processes, setting: str, other: str, named: str
) -> None:
    """Its pseudonyms (or admin calls) would not match the others': it must not start. The message names
    the secret, never a value."""
    env = pair.store.env(**{setting: other})
    c = replica(processes, tmp_path / "c", env, start=False)
    with pytest.raises(AssertionError, match="proxy exited"):
        c.start()
    log = c.log_tail(50_000)
    assert "refusing to start" in log and named in log
    for secret in (other, *TEST_SECRETS.values(), "another-site-key-0123456789"):
        assert secret not in log
    assert readyz_body(pair.a)["status"] == "ready"  # the others go on


def test_a_block_on_a_applies_on_b_within_the_reload_interval(pair: Pair) -> None:
    """The stated time: server.suppression_reload_seconds (0.5 s here, 5 s by default) plus one read of
    the store. B's events of the subject are then stored without identifiers (blocked_subjects)."""
    cid = f"blk-{uuid.uuid4()}"

    def blocked_on_b() -> int:
        n: int = admin_json(pair.b, "GET", "/admin/stats")["blocked_subjects"]
        return n

    before = blocked_on_b()
    started = time.monotonic()
    subject(pair.a, "block", "demo", cid)
    try:
        wait_until("B to hold A's block", lambda: blocked_on_b() == before + 1, 30)
        print(f"\nblock on A held by B after {time.monotonic() - started:.2f}s (reload interval 0.5 s)")
        mark = uuid.uuid4().hex[:10]
        assert post(pair.b, marked(mark, client_id=cid, consent={"analytics": True})) == 202
        [row] = wait_stored(pair.store, mark, 1)
        assert row["client_id"] is None and row["consent"] == []
    finally:
        subject(pair.a, "unblock", "demo", cid)
    wait_until("B to drop the block", lambda: blocked_on_b() == before, 30)


# --- subject requests that hold across replicas ----------------------------------------------------------


def test_a_delete_on_a_while_b_is_cut_off_leaves_zero_rows_after_b_ships(pair: Pair) -> None:
    store = pair.store
    cid, keep = f"del-{uuid.uuid4()}", f"keep-{uuid.uuid4()}"
    consent = {"analytics": True}
    mark = uuid.uuid4().hex[:10]
    assert post(pair.a, marked(mark, 3, client_id=cid, consent=consent)) == 202
    wait_stored(store, mark, 3)
    b_name = readyz_body(pair.b)["replica"]["name"]
    withheld_before = admin_json(pair.b, "GET", "/admin/stats")["shipper"]["withheld_rows"]
    pair.relay_b.cut()
    try:
        late = uuid.uuid4().hex[:10]
        assert post(pair.b, marked(late, 4, client_id=cid, consent=consent)) == 202  # spooled in B
        assert post(pair.b, marked(late, 2, client_id=keep, consent=consent)) == 202
        deleted = subject(pair.a, "delete", "demo", cid)
        assert deleted["rows"] == 3
        gone = "SELECT count() AS n FROM {db}.events WHERE props['mark'] IN ({a:String}, {b:String})"
        assert store.count(gone, a=mark, b=late) == 0
        # B went quiet with events in its spool: an export on A says its answer may be incomplete
        wait_until(
            "A's export to name B",
            lambda: b_name in subject(pair.a, "export", "demo", keep).get("pending_replicas", []),
            30,
        )
        exported = subject(pair.a, "export", "demo", keep)
        assert exported["rows"] == 0 and b_name in exported["note"]
    finally:
        pair.relay_b.restore()
    wait_until("B to ship what it spooled", lambda: drained(pair.b), 120)
    counts = Counter(r["client_id"] is not None for r in stored_marked(store, late))
    assert counts == Counter({True: 2}), "only the other subject's events were stored"
    assert store.count("SELECT count() AS n FROM {db}.events WHERE props['mark'] = {m:String}", m=mark) == 0
    stats = admin_json(pair.b, "GET", "/admin/stats")
    assert stats["shipper"]["withheld_rows"] == withheld_before + 4
    requests = store.rows("SELECT action, pseudonym FROM {db}.subject_requests WHERE site = 'demo'")
    assert cid not in str(requests) and any(r["action"] == "delete" for r in requests)


def test_subject_requests_during_heavy_shipping_do_not_fail(pair: Pair) -> None:
    """Both replicas ship under load while A serves subject requests: no request fails or times out,
    no store call fails (a shared ClickHouse session would: the fixture, like a server, rejects a
    second query in a session that is busy), and every acknowledged event is stored once."""
    wait_until("both replicas idle", lambda: drained(pair.a) and drained(pair.b), 120)
    errors = {p.port: admin_json(p, "GET", "/admin/stats")["shipper"]["errors"] for p in (pair.a, pair.b)}
    loads = [
        Load(pair.a, threads=3, batch=20, start=10_000_000).start(),
        Load(pair.b, threads=3, batch=20, start=20_000_000).start(),
    ]
    try:
        loads[0].wait_acked(400)
        for i in range(8):
            cid = f"busy-{i}-{uuid.uuid4()}"
            action = ("export", "delete", "block", "unblock")[i % 4]
            assert subject(pair.a, action, "demo", cid)["action"] == action
    finally:
        for load in loads:
            load.stop()
    wait_until("both replicas to drain", lambda: drained(pair.a) and drained(pair.b), 120)
    counts = Counter(int(r["seq"]) for r in pair.store.rows(SEQS) if int(r["seq"]) >= 10_000_000)
    for load in loads:
        assert load.statuses[202] > 0 and set(load.statuses) == {202}, load.statuses
    assert_exactly_once(loads[0].acked | loads[1].acked, counts, loads[0].sent | loads[1].sent)
    after = {p.port: admin_json(p, "GET", "/admin/stats")["shipper"]["errors"] for p in (pair.a, pair.b)}
    assert after == errors


# --- start-up, schema, data directories -------------------------------------------------------------------


def test_four_replicas_starting_at_once_create_one_schema(tmp_path: Path, processes: Processes) -> None:
    store = SharedStore(processes, tmp_path / "store")
    try:
        proxies = [replica(processes, tmp_path / f"r{i}", store.env(), start=False) for i in range(4)]
        threads = [threading.Thread(target=p.start) for p in proxies]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for proxy in proxies:
            wait_until("every replica to reach the store", lambda p=proxy: sink_started(p), 60)  # type: ignore[misc]
        tables = store.rows(
            "SELECT name, engine FROM system.tables WHERE database = {d:String}", d=store.database
        )
        assert sorted(t["name"] for t in tables) == sorted(
            schema_objects(store.database, ClickhouseSettings())
        )
        assert [t["engine"] for t in tables].count("MaterializedView") == 1
        mark = rollup_mark()
        for proxy in proxies:
            assert post(proxy, marked(mark, 5)) == 202
        wait_stored(store, mark, 20)
        pageviews = store.count(
            "SELECT sum(pageviews) AS n FROM {db}.events_daily WHERE page = {p:String}", p=f"/m/{mark}"
        )
        assert pageviews == 20, "one rollup view: each event counted once"
        pinned = store.rows("SELECT name FROM {db}.secret_fingerprints")
        assert sorted(r["name"] for r in pinned) == ["admin_token", "pseudonym_secret", "site_key:demo"]
        salts = store.rows("SELECT day FROM {db}.salts")
        assert len(salts) == len({r["day"] for r in salts}) >= 1
        assert {tuple(readyz_body(p)["replica"]["config_hashes"]) for p in proxies} == {
            (readyz_body(proxies[0])["replica"]["config_hash"],)
        }
    finally:
        store.close()


def test_a_cloned_data_dir_loses_no_events(tmp_path: Path, processes: Processes) -> None:
    """A replica's data directory copied to start another (as from a backup or an image): both ship,
    nothing is dropped as a duplicate of the other's segments (segment names carry a random part per
    start; with pid-only names two containers, both pid 1, would collide)."""
    store = SharedStore(processes, tmp_path / "store")
    try:
        a = replica(processes, tmp_path / "a", store.env())
        acked: set[int] = set()
        post_all(a, range(1, 41), acked, batch=2)
        wait_until("A to ship", lambda: drained(a), 60)
        a.sigterm()
        shutil.copytree(a.data_dir, tmp_path / "c", symlinks=True)
        a.start()
        c = replica(processes, tmp_path / "c", store.env())
        post_all(a, range(41, 141), acked, batch=2)
        post_all(c, range(141, 241), acked, batch=2)
        wait_until("both to ship", lambda: drained(a) and drained(c), 90)
        counts = Counter(int(r["seq"]) for r in store.rows(SEQS))
        assert_exactly_once(acked, counts, set(range(1, 241)))
        assert len(counts) == 240
    finally:
        store.close()


@fixture_only("a database user with SELECT, INSERT and ALTER DELETE only")
def test_migrate_then_replicas_without_ddl_rights(tmp_path: Path, processes: Processes) -> None:
    """`beaconproxy migrate` applies the schema as a user with DDL rights; replicas then run as a user
    with SELECT, INSERT and ALTER DELETE only (with manage_schema off, and on: the DDL it may not run is
    for objects that exist). Against an empty database a replica that does not manage the schema
    spools and says to migrate. No password or secret reaches a log."""
    admin_pw, replica_pw = f"admin-pw-{uuid.uuid4().hex}", f"replica-pw-{uuid.uuid4().hex}"
    store = SharedStore(processes, tmp_path / "store", password=admin_pw, restricted=("replica", replica_pw))
    assert store.fixture is not None
    try:
        empty = replica(
            processes,
            tmp_path / "early",
            store.env(dsn=store.fixture.restricted_dsn, BEACONPROXY_CLICKHOUSE__MANAGE_SCHEMA="false"),
        )
        assert post(empty, marked("early")) == 202  # spooled
        wait_until(
            "the replica to say what is missing", lambda: "beaconproxy migrate" in empty.log_tail(), 30
        )
        assert readyz_body(empty)["sink_healthy"] is False

        env = {
            "BEACONPROXY_DATA_DIR": str(tmp_path / "operator"),
            **{k: v for k, v in store.env().items() if k.startswith("BEACONPROXY_CLICKHOUSE")},
        }
        migrate = subprocess.run(
            [sys.executable, "-m", "proxy.cli", "migrate"],
            cwd=REPO,
            env={"PATH": "/usr/bin:/bin", **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrate.returncode == 0, migrate.stderr
        assert "store main: schema in place" in migrate.stdout
        wait_until("the early replica to ship after the migration", lambda: drained(empty), 90)

        strict = replica(
            processes,
            tmp_path / "strict",
            store.env(dsn=store.fixture.restricted_dsn, BEACONPROXY_CLICKHOUSE__MANAGE_SCHEMA="false"),
        )
        managing = replica(processes, tmp_path / "managing", store.env(dsn=store.fixture.restricted_dsn))
        cid = f"ddl-{uuid.uuid4()}"
        for proxy in (strict, managing):
            wait_until("the replica to reach the store", lambda p=proxy: sink_started(p), 60)  # type: ignore[misc]
            mark = uuid.uuid4().hex[:10]
            assert post(proxy, marked(mark, 2, client_id=cid, consent={"analytics": True})) == 202
            wait_stored(store, mark, 2)
        assert subject(strict, "block", "demo", cid)["action"] == "block"
        assert subject(strict, "unblock", "demo", cid)["action"] == "unblock"  # an ALTER ... DELETE
        assert subject(managing, "delete", "demo", cid)["rows"] == 4
        assert store.count("SELECT count() AS n FROM {db}.events WHERE props['mark'] = 'early'") == 1

        outputs = [log_text([empty, strict, managing]), migrate.stdout, migrate.stderr]
        outputs += [str(readyz_body(p)) + p.metrics_text() for p in (empty, strict, managing)]
        for text in outputs:
            for secret in (admin_pw, replica_pw, *TEST_SECRETS.values()):
                assert secret not in text
    finally:
        store.close()


@pytest.fixture
def two_stores(tmp_path: Path, processes: Processes) -> Iterator[tuple[SharedStore, SharedStore]]:
    main, eu = SharedStore(processes, tmp_path / "main"), SharedStore(processes, tmp_path / "eu")
    try:
        yield main, eu
    finally:
        main.close()
        eu.close()


def test_a_sites_events_reach_its_store_only(
    two_stores: tuple[SharedStore, SharedStore], tmp_path: Path, processes: Processes
) -> None:
    """Data residency: `eushop` keeps its events, rollups, subject requests and audit rows in the `eu`
    store, `demo` in the main one, whatever a request mixes; the eu store down delays nothing of demo's,
    and its events wait in their own spool until it is back."""
    main, eu = two_stores
    eu_relay = eu.relay()
    env = main.env(
        main.relay(),
        BEACONPROXY_CLICKHOUSE__STORES__EU__DSN=eu_relay.dsn(eu.dsn),
        BEACONPROXY_CLICKHOUSE__STORES__EU__DATABASE=eu.database,
        BEACONPROXY_SITES__EUSHOP__ALLOWED_ORIGINS='["*"]',
        BEACONPROXY_SITES__EUSHOP__STORE="eu",
    )
    proxy = replica(processes, tmp_path / "r", env)
    wait_until(
        "both stores", lambda: all(s["sink_started"] for s in readyz_body(proxy)["stores"].values()), 60
    )
    mark, cid = uuid.uuid4().hex[:10], f"eu-{uuid.uuid4()}"
    consent = {"analytics": True}
    mixed = marked(mark, 3, client_id=cid, consent=consent) + [
        {**e, "site": "eushop"} for e in marked(mark, 4, client_id=cid, consent=consent)
    ]
    assert post(proxy, mixed) == 202
    wait_stored(main, mark, 3)
    wait_stored(eu, mark, 4)
    for store, site, other in ((main, "demo", "eushop"), (eu, "eushop", "demo")):
        assert {r["site"] for r in store.rows("SELECT DISTINCT site FROM {db}.events")} == {site}
        assert store.count("SELECT count() AS n FROM {db}.events_daily WHERE site = {s:String}", s=other) == 0
    assert subject(proxy, "export", "eushop", cid)["rows"] == 4
    assert subject(proxy, "delete", "eushop", cid)["rows"] == 4
    assert eu.count("SELECT count() AS n FROM {db}.audit_log WHERE site = 'eushop'") == 2
    assert main.count("SELECT count() AS n FROM {db}.audit_log") == 0
    assert main.count("SELECT count() AS n FROM {db}.subject_requests") == 0
    assert eu.count("SELECT count() AS n FROM {db}.subject_requests") >= 1
    assert main.count("SELECT count() AS n FROM {db}.events WHERE props['mark'] = {m:String}", m=mark) == 3
    queried = proxy.admin("POST", "/admin/query?store=eu", b"SELECT count() AS n FROM events")
    assert b'"n":0' in queried  # the eu store's events: all of them that subject's, now deleted

    eu_relay.cut()
    try:
        later = uuid.uuid4().hex[:10]
        assert post(proxy, marked(later, 2) + [{**e, "site": "eushop"} for e in marked(later, 2)]) == 202
        wait_stored(main, later, 2)  # the main store's shipping goes on
        stores = readyz_body(proxy)["stores"]
        assert stores["eu"]["spool_segments"] >= 1 and stores["main"]["accepting"] is True
        assert readyz_body(proxy)["status"] == "ready"
    finally:
        eu_relay.restore()
    wait_stored(eu, later, 2)
    everything_in_main = " ".join(str(r) for r in main.rows("SELECT * FROM {db}.events"))
    assert "eushop" not in everything_in_main


def test_migrate_prints_the_cluster_ddl_for_every_store(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "BEACONPROXY_DATA_DIR": str(tmp_path),
        "BEACONPROXY_CLICKHOUSE__DSN": "http://u:secret-pw@ch.example:8123",
        "BEACONPROXY_CLICKHOUSE__CLUSTER": "analytics",
        "BEACONPROXY_CLICKHOUSE__STORES__EU__DSN": "https://u:eu-secret-pw@eu.example:8443",
        "BEACONPROXY_CLICKHOUSE__STORES__EU__DATABASE": "beacon_eu",
        "BEACONPROXY_CLICKHOUSE__STORES__EU__CLUSTER": "eu_cluster",
    }
    out = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "migrate", "--print"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "CREATE TABLE IF NOT EXISTS beacon.events ON CLUSTER 'analytics'" in out.stdout
    assert "CREATE TABLE IF NOT EXISTS beacon_eu.events ON CLUSTER 'eu_cluster'" in out.stdout
    assert "secret-pw" not in out.stdout + out.stderr
    assert CHROME_UA not in out.stdout


def test_a_wrong_store_password_never_reaches_a_log_or_an_answer(
    tmp_path: Path, processes: Processes
) -> None:
    store = SharedStore(processes, tmp_path / "store", password="right-pw-0123")
    try:
        wrong = "wrong-PLANTED-pw-4567"
        parts = urlsplit(store.dsn)
        dsn = urlunsplit(parts._replace(netloc=f"default:{wrong}@{parts.hostname}:{parts.port}"))
        proxy = replica(processes, tmp_path / "r", store.env(dsn=dsn))
        assert post(proxy, marked("pw")) == 202  # spooled: the store refuses this replica for now
        wait_until("the refusal to be logged", lambda: "516" in proxy.log_tail(), 30)
        answers = [
            proxy.log_tail(100_000),
            str(readyz_body(proxy)),
            proxy.metrics_text(),
            str(admin_json(proxy, "GET", "/admin/stats")),
        ]
        for text in answers:
            assert wrong not in text and TEST_SECRETS["BEACONPROXY_PRIVACY__PSEUDONYM_SECRET"] not in text
        assert readyz_body(proxy)["sink_healthy"] is False
    finally:
        store.close()
