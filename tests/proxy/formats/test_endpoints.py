"""The wire-compatible endpoints through the ASGI app into chDB: each format's request is answered the way
its clients expect, stored through the same pipeline, and keeps PRIVACY.md: identifiers dropped without
consent (pseudonymised with it), URLs scrubbed, no full IP, e-mail, token or raw User-Agent in any column,
the logs or the data directory."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import logging
import random
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from starlette.testclient import TestClient

from config.settings import Settings
from proxy import formats
from proxy.app import create_app
from proxy.formats import posthog
from proxy.ingest import PARSE_OFF_LOOP_BYTES
from tests.conftest import CHROME_UA, stored_rows, stored_text
from tests.proxy.test_privacy import EMAIL, FULL_V4, assert_absent, data_dir_text, needles

LEAKY_URL = (
    f"https://example.com/u/{FULL_V4}/{EMAIL}?token=TOPSECRETTOKEN&utm_source=news&gclid=GCLIDVALUE123"
)
LEAKY_REF = f"https://search.example.net/q/{EMAIL}?ip={FULL_V4}"
RAW_IDS = ("cid-SECRET-1", "uid-SECRET-2", "sid-SECRET-3")
TP2 = "/com.snowplowanalytics.snowplow/tp2"


def sites(**demo: Any) -> dict[str, Any]:
    return {
        "demo": {"allowed_origins": ["*"], "tracker_keys": ["demo", "example.com"], **demo},
        "shop": {"allowed_origins": ["https://shop.example.com"], "tracker_keys": ["phc_shop"]},
    }


def posthog_events() -> list[dict[str, Any]]:
    props = {
        "token": "demo",
        "distinct_id": RAW_IDS[1],
        "$device_id": RAW_IDS[0],
        "$session_id": RAW_IDS[2],
        "$current_url": LEAKY_URL,
        "$referrer": LEAKY_REF,
        "title": f"Hi {EMAIL}",
        "$ip": FULL_V4,
        "$raw_user_agent": CHROME_UA,
        "email": EMAIL,
        "plan": "pro",
    }
    return [{"event": "$pageview", "properties": props}, {"event": "signup", "properties": props}]


def segment_batch() -> dict[str, Any]:
    ctx = {
        "ip": FULL_V4,
        "userAgent": CHROME_UA,
        "page": {"url": LEAKY_URL, "referrer": LEAKY_REF, "title": f"Hi {EMAIL}"},
        "sessionId": RAW_IDS[2],
        "traits": {"email": EMAIL},
    }
    common = {"anonymousId": RAW_IDS[0], "userId": RAW_IDS[1], "context": ctx}
    return {
        "writeKey": "demo",
        "batch": [
            {"type": "page", "properties": {"url": LEAKY_URL, "email": EMAIL, "plan": "pro"}, **common},
            {"type": "track", "event": "signup", "properties": {"plan": "pro", "email": EMAIL}, **common},
            {"type": "identify", "traits": {"email": EMAIL}, **common},
        ],
    }


def snowplow_fields(e: str) -> dict[str, str]:
    return {
        "e": e,
        "aid": "demo",
        "url": LEAKY_URL,
        "refr": LEAKY_REF,
        "page": f"Hi {EMAIL}",
        "duid": RAW_IDS[0],
        "uid": RAW_IDS[1],
        "sid": RAW_IDS[2],
        "nuid": "nuid-SECRET",
        "ip": FULL_V4,
        "ua": CHROME_UA,
        "se_ac": "signup",
        "se_la": EMAIL,
    }


# (name, method, path, headers, body or query, answer status, answer body, stored (type, name) rows)
CASES: list[tuple[str, str, str, dict[str, str], Any, int, bytes, list[tuple[str, str]]]] = [
    (
        "plausible",
        "POST",
        "/api/event",
        {"Content-Type": "text/plain"},
        {
            "n": "pageview",
            "u": LEAKY_URL,
            "d": "example.com",
            "r": LEAKY_REF,
            "p": {"email": EMAIL, "plan": "pro"},
        },
        202,
        b"ok",
        [("pageview", "pageview")],
    ),
    (
        "umami",
        "POST",
        "/api/send",
        {"Content-Type": "application/json"},
        {
            "type": "event",
            "payload": {
                "website": "demo",
                "hostname": "example.com",
                "url": f"/u/{FULL_V4}/{EMAIL}?token=TOPSECRETTOKEN",
                "referrer": LEAKY_REF,
                "title": f"Hi {EMAIL}",
                "name": "signup",
                "data": {"email": EMAIL, "plan": "pro"},
                "id": RAW_IDS[1],
            },
        },
        200,
        b"{}",
        [("event", "signup")],
    ),
    (
        "segment",
        "POST",
        "/v1/batch",
        {"Content-Type": "application/json"},
        segment_batch(),
        200,
        b'{"success":true}',
        [("pageview", "pageview"), ("event", "signup")],
    ),
    (
        "posthog",
        "POST",
        "/e/?compression=gzip-js",
        {"Content-Type": "text/plain"},
        gzip.compress(orjson.dumps(posthog_events())),
        200,
        b'{"status":1}',
        [("pageview", "pageview"), ("event", "signup")],
    ),
    (
        "posthog GET",
        "GET",
        "/e/",
        {},
        {"data": base64.b64encode(orjson.dumps(posthog_events()[1])).decode()},
        200,
        b'{"status":1}',
        [("event", "signup")],
    ),
    (
        "snowplow",
        "POST",
        TP2,
        {"Content-Type": "application/json; charset=utf-8", "User-Agent": "python-requests/2.32"},
        {
            "schema": "iglu:...payload_data/jsonschema/1-0-4",
            "data": [snowplow_fields("pv"), snowplow_fields("se")],
        },
        200,
        b"ok",
        [("pageview", "pageview"), ("event", "signup")],
    ),
]


def send(c: TestClient, method: str, path: str, headers: dict[str, str], payload: Any) -> Any:
    headers = {"User-Agent": CHROME_UA, "X-Forwarded-For": FULL_V4, **headers}
    if method == "GET":
        return c.get(f"{path}?{urlencode(payload)}", headers=headers)
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return c.request(method, path, content=body, headers=headers)


@pytest.mark.parametrize(
    ("method", "path", "headers", "payload", "status", "answer", "want"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_each_format_is_stored_anonymised_and_nothing_leaks(
    make_settings: Callable[..., Settings],
    ch: Client,
    database: str,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    headers: dict[str, str],
    payload: Any,
    status: int,
    answer: bytes,
    want: list[tuple[str, str]],
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(sites=sites())
    with TestClient(create_app(settings), client=("127.0.0.1", 5000)) as c:
        r = send(c, method, path, headers, payload)
        assert (r.status_code, r.content) == (status, answer), r.text
        rows = stored_rows(ch, database, c)
    assert sorted((row["type"], row["name"]) for row in rows) == sorted(want)
    for row in rows:
        assert row["site"] == "demo"
        assert (row["ip"], row["country"], row["browser"]) == ("203.0.113.0", "NZ", "Chrome")
        assert (row["client_id"], row["user_id"], row["session_id"]) == (None, None, None)  # no consent
        assert row["consent"] == []
        assert row["url"].startswith("https://example.com/u/")
        assert row["referrer"] == "https://search.example.net"
        assert row["click_ids"] == {}
        assert "email" not in row["props"]  # a denylisted key, in every format
    leaks = [*needles(FULL_V4), *RAW_IDS, "nuid-SECRET", "gclidvalue"]
    assert_absent(stored_text(ch, database), leaks, "stored rows")
    assert_absent(caplog.text, leaks, "logs")
    assert_absent(data_dir_text(settings), leaks, "data directory")


def test_identifiers_are_pseudonymised_under_our_consent_cookie_or_the_site_default(
    make_settings: Callable[..., Settings], ch: Client, database: str
) -> None:
    cookie = {"consent_cookie": {"name": "cc", "format": "kv"}}
    settings = make_settings(sites=sites(**cookie))
    with TestClient(create_app(settings), client=("127.0.0.1", 5000)) as c:
        for name, method, path, headers, payload, status, _, _ in CASES:
            r = send(c, method, path, {**headers, "Cookie": "cc=analytics:1"}, payload)
            assert r.status_code == status, (name, r.text)
        rows = stored_rows(ch, database, c)
    assert len(rows) == sum(len(case[7]) for case in CASES)
    assert all(row["consent"] == ["analytics"] for row in rows)
    with_ids = [row for row in rows if row["user_id"] is not None]
    assert len(with_ids) == len(rows) - 1  # Plausible's script sends no identifiers
    # the same raw user id gives the same pseudonym in every format, and it is not the raw value
    assert {row["user_id"] for row in with_ids} == {with_ids[0]["user_id"]}
    assert with_ids[0]["user_id"] not in RAW_IDS
    assert_absent(stored_text(ch, database), [*RAW_IDS, "nuid-SECRET"], "stored rows")


def test_site_default_consent_keeps_server_side_sdk_ids_as_pseudonyms(
    make_settings: Callable[..., Settings], ch: Client, database: str
) -> None:
    settings = make_settings(sites=sites(consent_defaults={"analytics": True}))
    with TestClient(create_app(settings), client=("127.0.0.1", 5000)) as c:
        r = send(c, "POST", "/v1/batch", {"Content-Type": "application/json"}, segment_batch())
        assert r.status_code == 200
        rows = stored_rows(ch, database, c)
    assert len(rows) == 2
    assert all(row["client_id"] and row["session_id"] and row["consent"] == ["analytics"] for row in rows)
    assert_absent(stored_text(ch, database), list(RAW_IDS), "stored rows")


def test_the_drop_policy_applies_to_foreign_events(
    make_settings: Callable[..., Settings], ch: Client, database: str
) -> None:
    settings = make_settings(sites=sites(without_consent="drop"))
    with TestClient(create_app(settings), client=("127.0.0.1", 5000)) as c:
        r = send(c, "POST", "/v1/batch", {"Content-Type": "application/json"}, segment_batch())
        assert r.status_code == 200  # answered as the client expects; nothing kept
        assert stored_rows(ch, database, c) == []
        assert c.app.state.rt.metrics.dropped["no_consent"] == 2  # type: ignore[attr-defined]


def test_unknown_key_bad_body_bomb_method_and_origin(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(
        sites=sites(allowed_origins=["https://example.com"]), server={"max_decompressed_bytes": 1 << 20}
    )
    ua = {"User-Agent": CHROME_UA}
    with TestClient(create_app(settings), client=("127.0.0.1", 5000)) as c:
        r = c.post(
            "/api/event", content=b'{"n":"pageview","u":"https://e.com/","d":"nobody.org"}', headers=ua
        )
        assert (r.status_code, r.json()) == (404, {"error": "unknown site"})
        r = c.post("/v1/t", content=b"{", headers={**ua, "Authorization": "Basic ZGVtbzo="})
        assert (r.status_code, r.json()) == (400, {"error": "body is not valid JSON"})
        bomb = gzip.compress(b"[" + b" " * 5_000_000 + b"]")
        r = c.post("/batch/", content=bomb, headers={**ua, "Content-Encoding": "gzip"})
        assert (r.status_code, r.json()) == (413, {"error": "body expands past 1048576 bytes"})
        r = c.post("/e/", content=b"x", headers={**ua, "Content-Encoding": "br"})
        assert r.status_code == 400
        assert c.get("/api/event").status_code == 405
        assert c.get("/api/event").headers["allow"] == "POST"
        shop = {"n": "pageview", "u": "https://shop.example.com/", "d": "demo"}
        r = c.post(
            "/api/event",
            content=orjson.dumps({**shop, "d": "phc_shop"}),
            headers={**ua, "Origin": "https://evil.example"},
        )
        assert r.status_code == 403
        pre = c.options(
            "/api/send",
            headers={"Origin": "https://shop.example.com", "Access-Control-Request-Method": "POST"},
        )
        assert pre.status_code == 204
        assert pre.headers["access-control-allow-origin"] == "https://shop.example.com"
        assert "X-Umami-Cache" in pre.headers["access-control-allow-headers"]
        assert c.options("/e/", headers={"Origin": "https://evil.example"}).status_code == 403


def test_one_bad_event_in_a_batch_does_not_lose_the_good_ones(
    make_settings: Callable[..., Settings], ch: Client, database: str
) -> None:
    settings = make_settings(sites=sites())
    events = [
        {"event": "ok", "properties": {"token": "demo"}},
        {"no": "event"},
        {"event": "ok2", "properties": {"token": "demo"}},
    ]
    with TestClient(create_app(settings), client=("127.0.0.1", 5000)) as c:
        r = c.post("/batch/", content=orjson.dumps({"batch": events}), headers={"User-Agent": CHROME_UA})
        assert r.status_code == 200
        assert sorted(row["name"] for row in stored_rows(ch, database, c)) == ["ok", "ok2"]
        r = c.post("/batch/", content=orjson.dumps({"batch": [{"no": 1}]}), headers={"User-Agent": CHROME_UA})
        assert r.status_code == 400
        assert r.json()["errors"] == [{"index": 0, "error": "field 'event' is required"}]


def test_snowplow_pixel_and_the_visitor_user_agent_a_server_tracker_forwards(
    make_settings: Callable[..., Settings], ch: Client, database: str
) -> None:
    settings = make_settings(sites=sites())
    query = {"e": "pv", "aid": "demo", "url": "https://example.com/g", "ua": CHROME_UA}
    with TestClient(create_app(settings), client=("127.0.0.1", 5000)) as c:
        r = c.get(f"/i?{urlencode(query)}", headers={"User-Agent": "python-requests/2.32"})
        assert (r.status_code, r.headers["content-type"]) == (200, "image/gif")
        assert r.headers["cache-control"].startswith("no-store")
        query.pop("ua")
        r = c.get(f"/i?{urlencode(query)}", headers={"User-Agent": "python-requests/2.32"})
        assert r.status_code == 200  # answered; dropped as a bot: python-requests is no person's browser
        rows = stored_rows(ch, database, c)
        assert c.app.state.rt.metrics.dropped["bot"] == 1  # type: ignore[attr-defined]
    assert [(row["url"], row["browser"], row["os"]) for row in rows] == [
        ("https://example.com/g", "Chrome", "Windows")
    ]
    assert_absent(stored_text(ch, database), ["Mozilla", "python-requests", quote(CHROME_UA)], "stored rows")


def test_posthog_js_config_and_flag_requests_get_constant_answers(
    make_settings: Callable[..., Settings],
) -> None:
    with TestClient(create_app(make_settings(sites=sites())), client=("127.0.0.1", 5000)) as c:
        config = c.get("/array/phc_anything/config", headers={"Origin": "https://example.com"})
        assert config.status_code == 200
        assert config.json()["sessionRecording"] is False and config.json()["autocapture_opt_out"] is True
        assert config.headers["access-control-allow-origin"] == "https://example.com"
        flags = c.post("/flags/?v=2", content=b"data=eyJkaXN0aW5jdF9pZCI6InJhdyJ9")
        assert flags.status_code == 200 and flags.json()["featureFlags"] == {}
        assert b"raw" not in flags.content  # the request (its distinct_id) is never read
        assert c.get("/array/a/b/config").status_code == 404


def test_a_large_compressed_body_is_parsed_off_the_event_loop(
    make_settings: Callable[..., Settings], ch: Client, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []

    def spy(req: Any) -> Any:
        threads.append(threading.current_thread().name)
        return posthog.parse(req)

    monkeypatch.setitem(formats.ROUTES, "/batch", dataclasses.replace(formats.POSTHOG, parse=spy))
    rng = random.Random(5)
    pad = [rng.randbytes(600).hex() for _ in range(100)]
    events = [{"event": f"e{i}", "properties": {"token": "demo", "pad": p}} for i, p in enumerate(pad)]
    small = gzip.compress(orjson.dumps(events[:2]))
    large = gzip.compress(orjson.dumps(events))
    assert len(small) < PARSE_OFF_LOOP_BYTES < len(large)
    with TestClient(create_app(make_settings(sites=sites())), client=("127.0.0.1", 5000)) as c:
        for body in (small, large):
            r = c.post("/batch/", content=body, headers={"Content-Encoding": "gzip", "User-Agent": CHROME_UA})
            assert r.status_code == 200
        assert len(stored_rows(ch, database, c)) == 102
    loop_thread, worker = threads
    # the small body was parsed on the event loop's thread, the large one on a worker thread
    assert loop_thread.startswith("asyncio-portal") and worker == "AnyIO worker thread"
