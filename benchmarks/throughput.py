"""Throughput of Beacon Proxy next to two baselines, measured in one run: compare ratios, not numbers.

Targets (each started fresh, pinned to one core, stopped afterwards):

* ``limit``  -- ``benchmarks/raw_asgi.py``: a bare ASGI app under uvicorn that reads the body, answers 204.
* ``naive``  -- ``benchmarks/naive_collector.py``: Starlette + ``json`` + ``user_agents.parse`` per request
  + one synchronous chDB ``INSERT`` per request (in the threadpool).
* ``beacon`` -- Beacon Proxy, default settings, embedded chDB in a temporary data dir
  (``python -m proxy.cli serve``), with the DB-IP files from ``./data/geoip`` when present.

Scenarios: ``single`` (one event per request) and ``batch`` (100 events per request, a JSON array).
The load generator is wrk with ``benchmarks/wrk_post.lua``, pinned to another core. Every request carries
a realistic ~640-byte beacon, one of a rotating set of User-Agents and an ``X-Forwarded-For`` client IP.

    python benchmarks/throughput.py [--duration 10] [--connections 32] [--threads 1]
                                    [--targets limit,naive,beacon] [--scenarios single,batch]
                                    [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
LUA_SCRIPT = BENCH_DIR / "wrk_post.lua"
PACED_LUA_SCRIPT = BENCH_DIR / "wrk_paced.lua"

TARGETS = ("limit", "naive", "beacon", "beacon-2w", "beacon-interval", "beacon-nofsync", "beacon-nospool")
DEFAULT_TARGETS = ("limit", "naive", "beacon", "beacon-2w")
# Spool durability variants (--targets beacon,beacon-interval,beacon-nofsync,beacon-nospool compares them
# in one run); beacon-nospool is benchmarks/beacon_nospool.py: the same proxy with the spool write removed.
SPOOL_FSYNC = {
    "beacon": "always",
    "beacon-2w": "always",
    "beacon-interval": "interval",
    "beacon-nofsync": "never",
}
WORKERS = {"beacon-2w": 2}  # `serve --workers 2`, on both cores (wrk shares the second one)
HALF_LOAD = 0.5  # paced runs offer this share of the measured maximum
BEACON_TARGETS = (*SPOOL_FSYNC, "beacon-nospool")
SCENARIOS = {"single": 1, "batch": 100}  # name -> events per request
WARMUP_SECONDS = 2
READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 30.0
FLUSH_TIMEOUT_SECONDS = 60.0
REQUEST_LINES = {"single": 2000, "batch": 300}  # distinct prebuilt requests per scenario
SEED = 20240601


# --- payloads ----------------------------------------------------------------------------------------

WEBKIT = "AppleWebKit/537.36 (KHTML, like Gecko)"
CHROME_VERSIONS = range(133, 108, -1)  # newest first
IOS_VERSIONS = (
    "18_3_2", "18_3_1", "18_3", "18_2_1", "18_2", "18_1_1", "18_1", "18_0_1", "18_0", "17_7_2", "17_6_1",
    "17_6", "17_5_1", "17_5", "17_4_1", "17_3_1", "17_3", "17_2_1", "17_1_2", "17_1_1", "17_0_3",
    "16_7_10", "16_7_2", "16_6_1", "16_6", "16_5", "16_4_1", "16_3_1", "16_1_1", "15_8_3",
)  # fmt: skip
MAC_SAFARI_VERSIONS = (
    "18.3", "18.2", "18.1.1", "18.1", "18.0.1", "18.0", "17.6", "17.5", "17.4.1", "17.3.1", "17.2.1",
    "17.1.2", "17.0", "16.6", "16.5.2", "16.4",
)  # fmt: skip
ANDROID_MODELS = (
    "K", "SM-S918B", "SM-A546B", "SM-A156B", "Pixel 8", "Pixel 7a", "2311DRK48G", "moto g power (2023)",
)  # fmt: skip


def _safari_version(ios: str) -> str:
    return ".".join(ios.split("_")[:2])


def _user_agent_families() -> list[tuple[float, list[str]]]:
    """(share of the pool, candidates newest first) per browser family; the shares are a plausible
    mix of web traffic: Chrome and Safari on phones and desktops first, then Edge, Firefox, Samsung."""
    chrome_desktop = [
        f"Mozilla/5.0 ({platform}) {WEBKIT} Chrome/{v}.0.0.0 Safari/537.36"
        for v in CHROME_VERSIONS
        for platform in (
            "Windows NT 10.0; Win64; x64",
            "Macintosh; Intel Mac OS X 10_15_7",
            "X11; Linux x86_64",
            "X11; CrOS x86_64 14541.0.0",
        )
    ]
    chrome_android = [
        f"Mozilla/5.0 (Linux; Android {android}; {model}) {WEBKIT} Chrome/{v}.0.0.0 Mobile Safari/537.36"
        for v in CHROME_VERSIONS
        for android, model in zip((10, 14, 13, 14, 14, 13, 14, 13), ANDROID_MODELS, strict=True)
    ]
    iphone_safari = [
        f"Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        f"Version/{_safari_version(ios)} Mobile/15E148 Safari/604.1"
        for ios in IOS_VERSIONS
    ]
    iphone_chrome = [
        f"Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        f"CriOS/{v}.0.6943.84 Mobile/15E148 Safari/604.1"
        for v in CHROME_VERSIONS
        for ios in IOS_VERSIONS[:6]
    ]
    ipad_safari = [
        f"Mozilla/5.0 (iPad; CPU OS {ios} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        f"Version/{_safari_version(ios)} Mobile/15E148 Safari/604.1"
        for ios in IOS_VERSIONS
    ]
    mac_safari = [
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        f"Version/{version} Safari/605.1.15"
        for version in MAC_SAFARI_VERSIONS
    ]
    edge = [
        f"Mozilla/5.0 ({platform}) {WEBKIT} Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.0.0"
        for v in CHROME_VERSIONS
        for platform in ("Windows NT 10.0; Win64; x64", "Macintosh; Intel Mac OS X 10_15_7")
    ]
    firefox = [
        f"Mozilla/5.0 ({platform}; rv:{v}.0) Gecko/20100101 Firefox/{v}.0"
        for v in range(135, 110, -1)
        for platform in (
            "Windows NT 10.0; Win64; x64",
            "Macintosh; Intel Mac OS X 10.15",
            "X11; Linux x86_64",
            "X11; Ubuntu; Linux x86_64",
        )
    ]
    firefox_android = [
        f"Mozilla/5.0 (Android 14; Mobile; rv:{v}.0) Gecko/{v}.0 Firefox/{v}.0" for v in range(135, 110, -1)
    ]
    samsung = [
        f"Mozilla/5.0 (Linux; Android 14; SM-S921B) {WEBKIT} SamsungBrowser/{v}.0 Chrome/{v + 100}.0.0.0 "
        "Mobile Safari/537.36"
        for v in range(27, 19, -1)
    ]
    return [
        (0.27, chrome_desktop),
        (0.20, chrome_android),
        (0.16, iphone_safari),
        (0.04, iphone_chrome),
        (0.03, ipad_safari),
        (0.07, mac_safari),
        (0.09, edge),
        (0.07, firefox),
        (0.02, firefox_android),
        (0.05, samsung),
    ]


def make_user_agents(count: int) -> list[str]:
    """``count`` distinct, realistic browser User-Agents (desktop and mobile; no bots), mixed by family."""
    families = _user_agent_families()
    chosen: list[str] = []
    for share, candidates in families:
        chosen.extend(candidates[: round(share * count)])
    taken = set(chosen)
    leftovers = [ua for _, candidates in families for ua in candidates if ua not in taken]
    if count > len(chosen) + len(leftovers):
        raise SystemExit(f"--user-agents: at most {len(chosen) + len(leftovers)} are available")
    chosen = (chosen + leftovers)[:count]
    random.Random(SEED).shuffle(chosen)  # interleave families along the request sequence
    return chosen


# A few real-looking public addresses (ISP and hosting ranges), the rest from documentation ranges.
REAL_LOOKING_IPS = (
    "81.2.69.142",
    "89.160.20.128",
    "2.125.160.216",
    "175.16.199.7",
    "216.160.83.56",
    "67.43.156.3",
    "202.196.224.9",
    "149.101.100.4",
    "84.17.58.21",
    "188.114.97.3",
    "2a02:ff40::1234",
    "2001:4860:4860::8888",
    "2a01:4f8:c2c:123f::1",
    "2600:1700:5455:a70::35",
)
DOC_NETWORKS = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")


def make_client_ips(count: int, rng: random.Random) -> list[str]:
    """``count`` distinct client addresses, about one in five IPv6, in a shuffled order."""
    ips = dict.fromkeys(REAL_LOOKING_IPS)
    v4 = [ipaddress.ip_network(n) for n in DOC_NETWORKS if ":" not in n]
    v6 = ipaddress.ip_network(DOC_NETWORKS[-1])
    v4_hosts = [str(host) for net in v4 for host in net.hosts()]
    rng.shuffle(v4_hosts)
    while len(ips) < count:
        if v4_hosts and rng.random() < 0.8:
            ips[v4_hosts.pop()] = None
        else:
            ips[str(v6.network_address + rng.getrandbits(64))] = None
    out = list(ips)[:count]
    rng.shuffle(out)
    return out


SECTIONS = ("blog", "docs", "pricing", "products", "help", "careers", "changelog")
WORDS = (
    "analytics", "privacy", "cookieless", "dashboard", "retention", "funnel", "signup", "onboarding",
    "pricing", "teams", "export", "webhooks", "sso", "invoices", "roadmap", "integration", "latency",
    "release", "migration", "api", "guide",
)  # fmt: skip
REFERRERS = (
    "https://www.google.com/",
    "https://www.bing.com/search?q=privacy+analytics&form=QBLH",
    "https://duckduckgo.com/",
    "https://news.ycombinator.com/item?id=38412345",
    "https://t.co/x7Yz2AbQ9k",
    "https://www.reddit.com/r/selfhosted/comments/18abcde/privacy_friendly_analytics/",
    "https://www.linkedin.com/feed/",
    "",
)
UTM = (
    ("newsletter", "email", "spring_launch"),
    ("twitter", "social", "product_hunt"),
    ("google", "cpc", "brand_terms"),
    ("partner_blog", "referral", "integration_week"),
)
EVENT_NAMES = ("signup_click", "add_to_cart", "video_play", "download_whitepaper", "plan_selected")
SCREENS = ((1920, 1080), (2560, 1440), (1440, 900), (1366, 768), (390, 844), (412, 915), (820, 1180))
LANGUAGES = ("en-GB", "en-US", "de-DE", "fr-FR", "es-ES", "nl-NL", "pt-BR", "ja-JP")


def make_visitor(rng: random.Random) -> dict[str, Any]:
    """What stays the same across one browser's beacons: ids, consent, language, screen."""
    width, height = rng.choice(SCREENS)
    return {
        "screen": {"width": width, "height": height},
        "language": rng.choice(LANGUAGES),
        "client_id": f"{rng.getrandbits(64):016x}-{rng.getrandbits(32):08x}",
        "session_id": f"s-{rng.getrandbits(48):012x}",
        "consent": {"analytics": rng.random() < 0.6, "marketing": rng.random() < 0.3},
    }


def make_event(rng: random.Random, now_ms: int, visitor: dict[str, Any] | None = None) -> dict[str, Any]:
    """One beacon as a browser script would send it (~600 bytes of JSON), from ``visitor`` (a new one
    if None)."""
    slug = "-".join(rng.sample(WORDS, 4))
    section = rng.choice(SECTIONS)
    source, medium, campaign = rng.choice(UTM)
    who = make_visitor(rng) if visitor is None else visitor
    event: dict[str, Any] = {
        "site": "demo",
        "type": "pageview",
        "url": (
            f"https://www.example.com/{section}/{slug}?utm_source={source}&utm_medium={medium}"
            f"&utm_campaign={campaign}&utm_content=hero_{rng.randint(1, 4)}&ref=homepage"
        ),
        "referrer": rng.choice(REFERRERS),
        "title": f"{slug.replace('-', ' ').title()} | {section.title()} | Example Analytics",
        "props": {
            "plan": rng.choice(("free", "pro", "team", "enterprise")),
            "ab_variant": rng.choice(("control", "checkout_v2", "hero_video")),
            "logged_in": rng.random() < 0.4,
            "cart_items": rng.randint(0, 5),
            "theme": rng.choice(("light", "dark")),
        },
        "screen": who["screen"],
        "language": who["language"],
        "client_id": who["client_id"],
        "session_id": who["session_id"],
        "consent": who["consent"],
        "engagement_ms": rng.randint(500, 180_000),
        "ts": now_ms - rng.randint(0, 60_000),
    }
    if rng.random() < 0.25:
        event["type"] = "event"
        event["name"] = rng.choice(EVENT_NAMES)
    return event


def write_requests_file(
    path: Path, events_per_request: int, lines: int, user_agents: Sequence[str], ips: Sequence[str]
) -> float:
    """Write one request per line (UA, XFF, JSON body); return the mean event size in bytes."""
    rng = random.Random(SEED + events_per_request)
    now_ms = int(time.time() * 1000)
    event_bytes = 0
    events = 0
    with path.open("w", encoding="utf-8") as out:
        for i in range(lines):
            # A batch comes from one browser (a tracker's queue): one visitor's ids and consent.
            visitor = make_visitor(rng)
            batch = [make_event(rng, now_ms, visitor) for _ in range(events_per_request)]
            for e in batch:
                event_bytes += len(json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode())
            events += len(batch)
            doc: Any = batch[0] if events_per_request == 1 else batch
            body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
            out.write(f"{user_agents[i % len(user_agents)]}\t{ips[i % len(ips)]}\t{body}\n")
    return event_bytes / events


# --- servers -----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pinned(cmd: list[str], cpu: int | str | None) -> list[str]:
    return ["taskset", "-c", str(cpu), *cmd] if cpu is not None else cmd


def cpus_allowed(pid: int) -> str:
    """The CPUs the kernel lets ``pid`` run on, as /proc reports them ("0", "0-1", ...)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Server:
    """A target server process: started pinned, polled until ``/healthz`` answers, always stopped."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    log_path: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} is not started")
        return self.proc.pid

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us; we stop the server ourselves
            )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if http_get(f"{self.url}/healthz", timeout=1.0)[0] == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {READY_TIMEOUT_SECONDS:.0f}s\n{self.log_tail()}")

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_SECONDS)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            print(f"  {self.name} not stopped by SIGTERM; killing it", file=sys.stderr)
            proc.kill()
            proc.wait()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(f"    | {line}" for line in text[-lines:])


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        server.start()
        yield server
    finally:
        server.stop()


def clean_env() -> dict[str, str]:
    """Our environment without any BEACONPROXY_* setting, so "default settings" means the defaults."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BEACONPROXY_")}


def make_server(target: str, workdir: Path, cpu: int | str | None, geoip: list[Path]) -> Server:
    port = free_port()
    env = clean_env()
    py = sys.executable
    if target == "limit":
        cmd = [py, str(BENCH_DIR / "raw_asgi.py"), "--port", str(port)]
    elif target == "naive":
        cmd = [
            py,
            str(BENCH_DIR / "naive_collector.py"),
            "--port",
            str(port),
            "--data-dir",
            str(workdir / "naive"),
        ]
    else:
        if target == "beacon-nospool":
            cmd = [py, str(BENCH_DIR / "beacon_nospool.py")]
        else:
            cmd = [py, "-m", "proxy.cli", "serve", "--workers", str(WORKERS.get(target, 1))]
            env["BEACONPROXY_SPOOL__FSYNC"] = SPOOL_FSYNC[target]
        env["BEACONPROXY_HOST"] = "127.0.0.1"
        env["BEACONPROXY_PORT"] = str(port)
        env["BEACONPROXY_DATA_DIR"] = str(workdir / f"{target}-data")
        if geoip:
            env["BEACONPROXY_GEOIP__DATABASES"] = json.dumps([str(p) for p in geoip])
    return Server(target, pinned(cmd, cpu), env, workdir / f"{target}.log", port)


# --- load ----------------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (the workers and primary of ``serve --workers N``)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))  # ppid
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children, all threads included (0.0 if gone)."""
    total = 0
    for p in process_tree(pid):
        fields = _stat_fields(p)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children."""
    total = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class WrkRun:
    duration_s: float
    ok_2xx: int
    non_2xx: int
    non_2xx_statuses: dict[str, int]
    accepted: int  # sum of "accepted" in the answers (0 for the limit target, which answers 204)
    dropped: int
    socket_errors: int  # connect, read, write errors and timeouts
    p50_ms: float
    p99_ms: float
    server_cpu_pct: float  # CPU the server process used while wrk ran, % of one core
    wrk_cpu_pct: float
    wrk_cpus: str  # wrk's Cpus_allowed_list


def run_wrk(
    server: Server,
    requests_file: Path,
    seconds: int,
    args: argparse.Namespace,
    cpu: int | None,
    pause_ms: float | None = None,
) -> WrkRun:
    """One wrk run; with ``pause_ms``, each connection pauses that long before each request (paced)."""
    script = LUA_SCRIPT if pause_ms is None else PACED_LUA_SCRIPT
    extra = [] if pause_ms is None else [f"{pause_ms:.3f}"]
    cmd = pinned(
        [
            "wrk",
            f"--threads={args.threads}",
            f"--connections={args.connections}",
            f"--duration={seconds}s",
            "--timeout=10s",
            "--latency",
            f"--script={script}",
            f"{server.url}/v1/events",
            "--",
            str(requests_file),
            *extra,
        ],
        cpu,
    )
    server_pid = server.pid
    server_cpu0, wrk_cpu0, t0 = process_cpu_seconds(server_pid), children_cpu_seconds(), time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(min(0.5, seconds / 4))
        wrk_cpus = cpus_allowed(proc.pid)
        out, err = proc.communicate(timeout=seconds + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wall = time.monotonic() - t0
    server_cpu = process_cpu_seconds(server_pid) - server_cpu0
    wrk_cpu = children_cpu_seconds() - wrk_cpu0
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{text}\n{err.decode(errors='replace')}")
    return parse_wrk_result(text, 100 * server_cpu / wall, 100 * wrk_cpu / wall, wrk_cpus)


def parse_wrk_result(text: str, server_cpu_pct: float, wrk_cpu_pct: float, wrk_cpus: str) -> WrkRun:
    """The ``WRK_RESULT {json}`` line that wrk_post.lua prints when wrk is done."""
    line = next((ln for ln in text.splitlines() if ln.startswith("WRK_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no WRK_RESULT line:\n{text}")
    r = json.loads(line.removeprefix("WRK_RESULT "))
    e = r["errors"]
    return WrkRun(
        duration_s=r["duration_us"] / 1e6,
        ok_2xx=r["ok_2xx"],
        non_2xx=r["non_2xx"],
        non_2xx_statuses=r["non_2xx_statuses"],
        accepted=r["accepted"],
        dropped=r["dropped"],
        socket_errors=e["connect"] + e["read"] + e["write"] + e["timeout"],
        p50_ms=r["latency_us"]["p50"] / 1000,
        p99_ms=r["latency_us"]["p99"] / 1000,
        server_cpu_pct=server_cpu_pct,
        wrk_cpu_pct=wrk_cpu_pct,
        wrk_cpus=wrk_cpus,
    )


# --- stored-row checks ---------------------------------------------------------------------------------


@dataclass
class Check:
    """What the answers said was accepted, against what the target stored (all runs, warm-ups included).

    wrk stops mid-flight: requests on the wire when it closes its connections are still processed and
    stored, but their answers are never counted. So stored may exceed the answered count by at most
    one request per connection per run, plus any request wrk gave up on ("in flight").
    """

    target: str
    ok_events: int = 0  # 2xx requests x events per request
    answered: int = 0  # sum of "accepted" in the answers
    dropped: int = 0  # sum of "dropped" in the answers
    in_flight: int = 0  # upper bound on events sent but never answered
    server_accepted: int | None = None  # the proxy's own counter (/admin/stats)
    stored: int | None = None
    stored_with_country: int | None = None  # rows the GeoIP lookup gave a country (beacon only)
    note: str = ""

    def verdict(self) -> str:
        if self.stored is None:
            return "not checked"
        problems = []
        if self.answered != self.ok_events:
            problems.append("answers accepted fewer events than the 2xx requests carried")
        if self.server_accepted is not None and self.stored != self.server_accepted:
            problems.append("stored rows != events the proxy accepted")
        if not 0 <= self.stored - self.answered <= self.in_flight:
            problems.append("stored - answered is outside [0, in flight]")
        return "OK" if not problems else "MISMATCH: " + "; ".join(problems)


def admin_request(server: Server, data_dir: Path, path: str, sql: str | None = None) -> bytes:
    """``path`` on the proxy's admin listener: its unix socket in the data dir (never the ingestion port)."""
    token = (data_dir / "admin_token").read_text().strip()
    transport = httpx.HTTPTransport(uds=str(data_dir / "run" / "admin.sock"))
    with httpx.Client(transport=transport, base_url="http://admin", timeout=60) as client:
        resp = client.request(
            "POST" if sql is not None else "GET",
            path,
            content=sql.encode() if sql is not None else None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
        )
        resp.raise_for_status()
        return resp.content


def check_beacon(server: Server, data_dir: Path, check: Check) -> dict[str, float]:
    """Wait for the proxy to flush, count stored rows; return its sampled step timings (us per run)."""
    deadline = time.monotonic() + FLUSH_TIMEOUT_SECONDS
    pending, empty_polls = -1, 0
    while time.monotonic() < deadline:
        ready = json.loads(http_get(f"{server.url}/readyz", timeout=5.0)[1])
        pending = int(ready["spool_segments"])  # sealed, not shipped yet
        # Two empty listings more than a segment's age apart: any open segment was sealed and shipped.
        empty_polls = empty_polls + 1 if pending == 0 else 0
        if empty_polls == 2:
            break
        time.sleep(1.5)
    if pending != 0:
        check.note = f"{pending} segments still spooled after {FLUSH_TIMEOUT_SECONDS:.0f}s"
    sql = "SELECT count() AS n, countIf(country != '') AS with_country FROM events"
    row = json.loads(admin_request(server, data_dir, "/admin/query", sql).splitlines()[0])
    check.stored, check.stored_with_country = int(row["n"]), int(row["with_country"])
    stats = json.loads(admin_request(server, data_dir, "/admin/stats"))
    check.server_accepted = int(stats["accepted"])
    steps: dict[str, float] = stats.get("step_us_per_run", {})
    return steps


def check_naive(server: Server, check: Check) -> None:
    check.stored = int(json.loads(http_get(f"{server.url}/count", timeout=60.0)[1])["n"])


# --- results ---------------------------------------------------------------------------------------------


@dataclass
class Result:
    target: str
    scenario: str
    events_per_request: int
    requests_per_s: float  # 2xx answers per second
    events_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    non_2xx_statuses: dict[str, int]
    socket_errors: int
    server_cpu_pct: float
    wrk_cpu_pct: float


def result_of(target: str, scenario: str, n: int, run: WrkRun) -> Result:
    return Result(
        target=target,
        scenario=scenario,
        events_per_request=n,
        requests_per_s=run.ok_2xx / run.duration_s,
        events_per_s=run.ok_2xx * n / run.duration_s,
        p50_ms=run.p50_ms,
        p99_ms=run.p99_ms,
        non_2xx=run.non_2xx,
        non_2xx_statuses=run.non_2xx_statuses,
        socket_errors=run.socket_errors,
        server_cpu_pct=run.server_cpu_pct,
        wrk_cpu_pct=run.wrk_cpu_pct,
    )


def print_table(results: list[Result]) -> None:
    header = (
        f"{'target':<15} {'scenario':<10} {'req/s':>9} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'non-2xx':>7} {'sock err':>8} {'srv CPU':>7} {'wrk CPU':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.target:<15} {r.scenario:<10} {r.requests_per_s:>9,.0f} {r.events_per_s:>10,.0f} "
            f"{r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.non_2xx:>7,} {r.socket_errors:>8,} "
            f"{r.server_cpu_pct:>6.0f}% {r.wrk_cpu_pct:>6.0f}%"
            + (f"  statuses {r.non_2xx_statuses}" if r.non_2xx_statuses else "")
        )


# (numerator, baseline) pairs of events/s reported per scenario, when both ran.
RATIOS = (
    ("beacon", "limit"),
    ("beacon", "naive"),
    ("beacon", "beacon-nospool"),  # what durable acceptance (fsync always) costs
    ("beacon-interval", "beacon-nospool"),
    ("beacon-nofsync", "beacon-nospool"),
    ("beacon", "beacon-interval"),
    ("beacon-2w", "beacon"),  # two workers against one
)


def ratios(results: list[Result]) -> dict[str, dict[str, float]]:
    """events/s of one target divided by another's, per scenario (see RATIOS)."""
    by_key = {(r.target, r.scenario): r for r in results}
    out: dict[str, dict[str, float]] = {}
    for scenario in SCENARIOS:
        for target, base in RATIOS:
            mine, other = by_key.get((target, scenario)), by_key.get((base, scenario))
            if mine is not None and other is not None and other.events_per_s > 0:
                out.setdefault(scenario, {})[f"{target}/{base}"] = mine.events_per_s / other.events_per_s
    return out


# --- main ------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="measured seconds per run (default 10)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: it has one core)")
    parser.add_argument(
        "--targets", default=",".join(DEFAULT_TARGETS), help="comma list of " + ", ".join(TARGETS)
    )
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma list of " + ", ".join(SCENARIOS)
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--no-half-load",
        dest="half_load",
        action="store_false",
        help="skip the paced run at half of each maximum (latency below saturation)",
    )
    parser.add_argument(
        "--soak", type=int, default=0, metavar="SECONDS", help="beacon targets: a paced run at half load, RSS"
    )
    parser.add_argument("--user-agents", type=int, default=200, help="distinct User-Agents (default 200)")
    parser.add_argument("--client-ips", type=int, default=300, help="distinct client IPs (default 300)")
    parser.add_argument(
        "--geoip-dir",
        type=Path,
        default=Path(os.environ.get("BEACONPROXY_DATA_DIR", REPO / "data")) / "geoip",
        help="where `make geoip` put the DB-IP files (default ./data/geoip)",
    )
    args = parser.parse_args(argv)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for t in args.targets:
        if t not in TARGETS:
            parser.error(f"unknown target {t!r}; choose from {', '.join(TARGETS)}")
    for s in args.scenarios:
        if s not in SCENARIOS:
            parser.error(f"unknown scenario {s!r}; choose from {', '.join(SCENARIOS)}")
    if min(args.duration, args.connections, args.threads, args.user_agents, args.client_ips) < 1:
        parser.error("--duration, --connections, --threads, --user-agents and --client-ips must be >= 1")
    if args.connections < args.threads:
        parser.error("--connections must be >= --threads")
    return args


def choose_cpus() -> tuple[int | None, int | None, str]:
    """(server CPU, wrk CPU, note): two distinct CPUs when we may use two and taskset exists."""
    cpus = sorted(os.sched_getaffinity(0))
    if shutil.which("taskset") is None:
        return None, None, "taskset not found: nothing pinned, servers and wrk share every core"
    if len(cpus) < 2:
        return None, None, f"only CPU {cpus[0]} available: nothing pinned, servers and wrk share it"
    return cpus[0], cpus[1], f"server on CPU {cpus[0]}, wrk on CPU {cpus[1]} (taskset -c)"


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def pause_for(rate: float, connections: int) -> float:
    """Per-connection pause (ms) that offers about ``rate`` requests/s over ``connections``."""
    return connections * 1000.0 / max(rate, 1.0)


def count(check: Check, run: WrkRun, n: int, args: argparse.Namespace) -> None:
    """Add a run's answers to the check (``n`` events per request)."""
    check.ok_events += run.ok_2xx * n
    check.answered += run.accepted
    check.dropped += run.dropped
    # unanswered but possibly stored: one request per connection, and any that timed out
    check.in_flight += (args.connections + run.socket_errors) * n


def paced_pause(
    server: Server, requests_file: Path, args: argparse.Namespace, cpu: int | None, rate: float
) -> tuple[float, WrkRun]:
    """The pause that offers ``rate`` requests/s, and the calibration run it was found with: a connection
    sends once per pause + latency, so a short run at the naive pause measures that latency."""
    pause = pause_for(rate, args.connections)
    trial = run_wrk(server, requests_file, WARMUP_SECONDS, args, cpu, pause)
    latency_ms = max(0.0, pause_for(trial.ok_2xx / trial.duration_s, args.connections) - pause)
    return max(0.0, pause - latency_ms), trial


def paced_run(
    server: Server,
    requests_file: Path,
    args: argparse.Namespace,
    cpu: int | None,
    peak: float,
    check: Check,
    n: int,
) -> WrkRun:
    """Offer HALF_LOAD of ``peak`` requests/s; latency then shows what a request costs below saturation."""
    pause, trial = paced_pause(server, requests_file, args, cpu, HALF_LOAD * peak)
    count(check, trial, n, args)
    run = run_wrk(server, requests_file, args.duration, args, cpu, pause)
    count(check, run, n, args)
    return run


def soak(
    server: Server,
    target: str,
    requests_file: Path,
    args: argparse.Namespace,
    cpu: int | None,
    results: list[Result],
    check: Check,
    n: int,
) -> None:
    """``--soak`` seconds at HALF_LOAD of the first scenario's maximum, sampling the server's RSS."""
    peak = next(r.requests_per_s for r in results if r.target == target and "@" not in r.scenario)
    pause, trial = paced_pause(server, requests_file, args, cpu, HALF_LOAD * peak)
    count(check, trial, n, args)
    print(f"  soak: {args.soak}s at {HALF_LOAD:.0%} of {peak:,.0f} req/s, RSS sampled every 10 s", flush=True)
    cmd = pinned(
        [
            "wrk",
            f"--threads={args.threads}",
            f"--connections={args.connections}",
            f"--duration={args.soak}s",
            "--timeout=10s",
            f"--script={PACED_LUA_SCRIPT}",
            f"{server.url}/v1/events",
            "--",
            str(requests_file),
            f"{pause:.3f}",
        ],
        cpu,
    )
    samples: list[tuple[float, int]] = []
    t0 = time.monotonic()
    out_path = server.log_path.with_suffix(".soak.out")
    with out_path.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
        try:
            while proc.poll() is None:
                samples.append((time.monotonic() - t0, rss_bytes(server.pid)))
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    count(check, parse_wrk_result(out_path.read_text(errors="replace"), 0.0, 0.0, "?"), n, args)
    # Caches fill in the first minute; growth is measured from then (or a tenth of the run) to the end.
    settle = min(60.0, args.soak / 10)
    base = next((rss for t, rss in samples if t >= settle), samples[0][1])
    end = samples[-1][1]
    series = ", ".join(f"{t:.0f}s {rss / 2**20:.0f}" for t, rss in samples[:: max(1, len(samples) // 12)])
    print(f"  soak RSS MiB: {series}")
    print(
        f"soak   {target} RSS {base / 2**20:.1f} MiB at {settle:.0f}s -> {end / 2**20:.1f} MiB at "
        f"{samples[-1][0]:.0f}s: {100 * (end - base) / base:+.1f}%"
    )


def bench_target(
    target: str,
    args: argparse.Namespace,
    workdir: Path,
    files: dict[str, Path],
    cpus: tuple[int | None, int | None],
    geoip: list[Path],
    results: list[Result],
) -> tuple[Check, str, dict[str, float]]:
    """Start the target, warm up and measure every scenario, check what it stored, stop it."""
    server_cpu, wrk_cpu = cpus
    spec: int | str | None = server_cpu
    if target in WORKERS and server_cpu is not None and wrk_cpu is not None:
        spec = f"{server_cpu},{wrk_cpu}"
    server = make_server(target, workdir, spec, geoip)
    check = Check(target)
    steps: dict[str, float] = {}
    with running(server):
        cores = f"server Cpus_allowed_list={cpus_allowed(server.pid)}"
        for scenario in args.scenarios:
            n = SCENARIOS[scenario]
            for seconds, measured in ((WARMUP_SECONDS, False), (args.duration, True)):
                run = run_wrk(server, files[scenario], seconds, args, wrk_cpu)
                count(check, run, n, args)
                if measured:
                    results.append(result_of(target, scenario, n, run))
                    cores += f", wrk Cpus_allowed_list={run.wrk_cpus} ({scenario})"
                    print(
                        f"  {target} {scenario}: {results[-1].events_per_s:,.0f} events/s, "
                        f"server CPU {run.server_cpu_pct:.0f}%, wrk CPU {run.wrk_cpu_pct:.0f}%",
                        flush=True,
                    )
            if args.half_load and target != "limit":
                peak = results[-1].requests_per_s
                paced = paced_run(server, files[scenario], args, wrk_cpu, peak, check, n)
                results.append(result_of(target, f"{scenario}@50%", n, paced))
                print(
                    f"  {target} {scenario} paced at {HALF_LOAD:.0%} of its maximum: "
                    f"{results[-1].requests_per_s:,.0f} req/s, p50 {paced.p50_ms:.2f} ms, "
                    f"p99 {paced.p99_ms:.2f} ms",
                    flush=True,
                )
        if args.soak and target in BEACON_TARGETS:
            scenario = args.scenarios[0]
            soak(server, target, files[scenario], args, wrk_cpu, results, check, SCENARIOS[scenario])
        if target in BEACON_TARGETS:
            if target in SPOOL_FSYNC:  # beacon-nospool stores nothing
                steps = check_beacon(server, workdir / f"{target}-data", check)
            geo = [ln.split(": ", 2)[-1] for ln in server.log_path.read_text().splitlines() if "geoip" in ln]
            print(f"  beacon reported: {'; '.join(geo) or 'no geoip line in its log'}")
        elif target == "naive":
            check_naive(server, check)
    return check, cores, steps


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM stops the servers as Ctrl-C does
    server_cpu, wrk_cpu, cpu_note = choose_cpus()
    geoip = sorted(args.geoip_dir.glob("*.mmdb")) if args.geoip_dir.is_dir() else []

    results: list[Result] = []
    checks: list[Check] = []
    cores: dict[str, str] = {}
    steps: dict[str, float] = {}
    status = 0
    with tempfile.TemporaryDirectory(prefix="beacon-bench-") as tmp:
        workdir = Path(tmp)
        user_agents = make_user_agents(args.user_agents)
        ips = make_client_ips(args.client_ips, random.Random(SEED))
        files: dict[str, Path] = {}
        sizes: dict[str, float] = {}
        for scenario in args.scenarios:
            files[scenario] = workdir / f"{scenario}.tsv"
            sizes[scenario] = write_requests_file(
                files[scenario], SCENARIOS[scenario], REQUEST_LINES[scenario], user_agents, ips
            )

        print("Beacon Proxy throughput: one run on one machine; compare the ratios, not the numbers.")
        print(f"cores:  {cpu_note}")
        print(
            f"load:   wrk, {args.threads} thread(s), {args.connections} connections; "
            f"{WARMUP_SECONDS}s warm-up + {args.duration}s measured per target and scenario"
        )
        print(
            f"data:   {len(user_agents)} User-Agents, {len(ips)} X-Forwarded-For client IPs; mean event "
            + ", ".join(f"{sizes[s]:.0f} B ({s})" for s in args.scenarios)
        )
        geo_note = ", ".join(str(p) for p in geoip) if geoip else f"none (no *.mmdb in {args.geoip_dir})"
        print(f"geo:    {geo_note}")
        print()
        try:
            for target in args.targets:
                print(f"[{target}]", flush=True)
                check, cores[target], target_steps = bench_target(
                    target, args, workdir, files, (server_cpu, wrk_cpu), geoip, results
                )
                checks.append(check)
                steps = target_steps or steps
        except KeyboardInterrupt:
            print("\ninterrupted: servers stopped; partial results below", file=sys.stderr)
            status = 130
        except (RuntimeError, OSError, ValueError) as exc:
            print(f"\nerror: {exc}\nservers stopped; partial results below", file=sys.stderr)
            status = 1

    print()
    print_table(results)
    print()
    rat = ratios(results)
    for scenario, values in rat.items():
        for k, v in values.items():
            print(f"ratio  {scenario:<7} events/s {k} = {v:.3f}")
    print()
    for target, line in cores.items():
        print(f"cores  {target:<15} {line}")
    for c in checks:
        if c.stored is None:
            continue
        print(
            f"check  {c.target:<15} answered accepted {c.answered:,} (2xx x events/request {c.ok_events:,}, "
            f"dropped {c.dropped:,})"
            + (f", proxy counted {c.server_accepted:,}" if c.server_accepted is not None else "")
            + f", stored {c.stored:,}; stored - answered = {c.stored - c.answered:,} "
            f"(<= {c.in_flight:,} in flight when wrk stopped) -> {c.verdict()}"
            + (f" [{c.note}]" if c.note else "")
        )
        if c.stored_with_country is not None and geoip:
            print(f"geo    {c.target:<15} {c.stored_with_country:,} of {c.stored:,} rows have a country")
    if steps:
        top = sorted(steps.items(), key=lambda kv: -kv[1])[:6]
        print(
            "steps  beacon, us per run (sampled 1 in 16, GIL waits included): "
            + ", ".join(f"{name} {us:.0f}" for name, us in top)
        )
    if args.json:
        doc = {
            "settings": {
                "duration_s": args.duration,
                "warmup_s": WARMUP_SECONDS,
                "connections": args.connections,
                "wrk_threads": args.threads,
                "server_cpu": server_cpu,
                "wrk_cpu": wrk_cpu,
                "user_agents": args.user_agents,
                "client_ips": args.client_ips,
                "geoip": [str(p) for p in geoip],
            },
            "results": [asdict(r) for r in results],
            "ratios": rat,
            "checks": [{**asdict(c), "verdict": c.verdict()} for c in checks],
            "cores": cores,
            "beacon_step_us_per_run": steps,
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
