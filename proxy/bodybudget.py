"""A process-wide budget for request bodies held in memory.

``server.max_body_bytes`` bounds one body; nothing bounded how many are read at once, so 800 concurrent
1 MiB bodies doubled the process's memory. This ASGI middleware, in front of everything else, reserves a
request's declared ``Content-Length`` (``max_body_bytes`` for a chunked body, whose size is unknown) from
``server.body_budget_bytes`` before the app reads a byte of it, and gives it back when the request is
answered. A request that does not fit is answered 503 with ``Retry-After`` and ``Connection: close`` at
once: its body is never read, nothing in it is counted as received or accepted.

Bodies over 64 KiB may use three quarters of the budget only: the last quarter stays for ordinary
beacons, so a flood of large bodies cannot starve them. Requests without a body, and those the route will
refuse without reading (a malformed or over-limit ``Content-Length``), reserve nothing.
"""

from __future__ import annotations

from collections import Counter

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

SMALL_BODY_BYTES = 64 * 1024
RETRY_AFTER_SECONDS = 1
_BUSY_BODY = orjson.dumps({"error": "too many request bodies in memory; retry shortly"})
_BUSY_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_BUSY_BODY)).encode()),
    (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
    (b"connection", b"close"),  # the unread body is not read either
]


def body_size(headers: list[tuple[bytes, bytes]], max_body: int) -> int:
    """The bytes a request's body will hold in memory, as far as its headers tell, before it is read."""
    for name, value in headers:
        if name == b"content-length":
            if not value.isdigit():
                return 0  # refused with 400 before reading
            size = int(value)
            return size if size <= max_body else 0  # larger: refused with 413 before reading
    for name, _ in headers:  # no Content-Length (a second loop: the usual case compares once per header)
        if name == b"transfer-encoding":
            return max_body  # chunked: any size up to the limit
    return 0


class BodyBudget:
    """ASGI middleware: admit a request's body only while the bodies being held fit in ``budget``."""

    def __init__(
        self, app: ASGIApp, budget: int, max_body: int, rejected: Counter[int] | None = None
    ) -> None:
        if budget - budget // 4 < max_body:
            raise ValueError("the budget must hold one body of max_body bytes in its three quarters")
        self.app = app
        self.budget = budget
        self.large_budget = budget - budget // 4
        self.max_body = max_body
        self.rejected = rejected if rejected is not None else Counter()  # by status, like the app's
        self.in_use = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        size = body_size(scope["headers"], self.max_body)
        if not size:
            return await self.app(scope, receive, send)
        if self.in_use + size > (self.budget if size <= SMALL_BODY_BYTES else self.large_budget):
            self.rejected[503] += 1
            await send({"type": "http.response.start", "status": 503, "headers": _BUSY_HEADERS})
            await send({"type": "http.response.body", "body": _BUSY_BODY})
            return
        self.in_use += size
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_use -= size
