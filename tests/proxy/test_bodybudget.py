"""The process-wide budget for request bodies in memory: 503 with Retry-After before a body is read."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient
from starlette.types import Message

from proxy.bodybudget import SMALL_BODY_BYTES, BodyBudget, BodyBudgetGuard, body_size
from proxy.ingest import Ingest
from tests.conftest import CHROME_UA

MAX_BODY = 1024 * 1024
BUDGET = 4 * MAX_BODY  # large bodies: 3 MiB of it
EVENT = orjson.dumps({"site": "demo", "url": "https://example.com/"})


def length(n: int | str) -> tuple[bytes, bytes]:
    return (b"content-length", str(n).encode())


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], 0),  # GET, or a POST without a body
        ([(b"host", b"x"), length(700)], 700),
        ([length(0)], 0),
        ([length(MAX_BODY)], MAX_BODY),
        ([length(MAX_BODY + 1)], 0),  # the route answers 413 without reading it
        ([length("12x")], 0),  # the route answers 400 without reading it
        ([length("-5")], 0),
        ([(b"transfer-encoding", b"chunked")], MAX_BODY),  # size unknown: as large as allowed
    ],
)
def test_a_body_is_reserved_at_the_size_its_headers_promise(
    headers: list[tuple[bytes, bytes]], expected: int
) -> None:
    assert body_size(headers, BodyBudget(BUDGET, MAX_BODY)) == expected


def test_large_bodies_fill_three_quarters_and_small_ones_the_rest() -> None:
    budget = BodyBudget(BUDGET, MAX_BODY)
    assert [budget.reserve(MAX_BODY) for _ in range(4)] == [True, True, True, False]
    assert not budget.reserve(SMALL_BODY_BYTES + 1)
    assert all(budget.reserve(SMALL_BODY_BYTES) for _ in range(MAX_BODY // SMALL_BODY_BYTES))
    assert budget.in_use == BUDGET
    assert not budget.reserve(1)
    budget.release(MAX_BODY)
    assert not budget.reserve(MAX_BODY)  # the small ones still hold the last quarter
    for _ in range(MAX_BODY // SMALL_BODY_BYTES):
        budget.release(SMALL_BODY_BYTES)
    assert budget.reserve(MAX_BODY) and budget.in_use == 3 * MAX_BODY


def test_a_budget_that_cannot_hold_the_largest_body_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="three quarters"):
        BodyBudget(MAX_BODY, MAX_BODY)


# --- the ASGI guard (every route but the ingestion endpoints) -------------------------------------------


class Held:
    """An inner app that records what reached it and holds each request until released."""

    def __init__(self) -> None:
        self.started = 0
        self.release = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.started += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def never_receive() -> Message:
    raise AssertionError("the body was read")


class Sent:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int | None:
        return self.messages[0]["status"] if self.messages else None

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])


def scope(*headers: tuple[bytes, bytes], kind: str = "http") -> dict[str, Any]:
    return {"type": kind, "method": "POST", "path": "/v1/consent/withdraw", "headers": list(headers)}


def test_the_guard_answers_503_with_retry_after_before_the_body_is_read() -> None:
    async def run() -> None:
        inner, rejected = Held(), Counter[int]()
        guard = BodyBudgetGuard(inner, BodyBudget(BUDGET, MAX_BODY), rejected)
        held = [Sent() for _ in range(3)]
        tasks = [asyncio.create_task(guard(scope(length(MAX_BODY)), never_receive, s)) for s in held]
        for _ in range(5):
            await asyncio.sleep(0)
        assert (inner.started, guard.budget.in_use) == (3, 3 * MAX_BODY)
        refused = Sent()
        await guard(scope(length(MAX_BODY)), never_receive, refused)  # answered at once
        assert refused.status == 503
        assert refused.headers[b"retry-after"] == b"1"
        assert (
            refused.headers[b"connection"] == b"close"
        )  # its unread body is not read to keep the connection
        assert orjson.loads(refused.messages[1]["body"]) == {
            "error": "too many request bodies in memory; retry shortly"
        }
        assert inner.started == 3 and rejected == {503: 1}
        inner.release.set()
        await asyncio.gather(*tasks)
        assert [s.status for s in held] == [202, 202, 202]
        assert guard.budget.in_use == 0

    asyncio.run(run())


def test_the_guard_lets_requests_without_a_body_and_other_scopes_through_a_full_budget() -> None:
    async def run() -> None:
        inner = Held()
        inner.release.set()
        guard = BodyBudgetGuard(inner, BodyBudget(BUDGET, MAX_BODY))
        guard.budget.in_use = BUDGET
        for s in (scope(), scope(length(0)), scope(length(MAX_BODY + 1)), scope(kind="lifespan")):
            await guard(s, never_receive, Sent())
        assert inner.started == 4

    asyncio.run(run())


def test_the_guard_returns_the_reservation_when_the_app_fails() -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    async def run() -> None:
        guard = BodyBudgetGuard(failing, BodyBudget(BUDGET, MAX_BODY))
        with pytest.raises(RuntimeError):
            await guard(scope(length(1000)), never_receive, Sent())
        assert guard.budget.in_use == 0

    asyncio.run(run())


# --- the whole app: the ingestion endpoints reserve from the same budget ---------------------------------


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/v1/events", "application/json"),
        ("/api/event", "text/plain"),
        ("/v1/consent/withdraw", "application/json"),
    ],
    ids=["events", "plausible", "another route"],
)
def test_a_full_budget_refuses_bodies_on_every_route_and_counts_nothing_accepted(
    client: TestClient, path: str, content_type: str
) -> None:
    rt = client.app.state.rt  # type: ignore[attr-defined]
    budget: BodyBudget = client.app.state.body_budget  # type: ignore[attr-defined]
    headers = {"User-Agent": CHROME_UA, "Content-Type": content_type, "Origin": "https://www.example.com"}
    budget.in_use = budget.budget  # as if other requests' bodies filled it
    accepted, refused = rt.metrics.accepted, rt.metrics.rejected_requests[503]
    r = client.post(path, content=EVENT, headers=headers)
    assert r.status_code == 503
    assert (r.headers["retry-after"], r.headers["connection"]) == ("1", "close")
    assert r.json()["error"] == "too many request bodies in memory; retry shortly"
    assert rt.metrics.accepted == accepted and rt.metrics.rejected_requests[503] == refused + 1
    assert (
        client.get(
            "/v1/pixel.gif",
            params={"site": "demo", "url": "https://example.com/"},
            headers={"User-Agent": CHROME_UA},
        ).status_code
        == 200
    )  # no body: not refused
    budget.in_use = 0
    assert client.post(path, content=EVENT, headers=headers).status_code != 503
    assert budget.in_use == 0  # every reservation was given back


def test_an_ingestion_endpoint_refuses_before_reading_a_byte_of_the_body(client: TestClient) -> None:
    sent: list[Message] = []

    async def router(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("ingestion requests never reach the router")

    async def send(message: Message) -> None:
        sent.append(message)

    rt = client.app.state.rt  # type: ignore[attr-defined]
    budget = BodyBudget(BUDGET, MAX_BODY)
    ingest = Ingest(router, rt, budget)
    assert budget.reserve(3 * MAX_BODY)  # the large-body part is full
    head = [(b"content-type", b"application/json"), (b"user-agent", CHROME_UA.encode()), length(MAX_BODY)]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/events",
        "headers": head,
        "client": ("127.0.0.1", 1),
    }
    asyncio.run(ingest(scope, never_receive, send))
    assert sent[0]["status"] == 503
    assert (b"retry-after", b"1") in sent[0]["headers"]
    assert budget.in_use == 3 * MAX_BODY
