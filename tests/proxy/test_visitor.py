"""PRIVACY.md rows 4 and 8 from the visitor's side: the opt-out cookie endpoints, the GPC declaration and
consent withdrawal from the browser, through the ASGI app into chDB.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from httpx import Response
from starlette.testclient import TestClient

from config.settings import Settings
from proxy.app import create_app
from proxy.ingest import GIF
from tests.conftest import CHROME_UA, admin, stored_rows

H = {"User-Agent": CHROME_UA, "Content-Type": "application/json"}
X = "cid-RAW-X-5e1f"
Y = "cid-RAW-Y-9a0b"
TWO_YEARS = 2 * 365 * 24 * 3600
SHOP = "https://shop.example.com"


def post(c: TestClient, body: Any, headers: dict[str, str] | None = None) -> Response:
    return c.post("/v1/events", content=orjson.dumps(body), headers={**H, **(headers or {})})


def ev(path: str = "/", site: str = "demo", **kw: Any) -> dict[str, Any]:
    return {"site": site, "url": f"https://example.com{path}", "consent": {"analytics": True}, **kw}


def auth(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {(settings.data_dir / 'admin_token').read_text().strip()}"}


def dropped_stats(c: TestClient, settings: Settings) -> dict[str, int]:
    r = admin(c).get("/admin/stats", headers=auth(settings))
    assert r.status_code == 200
    result: dict[str, int] = r.json()["dropped"]
    return result


def cookie_parts(r: Response) -> tuple[str, dict[str, str]]:
    """(name=value, {attribute (lower-case): value}) of the single Set-Cookie header."""
    [header] = r.headers.get_list("set-cookie")
    first, *attrs = [p.strip() for p in header.split(";")]
    parsed = {}
    for a in attrs:
        k, _, v = a.partition("=")
        assert k.lower() not in parsed, f"attribute {k} twice in {header!r}"
        parsed[k.lower()] = v
    return first, parsed


def withdraw(c: TestClient, body: Any, origin: str | None = "https://example.com", **extra: str) -> Response:
    """From a page (the demo site allows any origin) unless ``origin`` is None."""
    headers = {"Content-Type": "application/json", "User-Agent": CHROME_UA, **extra}
    if origin:
        headers["Origin"] = origin
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return c.post("/v1/consent/withdraw", content=raw, headers=headers)


@contextmanager
def running(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as c:
        yield c


# --- opt-out / opt-in ----------------------------------------------------------------------------------


def test_opt_out_sets_a_long_lived_first_party_cookie(client: TestClient) -> None:
    r = client.get("/v1/opt-out")
    assert r.status_code == 200
    assert r.json() == {"opted_out": True}
    assert r.headers["cache-control"] == "no-store"
    first, attrs = cookie_parts(r)
    assert first == "bp_optout=1"
    assert int(attrs["max-age"]) == TWO_YEARS
    assert attrs["path"] == "/"
    assert attrs["samesite"] == "Lax"
    assert "httponly" in attrs
    assert "secure" in attrs  # server.cookie_secure defaults to true
    assert "domain" not in attrs
    assert "access-control-allow-origin" not in r.headers  # no Origin, no CORS


def test_opt_in_clears_the_same_cookie(client: TestClient) -> None:
    r = client.get("/v1/opt-in")
    assert r.status_code == 200
    assert r.json() == {"opted_out": False}
    assert r.headers["cache-control"] == "no-store"
    first, attrs = cookie_parts(r)
    assert first == "bp_optout="
    assert attrs["max-age"] == "0"
    # a cookie is only cleared by one with the same name, path and domain
    _, set_attrs = cookie_parts(client.get("/v1/opt-out"))
    assert {k: v for k, v in attrs.items() if k != "max-age"} == {
        k: v for k, v in set_attrs.items() if k != "max-age"
    }


def test_cookie_domain_name_and_secure_come_from_settings(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(
        server={"cookie_domain": "example.com", "cookie_secure": False, "opt_out_cookie": "no_track"}
    )
    with running(settings) as c:
        for path in ("/v1/opt-out", "/v1/opt-in"):
            first, attrs = cookie_parts(c.get(path))
            assert first.split("=")[0] == "no_track"
            assert attrs["domain"] == "example.com"
            assert "secure" not in attrs
            assert (attrs["path"], attrs["samesite"]) == ("/", "Lax")
            assert "httponly" in attrs
        assert post(c, ev("/a"), {"Cookie": "no_track=1"}).json() == {"accepted": 0, "dropped": 1}
        assert post(c, ev("/b"), {"Cookie": "bp_optout=1"}).json() == {"accepted": 1, "dropped": 0}


def test_beacons_carrying_the_opt_out_cookie_are_dropped_and_counted(
    client: TestClient, settings: Settings, ch: Client, database: str
) -> None:
    opted = {"Cookie": "bp_optout=1"}
    r = post(client, ev("/one", client_id=X), opted)
    assert r.status_code == 202
    assert r.json() == {"accepted": 0, "dropped": 1}
    r = post(
        client, [ev("/a", client_id=X), ev("/b"), ev("/c", site="shop")], {"Cookie": "x=1; bp_optout=1; y=2"}
    )
    assert r.json() == {"accepted": 0, "dropped": 3}
    pixel = client.get(
        "/v1/pixel.gif", params={"site": "demo", "url": "https://example.com/px"}, headers={**H, **opted}
    )
    assert (pixel.status_code, pixel.content) == (200, GIF)  # the page still gets its pixel
    assert stored_rows(ch, database, client) == []
    assert dropped_stats(client, settings) == {"opted_out": 5}

    # any other value of the cookie, or another cookie, is not an opt-out
    assert post(client, ev("/zero"), {"Cookie": "bp_optout=0"}).json() == {"accepted": 1, "dropped": 0}
    assert post(client, ev("/other"), {"Cookie": "bp_optout_x=1"}).json() == {"accepted": 1, "dropped": 0}
    assert sorted(row["url"] for row in stored_rows(ch, database, client)) == [
        "https://example.com/other",
        "https://example.com/zero",
    ]


def test_the_browser_flow_opt_out_then_opt_in(
    make_settings: Callable[..., Settings], ch: Client, database: str
) -> None:
    # cookie_secure off so the test client's cookie jar keeps the cookie over plain http, like a browser
    settings = make_settings(server={"cookie_secure": False})
    with running(settings) as c:
        c.get("/v1/opt-out")
        assert c.cookies.get("bp_optout") == "1"
        assert post(c, ev("/while-out", client_id=X)).json() == {"accepted": 0, "dropped": 1}
        c.get("/v1/opt-in")
        assert c.cookies.get("bp_optout") is None
        assert post(c, ev("/back-in", client_id=X)).json() == {"accepted": 1, "dropped": 0}
        [row] = stored_rows(ch, database, c)
    assert row["url"] == "https://example.com/back-in"


@pytest.mark.parametrize("path", ["/v1/opt-out", "/v1/opt-in"])
def test_opt_endpoints_answer_credentialed_cors_for_allowed_origins(
    make_settings: Callable[..., Settings], path: str
) -> None:
    settings = make_settings(sites={"demo": {"allowed_origins": ["https://demo.example"]}})
    with running(settings) as c:
        for origin in ("https://demo.example", SHOP, "https://sub.example.org"):
            r = c.get(path, headers={"Origin": origin})
            assert r.status_code == 200
            assert r.headers["access-control-allow-origin"] == origin
            assert r.headers["access-control-allow-credentials"] == "true"
            assert "Origin" in r.headers["vary"]
        evil = c.get(path, headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in evil.headers
        assert "access-control-allow-credentials" not in evil.headers
        assert "Origin" in evil.headers["vary"]


def test_events_and_preflight_allow_credentials_so_the_cookie_reaches_the_proxy(
    client: TestClient,
) -> None:
    pre = client.options("/v1/events", headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == SHOP
    assert pre.headers["access-control-allow-credentials"] == "true"
    r = post(client, ev(site="shop"), {"Origin": SHOP})
    assert r.status_code == 202
    assert r.headers["access-control-allow-origin"] == SHOP
    assert r.headers["access-control-allow-credentials"] == "true"
    opted = post(client, ev(site="shop"), {"Origin": SHOP, "Cookie": "bp_optout=1"})
    assert opted.json() == {"accepted": 0, "dropped": 1}
    assert opted.headers["access-control-allow-credentials"] == "true"


# --- GPC -----------------------------------------------------------------------------------------------


def test_gpc_well_known_declaration(client: TestClient) -> None:
    r = client.get("/.well-known/gpc.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"gpc", "lastUpdate"}
    assert body["gpc"] is True
    last = date.fromisoformat(body["lastUpdate"])  # an ISO date, per the GPC spec
    assert last <= datetime.now(UTC).date()
    assert client.post("/.well-known/gpc.json").status_code == 405


# --- consent withdrawal --------------------------------------------------------------------------------


def test_withdraw_deletes_the_visitors_rows_and_is_audited(
    client: TestClient, settings: Settings, ch: Client, database: str
) -> None:
    post(
        client,
        [ev("/x/1", client_id=X), ev("/x/2", client_id=X), ev("/y", client_id=Y), ev("/anon", consent=None)],
    )
    rows = stored_rows(ch, database, client)
    x_pseudonym = next(r["client_id"] for r in rows if r["url"].endswith("/x/1"))

    r = withdraw(client, {"site": "demo", "client_id": X})
    assert r.status_code == 200, r.text
    assert r.json() == {"withdrawn": True, "deleted": 2}
    assert X not in r.text and x_pseudonym not in r.text
    left = sorted(row["url"] for row in stored_rows(ch, database, client))
    assert left == ["https://example.com/anon", "https://example.com/y"]

    again = withdraw(client, {"site": "demo", "client_id": X})
    assert again.json() == {"withdrawn": True, "deleted": 0}

    audit = ch.query(
        f"SELECT action, site, kind, pseudonym, rows, actor FROM {database}.audit_log ORDER BY time"
    ).result_rows
    assert audit == [
        ("withdraw", "demo", "client_id", x_pseudonym, 2, "visitor"),
        ("withdraw", "demo", "client_id", x_pseudonym, 0, "visitor"),
    ]
    text = bytes(ch.raw_query(f"SELECT * FROM {database}.audit_log", fmt="TabSeparated")).decode()
    assert X not in text


def test_withdraw_from_an_allowed_origin_gets_credentialed_cors(
    client: TestClient, ch: Client, database: str
) -> None:
    post(client, ev("/s", site="shop", client_id=X), {"Origin": SHOP})
    pre = client.options(
        "/v1/consent/withdraw", headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"}
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-credentials"] == "true"
    for origin in (SHOP, "https://www.example.org"):  # exact and wildcard entries of site shop
        r = withdraw(client, {"site": "shop", "client_id": X}, origin=origin)
        assert r.status_code == 200, r.text
        assert r.headers["access-control-allow-origin"] == origin
        assert r.headers["access-control-allow-credentials"] == "true"
    assert stored_rows(ch, database, client) == []


def test_withdraw_from_a_disallowed_origin_is_403_and_deletes_nothing(
    client: TestClient, ch: Client, database: str
) -> None:
    post(client, ev("/s", site="shop", client_id=X), {"Origin": SHOP})
    for origin in ("https://evil.example", "https://example.org", "http://shop.example.com"):
        r = withdraw(client, {"site": "shop", "client_id": X}, origin=origin)
        assert r.status_code == 403, origin
        assert r.json() == {"error": "origin not allowed for this site"}
    assert len(stored_rows(ch, database, client)) == 1
    assert ch.command(f"SELECT count() FROM {database}.audit_log") == 0


def test_withdraw_unknown_site_is_404(client: TestClient) -> None:
    r = withdraw(client, {"site": "nope", "client_id": X})
    assert r.status_code == 404
    assert X not in r.text


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b"{}",
        orjson.dumps({"client_id": X}),
        orjson.dumps({"site": "demo"}),
        orjson.dumps({"site": "demo", "client_id": ""}),
        orjson.dumps({"site": "demo", "client_id": None}),
        orjson.dumps({"site": 7, "client_id": X}),
        orjson.dumps({"site": "demo", "client_id": "x" * 257}),
    ],
)
def test_withdraw_bad_body_is_400_without_echo(
    client: TestClient, ch: Client, database: str, body: bytes
) -> None:
    r = withdraw(client, body)
    assert r.status_code == 400
    assert r.json()["error"]
    assert X not in r.text
    assert ch.command(f"SELECT count() FROM {database}.audit_log") == 0


def test_withdraw_body_size_is_bounded(client: TestClient) -> None:
    r = withdraw(client, orjson.dumps({"site": "demo", "client_id": X, "pad": "p" * 10_000}))
    assert r.status_code == 413


def test_withdraw_cors_is_per_site(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(sites={"demo": {"allowed_origins": ["https://demo.example"]}})
    with running(settings) as c:
        r = withdraw(c, {"site": "shop", "client_id": X}, origin="https://demo.example")
        assert r.status_code == 403
        assert "access-control-allow-origin" not in r.headers


@pytest.mark.parametrize("origin", [None, "null"])
def test_withdraw_needs_an_origin_a_page_would_send(
    client: TestClient, ch: Client, database: str, origin: str | None
) -> None:
    """Browsers send Origin on every POST; without one (or with the opaque "null") the request is not from
    a page of the site, even for a site that allows any origin. Operators use the admin API."""
    post(client, ev("/x", client_id=X))
    r = withdraw(client, {"site": "demo", "client_id": X}, origin=origin)
    assert r.status_code == 403
    assert "Origin" in r.json()["error"] and X not in r.text
    assert len(stored_rows(ch, database, client)) == 1
    assert ch.command(f"SELECT count() FROM {database}.audit_log") == 0


def test_withdraw_preflight_answers_as_the_post_will(client: TestClient) -> None:
    def preflight(origin: str | None) -> Response:
        headers = {"Access-Control-Request-Method": "POST"}
        if origin:
            headers["Origin"] = origin
        return client.options("/v1/consent/withdraw", headers=headers)

    ok = preflight(SHOP)
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-methods"] == "POST, OPTIONS"
    assert ok.headers["access-control-allow-origin"] == SHOP
    for refused in (None, "null"):
        r = preflight(refused)
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    assert client.options("/v1/events", headers={"Origin": "null"}).status_code == 204  # beacons: unchanged


def test_withdraw_is_rate_limited_per_client_prefix(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(server={"withdraw_per_client_per_minute": 3})
    app = create_app(settings)
    with TestClient(app, client=("203.0.113.9", 5000)) as first:
        body = {"site": "demo", "client_id": X}
        assert [withdraw(first, body).status_code for _ in range(3)] == [200, 200, 200]
        limited = withdraw(first, body, origin=SHOP)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.headers["access-control-allow-origin"] == SHOP  # the page can read the answer
        assert limited.headers["access-control-expose-headers"] == "Retry-After"
        assert X not in limited.text and "203.0.113" not in limited.text
        # counted per truncated prefix: the same /24 shares the limit, bad requests count too
        same_prefix = TestClient(app, client=("203.0.113.200", 5000))
        assert withdraw(same_prefix, b"not json").status_code == 429
        other = TestClient(app, client=("198.51.100.20", 5000))
        assert withdraw(other, body).status_code == 200
        # behind the trusted loopback proxy, the forwarded client is the one counted
        proxied = TestClient(app, client=("127.0.0.1", 5000))
        assert withdraw(proxied, body, **{"X-Forwarded-For": "203.0.113.7"}).status_code == 429
        assert withdraw(proxied, body, **{"X-Forwarded-For": "192.0.2.30"}).status_code == 200
        # an IPv4 client inside an IPv6 form is the same client
        assert withdraw(proxied, body, **{"X-Forwarded-For": "2002:cb00:7109::1"}).status_code == 429


def test_withdraw_is_rate_limited_per_site(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(server={"withdraw_per_site_per_minute": 2})
    app = create_app(settings)
    with TestClient(app, client=("127.0.0.1", 5000)) as c:
        statuses = [
            withdraw(c, {"site": "demo", "client_id": X}, **{"X-Forwarded-For": f"198.51.{n}.1"}).status_code
            for n in range(4)
        ]
        assert statuses == [200, 200, 429, 429]
        shop = withdraw(c, {"site": "shop", "client_id": X}, origin=SHOP, **{"X-Forwarded-For": "192.0.2.1"})
        assert shop.status_code == 200  # another site has its own limit
