"""HTTP helpers shared by the route modules: JSON answers, errors, bounded bodies, admin auth."""

from __future__ import annotations

import hmac
import logging
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive

# The 1x1 transparent GIF every pixel endpoint answers with.
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


class HTTPError(Exception):
    """An answer other than success; ``message`` goes to the client, so it never quotes request data."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.detail = detail or {}  # more fields for the JSON answer (e.g. per-event errors)


def log_internal_error(log: logging.Logger, exc: BaseException, path: str) -> None:
    """Log an unexpected exception by type and the line it was raised at: its text may quote request
    data (an IP, an identifier, a payload value), so it is never logged."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else "?"
    log.error("internal error %s at %s on %s", type(exc).__name__, where, path)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(status, {"error": message}, headers)


class Disconnected(ClientDisconnect):
    """The client went away before its body was read: there is nobody to answer."""


async def read_limited(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The body from ASGI ``receive``, refused with 413 as soon as it is known to exceed ``limit``
    (``declared``, the Content-Length header, or the bytes read)."""
    if declared is not None:
        if not declared.isdigit():
            raise HTTPError(400, "invalid Content-Length")
        if int(declared) > limit:
            raise HTTPError(413, f"body larger than {limit} bytes")
    message = await receive()
    if message["type"] != "http.request":
        raise Disconnected
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):  # the usual case: one message
        if len(body) > limit:
            raise HTTPError(413, f"body larger than {limit} bytes")
        return body
    chunks, size = [body], len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] != "http.request":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_body(request: Request, limit: int) -> bytes:
    """A Starlette request's body (not read before), bounded as ``read_limited``."""
    return await read_limited(request.receive, request.headers.get("content-length"), limit)


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    try:
        doc = orjson.loads(await read_body(request, limit))
    except orjson.JSONDecodeError:
        raise HTTPError(400, "body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise HTTPError(400, "body must be a JSON object")
    return doc


def require_admin(request: Request, token: bytes) -> None:
    """Bearer token, compared in constant time: 401 without one, 403 with a wrong one."""
    auth = request.headers.get("authorization", "")
    scheme, _, given = auth.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise HTTPError(
            401, "admin endpoints need 'Authorization: Bearer <token>'", {"WWW-Authenticate": "Bearer"}
        )
    if not hmac.compare_digest(given.strip().encode(), token):
        raise HTTPError(403, "invalid admin token")
