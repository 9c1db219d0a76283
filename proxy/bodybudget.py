"""A process-wide budget for request bodies held in memory.

``server.max_body_bytes`` bounds one body; nothing bounded how many are read at once, so 800 concurrent
1 MiB bodies doubled the process's memory. A request reserves its declared ``Content-Length``
(``max_body_bytes`` for a chunked body, whose size is unknown) from ``server.body_budget_bytes`` before a
byte of its body is read, and gives it back once it is answered. A request that does not fit is answered
503 with ``Retry-After`` and ``Connection: close`` at once: its body is never read, nothing in it is
counted as accepted.

Bodies over 64 KiB may use three quarters of the budget only: the last quarter stays for ordinary
beacons, so a flood of large bodies cannot starve them. Requests without a body, and those that will be
refused without reading (a malformed or over-limit ``Content-Length``), reserve nothing.

The ingestion endpoints (``proxy.ingest``) reserve for themselves, with the headers they read anyway;
:class:`BodyBudgetGuard`, an ASGI middleware, does it for every other route.
"""

from __future__ import annotations

from collections import Counter

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

SMALL_BODY_BYTES = 64 * 1024
BUSY_MESSAGE = "too many request bodies in memory; retry shortly"
BUSY_HEADERS = {"Retry-After": "1", "Connection": "close"}  # close: its unread body is not read either
_BUSY_BODY = orjson.dumps({"error": BUSY_MESSAGE})
_BUSY_RAW_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_BUSY_BODY)).encode()),
    *((k.lower().encode(), v.encode()) for k, v in BUSY_HEADERS.items()),
]


class BodyBudget:
    """Bytes of request bodies one process holds; the event loop is the only caller."""

    def __init__(self, budget: int, max_body: int) -> None:
        if budget - budget // 4 < max_body:
            raise ValueError("the budget must hold one body of max_body bytes in its three quarters")
        self.budget = budget
        self.large_budget = budget - budget // 4
        self.max_body = max_body
        self.in_use = 0

    def size(self, content_length: str | None, chunked: bool) -> int:
        """What a request's body will hold in memory, as far as its headers tell, before it is read."""
        if content_length is None:
            return self.max_body if chunked else 0  # chunked: any size up to the limit
        if not content_length.isdigit():
            return 0  # refused with 400 before reading
        size = int(content_length)
        return size if size <= self.max_body else 0  # larger: refused with 413 before reading

    def reserve(self, size: int) -> bool:
        if self.in_use + size > (self.budget if size <= SMALL_BODY_BYTES else self.large_budget):
            return False
        self.in_use += size
        return True

    def release(self, size: int) -> None:
        self.in_use -= size


def body_size(headers: list[tuple[bytes, bytes]], budget: BodyBudget) -> int:
    """:meth:`BodyBudget.size` from raw ASGI headers."""
    for name, value in headers:
        if name == b"content-length":
            return budget.size(value.decode("latin-1"), False)
    for name, _ in headers:  # no Content-Length (a second loop: the usual case compares once per header)
        if name == b"transfer-encoding":
            return budget.size(None, True)
    return 0


class BodyBudgetGuard:
    """ASGI middleware: admit a request's body only while it fits in ``budget``; else 503 at once."""

    def __init__(self, app: ASGIApp, budget: BodyBudget, rejected: Counter[int] | None = None) -> None:
        self.app = app
        self.budget = budget
        self.rejected = rejected if rejected is not None else Counter()  # by status, like the app's

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        size = body_size(scope["headers"], self.budget)
        if not size:
            return await self.app(scope, receive, send)
        if not self.budget.reserve(size):
            self.rejected[503] += 1
            await send({"type": "http.response.start", "status": 503, "headers": _BUSY_RAW_HEADERS})
            await send({"type": "http.response.body", "body": _BUSY_BODY})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.budget.release(size)
