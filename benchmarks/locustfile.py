"""A realistic, configurable traffic mix for any Beacon Proxy deployment, reconciled at the end.

    make loadtest                                    # against `make run`; see README "Operating it"
    locust -f benchmarks/locustfile.py --headless -u 50 -r 50 -t 1m --stop-timeout 10 \\
        --host http://127.0.0.1:8080 --request-rate 200 --csv benchmarks/results/locust

Each simulated user is a stream of visitors (a new one every ten requests on average): a User-Agent
drawn from a real-world distribution (see ``--user-agents``) or, for ``--bot-share`` of them, a crawler's;
an IPv4 or IPv6 address sent in ``X-Forwarded-For`` (honoured when the proxy trusts the load generator's
address, loopback by default); analytics consent or not (with consent, a client id); sometimes
``Sec-GPC: 1``; one site and one tracker key. Each request is one of these kinds, drawn by weight:

    pageview    POST /v1/events, one page view (JSON)          batch      POST /v1/events, a JSON array
    event       POST /v1/events, one custom event with props   pixel      GET /v1/pixel.gif
    sendbeacon  POST /v1/events as text/plain (sendBeacon)     bad        malformed JSON, expects 400
    posthog     POST /i/v0/e/, a gzip batch of 2               plausible  POST /api/event
    segment     POST /v1/batch, page + track                   umami      POST /api/send
    snowplow    POST /com.snowplowanalytics.snowplow/tp2, a page view and a structured event

Options: Locust's command line or config file, or the environment variable in brackets.

    --sites [BEACON_SITES] demo           site ids (comma-separated); each visitor picks one
    --tracker-keys [BEACON_TRACKER_KEYS] demo
                                          keys other trackers' requests carry; each must be listed in
                                          some site's tracker_keys
    --consent-share [BEACON_CONSENT_SHARE] 0.4   visitors granting analytics consent (marketing: half)
    --gpc-share [BEACON_GPC_SHARE] 0.1    visitors whose browser sends Sec-GPC: 1
    --bot-share [BEACON_BOT_SHARE] 0.03   visitors that are crawlers (dropped by the proxy as `bot`)
    --ipv6-share [BEACON_IPV6_SHARE] 0.2
    --mix [BEACON_MIX] "pageview=40,event=15,sendbeacon=10,batch=5,pixel=10,bad=2,posthog=4,
                        plausible=4,segment=2,umami=2,snowplow=2"   kinds and weights (0 turns one off)
    --batch-size [BEACON_BATCH_SIZE] 10-100   events in a `batch` request
    --user-agents [BEACON_USER_AGENTS] real   `real`: the User-Agents of the fake-useragent package's
                                          data set (from Intoli's user-agents, real traffic), weighted by
                                          their share; `builtin`: six browser templates. Without the
                                          package, `real` falls back to `builtin` and says so.
    --request-rate [BEACON_REQUEST_RATE] 0    requests/s of all users together (each user paced to
                                          rate/users); 0: each user thinks --think-time between requests
    --think-time [BEACON_THINK_TIME] 0.5-3    seconds, uniform
    --admin-token [BEACON_ADMIN_TOKEN]    also count stored rows through POST /admin/query
    --admin-url [BEACON_ADMIN_URL]        where: the admin listener (unix:/path/admin.sock, or loopback)
    --metrics-urls [BEACON_METRICS_URLS]  every replica's /metrics, comma-separated (default HOST/metrics)
    --results-prefix [BEACON_RESULTS_PREFIX] benchmarks/results/locust   where _reconcile.txt/.json go
    --reconcile-timeout [BEACON_RECONCILE_TIMEOUT] 60   seconds to wait for the proxy to ship
    --no-reconcile                        skip the reconciliation

Expected answers count as successes (202 or the format's own 200/202, 400 for `bad`); anything else,
or no answer, is a failure. At the end (see ``reconcile.py``) the events this run had acknowledged are
compared with the proxy's own counters before and after, and with the rows stored: use
``--stop-timeout`` so that users finish their request in flight, or the comparison cannot be exact.
In distributed mode (``--master``/``--worker``) each worker sends its counts to the master when it stops.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import json
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import gevent
import reconcile
from locust import FastHttpUser, between, constant_throughput, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.user.task import LOCUST_STATE_STOPPING, LOCUST_STATE_WAITING

log = logging.getLogger("beacon.loadtest")

KINDS = (
    "pageview",
    "event",
    "sendbeacon",
    "batch",
    "pixel",
    "bad",
    "posthog",
    "plausible",
    "segment",
    "umami",
    "snowplow",
)
DEFAULT_MIX = (
    "pageview=40,event=15,sendbeacon=10,batch=5,pixel=10,bad=2,"
    "posthog=4,plausible=4,segment=2,umami=2,snowplow=2"
)
# The proxy's endpoint label (beacon_events_received{endpoint}) for each kind.
ENDPOINT = {
    "pageview": "events",
    "event": "events",
    "sendbeacon": "events",
    "batch": "events",
    "bad": "events",
    "pixel": "pixel",
    "posthog": "posthog",
    "plausible": "plausible",
    "segment": "segment",
    "umami": "umami",
    "snowplow": "snowplow",
}
BUILTIN_BROWSERS = (
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
)
BOTS = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "curl/8.5.0",
)
PAGES = ("/", "/pricing", "/blog/launch", "/docs/install", "/signup", "/account/settings", "/contact")
REFERRERS = ("", "https://www.google.com/", "https://news.ycombinator.com/item?id=1", "https://t.co/x")
NEW_VISITOR_CHANCE = 0.1  # after each request: a user is a stream of visitors, not one


# --- options -------------------------------------------------------------------------------------------


@events.init_command_line_parser.add_listener
def add_options(parser: Any) -> None:
    def add(name: str, env: str, default: Any, help: str, **kw: Any) -> None:
        parser.add_argument(name, env_var=env, default=default, help=help, **kw)

    add("--sites", "BEACON_SITES", "demo", "site ids, comma-separated; each visitor picks one")
    add("--tracker-keys", "BEACON_TRACKER_KEYS", "demo", "keys other trackers' requests carry")
    add("--consent-share", "BEACON_CONSENT_SHARE", 0.4, "visitors granting analytics consent", type=float)
    add("--gpc-share", "BEACON_GPC_SHARE", 0.1, "visitors sending Sec-GPC: 1", type=float)
    add("--bot-share", "BEACON_BOT_SHARE", 0.03, "visitors that are crawlers", type=float)
    add("--ipv6-share", "BEACON_IPV6_SHARE", 0.2, "visitors with an IPv6 address", type=float)
    add("--mix", "BEACON_MIX", DEFAULT_MIX, f"request kinds and weights, of: {', '.join(KINDS)}")
    add("--batch-size", "BEACON_BATCH_SIZE", "10-100", "events in a batch request, MIN-MAX")
    add("--user-agents", "BEACON_USER_AGENTS", "real", "real (a real-world distribution) or builtin")
    add("--request-rate", "BEACON_REQUEST_RATE", 0.0, "requests/s of all users together", type=float)
    add("--user-rate", "BEACON_USER_RATE", 0.0, "requests/s per user (--request-rate sets it)", type=float)
    add("--think-time", "BEACON_THINK_TIME", "0.5-3", "seconds between a user's requests, MIN-MAX")
    add("--admin-token", "BEACON_ADMIN_TOKEN", "", "count stored rows via /admin/query", is_secret=True)
    add(
        "--admin-url",
        "BEACON_ADMIN_URL",
        "",
        "the admin listener: unix:/path/admin.sock or http://127.0.0.1:PORT",
    )
    add("--metrics-urls", "BEACON_METRICS_URLS", "", "every replica's /metrics, comma-separated")
    add("--results-prefix", "BEACON_RESULTS_PREFIX", "benchmarks/results/locust", "reconciliation files")
    add("--reconcile-timeout", "BEACON_RECONCILE_TIMEOUT", 60.0, "seconds to wait for shipping", type=float)
    parser.add_argument("--no-reconcile", action="store_true", default=False, help="skip the reconciliation")


def _range(text: str, name: str) -> tuple[float, float]:
    lo, _, hi = text.partition("-")
    try:
        low, high = float(lo), float(hi or lo)
    except ValueError:
        raise ValueError(f"--{name} must be MIN-MAX, e.g. 10-100 (got {text!r})") from None
    if not 0 <= low <= high:
        raise ValueError(f"--{name} must be MIN-MAX with 0 <= MIN <= MAX (got {text!r})")
    return low, high


def parse_mix(text: str) -> dict[str, float]:
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name.strip() not in KINDS:
            raise ValueError(f"--mix: unknown kind {name.strip()!r}; kinds: {', '.join(KINDS)}")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--mix: {part!r} must be KIND=WEIGHT") from None
    if not any(w > 0 for w in weights.values()) or any(w < 0 for w in weights.values()):
        raise ValueError("--mix needs at least one positive weight and none negative")
    return weights


@dataclass
class UserAgents:
    strings: list[str]
    weights: list[float] | None  # None: the builtin templates, filled in at random
    source: str

    def pick(self, rng: random.Random) -> str:
        if self.weights is not None:
            return rng.choices(self.strings, self.weights)[0]
        return rng.choice(self.strings).format(
            v=rng.randint(110, 131),
            s=rng.randint(15, 17),
            f=rng.randint(115, 132),
            m=rng.randint(0, 6),
            p=rng.randint(6, 9),
        )


def builtin_user_agents(why: str) -> UserAgents:
    return UserAgents(list(BUILTIN_BROWSERS), None, f"builtin: 6 browser templates ({why})")


def load_user_agents(choice: str) -> UserAgents:
    """The User-Agents of fake-useragent's bundled data set (from Intoli's user-agents: real traffic),
    each weighted by its share; the package is the `loadtest` extra. Without it: the builtin templates,
    and the source says that this is not a real-world distribution."""
    if choice == "builtin":
        return builtin_user_agents("chosen")
    if choice != "real":
        raise ValueError(f"--user-agents must be real or builtin (got {choice!r})")
    try:
        version = importlib.metadata.version("fake-useragent")
        data = resources.files("fake_useragent").joinpath("data/browsers.jsonl").read_text()
        shares: Counter[str] = Counter()
        for line in data.splitlines():
            if line.strip():
                row = json.loads(line)
                shares[row["useragent"]] += float(row["percent"])
    except (
        ModuleNotFoundError,
        importlib.metadata.PackageNotFoundError,
        OSError,
        ValueError,
        KeyError,
    ) as exc:
        why = f"NOT a real-world distribution: fake-useragent unavailable ({type(exc).__name__}); install "
        return builtin_user_agents(why + "the loadtest extra: pip install -e '.[loadtest]'")
    if not shares:
        return builtin_user_agents("NOT a real-world distribution: fake-useragent's data set is empty")
    strings = list(shares)
    return UserAgents(
        strings,
        [shares[s] for s in strings],
        f"fake-useragent {version}: {len(strings)} real-world User-Agents weighted by their traffic share",
    )


@dataclass
class Config:
    sites: list[str]
    tracker_keys: list[str]
    consent_share: float
    gpc_share: float
    bot_share: float
    ipv6_share: float
    kinds: list[str]
    weights: list[float]
    batch_size: tuple[int, int]
    user_agents: UserAgents
    user_rate: float
    think_time: tuple[float, float]

    @classmethod
    def from_options(cls, opts: Any) -> Config:
        mix = parse_mix(opts.mix)
        lo, hi = _range(opts.batch_size, "batch-size")
        sites = [s.strip() for s in opts.sites.split(",") if s.strip()]
        keys = [k.strip() for k in opts.tracker_keys.split(",") if k.strip()]
        if not sites or not keys:
            raise ValueError("--sites and --tracker-keys need at least one value each")
        for name in ("consent_share", "gpc_share", "bot_share", "ipv6_share"):
            if not 0 <= getattr(opts, name) <= 1:
                raise ValueError(f"--{name.replace('_', '-')} must be between 0 and 1")
        return cls(
            sites=sites,
            tracker_keys=keys,
            consent_share=opts.consent_share,
            gpc_share=opts.gpc_share,
            bot_share=opts.bot_share,
            ipv6_share=opts.ipv6_share,
            kinds=[k for k in KINDS if mix.get(k, 0) > 0],
            weights=[mix[k] for k in KINDS if mix.get(k, 0) > 0],
            batch_size=(max(1, int(lo)), max(1, int(hi))),
            user_agents=load_user_agents(opts.user_agents),
            user_rate=opts.user_rate,
            think_time=_range(opts.think_time, "think-time"),
        )

    def describe(self) -> str:
        total = sum(self.weights)
        mix = ", ".join(f"{k} {w / total:.0%}" for k, w in zip(self.kinds, self.weights, strict=True))
        pace = (
            f"{self.user_rate:g} requests/s per user"
            if self.user_rate > 0
            else f"think time {self.think_time[0]:g}-{self.think_time[1]:g} s"
        )
        return (
            f"mix: {mix}\n"
            f"sites {','.join(self.sites)}; tracker keys {','.join(self.tracker_keys)}; consent "
            f"{self.consent_share:.0%}, GPC {self.gpc_share:.0%}, bots {self.bot_share:.0%}, IPv6 "
            f"{self.ipv6_share:.0%}; batches of {self.batch_size[0]}-{self.batch_size[1]}; {pace}\n"
            f"User-Agents: {self.user_agents.source}"
        )


CONFIG: Config | None = None  # this process's, set at test start (workers: from the master's options)
TALLY = reconcile.Tally()  # what this process saw acknowledged


# --- the visitor ---------------------------------------------------------------------------------------


def client_ip(rng: random.Random, ipv6_share: float) -> str:
    if rng.random() < ipv6_share:
        return f"2001:db8:{rng.randint(0, 0xFFFF):x}:{rng.randint(0, 0xFFFF):x}::{rng.randint(1, 0xFFFF):x}"
    first = rng.choice([81, 92, 145, 185, 203])
    return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


class Visitor(FastHttpUser):
    """A stream of visitors of the configured sites, each request one kind of the mix."""

    def on_start(self) -> None:
        self.config = CONFIG or Config.from_options(self.environment.parsed_options)
        self.rng = random.Random()
        c = self.config
        self.pace = constant_throughput(c.user_rate) if c.user_rate > 0 else between(*c.think_time)
        self.new_visitor()

    def wait_time(self) -> float:
        return float(self.pace(self))

    def stop(self, force: bool = False) -> bool:
        """Locust kills a waiting user at once, but gevent delivers the kill a moment later: a user whose
        wait was just over has by then sent its next request, which the kill cuts off unanswered. So a
        waiting user is only asked to stop, which it does when its wait ends (within --stop-timeout)."""
        if not force and self._state == LOCUST_STATE_WAITING:
            self._state = LOCUST_STATE_STOPPING
            return False
        return bool(super().stop(force))

    def new_visitor(self) -> None:
        c, rng = self.config, self.rng
        self.ua = rng.choice(BOTS) if rng.random() < c.bot_share else c.user_agents.pick(rng)
        self.ip = client_ip(rng, c.ipv6_share)
        self.consent = rng.random() < c.consent_share
        self.marketing = self.consent and rng.random() < 0.5
        self.gpc = rng.random() < c.gpc_share
        self.site = rng.choice(c.sites)
        self.key = rng.choice(c.tracker_keys)
        self.client_id = f"cid-{rng.getrandbits(64):x}"

    @task
    def visit(self) -> None:
        kind = self.rng.choices(self.config.kinds, self.config.weights)[0]
        getattr(self, f"send_{kind}")()
        if self.rng.random() < NEW_VISITOR_CHANCE:
            self.new_visitor()

    # --- how a request is sent and counted

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

    def send(
        self,
        kind: str,
        method: str,
        path: str,
        *,
        events: int,
        expect: int,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        name: str = "",
    ) -> None:
        """One request of the mix, counted for the reconciliation: answered as expected (acknowledged,
        with the native answer's accepted/dropped counts), answered otherwise, or not answered."""
        endpoint = ENDPOINT[kind]
        answered = False
        try:
            with self.client.request(
                method,
                path,
                data=body,
                params=params,
                headers=headers or self.headers(),
                name=name or f"{path} [{kind}]",
                catch_response=True,
            ) as resp:
                answered = True
                status = resp.status_code
                if status == 0:  # no answer: connection error or timeout
                    TALLY.record_unanswered(endpoint, events)
                    resp.failure(f"no answer: {resp.error}")
                elif status != expect:
                    TALLY.record_refused(endpoint, events, status)
                    resp.failure(f"expected {expect}, got {status}")
                elif expect >= 400:
                    TALLY.record_expected_rejection(endpoint)
                    resp.success()
                else:
                    counts = None
                    if endpoint == "events":
                        answer = json.loads(resp.content)
                        counts = (int(answer["accepted"]), int(answer["dropped"]))
                    TALLY.record_ack(endpoint, events, counts)
                    resp.success()
        finally:
            if not answered:  # stopped mid-request (past --stop-timeout): outcome unknown
                TALLY.record_unanswered(endpoint, events)

    # --- the kinds

    def event(self, etype: str = "pageview") -> dict[str, Any]:
        rng = self.rng
        page = rng.choice(PAGES)
        e: dict[str, Any] = {
            "site": self.site,
            "type": etype,
            "url": f"https://example.com{page}?utm_source=newsletter&utm_campaign=nov&ref=abc",
            "referrer": rng.choice(REFERRERS),
            "title": page.strip("/").replace("/", " ").title() or "Home",
            "screen": {"width": 1440, "height": 900},
            "language": "en-GB",
            "engagement_ms": rng.randint(0, 120_000),
        }
        if etype == "event":
            e["name"] = rng.choice(["signup", "download", "play", "share"])
            e["props"] = {"plan": rng.choice(["free", "pro", "team"]), "step": rng.randint(1, 5)}
        if self.consent:
            e["consent"] = {"analytics": True, "marketing": self.marketing}
            e["client_id"] = self.client_id
        return e

    def native(self, kind: str, body: Any, events: int, content_type: str = "application/json") -> None:
        data = json.dumps(body).encode()
        self.send(
            kind,
            "POST",
            "/v1/events",
            events=events,
            expect=202,
            body=data,
            headers=self.headers(content_type),
        )

    def send_pageview(self) -> None:
        self.native("pageview", self.event(), 1)

    def send_event(self) -> None:
        self.native("event", self.event("event"), 1)

    def send_sendbeacon(self) -> None:
        self.native("sendbeacon", self.event(), 1, "text/plain;charset=UTF-8")

    def send_batch(self) -> None:
        lo, hi = self.config.batch_size
        batch = [self.event(self.rng.choice(["pageview", "event"])) for _ in range(self.rng.randint(lo, hi))]
        self.native("batch", batch, len(batch))

    def send_bad(self) -> None:
        # Malformed JSON: refused before parsing (400), so no event of it is counted anywhere.
        self.send("bad", "POST", "/v1/events", events=0, expect=400, body=b'{"site": "demo", "url": ')

    def send_pixel(self) -> None:
        params = {
            "site": self.site,
            "url": f"https://example.com{self.rng.choice(PAGES)}",
            "ref": self.rng.choice(REFERRERS),
        }
        self.send("pixel", "GET", "/v1/pixel.gif", events=1, expect=200, params=params, name="/v1/pixel.gif")

    def send_posthog(self) -> None:
        e = self.event()
        props = {
            "token": self.key,
            "distinct_id": self.client_id,
            "$current_url": e["url"],
            "$referrer": e["referrer"],
        }
        batch = [{"event": "$pageview", "properties": props}, {"event": "signup", "properties": props}]
        body = gzip.compress(json.dumps(batch).encode())
        path = "/i/v0/e/?compression=gzip-js"
        self.send(
            "posthog", "POST", path, events=2, expect=200, body=body, headers=self.headers("text/plain")
        )

    def send_plausible(self) -> None:
        e = self.event()
        body = {"n": "pageview", "u": e["url"], "d": self.key, "r": e["referrer"], "w": 1440}
        data = json.dumps(body).encode()
        self.send(
            "plausible",
            "POST",
            "/api/event",
            events=1,
            expect=202,
            body=data,
            headers=self.headers("text/plain"),
        )

    def send_segment(self) -> None:
        e = self.event("event")
        msgs = [
            {"type": "page", "anonymousId": self.client_id, "properties": {"url": e["url"]}},
            {"type": "track", "event": e["name"], "anonymousId": self.client_id, "properties": e["props"]},
        ]
        body = json.dumps({"writeKey": self.key, "batch": msgs}).encode()
        self.send("segment", "POST", "/v1/batch", events=2, expect=200, body=body)

    def send_umami(self) -> None:
        page = self.rng.choice(PAGES)
        payload: dict[str, Any] = {
            "website": self.key,
            "hostname": "example.com",
            "url": f"{page}?utm_source=newsletter",
            "referrer": self.rng.choice(REFERRERS),
            "title": page.strip("/").title() or "Home",
            "screen": "1440x900",
            "language": "en-GB",
            "id": self.client_id,
        }
        if self.rng.random() < 0.3:
            payload.update(name="signup", data={"plan": "pro"})
        body = json.dumps({"type": "event", "payload": payload}).encode()
        self.send("umami", "POST", "/api/send", events=1, expect=200, body=body)

    def send_snowplow(self) -> None:
        e = self.event()
        now = str(int(time.time() * 1000))
        common = {"aid": self.key, "p": "web", "tv": "js-3.24.0", "url": e["url"], "duid": self.client_id}
        data = [
            {
                **common,
                "e": "pv",
                "refr": e["referrer"],
                "page": e["title"],
                "lang": "en-GB",
                "res": "1440x900",
                "dtm": now,
            },
            {**common, "e": "se", "se_ca": "ui", "se_ac": "click", "se_la": "cta", "dtm": now},
        ]
        schema = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
        body = json.dumps({"schema": schema, "data": data}).encode()
        path = "/com.snowplowanalytics.snowplow/tp2"
        self.send(
            "snowplow",
            "POST",
            path,
            events=2,
            expect=200,
            body=body,
            headers=self.headers("application/json; charset=UTF-8"),
        )


# --- start, stop, reconcile ------------------------------------------------------------------------------

TALLY_MESSAGE = "beacon_tally"  # worker -> master: what the worker saw, sent when its users have stopped
STOP_MESSAGE = "beacon_stop"  # master -> workers: stop your users now
_state: dict[str, Any] = {}  # the master's (or the single process's) reconciliation state


def _is_worker(environment: Environment) -> bool:
    return isinstance(environment.runner, WorkerRunner)


def on_tally(msg: Any, **_: Any) -> None:
    _state.setdefault("tallies", {})[msg.node_id] = msg.data


def on_stop_message(environment: Environment, **_: Any) -> None:
    environment.runner.stop()  # lets users finish within --stop-timeout, then fires test_stop


def on_worker_report(client_id: str, data: Any, **_: Any) -> None:
    if client_id in _state.get("tallies", {}):
        _state.setdefault("reported", set()).add(client_id)  # Locust's stats include the last requests


@events.init.add_listener
def on_init(environment: Environment, **_: Any) -> None:
    opts = environment.parsed_options
    if opts is None:
        return
    if isinstance(environment.runner, MasterRunner):
        environment.runner.register_message(TALLY_MESSAGE, on_tally)
        environment.events.worker_report.add_listener(on_worker_report)
    if isinstance(environment.runner, WorkerRunner):
        environment.runner.register_message(STOP_MESSAGE, on_stop_message)
    if not _is_worker(environment) and opts.request_rate > 0:
        # Workers get the per-user rate from the master's options (sent with each spawn).
        opts.user_rate = opts.request_rate / max(1, opts.num_users or 1)
    if not _is_worker(environment) and opts.headless and not opts.no_reconcile:
        # The counters before the run, once the proxy has shipped what it had; read now, as waiting
        # for that at the test's start would eat into --run-time.
        source = reconcile.Source.from_options(
            environment.host or "", opts.metrics_urls, opts.admin_token, opts.admin_url
        )
        _state["early_before"] = (source, reconcile.take_before(source))


@events.test_start.add_listener
def on_test_start(environment: Environment, **_: Any) -> None:
    global CONFIG
    CONFIG = Config.from_options(environment.parsed_options)
    TALLY.reset()
    if _is_worker(environment):
        return
    print(CONFIG.describe(), flush=True)
    opts = environment.parsed_options
    early = _state.pop("early_before", None)
    _state.clear()
    _state["tallies"] = {}
    if isinstance(environment.runner, MasterRunner):
        _state["workers"] = list(environment.runner.clients.keys())
    if opts.no_reconcile:
        return
    if early is not None:  # headless: read at start-up
        _state["source"], _state["before"] = early
    else:  # a run started from the web UI: read now, without waiting
        source = reconcile.Source.from_options(
            environment.host or "", opts.metrics_urls, opts.admin_token, opts.admin_url
        )
        _state["source"], _state["before"] = source, reconcile.take_before(source, wait=0)


def collect_worker_tallies(environment: Environment) -> tuple[reconcile.Tally, int]:
    """In a headless run the master's test_stop fires before its workers are told to stop (they get
    "quit" afterwards, too late to report), so the master stops them here and waits for their counts:
    each sends them once its users have stopped, then Locust's next stats report carries their last
    requests. Returns the counts and how many workers did not send theirs."""
    runner = environment.runner
    workers = set(_state["workers"])
    runner.send_message(STOP_MESSAGE)
    deadline = time.monotonic() + environment.stop_timeout + 30
    while workers - set(_state["tallies"]) and time.monotonic() < deadline:
        gevent.sleep(0.1)
    deadline = time.monotonic() + 10  # workers report every 3 s
    while set(_state["tallies"]) - _state.get("reported", set()) and time.monotonic() < deadline:
        gevent.sleep(0.1)
    tally = reconcile.Tally()
    for data in _state["tallies"].values():
        tally.add(reconcile.Tally.from_dict(data))
    return tally, len(workers - set(_state["tallies"]))


@events.test_stop.add_listener
def on_test_stop(environment: Environment, **_: Any) -> None:
    if _is_worker(environment):
        environment.runner.send_message(TALLY_MESSAGE, TALLY.to_dict())
        return
    opts = environment.parsed_options
    if opts is None or opts.no_reconcile or "before" not in _state:
        return
    missing = 0
    if isinstance(environment.runner, MasterRunner):
        tally, missing = collect_worker_tallies(environment)
    else:
        tally = TALLY
    result = reconcile.reconcile(_state["source"], _state["before"], tally, opts.reconcile_timeout)
    if isinstance(environment.runner, MasterRunner):
        result.workers = len(_state["tallies"])
        if missing:
            result.notes.append(f"{missing} worker(s) sent no counts: this comparison lacks them")
            result.verdict = reconcile.CANNOT_TELL
    result.user_agents = CONFIG.user_agents.source if CONFIG else ""
    print(result.text(), flush=True)
    prefix = Path(opts.results_prefix)
    result.save(prefix)
    print(f"reconciliation written to {prefix}_reconcile.txt and .json", flush=True)
    _state["result"] = result


@events.quitting.add_listener
def on_quitting(environment: Environment, **_: Any) -> None:
    result = _state.get("result")
    if result is not None and result.verdict == reconcile.DISAGREE:
        environment.process_exit_code = 3


@events.quit.add_listener
def on_quit(exit_code: int, **_: Any) -> None:
    result = _state.get("result")
    if result is not None:  # again after Locust's tables, so that the last line says it
        print(f"Reconciliation: {result.verdict} (details above the tables)", flush=True)
