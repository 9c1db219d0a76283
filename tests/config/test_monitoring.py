"""config/monitoring/: every metric the Grafana dashboard and the alerting rules name exists in a real
proxy's /metrics, the dashboard has the shape Grafana imports, and promtool accepts the rules, their unit
tests and the example Prometheus configuration (and the dashboard's queries as PromQL)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from tests.conftest import CHROME_UA

MONITORING = Path(__file__).resolve().parents[2] / "config" / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
RULES = MONITORING / "alerts.yml"
# Series Prometheus makes itself for every scrape target, not the proxy.
PROMETHEUS_OWN = frozenset({"up"})
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$job": "beacon-proxy", "$instance": ".*"}
KEYWORDS = frozenset(
    {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring", "group_left", "group_right"}
)
NO_PROMTOOL = "promtool not found: `make test` installs it (Debian's prometheus package) where it can"


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or a Grafana label_values() query) reads."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # labels
    expr = re.sub(r"\$\{?\w+\}?", "", expr)  # Grafana variables
    if expr.strip().startswith("label_values("):  # label_values(metric, label): the label is no metric
        expr = expr.split(",", 1)[0] + ")"
    found = re.findall(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", expr)
    return {name for name, call in found if not call and name not in KEYWORDS}


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(DASHBOARD.read_bytes())
    return doc


def dashboard_panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        if panel["type"] != "row":
            yield panel


def dashboard_exprs() -> list[str]:
    exprs = [t["expr"] for p in dashboard_panels() for t in p["targets"]]
    exprs += [v["query"]["query"] for v in dashboard()["templating"]["list"] if v["type"] == "query"]
    return exprs


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def exported(c: TestClient) -> set[str]:
    """Sample names of /metrics after traffic that touches every counter family."""
    headers = {"User-Agent": CHROME_UA, "Content-Type": "application/json"}
    events = [{"site": "demo", "url": "https://e.com/a"}, {"site": "nope", "url": "https://e.com/b"}]
    assert c.post("/v1/events", content=orjson.dumps(events), headers=headers).status_code == 202
    assert c.post("/v1/events", content=b"{", headers=headers).status_code == 400
    c.get(
        "/v1/pixel.gif", params={"site": "demo", "url": "https://e.com/"}, headers={"User-Agent": CHROME_UA}
    )
    assert c.app.state.rt.flush(10)  # type: ignore[attr-defined]
    text = c.get("/metrics").text
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_name_finder_finds_metrics_and_only_metrics() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (job, le) (rate(beacon_x_bucket{job=~"$job", le!="1"}[5m]))) > 0.25'
        " and on (job) beacon_y offset 1h unless beacon_z:recorded"
    )
    assert metric_names(expr) == {"beacon_x_bucket", "beacon_y", "beacon_z:recorded"}
    assert metric_names("label_values(beacon_requests_total, job)") == {"beacon_requests_total"}


def test_every_metric_named_exists_in_metrics(client_factory: Callable[..., TestClient]) -> None:
    names = exported(client_factory())
    recorded = {r["record"] for r in rules() if "record" in r}
    for where, exprs in (("dashboard", dashboard_exprs()), ("alerting rules", [r["expr"] for r in rules()])):
        named = set().union(*(metric_names(e) for e in exprs))
        assert named, f"no metric found in the {where}"
        missing = named - names - PROMETHEUS_OWN - recorded
        assert not missing, f"the {where} name metrics /metrics does not have: {sorted(missing)}"
    # what the issue asks to watch is there
    watched = set().union(*(metric_names(e) for e in dashboard_exprs()))
    for metric in (
        "beacon_events_accepted_total",
        "beacon_events_dropped_total",
        "beacon_request_seconds_bucket",
        "beacon_spool_bytes",
        "beacon_spool_oldest_seconds",
        "beacon_sink_errors_total",
        "beacon_events_shipped_total",
        "beacon_ready",
    ):
        assert metric in watched, metric


def test_the_alerts_cover_what_an_operator_must_hear_about() -> None:
    alerts = {r["alert"]: r for r in rules() if "alert" in r}
    assert {
        "BeaconProxyDown",
        "BeaconProxyNotReady",
        "BeaconSpoolNearLimit",
        "BeaconSpoolGrowing",
        "BeaconShipperFailing",
        "BeaconServerErrors",
        "BeaconDroppedSpike",
    } <= set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_the_dashboard_has_the_shape_grafana_imports() -> None:
    doc = dashboard()
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", doc["uid"]) and doc["title"]
    assert isinstance(doc["schemaVersion"], int) and doc["schemaVersion"] >= 36
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    boxes: list[tuple[int, int, int, int, str]] = []
    for p in doc["panels"]:
        g = p["gridPos"]
        assert all(isinstance(g[k], int) for k in ("x", "y", "w", "h")), p["title"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["w"] > 0 and g["h"] > 0, p["title"]
        for x, y, w, h, other in boxes:
            overlap = g["x"] < x + w and x < g["x"] + g["w"] and g["y"] < y + h and y < g["y"] + g["h"]
            assert not overlap, f"panels {other!r} and {p['title']!r} overlap"
        boxes.append((g["x"], g["y"], g["w"], g["h"], p["title"]))
    used = set()
    for p in dashboard_panels():
        assert p["type"] in {"timeseries", "stat"} and p["title"], p
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["expr"] and t["datasource"] == p["datasource"], p["title"]
            used |= set(re.findall(r"\$\{?(\w+)\}?", t["expr"]))
    assert used - {"__rate_interval"} <= set(variables), f"undefined variables: {used - set(variables)}"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip(NO_PROMTOOL)
    return path


def run(promtool: str, *args: str, cwd: Path = MONITORING) -> None:
    out = subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"promtool {' '.join(args)}:\n{out.stdout}\n{out.stderr}"


def test_promtool_checks_the_rules_their_tests_and_the_config(promtool: str) -> None:
    run(promtool, "check", "rules", "alerts.yml")
    run(promtool, "test", "rules", "alerts.test.yml")  # each alert fires where it should, and only there
    run(promtool, "check", "config", "prometheus.yml")


def test_promtool_parses_every_dashboard_query(promtool: str, tmp_path: Path) -> None:
    """Each panel's query, with Grafana's variables filled in, as a recording rule promtool must parse."""
    queries = []
    for e in (t["expr"] for p in dashboard_panels() for t in p["targets"]):
        for var, value in GRAFANA_VARIABLES.items():
            e = e.replace(var, value)
        assert "$" not in e, e
        queries.append(e)
    recording = [{"record": f"dashboard:query{i}", "expr": q} for i, q in enumerate(queries)]
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": recording}]}))
    run(promtool, "check", "rules", "dashboard.yml", cwd=tmp_path)
