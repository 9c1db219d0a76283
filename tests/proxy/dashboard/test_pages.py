"""The dashboard's sign-in, session cookie and pages over HTTP (no browser): what the cookie holds and how
it is set, the same-origin rule, sign-out, revocation, the shared rate limit, the pages' security headers,
and the built assets' caching. (tests/proxy/dashboard/test_browser.py runs the page in Chromium.)"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from config.settings import Settings
from proxy.app import create_app
from proxy.dashboard import session_cookie
from proxy.dashboard.assets import Assets
from proxy.dashboard.pages import CSP
from tests.conftest import admin, new_analyst_key

ADMIN = "admin-token-for-dashboard-tests-01"
BASE = "http://127.0.0.1:8080"  # plain http on loopback: the cookie is not Secure (as with `make run`)
SAME_ORIGIN = {"Origin": BASE, "Sec-Fetch-Site": "same-origin"}
QUERY = {"site_id": "demo", "metrics": ["visitors"], "date_range": "7d"}


def require_bundle() -> None:
    if not Assets.load().built:
        pytest.fail("the dashboard is not built: run `make dashboard` (make test does)", pytrace=False)


@pytest.fixture
def dash(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., TestClient]]:
    require_bundle()
    clients: list[TestClient] = []

    def make(base_url: str = BASE, server: dict[str, Any] | None = None, **analytics: Any) -> TestClient:
        settings = make_settings(
            server={"admin_token": ADMIN, **(server or {})},
            analytics={"key_cache_seconds": 0, **analytics},
        )
        c = TestClient(create_app(settings), base_url=base_url, follow_redirects=False)
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def new_key(client: TestClient, *sites: str) -> str:
    return new_analyst_key(client, ADMIN, *sites)


def secret(key: str) -> str:
    """The secret part of ``bpk_<16 hex>_<secret>`` (which may itself hold "_")."""
    return key[len("bpk_") + 17 :]


def revoke(client: TestClient, key: str) -> None:
    r = admin(client).post(
        f"/admin/analyst-keys/{key.split('_')[1]}/revoke", headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert r.status_code == 200, r.text


def sign_in(client: TestClient, key: str, headers: dict[str, str] | None = None, next_path: str = "") -> Any:
    r = client.post(
        "/dashboard/session",
        content=f"key={key}&next={next_path}".encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            **(SAME_ORIGIN if headers is None else headers),
        },
    )
    client.cookies.clear()  # tests send the cookie themselves
    return r


def attributes(set_cookie: str) -> tuple[str, str, dict[str, str]]:
    first, *rest = [p.strip() for p in set_cookie.split(";")]
    name, _, value = first.partition("=")
    attrs = {k.lower(): v for k, _, v in (p.partition("=") for p in rest)}
    return name, value, attrs


def token_of(r: Any) -> str:
    name, value, _ = attributes(r.headers["set-cookie"])
    assert name == session_cookie.COOKIE
    return value


def with_cookie(token: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"Cookie": f"{session_cookie.COOKIE}={token}", **(SAME_ORIGIN if extra is None else extra)}


def test_sign_in_sets_a_session_cookie_that_is_not_the_key(dash: Callable[..., TestClient]) -> None:
    client = dash()
    key = new_key(client, "demo")
    form = client.get("/dashboard")
    assert form.status_code == 200 and 'name="key"' in form.text and key not in form.text
    r = sign_in(client, key)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/demo"
    name, token, attrs = attributes(r.headers["set-cookie"])
    assert name == "bp_dashboard" and re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert key not in r.headers["set-cookie"] and secret(key) not in token
    assert attrs == {"max-age": "43200", "path": "/", "httponly": "", "samesite": "Strict"}  # 12 h
    # The store keeps a hash of the token and the key's id: neither the token nor the key.
    rt = client.app.state.rt  # type: ignore[attr-defined]
    db = rt.settings.clickhouse.database
    rows = rt.sink.client.query(f"SELECT * FROM {db}.dashboard_sessions").result_rows
    assert len(rows) == 1
    assert rows[0][0] == hashlib.sha256(token.encode()).hexdigest() and rows[0][1] == key.split("_")[1]
    assert token not in str(rows) and key not in str(rows) and secret(key) not in str(rows)
    # The session reads what the key reads, from the dashboard's own origin.
    ok = client.post("/api/v2/query", json=QUERY, headers=with_cookie(token))
    assert ok.status_code == 200, ok.text
    page = client.get("/dashboard/demo", headers=with_cookie(token, {}))
    assert page.status_code == 200 and 'data-site="demo"' in page.text and key not in page.text
    home = client.get("/dashboard", headers=with_cookie(token, {}))
    assert home.status_code == 303 and home.headers["location"] == "/dashboard/demo"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": BASE, "Sec-Fetch-Site": "same-origin"}, 200),
        ({"Sec-Fetch-Site": "same-origin"}, 200),  # a same-origin GET or HEAD carries no Origin
        ({"Origin": BASE}, 200),  # a browser without Fetch Metadata
        ({"Origin": "null", "Sec-Fetch-Site": "same-origin"}, 200),  # a no-referrer page's form post
        ({}, 403),  # nothing says where it comes from
        ({"Origin": "null"}, 403),
        ({"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, 403),
        ({"Origin": "http://stats.127.0.0.1.nip.io:8080", "Sec-Fetch-Site": "same-site"}, 403),
        ({"Origin": "http://127.0.0.1:9999", "Sec-Fetch-Site": "same-origin"}, 403),  # Origin must agree
        ({"Sec-Fetch-Site": "none"}, 403),
    ],
)
def test_a_session_is_accepted_only_from_the_dashboards_origin(
    dash: Callable[..., TestClient], headers: dict[str, str], status: int
) -> None:
    client = dash()
    token = token_of(sign_in(client, new_key(client, "demo")))
    r = client.post("/api/v2/query", json=QUERY, headers=with_cookie(token, headers))
    assert r.status_code == status, r.text
    if status == 403:
        assert "results" not in r.text


def test_sign_in_refuses_wrong_keys_and_other_origins(dash: Callable[..., TestClient]) -> None:
    client = dash()
    key = new_key(client, "demo")
    wrong = sign_in(client, key[:-1] + ("A" if key[-1] != "A" else "B"))
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    assert "not a live analyst key" in wrong.text
    for headers in ({"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, {}):
        r = sign_in(client, key, headers)
        assert r.status_code == 403 and "set-cookie" not in r.headers
    r = client.post(
        "/dashboard/session",
        content=b'{"key": "x"}',
        headers={"Content-Type": "application/json", **SAME_ORIGIN},
    )
    assert r.status_code == 415 and "set-cookie" not in r.headers
    # No session was opened by any of them.
    rt = client.app.state.rt  # type: ignore[attr-defined]
    db = rt.settings.clickhouse.database
    assert rt.sink.client.query(f"SELECT count() FROM {db}.dashboard_sessions").result_rows == [(0,)]


def test_sign_in_goes_back_to_the_page_asked_for_on_this_site_only(dash: Callable[..., TestClient]) -> None:
    client = dash()
    key = new_key(client, "demo")
    asked = sign_in(client, key, next_path="/dashboard/demo%3Fperiod%3D7d")
    assert asked.headers["location"] == "/dashboard/demo?period=7d"
    for elsewhere in ("//evil.example/x", "https://evil.example/", "/dashboard/shop", "/admin/query"):
        r = sign_in(client, key, next_path=elsewhere)
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/demo", elsewhere
    # Without a session, a site's page is the sign-in form, which comes back to it.
    form = client.get("/dashboard/demo?period=7d")
    assert form.status_code == 200 and 'value="/dashboard/demo?period=7d"' in form.text


def test_a_key_sees_only_its_sites(dash: Callable[..., TestClient]) -> None:
    client = dash()
    token = token_of(sign_in(client, new_key(client, "demo")))
    other = client.get("/dashboard/shop", headers=with_cookie(token, {}))
    missing = client.get("/dashboard/no-such-site", headers=with_cookie(token, {}))
    assert other.status_code == missing.status_code == 404 and other.text == missing.text
    r = client.post("/api/v2/query", json={**QUERY, "site_id": "shop"}, headers=with_cookie(token))
    assert r.status_code == 403


def test_sign_out_ends_the_session(dash: Callable[..., TestClient]) -> None:
    client = dash()
    token = token_of(sign_in(client, new_key(client, "demo")))
    assert client.post("/dashboard/session/end", headers=with_cookie(token, {})).status_code == 403  # origin
    out = client.post("/dashboard/session/end", headers=with_cookie(token))
    assert out.status_code == 303 and out.headers["location"] == "/dashboard"
    name, value, attrs = attributes(out.headers["set-cookie"])
    assert (name, value, attrs["max-age"]) == ("bp_dashboard", "", "0")
    r = client.post("/api/v2/query", json=QUERY, headers=with_cookie(token))
    assert r.status_code == 401 and "session has ended" in r.json()["error"]
    assert 'name="key"' in client.get("/dashboard/demo", headers=with_cookie(token, {})).text


def test_revoking_the_key_ends_its_sessions(dash: Callable[..., TestClient]) -> None:
    client = dash()
    key = new_key(client, "demo")
    token = token_of(sign_in(client, key))
    assert client.post("/api/v2/query", json=QUERY, headers=with_cookie(token)).status_code == 200
    revoke(client, key)
    assert client.post("/api/v2/query", json=QUERY, headers=with_cookie(token)).status_code == 401
    assert 'name="key"' in client.get("/dashboard/demo", headers=with_cookie(token, {})).text


def test_an_expired_session_is_no_session(dash: Callable[..., TestClient]) -> None:
    client = dash()
    key = new_key(client, "demo")
    sessions = client.app.state.rt.stats_main.sessions  # type: ignore[attr-defined]
    analyst = sessions.keys.verify(key)
    token, expires = sessions.open(analyst)
    assert expires - datetime.now(UTC) <= timedelta(hours=12)
    assert sessions.resolve(token) == analyst
    assert sessions.resolve(token, now=expires - timedelta(seconds=1)) == analyst
    assert sessions.resolve(token, now=expires) is None
    assert sessions.resolve("x" * 43) is None and sessions.resolve("not a token") is None


def test_a_session_shares_its_keys_hourly_budget(dash: Callable[..., TestClient]) -> None:
    client = dash(rate_limit_per_hour=3)
    key = new_key(client, "demo")
    token = token_of(sign_in(client, key))  # the sign-in counts once
    assert client.post("/api/v2/query", json=QUERY, headers=with_cookie(token)).status_code == 200
    bearer = client.post("/api/v2/query", json=QUERY, headers={"Authorization": f"Bearer {key}"})
    assert bearer.status_code == 200
    r = client.post("/api/v2/query", json=QUERY, headers=with_cookie(token))
    assert r.status_code == 429 and "retry-after" in r.headers


@pytest.mark.parametrize(
    ("base_url", "cookie_secure", "secure"),
    [
        ("http://127.0.0.1:8080", True, False),
        ("http://localhost:8080", True, False),
        ("http://[::1]:8080", True, False),
        ("https://127.0.0.1:8443", True, True),
        ("http://stats.example.com", True, True),  # TLS ended by a reverse proxy in front
        ("https://stats.example.com", True, True),
        ("https://stats.example.com", False, False),
    ],
)
def test_the_cookie_is_secure_unless_plain_http_on_loopback(
    dash: Callable[..., TestClient], base_url: str, cookie_secure: bool, secure: bool
) -> None:
    client = dash(base_url=base_url, server={"cookie_secure": cookie_secure})
    origin = {"Origin": base_url, "Sec-Fetch-Site": "same-origin"}
    r = sign_in(client, new_key(client, "demo"), origin)
    assert r.status_code == 303, r.text
    name, token, attrs = attributes(r.headers["set-cookie"])
    assert name == ("__Host-bp_dashboard" if secure else "bp_dashboard")
    assert ("secure" in attrs) is secure and "domain" not in attrs
    # The cookie is read back under the name this kind of request uses, and only that one.
    assert client.post(
        "/api/v2/query", json=QUERY, headers={"Cookie": f"{name}={token}", **origin}
    ).is_success
    other = "bp_dashboard" if secure else "__Host-bp_dashboard"
    assert (
        client.post("/api/v2/query", json=QUERY, headers={"Cookie": f"{other}={token}", **origin}).status_code
        == 401
    )


def test_pages_have_a_strict_policy_and_no_inline_code(dash: Callable[..., TestClient]) -> None:
    client = dash()
    token = token_of(sign_in(client, new_key(client, "demo")))
    for r in (client.get("/dashboard"), client.get("/dashboard/demo", headers=with_cookie(token, {}))):
        assert r.headers["content-security-policy"] == CSP
        assert (
            "default-src 'none'" in CSP and "'unsafe-inline'" not in CSP and "frame-ancestors 'none'" in CSP
        )
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["cache-control"] == "no-store"
        scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", r.text, re.S)
        assert all(body == "" for body in scripts), "inline script"
        assert (
            "<style" not in r.text and " style=" not in r.text and "http://" not in r.text.split("</head>")[1]
        )
        assert re.findall(r'(?:src|href)="([^"]+)"', r.text)  # links, all to this origin's paths
        assert all(u.startswith("/") for u in re.findall(r'(?:src|href)="([^"]+)"', r.text))


def test_assets_are_cached_by_digest_and_revalidated_by_etag(dash: Callable[..., TestClient]) -> None:
    client = dash()
    page = client.get("/dashboard").text
    css = re.search(r'href="(/dashboard/assets/app\.css\?v=[0-9a-f]+)"', page)
    assert css is not None
    r = client.get(css.group(1), headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert r.headers["content-encoding"] == "gzip" and r.headers["x-content-type-options"] == "nosniff"
    plain = client.get("/dashboard/assets/app.js", headers={"Accept-Encoding": "identity"})
    assert plain.headers["cache-control"] == "public, no-cache" and "content-encoding" not in plain.headers
    zipped = client.get("/dashboard/assets/app.js", headers={"Accept-Encoding": "gzip"})
    assert (
        zipped.headers["content-encoding"] == "gzip" and zipped.content == plain.content
    )  # decoded by httpx
    assert zipped.headers["etag"] != plain.headers["etag"]
    again = client.get(
        "/dashboard/assets/app.js",
        headers={"If-None-Match": plain.headers["etag"], "Accept-Encoding": "identity"},
    )
    assert again.status_code == 304
    stale = client.get("/dashboard/assets/app.js", headers={"If-None-Match": plain.headers["etag"]})
    assert stale.status_code == 200  # the gzip representation has its own tag
    assert client.get("/dashboard/assets/nope.js").status_code == 404
    assert client.get("/dashboard/assets/..%2Fapp.py").status_code == 404


def test_tokens_and_keys_are_never_logged(
    dash: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = dash()
    key = new_key(client, "demo")
    token = token_of(sign_in(client, key))
    client.post("/api/v2/query", json=QUERY, headers=with_cookie(token))
    client.post("/api/v2/query", json=QUERY, headers=with_cookie(token, {"Origin": "https://evil.example"}))
    client.post("/dashboard/session/end", headers=with_cookie(token))
    client.post("/api/v2/query", json=QUERY, headers=with_cookie(token))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert token not in text and key not in text and secret(key) not in text
