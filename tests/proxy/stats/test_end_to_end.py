"""End to end against a real ``beaconproxy serve``: beacons in through the public API, an analyst key made
with the CLI while the proxy owns the embedded store, figures out through the stats API."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import CHROME_UA
from tests.support.proxy_server import ADMIN_TOKEN, REPO, running_proxy

CONFIG = """
[sites.blog]
allowed_origins = ["*"]
timezone = "Europe/Berlin"
min_visitors = 2
"""


def http(url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = orjson.dumps(body) if body is not None else None
    req = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def test_beacons_in_key_from_cli_figures_out(tmp_path: Path, geoip_files: tuple[str, str]) -> None:
    with running_proxy(tmp_path, geoip_files, CONFIG) as proxy:
        for ip, page in (("81.2.69.142", "/a"), ("81.2.69.160", "/a"), ("81.2.69.200", "/b")):
            status, _ = http(
                f"{proxy.url}/v1/events",
                {"site": "blog", "url": f"https://blog.example{page}", "referrer": "https://www.google.com/"},
                {"User-Agent": CHROME_UA, "X-Forwarded-For": ip},
            )
            assert status == 202
        assert len(proxy.rows("site = 'blog'", want=3)) == 3
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("BEACONPROXY_")},
            "BEACONPROXY_CONFIG": str(tmp_path / "proxy.toml"),
            "BEACONPROXY_DATA_DIR": str(proxy.data_dir),
            "BEACONPROXY_SERVER__ADMIN_TOKEN": ADMIN_TOKEN,
            "BEACONPROXY_PORT": str(proxy.port),
        }
        made = subprocess.run(
            [sys.executable, "-m", "proxy.cli", "analyst-key", "create", "--site", "blog", "--label", "e2e"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip()
        assert key.startswith("bpk_") and "\n" not in key  # stdout holds the key and nothing else
        listed = subprocess.run(
            [sys.executable, "-m", "proxy.cli", "analyst-key", "list"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert key.split("_")[1] in listed.stdout and key not in listed.stdout
        auth = {"Authorization": f"Bearer {key}"}
        query = {"site_id": "blog", "date_range": "day", "metrics": ["visitors", "visits", "bounce_rate"]}
        status, body = http(f"{proxy.url}/api/v2/query", query, auth)
        assert status == 200, body
        assert body["results"] == [{"dimensions": [], "metrics": [3, 3, 100]}]
        assert body["query"]["date_range"][0].endswith(("+01:00", "+02:00"))  # Berlin
        status, body = http(f"{proxy.url}/api/v2/query", {**query, "dimensions": ["event:page"]}, auth)
        assert status == 400 and "cannot be queried along with event dimensions" in body["error"]
        status, body = http(
            f"{proxy.url}/api/v2/query",
            {**query, "metrics": ["visitors"], "dimensions": ["visit:source"]},
            auth,
        )
        assert body["results"] == [{"dimensions": ["Google"], "metrics": [3]}]
        status, body = http(
            f"{proxy.url}/api/v2/query",
            {**query, "metrics": ["visitors"], "dimensions": ["event:page"]},
            auth,
        )
        assert body["results"] == [
            {"dimensions": ["/a"], "metrics": [2]}
        ]  # /b (1 visitor) is withheld, k = 2
        assert body["meta"]["suppression"]["other_rows_withheld"] == 1
        assert http(f"{proxy.url}/api/v2/query", query)[0] == 401
        revoked = subprocess.run(
            [sys.executable, "-m", "proxy.cli", "analyst-key", "revoke", key.split("_")[1]],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert revoked.returncode == 0, revoked.stderr
