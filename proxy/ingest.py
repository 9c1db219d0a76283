"""The ingestion endpoints, served as plain ASGI in front of Starlette's routing.

``POST /v1/events`` and ``GET /v1/pixel.gif`` are the hot path: per request they read a handful of
headers straight from the ASGI scope, read the bounded body, run the pipeline, spool what it accepted and
answer. Starlette's ``Request``/``Response`` objects and router cost about as much per request as all of
that, so they are skipped here; everything else (preflight, opt-out, health, admin) stays in Starlette.

Same contract as every route: a parse error is a 4xx whose message never quotes the request, a drop is
a 202 with the reason counted, an accepted event is in the spool before the 202. Responses and logs
never carry the client's IP, User-Agent, identifiers or payload values.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import anyio
import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from proxy.bodybudget import BUSY_HEADERS, BUSY_MESSAGE, BodyBudget
from proxy.consent import parse_cookie_header
from proxy.formats import Format, constant_answer, route
from proxy.formats.base import ForeignRequest, TooLarge
from proxy.http import GIF, Disconnected, HTTPError, log_internal_error, read_limited
from proxy.keys import SaltUnavailable
from proxy.model import Beacon, DropReason, Event
from proxy.parse import EventError, RequestError, UnreadableEvent, parse_body, parse_pixel
from proxy.pipeline import Outcome, RequestInfo
from proxy.runtime import Runtime
from proxy.visitor import cors_for_origin, preflight_headers
from sinks.codec import encode_event
from sinks.spool import SpoolClosed, SpoolError, SpoolFull, SpoolLowDisk

log = logging.getLogger("beaconproxy")

JSON_TYPES = frozenset({"application/json", "text/plain"})
RETRY_AFTER_SECONDS = 5
# A foreign body this large is parsed on a worker thread: decompressing it to its limit or decoding
# LZ-String can take tens of milliseconds, which must not stall every other request on the loop.
PARSE_OFF_LOOP_BYTES = 64 * 1024
# The request headers the ingestion endpoints read; all others are never decoded.
_WANTED = frozenset(
    {
        "content-type",
        "content-encoding",
        "content-length",
        "user-agent",
        "origin",
        "accept-language",
        "sec-gpc",
        "dnt",
        "cookie",
        "referer",
        "authorization",  # only the wire-compatible endpoints read it: a Segment write key
        "x-write-key",
        "transfer-encoding",  # a chunked body: its size is unknown until read
    }
)
# What a browser may send cross-origin to the wire-compatible endpoints (answered in their preflight).
_FOREIGN_ALLOW_HEADERS = "Content-Type, Content-Encoding, Authorization, X-Write-Key, X-Umami-Cache"
_JSON = (b"content-type", b"application/json")
_GIF = (b"content-type", b"image/gif")
_TEXT = (b"content-type", b"text/plain; charset=utf-8")


def read_headers(scope: Scope, ip_header: str) -> dict[str, str]:
    """The wanted headers, decoded as latin-1 like every ASGI framework does. The first value of a
    repeated header wins, except the client-IP header, whose values are joined in order (RFC 9110
    list semantics): a second X-Forwarded-For line appended by a proxy must not hide behind the first."""
    out: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1")
        if name == ip_header:
            value = raw_value.decode("latin-1")
            out[name] = f"{out[name]}, {value}" if name in out else value
        elif name in _WANTED and name not in out:
            out[name] = raw_value.decode("latin-1")
    return out


def request_info(scope: Scope, headers: dict[str, str], ip_header: str) -> RequestInfo:
    client = scope.get("client")
    cookie = headers.get("cookie")
    return RequestInfo(
        peer=client[0] if client else None,
        forwarded=headers.get(ip_header),
        user_agent=headers.get("user-agent", ""),
        origin=headers.get("origin"),
        accept_language=headers.get("accept-language", ""),
        gpc=headers.get("sec-gpc", "").strip() == "1",
        dnt=headers.get("dnt", "").strip() == "1",
        cookies=parse_cookie_header(cookie) if cookie else {},
    )


def _all_dropped_for(outcome: Outcome, reason: DropReason, valid: int) -> bool:
    return valid > 0 and not outcome.events and outcome.dropped.get(reason, 0) == valid


async def _append_by_store(rt: Runtime, events: list[Event]) -> None:
    """Several stores (data residency): each site's events into its own store's spool. A request whose
    events go to a store that refuses them now is refused before anything is appended anywhere."""
    groups: dict[str, list[bytes]] = {}
    for e in events:
        groups.setdefault(rt.stores.store_name(e.site), []).append(encode_event(e))
    stores = [rt.stores.get(name) for name in groups]
    if len(groups) > 1:
        for store in stores:
            assert store is not None
            if store.spool.refusal() is not None:
                raise SpoolFull("a store's spool is full")
    waiters = [
        store.appender.append(records)
        for store, records in zip(stores, groups.values(), strict=True)
        if store
    ]
    await asyncio.gather(*waiters)


async def submit(rt: Runtime, outcome: Outcome) -> None:
    """Durable before the 202: the events are in the spool (fsynced under fsync = "always"). Events the
    spool cannot take are refused with 503 and Retry-After, counted as refused (never as accepted)."""
    if not outcome.events:
        return
    try:
        if len(rt.stores) == 1:
            await rt.appender.append([encode_event(e) for e in outcome.events])
        else:
            await _append_by_store(rt, outcome.events)
    except SpoolError as exc:
        reason, message = _refusal(exc)
        rt.metrics.refused[reason] += len(outcome.events)
        if reason == "write_failed":
            log.error("spool append failed: events refused")
        raise HTTPError(503, message, {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
    rt.metrics.count_accepted(outcome.events)


def _refusal(exc: SpoolError) -> tuple[str, str]:
    """(the reason counted in beacon_events_refused, the message for the client)."""
    if isinstance(exc, SpoolLowDisk):
        return "disk_reserve", "disk nearly full: storage is behind, retry later"
    if isinstance(exc, SpoolFull):
        return "spool_full", "spool full: storage is behind, retry later"
    if isinstance(exc, SpoolClosed):
        return "spool_down", "cannot store events right now"
    return "write_failed", "cannot store events right now"


def _unparsable(exc: Exception, scope: Scope) -> HTTPError:
    """A parser failing other than by its documented errors is a bug, but what it failed on is input it
    cannot read: the client gets a 400, the log the failure's type and line (never its text)."""
    log_internal_error(log, exc, scope["path"])
    return HTTPError(400, "request could not be parsed")


def _errors(outcome: Outcome) -> list[dict[str, Any]]:
    return [{"index": i, "error": m} for i, m in outcome.errors]


async def accept(
    rt: Runtime, endpoint: str, info: RequestInfo, beacons: list[Beacon | EventError]
) -> Outcome:
    """Every endpoint's way in: count, run the pipeline, refuse a request none of whose events can be
    kept (400 all invalid, 404 unknown site, 403 origin), and spool the accepted events."""
    rt.pipeline.count_received(endpoint, beacons)
    try:
        outcome = rt.pipeline.process(info, beacons)
    except SaltUnavailable:
        rt.metrics.refused["write_failed"] += sum(1 for b in beacons if not isinstance(b, EventError))
        log.error("events refused: the day's visitor-hash salt could not be written")
        raise HTTPError(
            503, "cannot store events right now", {"Retry-After": str(RETRY_AFTER_SECONDS)}
        ) from None
    if outcome.errors:
        for b in beacons:
            if isinstance(b, UnreadableEvent) and b.__cause__ is not None:  # a parser's bug: by type and line
                log_internal_error(log, b.__cause__, endpoint)
    valid = len(beacons) - len(outcome.errors)
    if valid == 0:
        raise HTTPError(400, "no valid event", detail={"errors": _errors(outcome)})
    if _all_dropped_for(outcome, DropReason.UNKNOWN_SITE, valid):
        raise HTTPError(404, "unknown site")
    if _all_dropped_for(outcome, DropReason.ORIGIN_NOT_ALLOWED, valid):
        raise HTTPError(403, "origin not allowed for this site")
    await submit(rt, outcome)
    return outcome


async def _send(
    send: Send, status: int, body: bytes, content_type: tuple[bytes, bytes], headers: dict[str, str]
) -> None:
    raw = [content_type, (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, status: int, doc: Any, headers: dict[str, str]) -> None:
    await _send(send, status, orjson.dumps(doc), _JSON, headers)


class Ingest:
    """ASGI middleware: the ingestion endpoints before the router, everything else passed on."""

    def __init__(self, app: ASGIApp, rt: Runtime, budget: BodyBudget | None = None) -> None:
        self.app = app
        self.rt = rt
        self.ip_header = rt.settings.server.client_ip_header.lower()
        self.max_body = rt.settings.server.max_body_bytes
        # Shared with the app's BodyBudgetGuard, which covers every other route.
        self.budget = budget or BodyBudget(rt.settings.server.body_budget_bytes, self.max_body)
        self.max_decompressed = rt.settings.server.max_decompressed_bytes
        self.sites = rt.pipeline.services.sites

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path, method = scope["path"], scope["method"]
            if path == "/v1/events" and method == "POST":
                return await self._guarded("events", self.events, scope, receive, send)
            if path == "/v1/pixel.gif":
                if method in ("GET", "HEAD"):
                    return await self._guarded("pixel", self.pixel, scope, receive, send)
                return await _send(send, 405, b"Method Not Allowed", _TEXT, {"Allow": "GET, HEAD"})
            fmt = route(path)
            if fmt is None and method in ("GET", "POST"):
                answer = constant_answer(path)
                if answer is not None:
                    cors = cors_for_origin(read_headers(scope, self.ip_header).get("origin"), self.sites)
                    return await _send(send, 200, answer, _JSON, {**cors, "Cache-Control": "max-age=300"})
            if fmt is not None:
                if method in fmt.methods:
                    handler = functools.partial(self.foreign, fmt)
                    return await self._guarded(fmt.name, handler, scope, receive, send)
                if method == "OPTIONS":
                    return await self.preflight(scope, send)
                allow = ", ".join(sorted(fmt.methods))
                return await _send(send, 405, b"Method Not Allowed", _TEXT, {"Allow": allow})
        await self.app(scope, receive, send)

    async def _guarded(
        self,
        endpoint: str,
        handler: Callable[[Scope, Receive, Send], Awaitable[None]],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Runs one endpoint's handler: an unexpected error is a counted 500, and the time to answer is
        observed per endpoint (a fixed-bucket histogram: two clock reads and a few list operations)."""
        t0 = time.perf_counter()
        try:
            await handler(scope, receive, send)
        except Disconnected:
            return
        except Exception as exc:
            log_internal_error(log, exc, scope["path"])
            self.rt.metrics.rejected_requests[500] += 1
            await _send_json(send, 500, {"error": "internal error"}, {})
        finally:
            self.rt.metrics.request_seconds[endpoint].observe(time.perf_counter() - t0)

    async def _refuse(self, send: Send, exc: HTTPError, cors: dict[str, str]) -> None:
        self.rt.metrics.rejected_requests[exc.status] += 1
        await _send_json(send, exc.status, {"error": exc.message, **exc.detail}, {**cors, **exc.headers})

    async def events(self, scope: Scope, receive: Receive, send: Send) -> None:
        rt = self.rt
        rt.metrics.received["events"] += 1
        headers = read_headers(scope, self.ip_header)
        cors = cors_for_origin(headers.get("origin"), self.sites)
        try:
            ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if ctype not in JSON_TYPES:
                raise HTTPError(415, "Content-Type must be application/json or text/plain")
            if headers.get("content-encoding", "identity").strip().lower() != "identity":
                raise HTTPError(415, "Content-Encoding is not supported; send the body uncompressed")
            size = self._reserve(headers)
            try:
                body = await read_limited(receive, headers.get("content-length"), self.max_body)
                try:
                    beacons = parse_body(body, rt.limits)
                except RequestError as exc:
                    raise HTTPError(400, str(exc)) from None
                except Exception as exc:
                    raise _unparsable(exc, scope) from None
                outcome = await accept(rt, "events", request_info(scope, headers, self.ip_header), beacons)
            finally:
                self.budget.release(size)
        except HTTPError as exc:
            return await self._refuse(send, exc, cors)
        answer: dict[str, Any] = {"accepted": len(outcome.events), "dropped": sum(outcome.dropped.values())}
        if outcome.errors:
            answer["errors"] = _errors(outcome)
        await _send_json(send, 202, answer, cors)

    def _reserve(self, headers: dict[str, str]) -> int:
        """Reserve the body's size from the budget before reading it, or refuse: 503 with Retry-After."""
        size = self.budget.size(headers.get("content-length"), "transfer-encoding" in headers)
        if not self.budget.reserve(size):
            raise HTTPError(503, BUSY_MESSAGE, BUSY_HEADERS)
        return size

    async def preflight(self, scope: Scope, send: Send) -> None:
        origin = read_headers(scope, self.ip_header).get("origin")
        headers = preflight_headers(origin, self.sites, _FOREIGN_ALLOW_HEADERS)
        if headers is None:
            return await _send_json(send, 403, {"error": "origin not allowed"}, {"Vary": "Origin"})
        await _send(send, 204, b"", _TEXT, headers)

    async def foreign(self, fmt: Format, scope: Scope, receive: Receive, send: Send) -> None:
        """Another tracker's request: parsed by its format module, then the same pipeline and spool."""
        rt = self.rt
        rt.metrics.received[fmt.name] += 1
        headers = read_headers(scope, self.ip_header)
        cors = cors_for_origin(headers.get("origin"), self.sites)
        try:
            method = scope["method"]
            size = self._reserve(headers) if method == "POST" else 0
            try:
                body = b""
                if method == "POST":
                    body = await read_limited(receive, headers.get("content-length"), self.max_body)
                query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
                req = ForeignRequest(
                    method=method,
                    path=scope["path"],
                    query=query,
                    headers=headers,
                    body=body,
                    max_decompressed=self.max_decompressed,
                    site_for_key=self.sites.site_for_key,
                    limits=rt.limits,
                )
                try:
                    if len(body) + len(scope["query_string"]) > PARSE_OFF_LOOP_BYTES:
                        parsed = await anyio.to_thread.run_sync(fmt.parse, req)
                    else:
                        parsed = fmt.parse(req)
                except TooLarge as exc:
                    raise HTTPError(413, str(exc)) from None
                except RequestError as exc:
                    raise HTTPError(400, str(exc)) from None
                except Exception as exc:
                    raise _unparsable(exc, scope) from None
                del req, body, query  # the raw payload is not kept past parsing
                if parsed.beacons:  # none: only calls that carry no analytics (identify, alias...)
                    info = request_info(scope, headers, self.ip_header)
                    if parsed.user_agent:  # the visitor's, carried in the payload by a server-side tracker
                        info.user_agent = parsed.user_agent
                    parsed.user_agent = None
                    await accept(rt, fmt.name, info, parsed.beacons)
            finally:
                self.budget.release(size)
        except HTTPError as exc:
            return await self._refuse(send, exc, cors)
        extra = {"Cache-Control": "no-store, max-age=0"} if fmt.ok_type == b"image/gif" else {}
        await _send(send, fmt.ok_status, fmt.ok_body, (b"content-type", fmt.ok_type), {**cors, **extra})

    async def pixel(self, scope: Scope, receive: Receive, send: Send) -> None:
        rt = self.rt
        rt.metrics.received["pixel"] += 1
        headers = read_headers(scope, self.ip_header)
        try:
            params = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
            try:
                beacon = parse_pixel(params, headers.get("referer"), rt.limits)
            except EventError as exc:
                raise HTTPError(400, str(exc)) from None
            except Exception as exc:
                raise _unparsable(exc, scope) from None
            await accept(rt, "pixel", request_info(scope, headers, self.ip_header), [beacon])
        except HTTPError as exc:
            return await self._refuse(send, exc, {})
        await _send(send, 200, GIF, _GIF, {"Cache-Control": "no-store, max-age=0"})
