"""The process-wide budget for request bodies in memory: 503 with Retry-After before a body is read."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from proxy.bodybudget import SMALL_BODY_BYTES, BodyBudget, body_size

MAX_BODY = 1024 * 1024
BUDGET = 4 * MAX_BODY  # large bodies: 3 MiB of it


def scope(*headers: tuple[bytes, bytes], kind: str = "http") -> dict[str, Any]:
    return {"type": kind, "method": "POST", "path": "/v1/events", "headers": list(headers)}


def length(n: int) -> tuple[bytes, bytes]:
    return (b"content-length", str(n).encode())


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], 0),  # GET, or a POST without a body
        ([(b"host", b"x"), length(700)], 700),
        ([length(0)], 0),
        ([length(MAX_BODY)], MAX_BODY),
        ([length(MAX_BODY + 1)], 0),  # the route answers 413 without reading it
        ([(b"content-length", b"12x")], 0),  # the route answers 400 without reading it
        ([(b"content-length", b"-5")], 0),
        ([(b"transfer-encoding", b"chunked")], MAX_BODY),  # size unknown: as large as allowed
    ],
)
def test_body_size_is_what_the_headers_promise(headers: list[tuple[bytes, bytes]], expected: int) -> None:
    assert body_size(headers, MAX_BODY) == expected


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


def never_receive() -> Callable[[], Any]:
    async def receive() -> Any:
        raise AssertionError("the body was read")

    return receive


class Sent:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int | None:
        return self.messages[0]["status"] if self.messages else None

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_body_that_does_not_fit_gets_503_with_retry_after_without_being_read() -> None:
    async def run() -> None:
        inner = Held()
        rejected: Counter[int] = Counter()
        guard = BodyBudget(inner, budget=BUDGET, max_body=MAX_BODY, rejected=rejected)
        held = [Sent() for _ in range(3)]
        tasks = [asyncio.create_task(guard(scope(length(MAX_BODY)), never_receive(), s)) for s in held]
        await settle()
        assert (inner.started, guard.in_use) == (3, 3 * MAX_BODY)
        refused = Sent()
        await guard(scope(length(MAX_BODY)), never_receive(), refused)  # answered at once
        assert refused.status == 503
        assert refused.headers[b"retry-after"] == b"1"
        assert refused.headers[b"connection"] == b"close"  # its body is not read to keep the connection
        assert inner.started == 3 and rejected == {503: 1}
        inner.release.set()
        await asyncio.gather(*tasks)
        assert [s.status for s in held] == [202, 202, 202]
        assert guard.in_use == 0
        again = Sent()
        await guard(scope(length(MAX_BODY)), never_receive(), again)  # room again
        assert again.status == 202

    asyncio.run(run())


def test_a_quarter_of_the_budget_stays_for_small_bodies_when_large_ones_fill_the_rest() -> None:
    async def run() -> None:
        inner = Held()
        guard = BodyBudget(inner, budget=BUDGET, max_body=MAX_BODY)
        large = [
            asyncio.create_task(guard(scope(length(MAX_BODY)), never_receive(), Sent())) for _ in range(3)
        ]
        await settle()
        refused = Sent()
        await guard(scope(length(SMALL_BODY_BYTES + 1)), never_receive(), refused)
        assert refused.status == 503  # large bodies stop at three quarters
        small = [Sent() for _ in range(MAX_BODY // SMALL_BODY_BYTES)]
        small_tasks = [
            asyncio.create_task(guard(scope(length(SMALL_BODY_BYTES)), never_receive(), s)) for s in small
        ]
        await settle()
        assert guard.in_use == BUDGET  # small ones filled the last quarter exactly
        full = Sent()
        await guard(scope(length(1)), never_receive(), full)
        assert full.status == 503
        inner.release.set()
        await asyncio.gather(*large, *small_tasks)
        assert {s.status for s in small} == {202} and guard.in_use == 0

    asyncio.run(run())


def test_requests_without_a_body_and_other_scopes_pass_untouched() -> None:
    async def run() -> None:
        inner = Held()
        inner.release.set()
        guard = BodyBudget(inner, budget=BUDGET, max_body=MAX_BODY)
        guard.in_use = BUDGET  # full
        for s in (scope(), scope(length(0)), scope(length(MAX_BODY + 1)), scope(kind="lifespan")):
            await guard(s, never_receive(), Sent())
        assert inner.started == 4

    asyncio.run(run())


def test_the_reservation_is_returned_when_the_app_fails() -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    async def run() -> None:
        guard = BodyBudget(failing, budget=BUDGET, max_body=MAX_BODY)
        with pytest.raises(RuntimeError):
            await guard(scope(length(1000)), never_receive(), Sent())
        assert guard.in_use == 0

    asyncio.run(run())


def test_a_budget_that_cannot_hold_the_largest_body_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="three quarters"):
        BodyBudget(Held(), budget=MAX_BODY, max_body=MAX_BODY)
