"""Real JavaScript trackers from npm (posthog-js, @plausible-analytics/tracker) in headless Chromium,
pointed at a running proxy by changing only their endpoint; the stored rows are then checked.

The page is served from ``localhost:<port>`` and the proxy listens on ``127.0.0.1:<other port>``: cross-site,
as a site and its analytics endpoint are in production. Playwright marks the browser as automated
(``navigator.webdriver``), which posthog-js rightly treats as a bot and sends nothing for; the init script
gives it a visitor's browser's value instead. posthog-js otherwise runs with its defaults: it fetches its
remote config from the proxy (answered "nothing enabled"), batches events and sends the last ones with
sendBeacon as the page goes away.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.support.browser import chromium, collect_errors, desktop_page, static_site
from tests.support.proxy_server import REPO, RunningProxy

NODE_MODULES = REPO / "tests" / "clients" / "node_modules"
NOT_AUTOMATED = "Object.defineProperty(navigator, 'webdriver', {get: () => false})"


def npm_file(path: str) -> bytes:
    f = NODE_MODULES / path
    assert f.is_file(), f"{f} is missing: `make test` runs npm ci in tests/clients"
    return f.read_bytes()


def wait_rows(proxy: RunningProxy, where: str, want: int) -> list[dict[str, Any]]:
    rows = proxy.rows(where, want=want)
    assert len(rows) == want, [(r["type"], r["name"], r["url"]) for r in rows]
    return rows


POSTHOG_PAGE = """<!doctype html><title>Pricing</title><script src="/posthog.js"></script><script>
posthog.init('{key}', {{api_host: '{proxy}', capture_pageview: 'history_change', capture_pageleave: true}});
</script><body>pricing</body>"""


@pytest.mark.parametrize("key", ["demo", "wk_consented"])
def test_posthog_js(proxy: RunningProxy, key: str) -> None:
    m = uuid.uuid4().hex[:12]
    pages = {
        f"/{m}/pricing": POSTHOG_PAGE.format(key=key, proxy=proxy.url),
        "/posthog.js": npm_file("posthog-js/dist/array.full.no-external.js"),
    }
    with (
        static_site(pages) as site,
        chromium() as browser,
        desktop_page(browser, init_script=NOT_AUTOMATED) as page,
    ):
        errors = collect_errors(page)
        page.goto(site.url(f"/{m}/pricing?utm_source=news&email=jo.doe@example.com&gclid=CLICK123"))
        page.wait_for_function("window.posthog && posthog.__loaded")
        page.evaluate("posthog.capture('signup', {plan: 'pro', email: 'jo.doe@example.com'})")
        page.evaluate(f"history.pushState({{}}, '', '/{m}/next')")  # a single-page-app navigation
        distinct_id = page.evaluate("posthog.get_distinct_id()")
        time.sleep(0.5)
        page.goto("about:blank")  # page leave
        rows = wait_rows(proxy, f"position(url, '{m}') > 0", 4)  # with the browser still open
        assert errors == []
    site_id = "demo" if key == "demo" else "consented"
    got = sorted((r["type"], r["name"], r["url"].split(m, 1)[1]) for r in rows)
    assert got == [
        ("event", "$pageleave", "/next"),
        ("event", "signup", "/pricing?utm_source=news"),
        ("pageview", "pageview", "/next"),
        ("pageview", "pageview", "/pricing?utm_source=news"),
    ]
    for r in rows:
        assert r["site"] == site_id
        assert (r["browser"], r["device"], r["ip"]) == ("Chrome", "desktop", "127.0.0.0")
        assert "email" not in r["props"] and "gclid" not in str(r) and "CLICK123" not in str(r)
        assert distinct_id not in str(r)  # never the raw id, with or without consent
        if site_id == "demo":
            assert (r["client_id"], r["session_id"], r["consent"]) == (None, None, [])
        else:
            assert r["client_id"] and r["session_id"] and r["consent"] == ["analytics"]
    signup = next(r for r in rows if r["name"] == "signup")
    assert signup["props"]["plan"] == "pro"
    leave = next(r for r in rows if r["name"] == "$pageleave")
    assert leave["engagement_ms"] is not None and leave["engagement_ms"] > 0
    if site_id == "consented":
        assert len({r["client_id"] for r in rows}) == 1  # one visitor, one pseudonym


PLAUSIBLE_PAGE = """<!doctype html><title>Docs</title><body>docs</body><script type="module">
import {{ init, track }} from '/plausible.js';
init({{ domain: '{domain}', endpoint: '{proxy}/api/event', captureOnLocalhost: true }});
window.track = track;
</script>"""


def test_plausible_tracker(proxy: RunningProxy) -> None:
    m = uuid.uuid4().hex[:12]
    pages = {
        f"/{m}/docs": PLAUSIBLE_PAGE.format(domain="consented.example", proxy=proxy.url),
        "/plausible.js": npm_file("@plausible-analytics/tracker/plausible.js"),
    }
    with static_site(pages) as site, chromium() as browser, desktop_page(browser) as page:
        errors = collect_errors(page)
        page.goto(site.url(f"/{m}/docs?ref=hn&token=SECRET1"), referer="https://news.example.org/item?id=1")
        page.wait_for_function("typeof window.track === 'function'")
        page.evaluate("track('Signup', {props: {plan: 'pro', email: 'jo.doe@example.com'}})")
        page.evaluate(f"history.pushState({{}}, '', '/{m}/docs/page-2')")
        time.sleep(1.2)  # engagement is only reported after some visible time
        page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
        page.goto("about:blank")
        rows = proxy.rows(f"position(url, '{m}') > 0", want=3)  # with the browser still open
        assert errors == []
    got = sorted((r["type"], r["name"], r["url"].split(m, 1)[1]) for r in rows if r["name"] != "engagement")
    assert got == [
        ("event", "Signup", "/docs"),
        ("pageview", "pageview", "/docs"),
        ("pageview", "pageview", "/docs/page-2"),
    ]
    for r in rows:
        assert r["site"] == "consented"
        assert "SECRET1" not in str(r) and "jo.doe" not in str(r)
        assert (r["client_id"], r["user_id"]) == (None, None)  # Plausible sends none
    first = next(r for r in rows if r["url"].endswith(f"{m}/docs") and r["type"] == "pageview")
    assert first["referrer"] == "https://news.example.org"
    assert next(r for r in rows if r["name"] == "Signup")["props"] == {"plan": "pro"}


SNOWPLOW_PAGE = """<!doctype html><title>Shop</title><script src="/sp.js"></script><script>
snowplowBrowserTracking.newTracker('sp', '{proxy}', {{appId: '{app}', bufferSize: 1}});
snowplowBrowserTracking.trackPageView();
</script><body>shop</body>"""


@pytest.mark.parametrize("app", ["demo", "wk_consented"])
def test_snowplow_browser_tracker(proxy: RunningProxy, app: str) -> None:
    """Snowplow's browser tracker posts JSON (so with a CORS preflight and credentials) to tp2."""
    m = uuid.uuid4().hex[:12]
    pages = {
        f"/{m}/shop": SNOWPLOW_PAGE.format(proxy=proxy.url, app=app),
        "/sp.js": npm_file("@snowplow/browser-tracker/dist/index.umd.min.js"),
    }
    with static_site(pages) as site, chromium() as browser, desktop_page(browser) as page:
        errors = collect_errors(page)
        page.goto(site.url(f"/{m}/shop?utm_source=news&email=jo.doe@example.com"))
        page.evaluate(
            "snowplowBrowserTracking.trackSelfDescribingEvent({event: {schema: "
            "'iglu:com.acme/signup/jsonschema/1-0-0', data: {plan: 'pro', email: 'jo.doe@example.com'}}})"
        )
        page.evaluate("snowplowBrowserTracking.trackStructEvent({category: 'shop', action: 'buy', value: 2})")
        page.evaluate(f"history.pushState({{}}, '', '/{m}/cart'); snowplowBrowserTracking.trackPageView()")
        cookies = page.evaluate("document.cookie")  # the tracker's own _sp_id cookie holds its duid
        session = page.evaluate("snowplowBrowserTracking.getDomainSessionId()")
        # the tracker sends one request at a time: keep the page open until all of them are stored
        rows = wait_rows(proxy, f"position(url, '{m}') > 0", 4)
        assert errors == []
    got = sorted((r["type"], r["name"], r["url"].split(m, 1)[1], str(r["props"])) for r in rows)
    assert got == [
        ("event", "buy", "/shop?utm_source=news", "{'category': 'shop', 'value': '2'}"),
        ("event", "signup", "/shop?utm_source=news", "{'plan': 'pro'}"),
        ("pageview", "pageview", "/cart", "{}"),
        ("pageview", "pageview", "/shop?utm_source=news", "{}"),
    ]
    duid = next(p.split("=", 1)[1].split(".")[0] for p in cookies.split("; ") if p.startswith("_sp_id"))
    for r in rows:
        assert r["browser"] == "Chrome"
        assert r["title"] == ("Shop" if r["type"] == "pageview" else "")  # it names the page on views only
        assert duid not in str(r) and session not in str(r) and "jo.doe" not in str(r)
        if app == "demo":
            assert (r["client_id"], r["session_id"], r["consent"]) == (None, None, [])
        else:
            assert r["client_id"] and r["session_id"] and r["consent"] == ["analytics"]


SEGMENT_PAGE = """<!doctype html><title>Docs</title><script src="/umd/index.js"></script><script>
// Settings given inline: Segment's settings CDN is not served by the proxy.
window.analytics = AnalyticsNext.AnalyticsBrowser.load({{writeKey: '{key}', cdnSettings: {{integrations:
  {{'Segment.io': {{apiKey: '{key}', apiHost: '{host}/v1', protocol: 'http'}}}}}}}});
analytics.page();
</script><body>docs</body>"""


@pytest.mark.parametrize("key", ["demo", "wk_consented"])
def test_segment_analytics_js(proxy: RunningProxy, key: str) -> None:
    """Segment's analytics.js (analytics-next) sends /v1/p, /v1/t and /v1/i as text/plain."""
    m = uuid.uuid4().hex[:12]
    umd = NODE_MODULES / "@segment/analytics-next/dist/umd"
    pages: dict[str, str | bytes] = {f"/umd/{f.name}": f.read_bytes() for f in umd.glob("*.js")}
    assert "/umd/index.js" in pages, "`make test` runs npm ci in tests/clients"
    pages[f"/{m}/docs"] = SEGMENT_PAGE.format(key=key, host=proxy.url.split("://", 1)[1])
    with static_site(pages) as site, chromium() as browser, desktop_page(browser) as page:
        errors = collect_errors(page)
        page.goto(site.url(f"/{m}/docs?utm_source=news&email=jo.doe@example.com"))
        page.evaluate("analytics.track('Signed Up', {plan: 'pro', email: 'jo.doe@example.com'})")
        page.evaluate("analytics.identify('user-raw-1', {email: 'jo.doe@example.com'})")  # traits: not stored
        page.evaluate(f"history.pushState({{}}, '', '/{m}/next'); analytics.page()")
        anonymous_id = page.evaluate("async () => (await analytics.user()).anonymousId()")
        rows = wait_rows(proxy, f"position(url, '{m}') > 0", 3)  # with the browser still open
        assert errors == []
    got = sorted((r["type"], r["name"], r["url"].split(m, 1)[1], str(r["props"])) for r in rows)
    assert got == [
        ("event", "Signed Up", "/docs?utm_source=news", "{'plan': 'pro'}"),
        ("pageview", "pageview", "/docs?utm_source=news", "{}"),
        ("pageview", "pageview", "/next", "{}"),
    ]
    for r in rows:
        assert r["browser"] == "Chrome" and r["language"] == "en"
        assert anonymous_id not in str(r) and "user-raw-1" not in str(r) and "jo.doe" not in str(r)
        if key == "demo":
            assert (r["client_id"], r["user_id"], r["consent"]) == (None, None, [])
        else:
            assert r["client_id"] and r["consent"] == ["analytics"]
