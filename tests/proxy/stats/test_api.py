"""The analysts' HTTP API through the app: keys, site scoping, rate limit, ClickHouse limits, suppression
identical in v1, v2 and CSV, CSV and zip exports."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from config.settings import Settings
from proxy.app import create_app
from proxy.model import EVENT_COLUMNS
from tests.conftest import admin, new_analyst_key
from tests.proxy.stats.conftest import SITES, ev

ADMIN = "admin-token-for-stats-tests-0123"


@pytest.fixture
def api(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**analytics: Any) -> TestClient:
        settings = make_settings(
            sites={**SITES, "demo": {"allowed_origins": ["*"], "min_visitors": 3}},
            server={"admin_token": ADMIN},
            clickhouse={"retention_days": 3650},
            analytics=analytics,
        )
        c = TestClient(create_app(settings))
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def new_key(client: TestClient, *sites: str) -> str:
    return new_analyst_key(client, ADMIN, *sites)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def plant(client: TestClient) -> None:
    """/a: 5 visitors; /b: visitors 15, 16; /c: 17; /d: 15 again. Yesterday, site demo (k = 3)."""
    day = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    rows = [ev("demo", f"{day} 10:00:0{i}", 10 + i, "/a") for i in range(5)]
    rows += [ev("demo", f"{day} 11:00:00", 15, "/b"), ev("demo", f"{day} 11:00:00", 16, "/b")]
    rows += [ev("demo", f"{day} 11:01:00", 17, "/c"), ev("demo", f"{day} 11:02:00", 15, "/d")]
    rows += [ev("shop", f"{day} 10:00:00", 99, "/secret")]
    insert(client, rows)


def insert(client: TestClient, rows: list[dict[str, Any]]) -> None:
    rt = client.app.state.rt  # type: ignore[attr-defined]
    rt.sink.client.insert(
        f"{rt.settings.clickhouse.database}.events",
        [[r[c] for c in EVENT_COLUMNS] for r in rows],
        column_names=list(EVENT_COLUMNS),
    )


V2 = {
    "site_id": "demo",
    "metrics": ["visitors", "pageviews"],
    "date_range": "7d",
    "dimensions": ["event:page"],
}


def test_no_key_401_wrong_key_401_other_site_403(api: Callable[..., TestClient]) -> None:
    client = api()
    key = new_key(client, "demo")
    assert client.post("/api/v2/query", json=V2).status_code == 401
    assert client.post("/api/v2/query", json=V2, headers=auth(key + "x")).status_code == 401
    bogus = "bpk_0123456789abcdef_" + "A" * 43
    assert client.post("/api/v2/query", json=V2, headers=auth(bogus)).status_code == 401
    other = client.post("/api/v2/query", json={**V2, "site_id": "shop"}, headers=auth(key))
    missing = client.post("/api/v2/query", json={**V2, "site_id": "no-such-site"}, headers=auth(key))
    assert other.status_code == missing.status_code == 403
    assert other.json() == missing.json()  # the same answer whether or not the site exists
    r = client.get("/api/v1/stats/aggregate", params={"site_id": "shop"}, headers=auth(key))
    assert r.status_code == 403 and "results" not in r.text


def test_revoked_key_is_refused(api: Callable[..., TestClient]) -> None:
    client = api(key_cache_seconds=0)
    key = new_key(client, "demo")
    assert client.post("/api/v2/query", json=V2, headers=auth(key)).status_code == 200
    key_id = key.split("_")[1]
    listed = (
        admin(client).get("/admin/analyst-keys", headers={"Authorization": f"Bearer {ADMIN}"}).json()["keys"]
    )
    assert [k["id"] for k in listed] == [key_id] and "key" not in listed[0]
    r = admin(client).post(
        f"/admin/analyst-keys/{key_id}/revoke", headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert r.status_code == 200 and r.json()["revoked"] is True
    assert client.post("/api/v2/query", json=V2, headers=auth(key)).status_code == 401


def test_only_a_hash_of_the_key_is_stored(api: Callable[..., TestClient]) -> None:
    client = api()
    key = new_key(client, "demo")
    rt = client.app.state.rt  # type: ignore[attr-defined]
    db = rt.settings.clickhouse.database
    stored = rt.sink.client.raw_query(f"SELECT * FROM {db}.analyst_keys", fmt="TabSeparated")
    assert key.split("_")[2] not in bytes(stored).decode() and key not in bytes(stored).decode()


def test_admin_token_is_needed_to_manage_keys(api: Callable[..., TestClient]) -> None:
    client = api()
    assert admin(client).post("/admin/analyst-keys", json={"sites": ["demo"]}).status_code == 401
    key = new_key(client, "demo")
    assert (
        admin(client).get("/admin/analyst-keys", headers=auth(key)).status_code == 403
    )  # an analyst key is not admin
    r = admin(client).post(
        "/admin/analyst-keys", json={"sites": ["nope"]}, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert r.status_code == 400 and "unknown site" in r.json()["error"]


def test_rate_limit_answers_429_with_retry_after(api: Callable[..., TestClient]) -> None:
    client = api(rate_limit_per_hour=3)
    key, other = new_key(client, "demo"), new_key(client, "demo")
    codes = [client.post("/api/v2/query", json=V2, headers=auth(key)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = client.post("/api/v2/query", json=V2, headers=auth(key))
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 3600
    assert "3 requests per hour" in r.json()["error"]
    assert client.post("/api/v2/query", json=V2, headers=auth(other)).status_code == 200  # per key


def test_result_row_cap_is_enforced_by_clickhouse(api: Callable[..., TestClient]) -> None:
    client = api(max_result_rows=100, min_visitors=1)
    day = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    insert(client, [ev("shop", f"{day} 10:00:00", i, f"/p{i}") for i in range(150)])
    key = new_key(client, "shop")
    body = {**V2, "site_id": "shop", "pagination": {"limit": 200}}
    r = client.post("/api/v2/query", json=body, headers=auth(key))
    assert r.status_code == 400 and "analytics.max_result_rows" in r.json()["error"]
    ok = client.post("/api/v2/query", json={**body, "pagination": {"limit": 90}}, headers=auth(key))
    assert ok.status_code == 200 and len(ok.json()["results"]) == 90


def test_time_limit_is_enforced_by_clickhouse(api: Callable[..., TestClient]) -> None:
    client = api(max_execution_seconds=0.001)
    rt = client.app.state.rt  # type: ignore[attr-defined]
    # 200,000 page views over the last two days: far more than a millisecond of work
    db = rt.settings.clickhouse.database
    rt.sink.client.command(
        f"INSERT INTO {db}.events (event_id, site, ts, type, name, url, visitor_hash) "
        "SELECT generateUUIDv4(number), 'demo', now64(3, 'UTC') - toIntervalSecond(number % 170000), "
        "'pageview', 'pageview', concat('https://demo.example/p', toString(number % 500)), number % 3000 "
        "FROM numbers(200000)"
    )
    key = new_key(client, "demo")
    body = {**V2, "metrics": ["visitors", "visits", "bounce_rate"], "dimensions": ["visit:entry_page"]}
    r = client.post("/api/v2/query", json=body, headers=auth(key))
    assert r.status_code == 400 and "analytics.max_execution_seconds" in r.json()["error"]


def test_errors_name_the_field(api: Callable[..., TestClient]) -> None:
    client = api()
    key = new_key(client, "demo")
    bad = [
        ({**V2, "metrics": ["visitors", "nope"]}, "metrics[1]"),
        ({**V2, "date_range": "fortnight"}, "date_range"),
        ({**V2, "dimensions": ["visit:nope"]}, "dimensions[0]"),
        ({**V2, "filters": [["is", "event:page", "x"]]}, "filters[0]"),
        ({**V2, "pagination": {"limit": 0}}, "pagination.limit"),
        ({**V2, "order_by": [["pageviews", "sideways"]]}, "order_by[0]"),
        ({k: v for k, v in V2.items() if k != "metrics"}, "metrics"),
    ]
    for body, field in bad:
        r = client.post("/api/v2/query", json=body, headers=auth(key))
        assert r.status_code == 400 and field in r.json()["error"], (body, r.text)
    r = client.get("/api/v1/stats/breakdown", params={"site_id": "demo"}, headers=auth(key))
    assert r.status_code == 400 and "property" in r.json()["error"]


def test_suppression_is_identical_in_v1_v2_and_csv(api: Callable[..., TestClient]) -> None:
    client = api()
    plant(client)
    key = new_key(client, "demo")
    v2 = client.post("/api/v2/query", json=V2, headers=auth(key)).json()
    # /b, /c, /d have 2, 1 and 1 visitors (< 3): one (other) row of their 3 distinct visitors (not 4)
    assert v2["results"] == [
        {"dimensions": ["/a"], "metrics": [5, 5]},
        {"dimensions": ["(other)"], "metrics": [3, 4]},
    ]
    assert v2["meta"]["suppression"] == {"min_visitors": 3, "rows_folded": 3, "other_rows_withheld": 0}
    v1 = client.get(
        "/api/v1/stats/breakdown",
        params={"site_id": "demo", "period": "7d", "property": "event:page", "metrics": "visitors,pageviews"},
        headers=auth(key),
    ).json()
    assert v1["results"] == [
        {"page": "/a", "visitors": 5, "pageviews": 5},
        {"page": "(other)", "visitors": 3, "pageviews": 4},
    ]
    r = client.post("/api/v2/query", json=V2, headers={**auth(key), "Accept": "text/csv"})
    assert r.headers["content-type"].startswith("text/csv")
    assert list(csv.reader(io.StringIO(r.text))) == [
        ["event:page", "visitors", "pageviews"],
        ["/a", "5", "5"],
        ["(other)", "3", "4"],
    ]
    assert r.headers["x-beacon-rows-folded"] == "3"
    # totals and time series are never suppressed
    total = client.post("/api/v2/query", json={**V2, "dimensions": []}, headers=auth(key)).json()
    assert total["results"] == [{"dimensions": [], "metrics": [8, 9]}]


def test_a_small_other_row_is_withheld(api: Callable[..., TestClient]) -> None:
    client = api()
    plant(client)
    key = new_key(client, "demo")
    body = {**V2, "filters": [["is_not", "event:page", ["/b"]]]}  # (other) = /c, /d: visitors 17 and 15
    r = client.post("/api/v2/query", json=body, headers=auth(key)).json()
    assert r["results"] == [{"dimensions": ["/a"], "metrics": [5, 5]}]
    assert r["meta"]["suppression"] == {"min_visitors": 3, "rows_folded": 2, "other_rows_withheld": 1}
    csv_rows = client.get(
        "/api/v1/stats/breakdown",
        params={"site_id": "demo", "property": "event:page", "filters": "event:page!=/b", "format": "csv"},
        headers=auth(key),
    ).text.splitlines()
    assert csv_rows == ["page,visitors", "/a,5"]


def test_v1_shapes(api: Callable[..., TestClient]) -> None:
    client = api()
    plant(client)
    key = new_key(client, "demo")
    agg = client.get(
        "/api/v1/stats/aggregate",
        params={"site_id": "demo", "period": "7d", "metrics": "visitors,pageviews,bounce_rate"},
        headers=auth(key),
    ).json()
    # 8 visits; visitor 15's /b and /d are one visit of two page views: 7 bounces of 8 = 87.5 -> 88
    assert agg == {
        "results": {"visitors": {"value": 8}, "pageviews": {"value": 9}, "bounce_rate": {"value": 88.0}}
    }
    ts = client.get(
        "/api/v1/stats/timeseries", params={"site_id": "demo", "period": "7d"}, headers=auth(key)
    ).json()
    assert len(ts["results"]) == 7 and sum(r["visitors"] for r in ts["results"]) == 8
    assert set(ts["results"][0]) == {"date", "visitors"}
    rt = client.get("/api/v1/stats/realtime/visitors", params={"site_id": "demo"}, headers=auth(key))
    assert rt.json() == 0


def test_zip_export_holds_every_report_with_suppression(api: Callable[..., TestClient]) -> None:
    client = api()
    plant(client)
    key = new_key(client, "demo")
    r = client.get("/api/v1/export", params={"site_id": "demo", "period": "7d"}, headers=auth(key))
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(r.content))
    assert {"visitors.csv", "pages.csv", "sources.csv", "countries.csv", "custom_events.csv"} <= set(
        z.namelist()
    )
    pages = z.read("pages.csv").decode().splitlines()
    assert pages == ["page,visitors,pageviews", "/a,5,5", "(other),3,4"]
    assert "/secret" not in b"".join(z.read(n) for n in z.namelist()).decode()
    other = client.get("/api/v1/export", params={"site_id": "shop", "period": "7d"}, headers=auth(key))
    assert other.status_code == 403
