"""Every background job of the app is supervised: a fault injected into its work is logged, counted,
reported by /readyz (for vital jobs) and /metrics, and the job recovers by itself once the fault is
gone, with nothing acknowledged lost."""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from starlette.testclient import TestClient

from config.settings import Settings
from proxy.app import create_app
from proxy.runtime import Runtime
from tests.conftest import CHROME_UA, stored_rows

H = {"User-Agent": CHROME_UA, "Content-Type": "application/json"}


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


class Fault:
    """Makes a function raise ``exc`` while switched on (as fd exhaustion would)."""

    def __init__(self, real: Callable[..., Any], exc: BaseException) -> None:
        self.real, self.exc, self.on, self.hits = real, exc, True, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.on:
            self.hits += 1
            raise self.exc
        return self.real(*args, **kwargs)


def send(client: TestClient, n: int, start: int = 0) -> int:
    body = [{"site": "demo", "url": f"https://example.com/{i}", "props": {"seq": i}} for i in range(start, n)]
    r = client.post("/v1/events", content=orjson.dumps(body), headers=H)
    assert r.status_code == 202, r.text
    accepted: int = r.json()["accepted"]
    return accepted


def metric(client: TestClient, line_start: str) -> str:
    text = client.get("/metrics").text
    return next(line for line in text.splitlines() if line.startswith(line_start))


@pytest.fixture
def app_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as client:
        yield client


def runtime(client: TestClient) -> Runtime:
    rt: Runtime = client.app.state.rt  # type: ignore[attr-defined]
    return rt


def test_a_dead_shipper_is_restarted_and_readyz_says_not_ready_meanwhile(
    app_client: TestClient, ch: Client, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = runtime(app_client)
    assert rt.shipper is not None
    fault = Fault(rt.reader.sealed_segments, OSError(errno.EMFILE, "Too many open files"))
    monkeypatch.setattr(rt.reader, "sealed_segments", fault)
    assert wait_for(lambda: not rt.shipper.job.up)  # type: ignore[union-attr]

    accepted = send(app_client, 20)  # ingestion keeps spooling while nothing ships
    r = app_client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["down"] == ["shipper"]
    assert r.json()["sink_healthy"] is False
    assert r.json()["background"]["shipper"]["last_error"] == "OSError"
    assert metric(app_client, 'beacon_background_up{name="shipper"}').endswith(" 0.0")

    fault.on = False  # descriptors are free again
    assert wait_for(lambda: rt.shipper.job.up)  # type: ignore[union-attr]
    assert app_client.get("/readyz").status_code == 200
    rows = stored_rows(ch, database, app_client)
    assert sorted(int(r["props"]["seq"]) for r in rows) == list(range(accepted))
    assert rt.shipper.job.failures >= 1
    assert metric(app_client, 'beacon_background_failures_total{name="shipper"}') != (
        'beacon_background_failures_total{name="shipper"} 0.0'
    )
    assert metric(app_client, 'beacon_background_up{name="shipper"}').endswith(" 1.0")


def test_a_dead_spool_writer_refuses_with_503_then_recovers(
    app_client: TestClient, ch: Client, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sinks.spool

    rt = runtime(app_client)
    rt.spool.restart_backoff = 0.2
    assert rt.spool.job is not None
    fault = Fault(sinks.spool._allocate_seq, RuntimeError("injected"))
    monkeypatch.setattr(sinks.spool, "_allocate_seq", fault)

    body = orjson.dumps({"site": "demo", "url": "https://example.com/lost"})
    r = app_client.post("/v1/events", content=body, headers=H)
    assert r.status_code == 503
    assert "Retry-After" in r.headers
    assert rt.metrics.accepted == 0 and rt.metrics.refused["spool_down"] == 1
    fault.on = False
    assert wait_for(lambda: rt.spool.state == "running" and rt.spool.job.up)  # type: ignore[union-attr]
    assert wait_for(lambda: app_client.get("/readyz").status_code == 200)
    accepted = send(app_client, 5)
    assert sorted(int(r["props"]["seq"]) for r in stored_rows(ch, database, app_client)) == list(
        range(accepted)
    )
    assert rt.spool.job.failures == 1


def test_a_failing_suppression_reload_is_reported_but_not_vital(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(server={"suppression_reload_seconds": 0.05})
    with TestClient(create_app(settings)) as client:
        rt = runtime(client)
        assert rt.subjects is not None
        fault = Fault(rt.stores.main.subjects.blocked, OSError(errno.EMFILE, "Too many open files"))
        monkeypatch.setattr(rt.stores.main.subjects, "blocked", fault)
        [job] = [j for j in rt.jobs if j.name == "suppression_reload"]
        assert wait_for(lambda: not job.up and job.failures >= 1)
        r = client.get("/readyz")
        assert r.status_code == 200  # not vital: ingestion is right without it, blocks apply locally
        assert r.json()["background"]["suppression_reload"]["up"] is False
        fault.on = False
        assert wait_for(lambda: job.up)
        assert client.get("/readyz").json()["background"]["suppression_reload"]["up"] is True
