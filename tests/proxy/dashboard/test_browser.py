"""The dashboard in a real headless Chromium against a real ``beaconproxy serve`` with known data.

What a person sees is read from the page and compared with what the stats API answers the test itself
(with the analyst key, as any API client) for the same query: the top figures and the change, every panel's
rows, the suppression note, a row click filtering the whole page, Back undoing it, the CSV and zip
downloads. Every request the page makes is recorded: none may leave for another origin, none may break
the Content-Security-Policy, and the console stays clean. Two browser tests in all, sharing one proxy.
"""

from __future__ import annotations

import io
import re
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
from playwright.sync_api import Browser, Page

from tests.conftest import CHROME_UA
from tests.proxy.dashboard.test_pages import require_bundle
from tests.support.browser import chromium, collect_errors, desktop_page
from tests.support.proxy_server import RunningProxy, running_proxy

CONFIG = """
[sites.shop]
allowed_origins = ["*"]
min_visitors = 3

[sites.blog]
allowed_origins = ["*"]

[analytics]
key_cache_seconds = 0
"""
# (addresses, page, referrer, custom event): visitors are told apart by address (the daily hash).
TRAFFIC = [
    ([f"203.0.113.{i}" for i in range(1, 5)], "/pricing", "https://www.google.com/search?q=x", "signup"),
    ([f"203.0.113.{i}" for i in range(5, 9)], "/pricing", "", None),
    ([f"198.51.100.{i}" for i in range(1, 5)], "/blog/post", "https://news.ycombinator.com/item?id=1", None),
    (["192.0.2.1", "192.0.2.2"], "/about", "https://a.example.org/", None),  # 2 < 3: folded
    (["192.0.2.3", "192.0.2.4"], "/about", "https://b.example.net/", None),  # 2 < 3: folded
]
CSP_WATCH = """document.addEventListener('securitypolicyviolation', (e) => {
  (window.__csp = window.__csp || []).push(e.violatedDirective + ' ' + e.blockedURI);
});"""
READY = "#app[data-state=ready]"


def post(url: str, body: dict[str, Any], ip: str) -> None:
    req = urllib.request.Request(
        url + "/v1/events",
        data=orjson.dumps(body),
        headers={"Content-Type": "application/json", "User-Agent": CHROME_UA, "X-Forwarded-For": ip},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 202


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, geoip_files: tuple[str, str]) -> Iterator[RunningProxy]:
    require_bundle()
    with running_proxy(tmp_path_factory.mktemp("dashboard"), geoip_files, CONFIG) as p:
        sent = 0
        for ips, page, referrer, event in TRAFFIC:
            for ip in ips:
                post(p.url, {"site": "shop", "url": f"https://shop.example{page}", "referrer": referrer}, ip)
                sent += 1
                if event:
                    props = {"plan": "pro" if ip.endswith("1") else "team"}
                    body = {"site": "shop", "type": "event", "name": event, "props": props}
                    post(p.url, {**body, "url": f"https://shop.example{page}"}, ip)
                    sent += 1
        assert len(p.rows("site = 'shop'", want=sent)) == sent
        yield p


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def new_key(proxy: RunningProxy, *sites: str) -> str:
    r = proxy.admin("POST", "/admin/analyst-keys", orjson.dumps({"sites": list(sites)}))
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


class Api:
    """The stats API as an outside client calls it, with the analyst key."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def query(self, body: dict[str, Any]) -> Any:
        r = self.client.post("/api/v2/query", json={"site_id": "shop", **body})
        assert r.status_code == 200, r.text
        return r.json()

    def csv(self, body: dict[str, Any]) -> bytes:
        r = self.client.post(
            "/api/v2/query", json={"site_id": "shop", **body}, headers={"Accept": "text/csv"}
        )
        assert r.status_code == 200, r.text
        return r.content


def shown(metric: str, value: Any) -> str:
    """A figure as the page formats it (proxy/dashboard/web/src/format.js)."""
    if metric == "bounce_rate":
        return f"{value}%"
    if metric == "visit_duration":
        m, s = divmod(round(value), 60)
        return f"{m}m {s}s" if m else f"{s}s"
    return f"{value:,}"


def filters_of(page: Page) -> list[list[Any]]:
    query = parse_qs(urlsplit(page.url).query)
    return [["is", d, v] for d, v in query.items() if d.startswith(("visit:", "event:"))]


def top_figures(page: Page) -> dict[str, str]:
    found: dict[str, str] = page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('.top-stats button.card')]"
        ".map(c => [c.dataset.metric, c.querySelector('.value').textContent]))"
    )
    return found


def panel_rows(page: Page, panel: str) -> list[list[str]]:
    rows: list[list[str]] = page.evaluate(
        "(id) => [...document.querySelectorAll(`#panel-${id} .row:not(.head)`)]"
        ".map(r => [r.dataset.value, ...[...r.querySelectorAll('.num')].map(n => n.textContent)])",
        panel,
    )
    return rows


def expected_rows(answer: Any, metrics: list[str]) -> list[list[str]]:
    return [
        [r["dimensions"][0], *(shown(m, v) for m, v in zip(metrics, r["metrics"], strict=True))]
        for r in answer["results"]
    ]


TOP = ["visitors", "visits", "pageviews", "bounce_rate", "visit_duration"]
PANELS = {  # panel: (dimension of its first tab, metrics, extra filters)
    "sources": ("visit:source", ["visitors"], []),
    "pages": ("event:page", ["visitors", "pageviews"], []),
    "locations": ("visit:country", ["visitors"], []),
    "devices": ("visit:device", ["visitors"], []),
    "events": (
        "event:name",
        ["visitors", "events"],
        [["is_not", "event:name", ["pageview", "engagement", "$pageleave"]]],
    ),
}


def check_page_against_api(page: Page, api: Api) -> dict[str, str]:
    """Every figure the page shows for its current URL equals the API's answer; returns the top figures."""
    filters = filters_of(page)
    answer = api.query({"metrics": TOP, "date_range": "30d", "filters": filters})
    want = {m: shown(m, v) for m, v in zip(TOP, answer["results"][0]["metrics"], strict=True)}
    got = top_figures(page)
    assert got == want
    for panel, (dimension, metrics, extra) in PANELS.items():
        body = {
            "metrics": metrics,
            "date_range": "30d",
            "dimensions": [dimension],
            "filters": filters + extra,
        }
        assert panel_rows(page, panel) == expected_rows(api.query(body), metrics), panel
    return got


def sign_in(page: Page, proxy: RunningProxy, key: str) -> None:
    page.goto(proxy.url + "/dashboard")
    page.fill("#key", key)
    page.click("form button[type=submit]")
    page.wait_for_selector(READY, state="attached", timeout=60_000)


def test_the_dashboard_shows_what_the_api_says(browser: Browser, proxy: RunningProxy, tmp_path: Path) -> None:
    key = new_key(proxy, "shop", "blog")
    with (
        httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client,
        desktop_page(browser, init_script=CSP_WATCH, accept_downloads=True) as page,
    ):
        api = Api(client)
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))

        # A wrong key: the form again, with the reason, and no cookie.
        page.goto(proxy.url + "/dashboard")
        page.fill("#key", "bpk_0123456789abcdef_" + "A" * 43)
        page.click("form button[type=submit]")
        assert "not a live analyst key" in page.inner_text(".signin-error")
        assert page.context.cookies() == []

        errors = collect_errors(page)
        sign_in(page, proxy, key)
        assert urlsplit(page.url).path == "/dashboard/shop"
        response = page.request.get(proxy.url + "/dashboard/shop")  # the page's own headers
        assert "default-src 'none'" in response.headers["content-security-policy"]
        (cookie,) = page.context.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["value"] not in key
        assert page.evaluate("() => [document.cookie, localStorage.length, sessionStorage.length]") == [
            "",
            0,
            0,
        ]

        # Every figure equals the API's; the comparison with the previous period (empty) says so.
        before = check_page_against_api(page, api)
        assert before["visitors"] == "16"
        assert page.inner_text(".card[data-metric=visitors] .change") == "new"
        note = page.inner_text("#panel-sources .suppression")
        meta = api.query({"metrics": ["visitors"], "date_range": "30d", "dimensions": ["visit:source"]})[
            "meta"
        ]["suppression"]
        assert meta["rows_folded"] == 2 and f"{meta['rows_folded']} rows with fewer than 3 visitors" in note
        assert ["(other)", "4"] in panel_rows(page, "sources")
        assert page.locator("#panel-sources .row.other button").count() == 0  # (other) is not a filter
        # The graph's figures (the table under it) are the API's time series, zero-filled over its labels.
        series = api.query(
            {
                "metrics": ["visitors"],
                "date_range": "30d",
                "dimensions": ["time"],
                "include": {"time_labels": True},
            }
        )
        found = {r["dimensions"][0]: r["metrics"][0] for r in series["results"]}
        graph = page.eval_on_selector_all(
            ".graph-data tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
        )
        assert graph == [
            [label, shown("visitors", found.get(label, 0))] for label in series["meta"]["time_labels"]
        ]
        assert sum(found.values()) == 16 and len(graph) == 30
        assert re.fullmatch(r"\d+", page.inner_text("#realtime")) and int(page.inner_text("#realtime")) == 16

        # The CSV button downloads the API's own CSV (suppression applied) for that breakdown.
        with page.expect_download() as download:
            page.click("#panel-sources button.csv")
        got_csv = Path(download.value.path()).read_bytes()
        assert got_csv == api.csv(
            {"metrics": ["visitors"], "date_range": "30d", "dimensions": ["visit:source"]}
        )
        assert b"(other),4" in got_csv and b"a.example.org" not in got_csv

        # A tab: UTM-less sources are "(not set)"; entry pages of the pages panel.
        page.click("#panel-pages .tab[data-tab=entry_pages]")
        page.wait_for_selector("#panel-pages[data-state=ready]", state="attached")
        entry = api.query(
            {"metrics": ["visitors", "visits"], "date_range": "30d", "dimensions": ["visit:entry_page"]}
        )
        assert panel_rows(page, "pages") == expected_rows(entry, ["visitors", "visits"])
        page.click("#panel-pages .tab[data-tab=pages]")
        page.wait_for_selector("#panel-pages[data-state=ready]", state="attached")

        # Clicking a row filters the whole page, as the API says; the URL says so; Back undoes it.
        page.click("#panel-sources .row[data-value=Google] button")
        page.wait_for_function("() => location.search.includes('visit%3Asource=Google')")
        page.wait_for_selector(READY, state="attached")
        assert page.inner_text(".chips").startswith("Source is Google")
        after = check_page_against_api(page, api)
        assert after != before and int(after["visitors"]) < int(before["visitors"])
        page.click("#panel-events .row[data-value=signup] button")  # a second filter, on an event
        page.wait_for_function("() => location.search.includes('event%3Aname=signup')")
        page.wait_for_selector(READY, state="attached")
        check_page_against_api(page, api)
        page.fill("#prop", "plan")
        page.click(".prop-form button")
        page.wait_for_function("() => location.search.includes('prop=plan')")
        page.wait_for_selector(READY, state="attached")
        plans = api.query(
            {
                "metrics": ["visitors", "events"],
                "date_range": "30d",
                "dimensions": ["event:props:plan"],
                "filters": [*filters_of(page), PANELS["events"][2][0]],
            }
        )
        assert panel_rows(page, "props") == expected_rows(plans, ["visitors", "events"])
        # team: 3 visitors, shown; pro: 1, below k = 3, and alone in (other), so withheld, as the page says
        assert [r[0] for r in panel_rows(page, "props")] == ["team"]
        assert "1 row with fewer than 3 visitors withheld" in page.inner_text("#panel-props .suppression")
        page.go_back()
        page.go_back()
        page.go_back()
        page.wait_for_function("() => location.search === ''")
        page.wait_for_selector(READY, state="attached")
        assert page.locator(".chip").count() == 0
        assert check_page_against_api(page, api) == before

        # The range picker: a named range and a custom one, as the API reads them.
        page.select_option("#range", "7d")
        page.wait_for_function("() => location.search.includes('period=7d')")
        page.wait_for_selector(READY, state="attached")
        seven = api.query({"metrics": TOP, "date_range": "7d"})["results"][0]["metrics"]
        assert top_figures(page)["visitors"] == shown("visitors", seven[0])

        # The whole-site export: a zip of CSVs from the API, for the range shown.
        with page.expect_download() as download:
            page.click("#export")
        with zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())) as z:
            assert {"visitors.csv", "sources.csv", "pages.csv", "custom_events.csv"} <= set(z.namelist())
            assert b"(other),4" in z.read("sources.csv")

        # The site switcher: the key's other site.
        assert page.eval_on_selector_all("#site option", "os => os.map(o => o.value)") == ["shop", "blog"]

        assert page.evaluate("() => window.__csp || []") == []
        assert errors == []
        origins = {
            f"{urlsplit(u).scheme}://{urlsplit(u).netloc}" for u in requests if not u.startswith("blob:")
        }
        assert origins == {proxy.url}, origins

        # Signing out: the form again, and the old cookie reads nothing any more.
        page.click(".sign-out button")
        page.wait_for_selector("#key")
        old = httpx.post(
            proxy.url + "/api/v2/query",
            json={"site_id": "shop", "metrics": ["visitors"], "date_range": "7d"},
            headers={"Cookie": f"{cookie['name']}={cookie['value']}", "Sec-Fetch-Site": "same-origin"},
        )
        assert old.status_code == 401
        assert page.context.cookies() == []


def test_revoking_the_key_ends_the_session(browser: Browser, proxy: RunningProxy) -> None:
    key = new_key(proxy, "shop")
    with desktop_page(browser) as page:
        sign_in(page, proxy, key)
        r = proxy.admin("POST", f"/admin/analyst-keys/{key.split('_')[1]}/revoke")
        assert r.status_code == 200
        time.sleep(0.1)
        page.click("#panel-devices .tab[data-tab=browsers]")  # the next API call is refused
        page.wait_for_selector(".notice[data-kind=session]")
        assert "session has ended" in page.inner_text(".notice")
        page.reload()
        page.wait_for_selector("#key")  # the sign-in form, not the dashboard
