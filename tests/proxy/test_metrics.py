"""/metrics: Prometheus counters that add up, and no IP, identifier, User-Agent or URL in any label."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from config.settings import Settings
from proxy.app import create_app
from tests.conftest import CHROME_UA, admin
from tests.proxy.test_privacy import FULL_V4, LEAKY_EVENT, assert_absent, needles


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_and_leak_nothing(client_factory: Callable[..., TestClient]) -> None:
    c = client_factory(FULL_V4)
    headers = {"User-Agent": CHROME_UA, "Content-Type": "application/json"}
    body = [LEAKY_EVENT, dict(LEAKY_EVENT, site="nope"), dict(LEAKY_EVENT, site="nope"), {"site": 1}]
    assert c.post("/v1/events", content=orjson.dumps(body), headers=headers).json() == {
        "accepted": 1,
        "dropped": 3,
        "errors": [{"index": 3, "error": "field 'site' must be a string"}],
    }
    bot = {"User-Agent": "curl/8", "Content-Type": "application/json"}
    c.post("/v1/events", content=orjson.dumps(LEAKY_EVENT), headers=bot)
    c.get(
        "/v1/pixel.gif", params={"site": "demo", "url": "https://e.com/"}, headers={"User-Agent": CHROME_UA}
    )
    assert c.app.state.rt.flush(10)  # type: ignore[attr-defined]
    r = c.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    got = samples(r.text)
    assert got[("beacon_requests_total", (("endpoint", "events"),))] == 2
    assert got[("beacon_requests_total", (("endpoint", "pixel"),))] == 1
    assert got[("beacon_events_received_total", (("endpoint", "events"), ("site", "demo")))] == 2
    assert got[("beacon_events_received_total", (("endpoint", "events"), ("site", "unknown")))] == 3
    assert got[("beacon_events_accepted_total", (("site", "demo"),))] == 2
    assert got[("beacon_events_dropped_total", (("reason", "unknown_site"),))] == 2
    assert got[("beacon_events_dropped_total", (("reason", "invalid"),))] == 1
    assert got[("beacon_events_dropped_total", (("reason", "bot"),))] == 1
    assert got[("beacon_events_shipped_total", ())] == 2
    assert got[("beacon_insert_seconds_count", ())] >= 1
    assert got[("beacon_sink_up", ())] == 1
    assert ("beacon_spool_bytes", ()) in got
    assert got[("beacon_spool_limit_bytes", ())] == 1024**3
    assert got[("beacon_ready", ())] == 1
    assert got[("beacon_cpu_seconds_total", ())] > 0
    # every ingestion request answered is timed, in its endpoint's histogram
    assert got[("beacon_request_seconds_count", (("endpoint", "events"),))] == 2
    assert got[("beacon_request_seconds_count", (("endpoint", "pixel"),))] == 1
    inf = got[("beacon_request_seconds_bucket", (("endpoint", "events"), ("le", "+Inf")))]
    assert inf == 2 and got[("beacon_request_seconds_sum", (("endpoint", "events"),))] > 0
    assert_absent(r.text, [*needles(FULL_V4), "example.com", "nope"], "the metrics")


def test_metrics_can_require_the_admin_token(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(server={"metrics_require_token": True})
    with TestClient(create_app(settings)) as c:
        assert c.get("/metrics").status_code == 401
        token = (settings.data_dir / "admin_token").read_text().strip()
        assert c.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_metrics_can_move_to_the_admin_listener(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(server={"metrics_listener": "admin"})
    with TestClient(create_app(settings)) as c:
        assert c.get("/metrics").status_code == 404
        r = admin(c).get("/metrics")
        assert r.status_code == 200
        assert "beacon_events_accepted" in r.text
