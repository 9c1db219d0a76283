"""A realistic traffic mix for any Beacon Proxy deployment.

    locust -f benchmarks/locustfile.py --headless -u 50 -r 10 -t 1m \\
        --host http://127.0.0.1:8080 --csv benchmarks/results/locust

Mix: page views and custom events (consent denied and granted, some with Sec-GPC), 10-100 event batches,
sendBeacon text/plain, pixel GETs, IPv4 and IPv6 clients via X-Forwarded-For (honoured when the proxy
trusts the load generator's address, loopback by default), a few percent bots and a little bad input.
Expected outcomes count as successes: 202 for accepted or intentionally dropped events, 400 for the
malformed bodies we send on purpose. Anything else is a failure. Set BEACON_SITE to target another site.
Some visitors use other trackers' wire formats instead (PostHog gzip batches, Plausible, Segment batches),
sent with the tracker key BEACON_KEY (default "demo", which the demo site lists).
"""

from __future__ import annotations

import gzip
import json
import os
import random
from typing import Any

from locust import FastHttpUser, between, task

SITE = os.environ.get("BEACON_SITE", "demo")
KEY = os.environ.get("BEACON_KEY", "demo")
BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{s}.1 "
    "Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{f}.0) Gecko/20100101 Firefox/{f}.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.{m} Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel {p}) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{v}.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 "
    "Safari/537.36 Edg/{v}.0.0.0",
]
BOTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "curl/8.5.0",
]
PAGES = ["/", "/pricing", "/blog/launch", "/docs/install", "/signup", "/account/settings", "/contact"]
REFERRERS = ["", "https://www.google.com/", "https://news.ycombinator.com/item?id=1", "https://t.co/x"]


def user_agent(rng: random.Random) -> str:
    template = rng.choice(BROWSERS)
    return template.format(
        v=rng.randint(110, 131),
        s=rng.randint(15, 17),
        f=rng.randint(115, 132),
        m=rng.randint(0, 6),
        p=rng.randint(6, 9),
    )


def client_ip(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return f"2001:db8:{rng.randint(0, 0xFFFF):x}:{rng.randint(0, 0xFFFF):x}::{rng.randint(1, 0xFFFF):x}"
    first = rng.choice([81, 92, 145, 185, 203])
    return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


class Visitor(FastHttpUser):
    wait_time = between(0.5, 3)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.ua = BOTS[self.rng.randrange(len(BOTS))] if self.rng.random() < 0.03 else user_agent(self.rng)
        self.ip = client_ip(self.rng)
        self.consent = self.rng.random() < 0.4
        self.gpc = self.rng.random() < 0.1
        self.client_id = f"cid-{self.rng.getrandbits(64):x}"

    def headers(self, content_type: str = "application/json") -> dict[str, str]:
        h = {
            "User-Agent": self.ua,
            "X-Forwarded-For": self.ip,
            "Content-Type": content_type,
            "Accept-Language": "en-GB,en;q=0.9",
        }
        if self.gpc:
            h["Sec-GPC"] = "1"
        return h

    def event(self, etype: str = "pageview") -> dict[str, Any]:
        page = self.rng.choice(PAGES)
        e: dict[str, Any] = {
            "site": SITE,
            "type": etype,
            "url": f"https://example.com{page}?utm_source=newsletter&utm_campaign=nov&ref=abc",
            "referrer": self.rng.choice(REFERRERS),
            "title": page.strip("/").replace("/", " ").title() or "Home",
            "screen": {"width": 1440, "height": 900},
            "language": "en-GB",
            "engagement_ms": self.rng.randint(0, 120_000),
        }
        if etype == "event":
            e["name"] = self.rng.choice(["signup", "download", "play", "share"])
            e["props"] = {"plan": self.rng.choice(["free", "pro", "team"]), "step": self.rng.randint(1, 5)}
        if self.consent:
            e["consent"] = {"analytics": True, "marketing": self.rng.random() < 0.5}
            e["client_id"] = self.client_id
        return e

    def post(
        self, body: Any, content_type: str = "application/json", expect: int = 202, name: str = ""
    ) -> None:
        with self.client.post(
            "/v1/events",
            data=json.dumps(body),
            headers=self.headers(content_type),
            name=name or "/v1/events",
            catch_response=True,
        ) as resp:
            self.expect(resp, expect)

    @task(40)
    def pageview(self) -> None:
        self.post(self.event())

    @task(15)
    def custom_event(self) -> None:
        self.post(self.event("event"), name="/v1/events [event]")

    @task(10)
    def send_beacon(self) -> None:
        self.post(self.event(), content_type="text/plain;charset=UTF-8", name="/v1/events [sendBeacon]")

    @task(5)
    def batch(self) -> None:
        events = [
            self.event(self.rng.choice(["pageview", "event"])) for _ in range(self.rng.randint(10, 100))
        ]
        self.post(events, name="/v1/events [batch]")

    @task(10)
    def pixel(self) -> None:
        params = {
            "site": SITE,
            "url": f"https://example.com{self.rng.choice(PAGES)}",
            "ref": self.rng.choice(REFERRERS),
        }
        with self.client.get(
            "/v1/pixel.gif", params=params, headers=self.headers(), name="/v1/pixel.gif", catch_response=True
        ) as resp:
            self.expect(resp, 200)

    @task(2)
    def bad_input(self) -> None:
        with self.client.post(
            "/v1/events",
            data=b'{"site": "demo", "url": ',
            headers=self.headers(),
            name="/v1/events [bad input]",
            catch_response=True,
        ) as resp:
            self.expect(resp, 400)

    def expect(self, resp: Any, status: int) -> None:
        if resp.status_code == status:
            resp.success()
        else:
            resp.failure(f"expected {status}, got {resp.status_code}")

    @task(4)
    def posthog_batch(self) -> None:
        e = self.event()
        props = {
            "token": KEY,
            "distinct_id": self.client_id,
            "$current_url": e["url"],
            "$referrer": e["referrer"],
        }
        events = [{"event": "$pageview", "properties": props}, {"event": "signup", "properties": props}]
        body = gzip.compress(json.dumps(events).encode())
        headers = self.headers("text/plain")
        with self.client.post(
            "/i/v0/e/?compression=gzip-js",
            data=body,
            headers=headers,
            name="/i/v0/e/ [posthog]",
            catch_response=True,
        ) as resp:
            self.expect(resp, 200)

    @task(4)
    def plausible(self) -> None:
        e = self.event()
        body = {"n": "pageview", "u": e["url"], "d": KEY, "r": e["referrer"], "w": 1440}
        with self.client.post(
            "/api/event", data=json.dumps(body), headers=self.headers("text/plain"), catch_response=True
        ) as resp:
            self.expect(resp, 202)

    @task(2)
    def segment_batch(self) -> None:
        e = self.event("event")
        msgs = [
            {"type": "page", "anonymousId": self.client_id, "properties": {"url": e["url"]}},
            {"type": "track", "event": e["name"], "anonymousId": self.client_id, "properties": e["props"]},
        ]
        with self.client.post(
            "/v1/batch",
            data=json.dumps({"writeKey": KEY, "batch": msgs}),
            headers=self.headers(),
            name="/v1/batch [segment]",
            catch_response=True,
        ) as resp:
            self.expect(resp, 200)
