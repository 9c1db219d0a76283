"""The stats API on real volumes: p50/p99 of the dashboard's queries over 30 days, cold and warm, on the
embedded store, while ingestion keeps running.

    .venv/bin/python benchmarks/stats_bench.py [--days 90] [--visits-per-day 32000] [--warm 15]

1. Fills a fresh data directory with ~10 million events straight into the store (90 days, 3,000 pages
   with a skewed popularity, sources from search, social, newsletters and direct, devices, browsers, OS,
   countries; visits of 1-6 events with 10-250 s between them; custom events and engagement events).
2. Rebuilds the past days' visits into the store (what the proxy's store process does by itself after
   start, ``proxy/stats/visit_store.py``), then starts ``beaconproxy serve`` on it and makes an analyst
   key with the CLI (through the running proxy).
3. Posts beacons at a steady rate on a second thread for the whole measurement (ingestion keeps running).
4. Runs each dashboard query once right after start (cold: the engine's caches are empty; the files are
   in the OS page cache from the fill) and ``--warm`` times more, and prints p50/p99 per query.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config.settings import load_settings  # noqa: E402
from proxy.stats.visit_store import VisitStore  # noqa: E402
from sinks.clickhouse import ClickHouseSink  # noqa: E402
from tests.support.proxy_server import free_port  # noqa: E402

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
FILL = """
INSERT INTO beacon.events (event_id, site, ts, type, name, url, referrer, title, utm_source, utm_medium,
  utm_campaign, country, region, browser, browser_version, os, os_version, device, language, engagement_ms,
  visitor_hash, consent)
SELECT generateUUIDv4(number), 'bench', ts, type, name, url, referrer, '', utm_source, utm_medium,
  utm_campaign, country, region, browser, browser_version, os, os_version, device, 'en', engagement_ms,
  visitor_hash, []
FROM (
 SELECT number, v, k,
   toDateTime64(toStartOfDay(now('UTC')) - INTERVAL {back} DAY, 3, 'UTC') + start + k * gap AS ts,
   if(k % 4 = 3, 'event', 'pageview') AS type,
   if(type = 'pageview', 'pageview',
      ['engagement', 'engagement', 'engagement', 'signup', 'download', 'outbound'][1 + cityHash64(v, k, 7) % 6]) AS name,
   concat('https://bench.example.com/p/', toString(toUInt32(pow(3000, (cityHash64(v, k, 1) % 1000000) / 1000000.0)))) AS url,
   if(k = 0, ['', '', '', '', 'https://www.google.com', 'https://www.google.com', 'https://www.google.de',
              'https://www.bing.com', 'https://duckduckgo.com', 'https://l.facebook.com', 'https://t.co',
              'https://news.ycombinator.com', 'https://www.reddit.com',
              concat('https://blog', toString(cityHash64(v, 3) % 200), '.example.net')][1 + cityHash64(v, 2) % 14],
      'https://bench.example.com') AS referrer,
   if(k = 0 AND cityHash64(v, 4) % 10 = 0, ['newsletter', 'twitter', 'partner'][1 + cityHash64(v, 5) % 3], '') AS utm_source,
   if(utm_source != '', ['email', 'social', 'referral'][1 + cityHash64(v, 5) % 3], '') AS utm_medium,
   if(utm_source != '', concat('spring', toString(cityHash64(v, 6) % 5)), '') AS utm_campaign,
   vh AS visitor_hash,
   ['US', 'US', 'US', 'DE', 'DE', 'GB', 'FR', 'IN', 'BR', 'JP', 'CA', 'NL', 'SE', 'PL', 'ES'][1 + vh % 15] AS country,
   concat(country, '-', toString(vh % 7)) AS region,
   ['Chrome', 'Chrome', 'Chrome', 'Safari', 'Safari', 'Firefox', 'Edge', 'Opera', 'Samsung Internet'][1 + intDiv(vh, 16) % 9] AS browser,
   toString(100 + intDiv(vh, 256) % 30) AS browser_version,
   ['Windows', 'Windows', 'Mac OS X', 'iOS', 'iOS', 'Android', 'Android', 'Linux'][1 + intDiv(vh, 4096) % 8] AS os,
   toString(intDiv(vh, 65536) % 15) AS os_version,
   ['desktop', 'desktop', 'desktop', 'mobile', 'mobile', 'tablet'][1 + intDiv(vh, 1048576) % 6] AS device,
   if(name = 'engagement', toUInt32(cityHash64(v, k, 9) % 120000), NULL) AS engagement_ms
 FROM (
  SELECT number AS v, 1 + (cityHash64(v, 10) % 6) AS n, arrayJoin(range(n)) AS k,
    toUInt32(cityHash64(v, 11) % 86000) AS start, toUInt32(10 + cityHash64(v, 12) % 240) AS gap,
    cityHash64({day}, cityHash64(v, 13) % {visitors}) AS vh, number
  FROM numbers({first}, {count})
 )
)
"""
QUERIES: dict[str, dict[str, Any]] = {
    "top stats": {
        "metrics": ["visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration"]
    },
    "visitors graph": {"metrics": ["visitors", "pageviews"], "dimensions": ["time:day"]},
    "top sources": {"metrics": ["visitors"], "dimensions": ["visit:source"], "pagination": {"limit": 10}},
    "top pages": {
        "metrics": ["visitors", "pageviews"],
        "dimensions": ["event:page"],
        "pagination": {"limit": 10},
    },
    "entry pages": {
        "metrics": ["visitors", "visits", "bounce_rate"],
        "dimensions": ["visit:entry_page"],
        "pagination": {"limit": 10},
    },
    "exit pages": {"metrics": ["visitors"], "dimensions": ["visit:exit_page"], "pagination": {"limit": 10}},
    "countries": {
        "metrics": ["visitors", "percentage"],
        "dimensions": ["visit:country"],
        "pagination": {"limit": 10},
    },
    "devices": {"metrics": ["visitors"], "dimensions": ["visit:device"]},
    "browsers": {"metrics": ["visitors"], "dimensions": ["visit:browser"]},
    "operating systems": {"metrics": ["visitors"], "dimensions": ["visit:os"]},
    "custom events": {"metrics": ["visitors", "events"], "dimensions": ["event:name"]},
}


def fill(data: Path, days: int, per_day: int) -> int:
    settings = load_settings(environ={}, data_dir=str(data), clickhouse={"database": "beacon"})
    sink = ClickHouseSink(settings.clickhouse_dsn, settings.clickhouse)
    sink.start()
    for d in range(days):
        sink.client.command(
            FILL.format(back=days - d, day=d, visitors=int(per_day / 1.3), first=d * per_day, count=per_day)
        )
    n = int(sink.client.command("SELECT count() FROM beacon.events"))
    sink.close()
    return n


def rebuild_visits(data: Path) -> int:
    """What the proxy's store process does by itself after start: past days' visits into the store."""
    settings = load_settings(environ={}, data_dir=str(data), clickhouse={"database": "beacon"})
    sink = ClickHouseSink(settings.clickhouse_dsn, settings.clickhouse)
    sink.start()  # the schema as the proxy would bring a kept store up to date
    sink.close()
    store = VisitStore(settings.clickhouse_dsn, "beacon")
    try:
        return store.refresh(full=True)
    finally:
        store.close()


def post(url: str, body: Any, headers: dict[str, str]) -> tuple[int, bytes]:
    req = urllib.request.Request(
        url, data=orjson.dumps(body), headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def ingest(url: str, stop: threading.Event, sent: list[int]) -> None:
    """20 batches of 10 events per second (200 events/s) until stopped."""
    i = 0
    while not stop.is_set():
        batch = [
            {
                "site": "bench",
                "url": f"https://bench.example.com/p/{(i + j) % 3000}",
                "referrer": "https://www.google.com",
            }
            for j in range(10)
        ]
        status, _ = post(
            f"{url}/v1/events", batch, {"User-Agent": UA, "X-Forwarded-For": f"81.2.{i % 200}.{i % 250 + 1}"}
        )
        if status == 202:
            sent[0] += 10
        i += 1
        stop.wait(0.05)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--visits-per-day", type=int, default=32000)
    ap.add_argument("--warm", type=int, default=15)
    ap.add_argument("--keep", help="data directory to reuse (filled if empty)")
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="stats-bench-"))
    data = work / "data"
    if not (data / "clickhouse").exists():
        t = time.perf_counter()
        n = fill(data, args.days, args.visits_per_day)
        print(f"filled {n:,} events over {args.days} days in {time.perf_counter() - t:.0f} s", flush=True)
    t = time.perf_counter()
    days = rebuild_visits(data)  # nothing to do when a kept store is up to date
    print(f"visits of {days} past days rebuilt in {time.perf_counter() - t:.0f} s", flush=True)
    config = work / "bench.toml"
    config.write_text('[sites.bench]\nallowed_origins = ["*"]\n[analytics]\nrate_limit_per_hour = 100000\n')
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BEACONPROXY_")},
        "BEACONPROXY_CONFIG": str(config),
        "BEACONPROXY_DATA_DIR": str(data),
        "BEACONPROXY_PORT": str(port),
        "BEACONPROXY_SERVER__ADMIN_TOKEN": "bench-admin-token-0123456789",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "serve"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    stop = threading.Event()
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        key = subprocess.run(
            [sys.executable, "-m", "proxy.cli", "analyst-key", "create", "--site", "bench"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        sent = [0]
        loader = threading.Thread(target=ingest, args=(url, stop, sent), daemon=True)
        loader.start()
        auth = {"Authorization": f"Bearer {key}"}
        results = []
        for name, q in QUERIES.items():
            times = []
            for _ in range(1 + args.warm):
                t = time.perf_counter()
                status, body = post(
                    f"{url}/api/v2/query", {"site_id": "bench", "date_range": "30d", **q}, auth
                )
                times.append(time.perf_counter() - t)
                assert status == 200, body[:300]
            results.append((name, times[0], pct(times[1:], 50), pct(times[1:], 99)))
            print(
                f"{name:18} cold {times[0]:6.3f} s   warm p50 {results[-1][2]:6.3f} s   p99 {results[-1][3]:6.3f} s",
                flush=True,
            )
        stop.set()
        loader.join()
        print(f"ingestion during the run: {sent[0]:,} events accepted (202)")
        print("\n| query (30 days) | cold | warm p50 | warm p99 |\n|---|---:|---:|---:|")
        for name, cold, p50, p99 in results:
            print(f"| {name} | {cold:.2f} s | {p50:.2f} s | {p99:.2f} s |")
        print(f"\nall warm p50: {statistics.median(r[2] for r in results):.2f} s (median over queries)")
    finally:
        stop.set()
        proc.terminate()
        proc.wait(60)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
