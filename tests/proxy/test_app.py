"""The HTTP surface: status codes, error bodies, CORS, the pixel, admin auth, stored rows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from starlette.testclient import TestClient

from config.settings import Settings
from proxy.app import create_app
from proxy.http import GIF
from tests.conftest import CHROME_UA, admin, stored_rows
from tests.proxy.test_metrics import samples

H = {"User-Agent": CHROME_UA, "Content-Type": "application/json"}


def post(
    client: TestClient, body: Any, headers: dict[str, str] | None = None, raw: bytes | None = None
) -> Any:
    return client.post(
        "/v1/events", content=raw if raw is not None else orjson.dumps(body), headers={**H, **(headers or {})}
    )


def pageview(**kw: Any) -> dict[str, Any]:
    return {"site": "demo", "url": "https://example.com/", **kw}


def test_single_event_is_stored(client: TestClient, ch: Client, database: str) -> None:
    r = post(client, pageview(title="Home", screen={"width": 1280, "height": 800}, engagement_ms=1500))
    assert r.status_code == 202
    assert r.json() == {"accepted": 1, "dropped": 0}
    [row] = stored_rows(ch, database, client)
    assert row["site"] == "demo"
    assert row["type"] == "pageview"
    assert row["name"] == "pageview"
    assert row["url"] == "https://example.com/"
    assert row["title"] == "Home"
    assert (row["screen_width"], row["screen_height"], row["engagement_ms"]) == (1280, 800, 1500)
    assert (row["browser"], row["browser_version"], row["os"], row["device"]) == (
        "Chrome",
        "120",
        "Windows",
        "desktop",
    )
    assert row["consent"] == []


def test_batch_and_text_plain(client: TestClient, ch: Client, database: str) -> None:
    batch = [pageview(url=f"https://example.com/{i}") for i in range(100)]
    r = post(client, batch, headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert r.status_code == 202
    assert r.json() == {"accepted": 100, "dropped": 0}
    assert len(stored_rows(ch, database, client)) == 100


def test_one_bad_event_in_a_batch_keeps_the_good_ones(client: TestClient, ch: Client, database: str) -> None:
    r = post(client, [pageview(), {"site": "demo", "type": "event"}, pageview(title=5), pageview()])
    assert r.status_code == 202
    body = r.json()
    assert (body["accepted"], body["dropped"]) == (2, 2)
    assert [e["index"] for e in body["errors"]] == [1, 2]
    assert "'name'" in body["errors"][0]["error"]
    assert "'title'" in body["errors"][1]["error"]
    assert len(stored_rows(ch, database, client)) == 2


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "fragment"),
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"42", "application/json", 400, "JSON object or an array"),
        (b"[]", "application/json", 400, "empty"),
        (
            orjson.dumps([{"site": "demo", "url": "https://e.com/"}] * 101),
            "application/json",
            400,
            "at most 100",
        ),
        (orjson.dumps({"site": "demo", "type": "click"}), "application/json", 400, "'type'"),
        (orjson.dumps({"site": 7, "url": "https://e.com/"}), "application/json", 400, "'site'"),
        (
            orjson.dumps({"site": "demo", "url": "https://e.com/", "props": {"a": [1]}}),
            "text/plain",
            400,
            "props",
        ),
        (b'{"site":"demo"}', "application/x-www-form-urlencoded", 415, "Content-Type"),
        (b'{"site":"demo"}', "", 415, "Content-Type"),
        (orjson.dumps({"site": "nope", "url": "https://e.com/"}), "application/json", 404, "unknown site"),
    ],
)
def test_bad_input_gets_a_clear_4xx(
    client: TestClient, raw: bytes, content_type: str, status: int, fragment: str
) -> None:
    r = post(client, None, raw=raw, headers={"Content-Type": content_type})
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    assert fragment in r.text


def test_oversize_body_is_413_by_declared_length(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(server={"max_body_bytes": 2048}))
    with TestClient(app) as c:
        r = post(c, None, raw=b"[" + b" " * 4096 + b"]")
        assert r.status_code == 413
        assert "2048" in r.json()["error"]


def test_oversize_body_is_413_while_reading_a_chunked_stream(make_settings: Callable[..., Settings]) -> None:
    """No Content-Length: the limit is enforced on the bytes as they arrive, not after."""
    app = create_app(make_settings(server={"max_body_bytes": 2048}))
    received = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        return {"type": "http.request", "body": b" " * 1024, "more_body": received < 100}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": "/v1/events",
        "raw_path": b"/v1/events",
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8080),
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    assert sent[0]["status"] == 413
    assert received == 3  # 3 KiB read, then refused: the other 97 chunks were never pulled


def test_compressed_body_is_415(client: TestClient) -> None:
    r = post(client, pageview(), headers={"Content-Encoding": "gzip"})
    assert r.status_code == 415


def test_unknown_site_in_a_batch_is_dropped_not_fatal(client: TestClient, ch: Client, database: str) -> None:
    r = post(client, [pageview(), pageview(site="nope")])
    assert r.status_code == 202
    assert r.json() == {"accepted": 1, "dropped": 1}


def test_cors_preflight_for_an_allowed_origin(client: TestClient) -> None:
    r = client.options(
        "/v1/events",
        headers={"Origin": "https://shop.example.com", "Access-Control-Request-Method": "POST"},
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "https://shop.example.com"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert r.headers["access-control-allow-headers"] == "Content-Type"


def test_cors_preflight_for_a_disallowed_origin_is_403(make_settings: Callable[..., Settings]) -> None:
    app = create_app(
        make_settings(sites={"demo": {"allowed_origins": ["https://shop.example.com"]}, "shop": {}})
    )
    with TestClient(app) as c:
        r = c.options(
            "/v1/events", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert r.status_code == 403
        assert "access-control-allow-origin" not in r.headers


def test_disallowed_origin_gets_403_and_nothing_is_stored(
    client: TestClient, ch: Client, database: str
) -> None:
    event = {"site": "shop", "url": "https://shop.example.com/", "consent": {"analytics": True}}
    r = post(client, event, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    assert r.json() == {"error": "origin not allowed for this site"}
    ok = post(client, event, headers={"Origin": "https://shop.example.com"})
    assert ok.status_code == 202
    assert ok.headers["access-control-allow-origin"] == "https://shop.example.com"
    wild = post(client, event, headers={"Origin": "https://blog.example.org"})
    assert wild.status_code == 202
    assert len(stored_rows(ch, database, client)) == 2


def test_pixel(client: TestClient, ch: Client, database: str) -> None:
    r = client.get(
        "/v1/pixel.gif",
        params={"site": "demo", "url": "https://example.com/a?x=1", "ref": "https://google.com/search?q=x"},
        headers={"User-Agent": CHROME_UA},
    )
    assert r.status_code == 200
    assert r.content == GIF
    assert r.headers["content-type"] == "image/gif"
    assert r.headers["cache-control"].startswith("no-store")
    event = client.get(
        "/v1/pixel.gif",
        params={"site": "demo", "name": "signup"},
        headers={"User-Agent": CHROME_UA, "Referer": "https://example.com/join"},
    )
    assert event.status_code == 200
    rows = stored_rows(ch, database, client)
    assert [(r["type"], r["name"], r["url"], r["referrer"]) for r in rows] == [
        ("pageview", "pageview", "https://example.com/a", "https://google.com"),
        ("event", "signup", "https://example.com/join", ""),
    ]


@pytest.mark.parametrize(
    ("params", "status"),
    [({"url": "https://example.com/"}, 400), ({"site": "nope", "url": "https://example.com/"}, 404)],
)
def test_pixel_bad_input(client: TestClient, params: dict[str, str], status: int) -> None:
    r = client.get("/v1/pixel.gif", params=params, headers={"User-Agent": CHROME_UA})
    assert r.status_code == status


def test_health(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["sink_healthy"] is True


def test_admin_endpoints_need_the_token(client: TestClient, settings: Settings) -> None:
    token = (settings.data_dir / "admin_token").read_text().strip()
    assert admin(client).post("/admin/query", content=b"SELECT 1").status_code == 401
    bad = admin(client).post("/admin/query", content=b"SELECT 1", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 403
    ok = admin(client).post(
        "/admin/query", content=b"SELECT 1 AS one", headers={"Authorization": f"Bearer {token}"}
    )
    assert ok.status_code == 200
    assert ok.text.strip() == '{"one":1}'
    assert admin(client).get("/admin/stats").status_code == 401
    assert admin(client).get("/admin/stats", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_admin_query_is_read_only(client: TestClient, settings: Settings, database: str) -> None:
    token = (settings.data_dir / "admin_token").read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    for sql, says in (
        (f"DROP TABLE {database}.events", "DROP is not allowed"),
        (f"INSERT INTO {database}.events (site) VALUES ('x')", "INSERT is not allowed"),
    ):
        r = admin(client).post("/admin/query", content=sql.encode(), headers=auth)
        assert r.status_code == 400
        assert says in r.json()["error"]
    r = admin(client).post(
        "/admin/query", content=f"SELECT count() AS n FROM {database}.events".encode(), headers=auth
    )
    assert orjson.loads(r.content) == {"n": 0}


def admin_sql(client: TestClient, settings: Settings, sql: str) -> Any:
    token = (settings.data_dir / "admin_token").read_text().strip()
    return admin(client).post(
        "/admin/query", content=sql.encode(), headers={"Authorization": f"Bearer {token}"}
    )


def test_admin_query_answers_analyst_sql_over_stored_rows(client: TestClient, settings: Settings) -> None:
    assert (
        post(client, [pageview(url=f"https://example.com/{p}") for p in ("a", "b", "b")]).status_code == 202
    )
    assert client.app.state.rt.flush(10)  # type: ignore[attr-defined]
    r = admin_sql(
        client,
        settings,
        "WITH pages AS (SELECT path(url) AS page, count() AS views FROM events GROUP BY page) "
        "SELECT page, views FROM pages WHERE page IN (SELECT path(url) FROM events) "
        "ORDER BY views DESC, page",
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-ndjson"
    assert [orjson.loads(line) for line in r.content.splitlines()] == [
        {"page": "/b", "views": 2},
        {"page": "/a", "views": 1},
    ]


def test_admin_query_reaches_no_table_function(client: TestClient, settings: Settings, ch: Client) -> None:
    names = [str(n) for (n,) in ch.query("SELECT name FROM system.table_functions").result_rows]
    for name in names:
        answers = []
        for sql in (f"SELECT * FROM {name}('x')", f"INSERT INTO FUNCTION {name}('x') SELECT 1"):
            r = admin_sql(client, settings, sql)
            assert r.status_code == 400, (sql, r.text)
            answers.append(r.json()["error"])
        if name not in ("view", "viewIfPermitted"):  # these take a subquery, so ('x') is a syntax error
            assert answers[0].startswith(f"table function {name}() is not allowed"), answers
            assert "INSERT is not allowed" in answers[1], answers


def test_admin_query_cannot_read_the_proxys_own_secrets(client: TestClient, settings: Settings) -> None:
    secrets = {
        p: p.read_text().strip()
        for p in (settings.data_dir / "admin_token", settings.data_dir / "pseudonym_secret")
    }
    assert all(len(v) >= 16 for v in secrets.values())
    for path in secrets:
        for sql in (
            f"SELECT file('{path}')",
            f"SELECT * FROM file('{path}', 'LineAsString')",
            f"SELECT * FROM url('file://{path}', 'LineAsString')",
            f"SELECT * FROM events WHERE url IN (SELECT * FROM file('{path}', 'RawBLOB'))",
            f"WITH s AS (SELECT * FROM file('{path}', 'RawBLOB')) SELECT * FROM s",
            f"SELECT * FROM executable('cat {path}', 'RawBLOB', 'raw String')",
            "SELECT * FROM file('/proc/self/environ', 'RawBLOB')",
            f"SELECT 1 INTO OUTFILE '{path}' TRUNCATE",
            f"SELECT 1 SETTINGS format_schema = '{path}'",
        ):
            r = admin_sql(client, settings, sql)
            assert r.status_code == 400, (sql, r.text)
            assert not any(secret in r.text for secret in secrets.values())
    assert {p: p.read_text().strip() for p in secrets} == secrets  # nothing was overwritten


def test_admin_query_limits_come_from_settings(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(clickhouse={"admin_query": {"max_result_rows": 10}})
    with TestClient(create_app(settings)) as c:
        assert len(admin_sql(c, settings, "SELECT arrayJoin(range(10)) AS n").content.splitlines()) == 10
        r = admin_sql(c, settings, "SELECT arrayJoin(range(11)) AS n")
        assert r.status_code == 400
        assert "clickhouse.admin_query.max_result_rows (10 rows)" in r.json()["error"]


def test_spool_full_answers_503_with_retry_after_and_recovers(
    make_settings: Callable[..., Settings], ch: Client, database: str
) -> None:
    # A sink that cannot keep up is simulated by a long segment age: nothing is sealed, so nothing ships.
    settings = make_settings(spool={"max_bytes": 64 * 1024}, batch={"max_age_seconds": 3600})
    app = create_app(settings)
    accepted = 0
    with TestClient(app) as c:
        for _ in range(50):
            r = post(c, [pageview(url=f"https://example.com/{accepted + i}") for i in range(100)])
            if r.status_code != 202:
                break
            accepted += r.json()["accepted"]
        assert r.status_code == 503
        assert r.headers["retry-after"] == "5"
        assert "spool full" in r.json()["error"]
        assert c.get("/readyz").status_code == 503
        assert 0 < accepted < 5000
        metrics = samples(c.get("/metrics").text)  # the refused request's events were not accepted
        assert metrics[("beacon_events_accepted_total", (("site", "demo"),))] == accepted
        assert metrics[("beacon_ready", ())] == 0
        assert app.state.rt.flush(10)  # storage catches up: every accepted event is shipped
        deadline = time.monotonic() + 10
        while post(c, pageview()).status_code != 202:  # the spool frees its space
            assert time.monotonic() < deadline, "the proxy never accepted again"
            time.sleep(0.1)
        assert c.get("/readyz").status_code == 200
        rows = stored_rows(ch, database, c)
    assert len(rows) == accepted + 1


@pytest.mark.parametrize("ts", [-1, 2**60, 1.5e300, "2026-12-05T10:00:00Z", True, False, [1], {"ms": 5}])
def test_an_unusable_client_clock_keeps_the_event_with_the_server_time(
    client: TestClient, ch: Client, database: str, ts: Any
) -> None:
    before = time.time()
    r = post(client, [pageview(ts=ts), pageview(url="https://example.com/ok")])
    assert r.status_code == 202
    assert r.json() == {"accepted": 2, "dropped": 0}
    rows = stored_rows(ch, database, client)
    assert len(rows) == 2
    for row in rows:
        stored = datetime.fromisoformat(row["ts"]).replace(tzinfo=UTC).timestamp()
        assert before - 1 <= stored <= time.time() + 1  # the server's receive time, not the client's
    assert client.app.state.rt.metrics.clock_replaced == {"unusable": 1}  # type: ignore[attr-defined]
