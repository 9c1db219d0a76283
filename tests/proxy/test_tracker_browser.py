"""Our tracker (``/t.js``) in a real headless Chromium, against a real ``beaconproxy serve``.

The test pages come from a static server on ``localhost:<port>``; the proxy listens on
``127.0.0.1:<other port>``: every beacon is cross-origin and cross-site, as in production, and cookies the
page sets never reach the proxy, so a consent cookie can only take effect through the tracker reading it.
Rows are read back from the proxy's store through ``/admin/query``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from playwright.sync_api import Browser, Page

from tests.support.browser import StaticSite, chromium, collect_errors, desktop_page, static_site
from tests.support.proxy_server import RunningProxy, running_proxy

STUB = "window.bp=window.bp||function(){(bp.q=bp.q||[]).push(arguments)};"
GPC_ON = "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true});"
# Headless Chromium never hides a page (other tabs, minimising: the page stays "visible"), so "the
# visitor switches away" is played by making document.hidden true and firing the event the browser would.
HIDE = """() => {
  Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
  Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
  document.dispatchEvent(new Event('visibilitychange'));
}"""
STORED = "() => [localStorage.length, sessionStorage.length, document.cookie]"
VIEW_MS = 50  # each page view is visible at least this long, so that it has an engagement event


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def site() -> Iterator[StaticSite]:
    with static_site() as s:
        yield s


def page_html(proxy: RunningProxy, title: str, attrs: str, head: str = "") -> str:
    return (
        f"<!doctype html><html><head><title>{title}</title><script>{head}</script>"
        f'<script defer src="{proxy.url}/t.js" {attrs}></script></head><body>{title}</body></html>'
    )


def loaded(page: Page) -> None:
    page.wait_for_function("() => window.bp && window.bp.l === 1")


def path_of(row: dict[str, Any]) -> str:
    parts = urlsplit(row["url"])
    return parts.path + ("?" + parts.query if parts.query else "")


Summary = tuple[str, str, str, dict[str, str], list[str]]


def summary(rows: list[dict[str, Any]]) -> list[Summary]:
    """What each row says, sorted: (type, name, path with query, props, consent)."""
    return in_order([(r["type"], r["name"], path_of(r), r["props"], sorted(r["consent"])) for r in rows])


def in_order(items: list[Summary]) -> list[Summary]:
    return sorted(items, key=lambda t: (t[:3], sorted(t[3].items()), t[4]))


def rows(proxy: RunningProxy, where: str, want: int, timeout: float = 30) -> list[dict[str, Any]]:
    """Rows of ``beacon.events`` matching ``where``, polled until ``want`` are visible (rows land in
    batches), then read again after a short settle, so that rows beyond ``want`` would show too.
    (``/admin/query`` answers JSONEachRow itself: the SQL must not name a format.)"""
    sql = f"SELECT * FROM beacon.events WHERE {where} ORDER BY ts, event_id"
    deadline = time.monotonic() + timeout
    while len(found := proxy.query(sql)) < want:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(found)} rows, not {want}, where {where}: {summary(found)}")
        time.sleep(0.2)
    time.sleep(0.5)
    return proxy.query(sql)


def wait_for(what: str, probe: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_views_events_consent_withdrawal_and_engagement(
    tmp_path: Path, geoip_files: tuple[str, str], browser: Browser, site: StaticSite
) -> None:
    config = f"""
[sites.web]
allowed_origins = ["{site.origin}"]
without_consent = "anonymous"
consent_defaults = {{ preferences = true }}  # only rows sent without a consent object get it
"""
    with running_proxy(tmp_path, geoip_files, config) as proxy:
        # Called before the tracker loaded: the stub queues it, the tracker replays it.
        site.add(
            "/app/", page_html(proxy, "Home", 'data-site="web"', STUB + "bp('event','queued',{early:true})")
        )
        site.add("/bye", "<!doctype html><title>Elsewhere</title>")
        with desktop_page(browser) as page:
            errors = collect_errors(page)
            page.goto(
                site.url("/app/?utm_source=news&email=jo@example.com"),
                referer="https://news.example.org/story/123?id=9",
            )
            loaded(page)
            assert page.evaluate(STORED) == [0, 0, ""], "stored something before consent"

            # --- no consent known: no identifiers, no consent object (the site's defaults apply)
            page.wait_for_timeout(VIEW_MS)
            page.evaluate("() => { document.title = 'Pricing'; history.pushState({}, '', '/app/pricing'); }")
            page.evaluate("() => history.replaceState({}, '', '/app/pricing')")  # same URL: no view
            page.evaluate("() => history.pushState({}, '', '/app/pricing#plans')")  # fragment only: no view
            page.evaluate("() => bp('event', 'signup', {plan: 'pro', seats: 3})")
            page.wait_for_timeout(VIEW_MS)
            page.evaluate("() => { document.title = 'Home'; history.go(-2); }")  # popstate back to /app/
            page.wait_for_function("() => location.pathname === '/app/'")
            anonymous = rows(proxy, "site = 'web'", want=7)
            assert page.evaluate(STORED) == [0, 0, ""], "stored something before consent"

            # --- analytics consent: a random id in localStorage, a session id in sessionStorage
            page.evaluate("() => bp('consent', {analytics: true})")
            page.evaluate("() => bp('event', 'checkout', {step: 1})")
            raw_cid, raw_sid = page.evaluate(
                "() => [localStorage.getItem('bp_cid'), sessionStorage.getItem('bp_sid')]"
            )
            page.wait_for_timeout(VIEW_MS)
            page.evaluate("() => history.pushState({}, '', '/app/done')")
            consented = rows(proxy, "site = 'web' AND client_id IS NOT NULL", want=3)
            assert page.evaluate(
                "() => [localStorage.getItem('bp_cid'), sessionStorage.getItem('bp_sid')]"
            ) == [raw_cid, raw_sid], "the ids must stay the same while consent lasts"

            # --- withdrawn: the ids are forgotten at once, and the server deletes the consented rows
            page.evaluate("() => bp('consent', {analytics: false})")
            assert page.evaluate(STORED) == [0, 0, ""]
            wait_for(
                "the withdrawal to delete the consented rows",
                lambda: not proxy.query("SELECT 1 FROM beacon.events WHERE client_id IS NOT NULL"),
            )
            page.evaluate("() => bp('event', 'after', {x: 1})")
            page.wait_for_timeout(300)  # the last view's engagement must count at least this
            page.evaluate(HIDE)
            page.goto(site.url("/bye"))  # a real pagehide: the engagement was sent already, not again
            assert page.evaluate(STORED) == [0, 0, ""]
            assert errors == []
        final = rows(proxy, "site = 'web'", want=9)
        audit = proxy.query("SELECT * FROM beacon.audit_log")
        everything = orjson.dumps([proxy.query("SELECT * FROM beacon.events"), audit])

    origin = site.origin
    home, pricing, done = "/app/?utm_source=news", "/app/pricing", "/app/done"
    # Before consent: exactly these, each without identifiers and under the site's defaults.
    assert summary(anonymous) == [
        ("event", "engagement", home, {}, ["preferences"]),
        ("event", "engagement", pricing, {}, ["preferences"]),
        ("event", "queued", home, {"early": "true"}, ["preferences"]),
        ("event", "signup", pricing, {"plan": "pro", "seats": "3"}, ["preferences"]),
        ("pageview", "pageview", home, {}, ["preferences"]),
        ("pageview", "pageview", home, {}, ["preferences"]),
        ("pageview", "pageview", pricing, {}, ["preferences"]),
    ]
    assert all(r["client_id"] is None and r["session_id"] is None for r in anonymous)
    views = [r for r in anonymous if r["type"] == "pageview"]
    assert [(path_of(r), r["referrer"], r["title"]) for r in views] == [
        (home, "https://news.example.org", "Home"),  # document.referrer, reduced to its origin
        (pricing, origin, "Pricing"),  # an SPA view's referrer is the view before it
        (home, origin, "Home"),
    ]
    for r in anonymous:
        assert (r["screen_width"], r["screen_height"], r["language"]) == (1280, 720, "en")
        assert (r["browser"], r["device"]) == ("Chrome", "desktop")
        assert (r["engagement_ms"] is not None) == (r["name"] == "engagement")
    assert all(r["engagement_ms"] >= VIEW_MS for r in anonymous if r["name"] == "engagement")

    # With consent: one pseudonym for the visitor, one for the session, never the raw values.
    assert summary(consented) == [
        ("event", "checkout", home, {"step": "1"}, ["analytics"]),
        ("event", "engagement", home, {}, ["analytics"]),
        ("pageview", "pageview", done, {}, ["analytics"]),
    ]
    assert raw_cid and raw_sid and raw_cid != raw_sid
    assert len({r["client_id"] for r in consented}) == 1
    assert len({r["session_id"] for r in consented}) == 1
    pseudonym = consented[0]["client_id"]
    assert pseudonym not in (raw_cid, raw_sid) and consented[0]["session_id"] not in (raw_cid, raw_sid)
    assert raw_cid.encode() not in everything and raw_sid.encode() not in everything

    # The withdrawal came from the visitor and deleted exactly those rows, recorded by pseudonym.
    assert [(a["action"], a["site"], a["kind"], a["pseudonym"], a["rows"], a["actor"]) for a in audit] == [
        ("withdraw", "web", "client_id", pseudonym, 3, "visitor")
    ]
    # Afterwards: what was anonymous stays; new events carry the explicit refusal and no identifiers.
    after = [("event", "after", done, {"x": "1"}, []), ("event", "engagement", done, {}, [])]
    assert summary(final) == in_order(summary(anonymous) + after)
    assert all(r["client_id"] is None and r["session_id"] is None for r in final)
    last = [r for r in final if r["name"] == "engagement" and path_of(r) == done]
    assert len(last) == 1 and last[0]["engagement_ms"] >= 300


COOKIE_SITES = """
[sites.cj]
allowed_origins = ["{origin}"]
consent_cookie = {{ name = "cmp", format = "json", keys = {{ analytics = "statistics" }} }}

[sites.ck]
allowed_origins = ["{origin}"]
consent_cookie = {{ name = "cmpkv", format = "kv" }}
"""


def set_cookie(name: str, value: str) -> str:
    return f"document.cookie = '{name}=' + encodeURIComponent({value}) + '; path=/';"


def test_consent_cookie_and_global_privacy_control(
    tmp_path: Path, geoip_files: tuple[str, str], browser: Browser, site: StaticSite
) -> None:
    with running_proxy(tmp_path, geoip_files, COOKIE_SITES.format(origin=site.origin)) as proxy:
        # A CMP's JSON cookie under its own key names ("statistics" is our "analytics").
        json_page = page_html(
            proxy,
            "JSON",
            'data-site="cj" data-consent-cookie="cmp" data-consent-keys="analytics:statistics"',
            set_cookie("cmp", "JSON.stringify({statistics: true, marketing: true})"),
        )
        site.add("/json/gpc", json_page)
        site.add("/json/plain", json_page)
        site.add(
            "/kv",
            page_html(
                proxy,
                "KV",
                'data-site="ck" data-consent-cookie="cmpkv" data-consent-format="kv"',
                set_cookie("cmpkv", "'analytics:1,preferences:1,marketing:0'"),
            ),
        )
        site.add("/bye", "<!doctype html><title>Elsewhere</title>")

        with desktop_page(browser, init_script=GPC_ON) as page:
            errors = collect_errors(page)
            page.goto(site.url("/json/gpc"))
            loaded(page)
            assert page.evaluate("() => navigator.globalPrivacyControl") is True
            assert errors == []
        with desktop_page(browser) as page:
            page.goto(site.url("/json/plain"))
            loaded(page)
        json_rows = rows(proxy, "site = 'cj' AND type = 'pageview'", want=2)

        with desktop_page(browser) as page:
            errors = collect_errors(page)
            page.goto(site.url("/kv"))
            loaded(page)
            granted = rows(proxy, "site = 'ck' AND client_id IS NOT NULL", want=1)
            assert page.evaluate("() => localStorage.getItem('bp_cid')")
            # The CMP records a refusal in a second copy of its cookie (a more specific path): copies
            # that differ refuse everything, so the next beacon forgets the ids and withdraws.
            refusal = set_cookie("cmpkv", "'analytics:0,preferences:1'").replace("path=/", "path=/kv")
            page.evaluate("() => { " + refusal + " }")
            assert page.evaluate("() => document.cookie.split('cmpkv=').length") == 3  # two copies
            page.evaluate("() => bp('event', 'later')")
            assert page.evaluate("() => [localStorage.length, sessionStorage.length]") == [0, 0]
            wait_for(
                "the withdrawal",
                lambda: bool(proxy.query("SELECT 1 FROM beacon.audit_log")),
            )
            page.goto(site.url("/bye"))  # pagehide: the view's engagement
            assert errors == []
        kv_rows = rows(proxy, "site = 'ck'", want=2)

    by_path = {path_of(r): r for r in json_rows}
    assert sorted(by_path) == ["/json/gpc", "/json/plain"]
    # The cookie reached only the tracker (other host): what is stored is what the tracker read.
    assert sorted(by_path["/json/plain"]["consent"]) == ["analytics", "marketing"]
    assert by_path["/json/gpc"]["consent"] == ["analytics"]  # GPC: never marketing
    assert by_path["/json/plain"]["client_id"] and by_path["/json/gpc"]["client_id"]
    assert by_path["/json/plain"]["client_id"] != by_path["/json/gpc"]["client_id"]  # two browsers

    assert summary(granted) == [("pageview", "pageview", "/kv", {}, ["analytics", "preferences"])]
    assert summary(kv_rows) == [
        ("event", "engagement", "/kv", {}, []),
        ("event", "later", "/kv", {}, []),
    ]
    assert all(r["client_id"] is None and r["session_id"] is None for r in kv_rows)
