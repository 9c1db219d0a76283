"""The real tracker clients, from PyPI and npm, against a running proxy: each sends as it would to its own
vendor, and the rows in the store are checked. Nothing here stubs a client: if a client's wire format
changes, these fail. Clients are pinned (pyproject.toml's dev extra, tests/clients/package-lock.json).

Two sites: ``demo`` (no consent: identifiers dropped) and ``consented`` (the site's configuration grants
analytics consent, as a server-side integration under a contract would: identifiers kept as keyed
pseudonyms). The visitor of server-side SDKs is the test process on loopback.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import uuid
from typing import Any

import pytest

from tests.conftest import CHROME_UA
from tests.support.proxy_server import REPO, RunningProxy

NODE_CLIENTS = REPO / "tests" / "clients"
EMAIL = "jo.doe@example.com"


def marker() -> str:
    return uuid.uuid4().hex[:12]


def rows_with(proxy: RunningProxy, m: str, want: int) -> list[dict[str, Any]]:
    rows = proxy.rows(f"position(url, '{m}') > 0 OR position(name, '{m}') > 0", want=want)
    assert len(rows) == want, rows
    return rows


def check_anonymised(rows: list[dict[str, Any]], raw_ids: list[str]) -> None:
    for row in rows:
        assert row["ip"] == "127.0.0.0"  # loopback, truncated
        assert EMAIL not in str(row) and "token" not in row["url"]
        for raw in raw_ids:
            assert raw not in str(row)


def test_posthog_python(proxy: RunningProxy) -> None:
    from posthog import Posthog

    m, user = marker(), f"user-raw-{marker()}"
    errors: list[Any] = []
    for key, gzip in (("demo", False), ("wk_consented", True)):
        ph = Posthog(key, host=proxy.url, sync_mode=True, gzip=gzip, on_error=lambda e, b: errors.append(e))
        ph.capture(
            f"signup-{m}",
            distinct_id=user,
            properties={"plan": "pro", "email": EMAIL, "$current_url": f"https://example.com/{m}"},
        )
        ph.capture(
            "$pageview",
            distinct_id=user,
            properties={"$current_url": f"https://example.com/{m}/p?utm_source=news&token=T0K3N"},
        )
        ph.set(distinct_id=user, properties={"email": EMAIL})  # a person's traits: never stored
        ph.flush()
        ph.shutdown()
    assert errors == []
    rows = rows_with(proxy, m, 4)
    check_anonymised(rows, [user])
    by_site = {(r["site"], r["type"], r["name"].replace(m, "M")) for r in rows}
    assert by_site == {
        ("demo", "event", "signup-M"),
        ("demo", "pageview", "pageview"),
        ("consented", "event", "signup-M"),
        ("consented", "pageview", "pageview"),
    }
    for r in rows:
        if r["type"] == "event":
            assert r["props"] == {"plan": "pro"}  # email denylisted; PostHog's $ properties not stored
        else:
            assert r["url"] == f"https://example.com/{m}/p?utm_source=news" and r["utm_source"] == "news"
        assert (r["client_id"] is None) == (r["site"] == "demo")
        assert r["consent"] == ([] if r["site"] == "demo" else ["analytics"])


def segment_like(module: Any, m: str, key: str, host: str) -> list[Any]:
    errors: list[Any] = []
    client = module.Client(key, host=host, sync_mode=True, on_error=lambda e, b: errors.append(e))
    client.track(
        f"user-raw-{m}", f"Signed Up {m}", {"plan": "pro", "email": EMAIL}, anonymous_id=f"anon-raw-{m}"
    )
    client.page(
        f"user-raw-{m}",
        "Docs",
        "Pricing",
        {"url": f"https://example.com/{m}?email={EMAIL}", "referrer": "https://news.example.org/a?b=c"},
    )
    client.identify(f"user-raw-{m}", {"email": EMAIL})
    client.flush()
    return errors


@pytest.mark.parametrize("sdk", ["segment.analytics.client", "rudderstack.analytics.client"])
def test_segment_and_rudderstack_python(proxy: RunningProxy, sdk: str) -> None:
    import importlib

    module = importlib.import_module(sdk)
    m = marker()
    assert segment_like(module, m, "demo", proxy.url) == []
    assert segment_like(module, m, "wk_consented", proxy.url) == []
    rows = rows_with(proxy, m, 4)
    check_anonymised(rows, [f"user-raw-{m}", f"anon-raw-{m}"])
    for r in rows:
        if r["type"] == "pageview":
            assert (r["url"], r["referrer"]) == (f"https://example.com/{m}", "https://news.example.org")
        else:
            assert (r["name"], r["props"]) == (f"Signed Up {m}", {"plan": "pro"})
        if r["site"] == "demo":
            assert (r["client_id"], r["user_id"]) == (None, None)
        else:
            assert r["user_id"] and r["consent"] == ["analytics"]
    assert {r["site"] for r in rows} == {"demo", "consented"}


@pytest.mark.parametrize("method", ["post", "get"])
def test_snowplow_python(proxy: RunningProxy, method: str) -> None:
    from snowplow_tracker import Emitter, Subject, Tracker
    from snowplow_tracker.events import PageView, StructuredEvent

    m = marker()
    failures: list[Any] = []
    emitter = Emitter(
        f"127.0.0.1:{proxy.port}",
        protocol="http",
        method=method,
        batch_size=1,
        on_failure=lambda n, events: failures.append(n),
    )
    # A server-side tracker forwards its visitor's User-Agent (its own is python-requests, a bot).
    subject = Subject().set_user_id(f"user-raw-{m}").set_useragent(CHROME_UA).set_domain_user_id(f"duid-{m}")
    for app_id in ("demo", "wk_consented"):
        tracker = Tracker(namespace="t", emitters=emitter, app_id=app_id, subject=subject)
        tracker.track(PageView(page_url=f"https://example.com/{m}?email={EMAIL}", page_title="Hello"))
        tracker.track(StructuredEvent(category="shop", action=f"buy-{m}", label="x", value=2.5))
        tracker.flush()
    assert failures == []
    rows = rows_with(proxy, m, 4)
    check_anonymised(rows, [f"user-raw-{m}", f"duid-{m}"])
    for r in rows:
        assert (r["browser"], r["os"]) == ("Chrome", "Windows")  # from the forwarded User-Agent
        if r["type"] == "pageview":
            assert (r["url"], r["title"]) == (f"https://example.com/{m}", "Hello")
        else:
            assert r["props"] == {"category": "shop", "label": "x", "value": "2.5"}
        assert (r["user_id"] is None) == (r["site"] == "demo")


def node_client(script: str, *args: str) -> str:
    node = shutil.which("node")
    assert node, "node is required (make test installs the npm clients with it)"
    assert (NODE_CLIENTS / "node_modules").is_dir(), "run `make test` (it runs npm ci in tests/clients)"
    out = subprocess.run(
        [node, "-e", script, *args], cwd=NODE_CLIENTS, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


UMAMI_SCRIPT = """
const { Umami } = require('@umami/node');
const [host, website, m, ua] = process.argv.slice(1);
(async () => {
  const umami = new Umami({ websiteId: website, hostUrl: host, userAgent: ua });
  const page = await umami.track({ hostname: 'example.com', url: `/${m}/pricing?email=jo.doe@example.com`,
    title: 'Pricing', referrer: 'https://news.example.org/x?y=1', language: 'en-GB', screen: '1280x720' });
  const ev = await umami.track(`signup-${m}`, { plan: 'pro', email: 'jo.doe@example.com' });
  const who = await umami.identify({ email: 'jo.doe@example.com', id: `user-raw-${m}` });
  console.log(JSON.stringify([page.status, ev.status, who.status]));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def test_umami_node(proxy: RunningProxy) -> None:
    m = marker()
    for website in ("demo", "wk_consented"):
        assert node_client(UMAMI_SCRIPT, proxy.url, website, m, CHROME_UA).strip() == "[200,200,200]"
    # the event has no url (a server-side call): find it by name
    rows = rows_with(proxy, m, 4)
    check_anonymised(rows, [f"user-raw-{m}"])
    views = [r for r in rows if r["type"] == "pageview"]
    assert [r["url"] for r in views] == [f"https://example.com/{m}/pricing"] * 2
    assert all((r["title"], r["language"], r["screen_width"]) == ("Pricing", "en", 1280) for r in views)
    events = [r for r in rows if r["type"] == "event"]
    assert all(r["props"] == {"plan": "pro"} for r in events)


logging.getLogger("posthog").setLevel(logging.CRITICAL)  # it logs its own retries; failures are asserted
