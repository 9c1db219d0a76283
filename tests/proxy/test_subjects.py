"""PRIVACY.md row 8, end to end: data-subject export, deletion, blocking and their audit, through the
authenticated admin API of the ASGI app against chDB. Every answer and every table is searched for the
raw identifier, which must never be kept anywhere.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from httpx import Response
from starlette.testclient import TestClient

from config.settings import Settings
from proxy.app import create_app
from proxy.subjects import NOTHING_LINKABLE
from tests.conftest import CHROME_UA, admin, stored_rows

H = {"User-Agent": CHROME_UA, "Content-Type": "application/json"}
HEX32 = re.compile(r"^[0-9a-f]{32}$")
CONSENT = {"analytics": True}
ALL_CONSENT = {"analytics": True, "marketing": True}
# Distinctive raw identifiers, so a substring search cannot match anything by chance.
X = "cid-RAW-X-5e1f"
Y = "cid-RAW-Y-9a0b"
U = "uid-RAW-U-77c3"
SID = "sid-RAW-S-4d2e"
GCLID = "GCLID-RAW-31337"
K1 = "first-site-key-0123456789"
K2 = "second-site-key-abcdefghij"


def post(c: TestClient, body: Any, headers: dict[str, str] | None = None) -> Response:
    return c.post("/v1/events", content=orjson.dumps(body), headers={**H, **(headers or {})})


def ev(path: str, consent: dict[str, bool] | None = CONSENT, site: str = "demo", **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"site": site, "url": f"https://example.com{path}", **kw}
    if consent is not None:
        body["consent"] = consent
    return body


def token_of(settings: Settings) -> str:
    return (settings.data_dir / "admin_token").read_text().strip()


def auth(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_of(settings)}"}


def subject(
    c: TestClient, settings: Settings, action: str, body: Any, headers: dict[str, str] | None = None
) -> Response:
    return admin(c).post(
        f"/admin/subjects/{action}",
        content=orjson.dumps(body),
        headers={**auth(settings), "Content-Type": "application/json", **(headers or {})},
    )


def stats(c: TestClient, settings: Settings) -> dict[str, Any]:
    r = admin(c).get("/admin/stats", headers=auth(settings))
    assert r.status_code == 200
    result: dict[str, Any] = r.json()
    return result


def table_rows(ch: Client, database: str, table: str, order: str = "") -> list[dict[str, Any]]:
    sql = f"SELECT * FROM {database}.{table}" + (f" ORDER BY {order}" if order else "")
    raw = ch.raw_query(sql, fmt="JSONEachRow")
    return [orjson.loads(line) for line in bytes(raw).splitlines() if line]


def table_text(ch: Client, database: str, table: str) -> str:
    return bytes(ch.raw_query(f"SELECT * FROM {database}.{table}", fmt="TabSeparatedWithNames")).decode()


def count(ch: Client, database: str, where: str = "1", **params: Any) -> int:
    return int(ch.command(f"SELECT count() FROM {database}.events WHERE {where}", parameters=params))


def daily(ch: Client, database: str) -> tuple[int, int, int]:
    [[pageviews, events, visitors]] = ch.query(
        f"SELECT sum(pageviews), sum(events), uniqMerge(visitors) FROM {database}.events_daily"
    ).result_rows
    return int(pageviews), int(events), int(visitors)


def expected_pseudonym(key: str, site: str, kind: str, value: str) -> str:
    """The documented pseudonym: HMAC-SHA256 under the site key, 128 bits, hex."""
    return hmac.new(key.encode(), f"{site}\x00{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()[:32]


def assert_no_raw(text: str, where: str, *raw: str) -> None:
    leaked = [r for r in (raw or (X, Y, U, SID, GCLID)) if r.lower() in text.lower()]
    assert not leaked, f"{where} holds raw identifiers {leaked}"


@contextmanager
def running(settings: Settings) -> Iterator[TestClient]:
    """One proxy process's lifetime: start (schema, suppressions), serve, shut down (flush)."""
    with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as c:
        yield c


# --- export --------------------------------------------------------------------------------------------


def seed(c: TestClient) -> None:
    """X: three consented rows; Y: two; X without consent: one row with no identifier; one anonymous."""
    batch = [
        ev("/x/1", client_id=X, session_id=SID),
        ev("/x/2", client_id=X),
        ev("/x/3", client_id=X, name="signup", type="event", props={"plan": "pro"}),
        ev("/y/1", client_id=Y),
        ev("/y/2", client_id=Y),
        ev("/x/no-consent", consent=None, client_id=X),
        ev("/anon", consent=None),
    ]
    r = post(c, batch)
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 7, "dropped": 0}


def test_export_json_returns_exactly_the_subjects_rows(
    client: TestClient, settings: Settings, ch: Client, database: str
) -> None:
    seed(client)
    # no explicit flush: the service must store what is still batched before it looks
    r = subject(client, settings, "export", {"site": "demo", "client_id": X})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert (body["action"], body["site"], body["kind"]) == ("export", "demo", "client_id")
    assert HEX32.match(body["pseudonym"])
    assert body["rows"] == 3
    assert "note" not in body
    events = body["events"]
    assert len(events) == 3
    assert sorted(e["url"] for e in events) == [f"https://example.com/x/{i}" for i in (1, 2, 3)]
    assert {e["client_id"] for e in events} == {body["pseudonym"]}
    assert all(e["site"] == "demo" and e["consent"] == ["analytics"] for e in events)
    # every column of the row is exported (portability), and the same as stored
    stored = {row["event_id"]: row for row in stored_rows(ch, database, client)}
    for e in events:
        assert e == stored[e["event_id"]]
    signup = next(e for e in events if e["url"].endswith("/x/3"))
    assert (signup["type"], signup["name"], signup["props"]) == ("event", "signup", {"plan": "pro"})
    with_session = next(e for e in events if e["url"].endswith("/x/1"))
    assert HEX32.match(with_session["session_id"])
    assert_no_raw(r.text, "the export answer")
    # the pseudonym is the one stored, not recomputable without the key
    assert count(ch, database, "client_id = {p:String}", p=body["pseudonym"]) == 3


def test_export_csv_has_a_header_and_one_line_per_row(client: TestClient, settings: Settings) -> None:
    seed(client)
    r = subject(client, settings, "export", {"site": "demo", "client_id": X, "format": "csv"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["x-beacon-rows"] == "3"
    assert HEX32.match(r.headers["x-beacon-pseudonym"])
    assert "x-beacon-note" not in r.headers
    header, *rows = list(csv.reader(io.StringIO(r.text)))
    assert {"event_id", "ts", "url", "client_id", "consent", "props"} <= set(header)
    assert len(rows) == 3
    assert all(len(row) == len(header) for row in rows)
    col = dict(zip(header, zip(*rows, strict=True), strict=True))
    assert set(col["client_id"]) == {r.headers["x-beacon-pseudonym"]}
    assert sorted(col["url"]) == [f"https://example.com/x/{i}" for i in (1, 2, 3)]
    assert_no_raw(r.text + str(r.headers), "the CSV export")


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_export_of_nothing_linkable_says_so(client: TestClient, settings: Settings, fmt: str) -> None:
    cookieless = "cid-RAW-cookieless-11"
    # A visitor who never consented: its events are stored, but with no identifier to find them by.
    assert post(client, [ev("/a", consent=None, client_id=cookieless), ev("/b", consent=None)]).json() == {
        "accepted": 2,
        "dropped": 0,
    }
    for value in (cookieless, "cid-never-seen-22"):
        r = subject(client, settings, "export", {"site": "demo", "client_id": value, "format": fmt})
        assert r.status_code == 200, r.text
        if fmt == "json":
            body = r.json()
            assert body["rows"] == 0
            assert body["events"] == []
            assert body["note"] == NOTHING_LINKABLE
        else:
            assert r.headers["x-beacon-rows"] == "0"
            assert r.headers["x-beacon-note"] == NOTHING_LINKABLE
            assert len(list(csv.reader(io.StringIO(r.text)))) <= 1  # at most the header
        assert_no_raw(r.text, "the export answer", value)


# --- delete --------------------------------------------------------------------------------------------


def test_delete_removes_only_the_subjects_rows_and_keeps_aggregates(
    client: TestClient, settings: Settings, ch: Client, database: str
) -> None:
    seed(client)
    rows = stored_rows(ch, database, client)
    assert len(rows) == 7
    x_pseudonym = next(r["client_id"] for r in rows if r["url"].endswith("/x/1"))
    y_rows = sorted(r["event_id"] for r in rows if r["client_id"] not in (None, x_pseudonym))
    before = daily(ch, database)
    assert before[:2] == (6, 1)

    r = subject(client, settings, "delete", {"site": "demo", "client_id": X})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == {
        "action": "delete",
        "site": "demo",
        "kind": "client_id",
        "pseudonym": x_pseudonym,
        "rows": 3,
    }
    assert count(ch, database, "client_id = {p:String}", p=x_pseudonym) == 0
    left = stored_rows(ch, database)
    assert len(left) == 4
    assert sorted(r["event_id"] for r in left if r["client_id"] is not None) == y_rows
    assert {r["url"] for r in left if r["client_id"] is None} == {
        "https://example.com/x/no-consent",
        "https://example.com/anon",
    }
    assert daily(ch, database) == before  # aggregates hold no identifiers and keep their counts
    assert_no_raw(r.text, "the delete answer")

    again = subject(client, settings, "delete", {"site": "demo", "client_id": X}).json()
    assert (again["rows"], again["note"]) == (0, NOTHING_LINKABLE)
    assert len(stored_rows(ch, database)) == 4


def test_subjects_are_per_site(make_settings: Callable[..., Settings], ch: Client, database: str) -> None:
    settings = make_settings(sites={"shop": {"allowed_origins": ["*"]}})
    with running(settings) as c:
        assert post(c, [ev("/d", client_id=X), ev("/s", site="shop", client_id=X)]).json()["accepted"] == 2
        demo = subject(c, settings, "export", {"site": "demo", "client_id": X}).json()
        shop = subject(c, settings, "export", {"site": "shop", "client_id": X}).json()
        assert demo["pseudonym"] != shop["pseudonym"]  # sites never share pseudonyms
        assert [e["url"] for e in shop["events"]] == ["https://example.com/s"]
        assert subject(c, settings, "delete", {"site": "shop", "client_id": X}).json()["rows"] == 1
        [left] = stored_rows(ch, database, c)
        assert (left["site"], left["client_id"]) == ("demo", demo["pseudonym"])


def test_user_id_subjects_work_the_same(
    client: TestClient, settings: Settings, ch: Client, database: str
) -> None:
    batch = [
        ev("/u/1", client_id=X, user_id=U),
        ev("/u/2", client_id=Y, user_id=U),  # the same user on another device
        ev("/x", client_id=X),
        ev("/u/none", consent=None, user_id=U),
    ]
    assert post(client, batch).json()["accepted"] == 4
    r = subject(client, settings, "export", {"site": "demo", "user_id": U})
    body = r.json()
    assert (body["kind"], body["rows"]) == ("user_id", 2)
    assert sorted(e["url"] for e in body["events"]) == ["https://example.com/u/1", "https://example.com/u/2"]
    assert {e["user_id"] for e in body["events"]} == {body["pseudonym"]}
    assert_no_raw(r.text, "the export answer")
    # the kind is part of the pseudonym: the same string as a client id finds nothing
    as_client = subject(client, settings, "export", {"site": "demo", "client_id": U}).json()
    assert as_client["rows"] == 0
    assert as_client["pseudonym"] != body["pseudonym"]

    csv_r = subject(client, settings, "export", {"site": "demo", "user_id": U, "format": "csv"})
    assert csv_r.headers["x-beacon-rows"] == "2"
    assert len(list(csv.reader(io.StringIO(csv_r.text)))) == 3

    deleted = subject(client, settings, "delete", {"site": "demo", "user_id": U}).json()
    assert (deleted["kind"], deleted["rows"]) == ("user_id", 2)
    assert count(ch, database, "user_id = {p:String}", p=body["pseudonym"]) == 0
    urls = sorted(r["url"] for r in stored_rows(ch, database))
    assert urls == ["https://example.com/u/none", "https://example.com/x"]


# --- block ---------------------------------------------------------------------------------------------


def test_block_keeps_further_events_without_identifiers_until_unblocked(
    client: TestClient, settings: Settings, ch: Client, database: str
) -> None:
    r = subject(client, settings, "block", {"site": "demo", "client_id": X})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["action"], body["kind"], body["rows"]) == ("block", "client_id", 0)
    assert HEX32.match(body["pseudonym"])
    assert_no_raw(r.text, "the block answer")
    assert stats(client, settings)["blocked_subjects"] == 1

    full = {"analytics": True, "marketing": True, "precise_location": True}
    blocked = ev(
        f"/blocked?gclid={GCLID}",
        consent=full,
        client_id=X,
        user_id=U,
        session_id=SID,
        location={"lat": 51.5, "lon": -0.14},
    )
    r = post(client, [blocked, ev("/other", client_id=Y)])
    assert r.json() == {"accepted": 2, "dropped": 0}  # site default: blocked_subjects = "anonymous"
    rows = {row["url"]: row for row in stored_rows(ch, database, client)}
    kept = rows["https://example.com/blocked"]
    assert (kept["client_id"], kept["user_id"], kept["session_id"], kept["click_ids"]) == (
        None,
        None,
        None,
        {},
    )
    assert "analytics" not in kept["consent"]  # the row says it was not stored under analytics consent
    other = rows["https://example.com/other"]
    assert HEX32.match(other["client_id"]) and other["consent"] == ["analytics"]
    assert subject(client, settings, "export", {"site": "demo", "client_id": X}).json()["rows"] == 0

    r = subject(client, settings, "unblock", {"site": "demo", "client_id": X})
    assert r.status_code == 200, r.text
    assert (r.json()["action"], r.json()["rows"]) == ("unblock", 0)
    assert stats(client, settings)["blocked_subjects"] == 0
    post(client, ev("/after", client_id=X))
    after = next(row for row in stored_rows(ch, database, client) if row["url"].endswith("/after"))
    assert after["client_id"] == body["pseudonym"]
    assert after["consent"] == ["analytics"]
    for table in ("events", "suppressions", "audit_log"):
        assert_no_raw(table_text(ch, database, table), f"table {table}")


def test_a_blocked_subjects_events_keep_no_precise_location(
    client: TestClient, settings: Settings, ch: Client, database: str
) -> None:
    assert subject(client, settings, "block", {"site": "demo", "client_id": X}).status_code == 200
    full = {"analytics": True, "marketing": True, "precise_location": True}
    post(client, ev("/b", consent=full, client_id=X, location={"lat": 51.501234, "lon": -0.141234}))
    [row] = stored_rows(ch, database, client)
    assert row["client_id"] is None
    assert (row["latitude"], row["longitude"]) == (None, None)
    assert row["consent"] == []


def test_a_blocked_user_id_blocks_the_event_whatever_its_client_id(
    client: TestClient, settings: Settings, ch: Client, database: str
) -> None:
    assert subject(client, settings, "block", {"site": "demo", "user_id": U}).status_code == 200
    post(client, [ev("/a", client_id=Y, user_id=U), ev("/b", client_id=Y)])
    rows = {row["url"]: row for row in stored_rows(ch, database, client)}
    assert (rows["https://example.com/a"]["client_id"], rows["https://example.com/a"]["user_id"]) == (
        None,
        None,
    )
    assert HEX32.match(rows["https://example.com/b"]["client_id"])
    # a client id equal to the blocked user id is another subject
    post(client, ev("/c", client_id=U))
    c_row = next(row for row in stored_rows(ch, database, client) if row["url"].endswith("/c"))
    assert HEX32.match(c_row["client_id"])


def test_block_with_drop_policy_drops_and_counts(
    make_settings: Callable[..., Settings], ch: Client, database: str
) -> None:
    settings = make_settings(sites={"demo": {"allowed_origins": ["*"], "blocked_subjects": "drop"}})
    with running(settings) as c:
        assert subject(c, settings, "block", {"site": "demo", "client_id": X}).status_code == 200
        r = post(c, ev("/blocked", client_id=X))
        assert r.status_code == 202
        assert r.json() == {"accepted": 0, "dropped": 1}
        r = post(c, [ev("/blocked-2", client_id=X), ev("/other", client_id=Y)])
        assert r.json() == {"accepted": 1, "dropped": 1}
        # without consent nothing of theirs would be stored under an identifier anyway: kept anonymous
        assert post(c, ev("/anon", consent=None, client_id=X)).json() == {"accepted": 1, "dropped": 0}
        assert stats(c, settings)["dropped"] == {"blocked": 2}
        urls = sorted(row["url"] for row in stored_rows(ch, database, c))
        assert urls == ["https://example.com/anon", "https://example.com/other"]
        assert_no_raw(table_text(ch, database, "events"), "table events")


def test_block_survives_a_restart_and_the_store_holds_no_raw_id(
    make_settings: Callable[..., Settings], ch: Client, database: str
) -> None:
    settings = make_settings()
    with running(settings) as c:
        assert subject(c, settings, "block", {"site": "demo", "client_id": X}).status_code == 200
        assert subject(c, settings, "block", {"site": "demo", "user_id": U}).status_code == 200
        assert subject(c, settings, "block", {"site": "demo", "client_id": Y}).status_code == 200
        assert subject(c, settings, "unblock", {"site": "demo", "client_id": Y}).status_code == 200
    with running(settings) as c:  # a new process: suppressions come from the store
        assert stats(c, settings)["blocked_subjects"] == 2
        post(c, [ev("/x", client_id=X), ev("/u", client_id="cid-other-1", user_id=U), ev("/y", client_id=Y)])
        rows = {row["url"].rsplit("/", 1)[1]: row for row in stored_rows(ch, database, c)}
    assert rows["x"]["client_id"] is None
    assert (rows["u"]["client_id"], rows["u"]["user_id"]) == (None, None)
    assert HEX32.match(rows["y"]["client_id"])
    suppressions = table_text(ch, database, "suppressions")
    assert_no_raw(suppressions, "table suppressions")
    blocked = ch.query(
        f"SELECT site, kind, subject FROM {database}.suppressions FINAL WHERE blocked = 1 ORDER BY kind"
    ).result_rows
    assert [(s, k) for s, k, _ in blocked] == [("demo", "client_id"), ("demo", "user_id")]
    assert all(HEX32.match(str(subj)) for _, _, subj in blocked)


# --- key rotation -------------------------------------------------------------------------------------


def test_key_rotation_new_rows_use_the_new_key_and_rights_cover_both(
    make_settings: Callable[..., Settings], ch: Client, database: str
) -> None:
    old = make_settings(sites={"demo": {"allowed_origins": ["*"], "pseudonym_keys": [K1]}})
    with running(old) as c:
        post(c, [ev("/old/1", client_id=X), ev("/old/2", client_id=X), ev("/y", client_id=Y)])
        assert (
            subject(c, old, "block", {"site": "demo", "client_id": "cid-blocked-before"}).status_code == 200
        )
    new = make_settings(sites={"demo": {"allowed_origins": ["*"], "pseudonym_keys": [K2, K1]}})
    with running(new) as c:
        post(c, [ev("/new/1", client_id=X), ev("/blocked", client_id="cid-blocked-before")])
        rows = {row["url"]: row for row in stored_rows(ch, database, c)}
        p1 = expected_pseudonym(K1, "demo", "client_id", X)
        p2 = expected_pseudonym(K2, "demo", "client_id", X)
        assert rows["https://example.com/old/1"]["client_id"] == p1
        assert rows["https://example.com/new/1"]["client_id"] == p2
        assert rows["https://example.com/blocked"]["client_id"] is None  # a block survives rotation

        exported = subject(c, new, "export", {"site": "demo", "client_id": X}).json()
        assert exported["pseudonym"] == p2  # reported under the current key
        assert exported["rows"] == 3
        assert sorted(e["url"].rsplit("/", 2)[1] for e in exported["events"]) == ["new", "old", "old"]
        assert {e["client_id"] for e in exported["events"]} == {p1, p2}

        deleted = subject(c, new, "delete", {"site": "demo", "client_id": X}).json()
        assert (deleted["rows"], deleted["pseudonym"]) == (3, p2)
        assert count(ch, database, "client_id IN {ps:Array(String)}", ps=[p1, p2]) == 0
        assert (
            count(ch, database, "client_id = {p:String}", p=expected_pseudonym(K1, "demo", "client_id", Y))
            == 1
        )


# --- audit ---------------------------------------------------------------------------------------------


def test_every_action_is_audited_by_pseudonym_never_by_identifier(
    client: TestClient, settings: Settings, ch: Client, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    post(
        client,
        [
            ev("/1", client_id=X),
            ev("/2", client_id=X),
            ev("/u", client_id=Y, user_id=U),
            ev("/y", client_id=Y),
        ],
    )
    demo_x = {"site": "demo", "client_id": X}
    calls: list[tuple[str, dict[str, Any], dict[str, str]]] = [
        ("export", demo_x, {}),
        # The actor is how the request arrived (the admin socket and the peer's uid, from the kernel):
        # a header naming another actor changes nothing.
        ("export", {**demo_x, "format": "csv"}, {"X-Beacon-Actor": "admin-cli"}),
        ("block", demo_x, {}),
        ("unblock", demo_x, {"X-Beacon-Actor": "visitor"}),
        ("export", {"site": "demo", "user_id": U}, {"X-Beacon-Actor": "root; DROP TABLE"}),
        ("delete", {"site": "demo", "user_id": U}, {}),
        ("delete", demo_x, {"X-Beacon-Actor": "admin-cli"}),
    ]
    pseudonyms: list[str] = []
    for action, body, headers in calls:
        r = subject(client, settings, action, body, headers)
        assert r.status_code == 200, (action, r.text)
        pseudonyms.append(r.headers.get("x-beacon-pseudonym") or r.json()["pseudonym"])
    w = client.post(
        "/v1/consent/withdraw",
        json={"site": "demo", "client_id": Y},
        headers={"User-Agent": CHROME_UA, "Origin": "https://example.com"},
    )
    assert w.json() == {"withdrawn": True, "deleted": 1}
    # refused requests leave no audit row
    assert subject(client, settings, "export", {"site": "nope", "client_id": X}).status_code == 400
    assert admin(client).post("/admin/subjects/delete", json=demo_x).status_code == 401

    audit = table_rows(ch, database, "audit_log", order="time")
    got = [(a["action"], a["site"], a["kind"], a["rows"], a["actor"]) for a in audit]
    sock = "admin-socket:uid=0"  # the test client's peer (see tests.conftest.admin)
    assert got == [
        ("export", "demo", "client_id", 2, sock),
        ("export", "demo", "client_id", 2, sock),
        ("block", "demo", "client_id", 0, sock),
        ("unblock", "demo", "client_id", 0, sock),
        ("export", "demo", "user_id", 1, sock),
        ("delete", "demo", "user_id", 1, sock),
        ("delete", "demo", "client_id", 2, sock),
        ("withdraw", "demo", "client_id", 1, "visitor"),
    ]
    x_pseudonym = pseudonyms[0]
    assert [a["pseudonym"] for a in audit[:7]] == pseudonyms
    assert {pseudonyms[i] for i in (0, 1, 2, 3, 6)} == {x_pseudonym}
    assert pseudonyms[4] == pseudonyms[5] != x_pseudonym
    assert all(HEX32.match(a["pseudonym"]) for a in audit)
    assert audit[7]["pseudonym"] not in (x_pseudonym, pseudonyms[4])
    assert_no_raw(table_text(ch, database, "audit_log"), "table audit_log")
    assert_no_raw(table_text(ch, database, "suppressions"), "table suppressions")
    assert_no_raw(caplog.text, "the logs")


# --- auth and bad requests -----------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["export", "delete", "block", "unblock"])
def test_subject_endpoints_need_the_admin_token(
    client: TestClient, settings: Settings, ch: Client, database: str, action: str
) -> None:
    post(client, ev("/x", client_id=X))
    body = orjson.dumps({"site": "demo", "client_id": X})
    path = f"/admin/subjects/{action}"
    missing = admin(client).post(path, content=body)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert_no_raw(missing.text, "the error")
    wrong = admin(client).post(path, content=body, headers={"Authorization": "Bearer wrong-token"})
    assert wrong.status_code == 403
    assert_no_raw(wrong.text, "the error")
    basic = admin(client).post(path, content=body, headers={"Authorization": f"Basic {token_of(settings)}"})
    assert basic.status_code == 401  # the right secret under another scheme is no bearer token
    # nothing happened: the row is there, unblocked, and nothing was audited
    assert len(stored_rows(ch, database, client)) == 1
    assert stats(client, settings)["blocked_subjects"] == 0
    assert table_rows(ch, database, "audit_log") == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b"[]", 400),
        (b'{"client_id": "cid-RAW-X-5e1f"}', 400),  # missing site
        (b'{"site": "", "client_id": "cid-RAW-X-5e1f"}', 400),
        (b'{"site": "demo"}', 400),  # neither id
        (b'{"site": "demo", "client_id": "cid-RAW-X-5e1f", "user_id": "uid-RAW-U-77c3"}', 400),  # both
        (b'{"site": "demo", "client_id": ""}', 400),
        (b'{"site": "demo", "client_id": ["cid-RAW-X-5e1f"]}', 400),
        (orjson.dumps({"site": "demo", "client_id": "x" * 257}), 400),
        (b'{"site": "nope", "client_id": "cid-RAW-X-5e1f"}', 400),  # unknown site
    ],
)
def test_bad_subject_bodies_are_400_without_echoing_the_identifier(
    client: TestClient, settings: Settings, ch: Client, database: str, body: bytes, status: int
) -> None:
    for action in ("export", "delete", "block"):
        r = admin(client).post(f"/admin/subjects/{action}", content=body, headers=auth(settings))
        assert r.status_code == status, (action, r.text)
        assert r.json()["error"]
        assert_no_raw(r.text, "the error")
    assert table_rows(ch, database, "audit_log") == []


def test_unknown_action_is_404_and_wrong_method_405(client: TestClient, settings: Settings) -> None:
    r = subject(client, settings, "purge", {"site": "demo", "client_id": X})
    assert r.status_code == 404
    assert "export, delete, block or unblock" in r.json()["error"]
    assert (
        admin(client).post("/admin/subjects/purge", json={"site": "demo", "client_id": X}).status_code == 401
    )
    assert admin(client).get("/admin/subjects/export", headers=auth(settings)).status_code == 405


def test_oversized_subject_body_is_413(client: TestClient, settings: Settings) -> None:
    big = orjson.dumps({"site": "demo", "client_id": X, "pad": "x" * 8000})
    assert (
        admin(client).post("/admin/subjects/export", content=big, headers=auth(settings)).status_code == 413
    )


def test_unknown_export_format_is_400(client: TestClient, settings: Settings) -> None:
    r = subject(client, settings, "export", {"site": "demo", "client_id": X, "format": "xml"})
    assert r.status_code == 400


def test_numeric_and_maximal_identifiers_are_found_as_strings(
    client: TestClient, settings: Settings, ch: Client, database: str
) -> None:
    longest = "L" * 256  # the longest identifier a beacon may carry
    r = post(client, [ev("/n", user_id=12345), ev("/l", client_id=longest)])
    assert r.json() == {"accepted": 2, "dropped": 0}
    numeric = subject(client, settings, "export", {"site": "demo", "user_id": "12345"}).json()
    assert [e["url"] for e in numeric["events"]] == ["https://example.com/n"]
    long_r = subject(client, settings, "delete", {"site": "demo", "client_id": longest})
    assert long_r.json()["rows"] == 1
    assert_no_raw(table_text(ch, database, "audit_log"), "table audit_log", longest)


def test_a_store_that_cannot_take_pending_rows_is_503_not_400(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = client.app.state.rt  # type: ignore[attr-defined]
    # the batcher could not write what it holds
    monkeypatch.setattr(rt, "flush", lambda timeout=30.0, store=None: False)
    r = subject(client, settings, "delete", {"site": "demo", "client_id": X})
    assert r.status_code == 503
    assert r.headers["retry-after"]
    w = client.post(
        "/v1/consent/withdraw",
        json={"site": "demo", "client_id": X},
        headers={"Origin": "https://example.com"},
    )
    assert w.status_code == 503
    assert w.headers["retry-after"]


def test_unblock_forgets_the_subject(
    client: TestClient, settings: Settings, ch: Client, database: str
) -> None:
    assert subject(client, settings, "block", {"site": "demo", "client_id": X}).status_code == 200
    assert ch.command(f"SELECT count() FROM {database}.suppressions FINAL") == 1
    assert subject(client, settings, "unblock", {"site": "demo", "client_id": X}).status_code == 200
    assert ch.command(f"SELECT count() FROM {database}.suppressions FINAL") == 0


def test_a_block_reaches_every_proxy_on_the_store(
    make_settings: Callable[..., Settings], ch: Client, database: str
) -> None:
    settings = make_settings(server={"suppression_reload_seconds": 0.05})
    with running(settings) as a, running(settings) as b:  # two proxies sharing one store
        assert subject(a, settings, "block", {"site": "demo", "client_id": X}).status_code == 200
        deadline = time.monotonic() + 10
        while not len(b.app.state.rt.suppressions):  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "the block never reached the second proxy"
            time.sleep(0.02)
        post(b, ev("/via-b", client_id=X))
        [row] = stored_rows(ch, database, b)
        assert row["client_id"] is None


def test_numeric_identifiers_are_accepted_as_their_decimal_string(
    client: TestClient, settings: Settings
) -> None:
    """A beacon's numeric client_id is stored as its string; the admin API finds it either way."""
    post(client, ev("/num", client_id=4242))
    by_number = subject(client, settings, "export", {"site": "demo", "client_id": 4242}).json()
    by_string = subject(client, settings, "export", {"site": "demo", "client_id": "4242"}).json()
    assert by_number["rows"] == by_string["rows"] == 1
    assert by_number["pseudonym"] == by_string["pseudonym"]
