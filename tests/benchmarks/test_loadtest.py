"""make loadtest's driver against a real `beaconproxy serve`: a few seconds of the whole traffic mix,
headless, in one Locust process and distributed (one master, two workers), then the capacity finder;
each time the reconciliation must agree with the proxy's counters and its stored rows. And it must not
agree when other traffic reaches the proxy during the run."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CHROME_UA
from tests.support.proxy_server import ADMIN_TOKEN, REPO, RunningProxy, running_proxy

CONFIG = """
[sites.demo]
allowed_origins = ["*"]
tracker_keys = ["demo"]

[sites.shop]
allowed_origins = ["*"]
tracker_keys = ["shop-key"]
"""
KINDS = [
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
]
# Every kind equally often, so that a few seconds reach every endpoint; two sites, two tracker keys.
MIX = ["--mix", ",".join(f"{k}=1" for k in KINDS), "--sites", "demo,shop", "--tracker-keys", "demo,shop-key"]
ENDPOINTS = {"events", "pixel", "posthog", "plausible", "segment", "umami", "snowplow"}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, geoip_files: tuple[str, str]) -> Iterator[RunningProxy]:
    with running_proxy(tmp_path_factory.mktemp("loadtest"), geoip_files, CONFIG) as p:
        yield p


def loadtest(proxy: RunningProxy, results: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    cmd = [
        sys.executable,
        "benchmarks/loadtest.py",
        "--host",
        proxy.url,
        "--results-dir",
        str(results),
        "--admin-token",
        ADMIN_TOKEN,
        "--data-dir",
        str(proxy.data_dir),  # where the admin socket is found
        *args,
    ]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    prefixes = {p.name.split("_")[0] for p in results.glob("*_reconcile.json")}
    assert len(prefixes) == 1, f"one run's files expected in {results}:\n{out.stdout}\n{out.stderr}"
    return out, results / prefixes.pop()


def reconciliation(prefix: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(Path(f"{prefix}_reconcile.json").read_text())
    return doc


def assert_agrees(out: subprocess.CompletedProcess[str], prefix: Path) -> dict[str, Any]:
    log = f"{out.stdout}\n{out.stderr}"
    assert out.returncode == 0, log  # no request failed, and the counts did not disagree
    assert "RESULT: AGREE" in out.stdout, log
    doc = reconciliation(prefix)
    assert doc["verdict"] == "AGREE"
    assert [c["name"] for c in doc["checks"] if c["ok"]] == [
        "events sent = received, per endpoint",
        "received = accepted + dropped",
        "answers' counts within the proxy's",
        "shipped = accepted",
        "rows stored = accepted",  # the store was asked too
    ]
    assert doc["deltas"]["rows"] == doc["deltas"]["accepted"] > 0
    return doc


def test_a_short_run_reaches_every_endpoint_and_agrees(proxy: RunningProxy, tmp_path: Path) -> None:
    out, prefix = loadtest(proxy, tmp_path, "--users", "4", "--rate", "30", "--duration", "4s", "--", *MIX)
    doc = assert_agrees(out, prefix)
    sent = {endpoint: events for endpoint, _, events, _ in doc["table"]}
    assert set(sent) == ENDPOINTS and all(n > 0 for n in sent.values()), sent
    assert doc["tally"]["rejected_as_expected"]["events"] > 0  # the malformed bodies got their 400
    assert "real-world User-Agents" in doc["user_agents"]  # fake-useragent's data set, not the fallback
    assert Path(f"{prefix}.html").stat().st_size > 0  # Locust's report and stats
    with Path(f"{prefix}_stats.csv").open() as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    assert rows["Aggregated"]["Failure Count"] == "0" and int(rows["Aggregated"]["Request Count"]) > 0


def test_two_workers_and_a_master_agree(proxy: RunningProxy, tmp_path: Path) -> None:
    args = ["--users", "4", "--rate", "30", "--duration", "4s", "--workers", "2", "--", *MIX]
    out, prefix = loadtest(proxy, tmp_path, *args)
    doc = assert_agrees(out, prefix)
    assert doc["workers"] == 2  # both workers' counts reached the master
    assert sum(n for _, _, n, _ in doc["table"]) > 0


def test_other_traffic_during_the_run_is_not_agreed_with(proxy: RunningProxy, tmp_path: Path) -> None:
    stop = threading.Event()

    def requests_so_far() -> float:
        with urllib.request.urlopen(f"{proxy.url}/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith('beacon_requests_total{endpoint="events"}'):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    def other_sender() -> None:
        start = requests_so_far()
        while requests_so_far() == start and not stop.is_set():  # the run has begun
            time.sleep(0.05)
        body = json.dumps({"site": "demo", "url": "https://example.com/other"}).encode()
        headers = {"Content-Type": "application/json", "User-Agent": CHROME_UA}
        while not stop.is_set():
            req = urllib.request.Request(f"{proxy.url}/v1/events", data=body, headers=headers)
            with urllib.request.urlopen(req, timeout=10):
                pass
            time.sleep(0.2)

    sender = threading.Thread(target=other_sender, daemon=True)
    sender.start()
    try:
        args = ["--users", "2", "--rate", "10", "--duration", "4s", "--", "--mix", "pageview=1"]
        args += ["--reconcile-timeout", "5"]  # it never goes idle while the other sender sends
        out, prefix = loadtest(proxy, tmp_path, *args)
    finally:
        stop.set()
        sender.join(15)
    assert out.returncode == 3, f"{out.stdout}\n{out.stderr}"
    assert "RESULT: DISAGREE" in out.stdout and "other traffic" in out.stdout
    assert reconciliation(prefix)["verdict"] == "DISAGREE"


def test_the_capacity_finder_prints_its_table(proxy: RunningProxy, tmp_path: Path) -> None:
    steps = ["--capacity-start", "20", "--capacity-step", "20", "--capacity-max", "40"]
    timing = ["--capacity-step-time", "3", "--capacity-settle", "1", "--capacity-p99-ms", "5000"]
    out, prefix = loadtest(proxy, tmp_path, "--capacity", "--", *steps, *timing)
    log = f"{out.stdout}\n{out.stderr}"
    assert out.returncode == 0, log
    assert "offered  users     req/s  events/s" in out.stdout and "capacity:" in out.stdout, log
    with Path(f"{prefix}_capacity.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows and float(rows[0]["offered"]) == 20, rows  # the first step, measured
    assert all(float(r["achieved"]) > 0 and float(r["events"]) > 0 and r["cores"] for r in rows), rows
    assert "stopped: " in Path(f"{prefix}_capacity.txt").read_text()
    assert reconciliation(prefix)["verdict"] == "AGREE"  # the capacity run is reconciled too
