"""The ASGI app: routes map parse errors to 4xx, drops to 202 with counts, accepted events to 202.

``create_app(settings)`` builds everything from settings once; nothing here reads the environment.
Responses and logs never carry the client's IP, User-Agent, identifiers or payload values.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from config.settings import Settings
from proxy import runfile
from proxy.geo import GeoLookup, find_databases
from proxy.keys import DailySalt, Pseudonymizer, load_or_create_secret
from proxy.metrics import Metrics
from proxy.model import DropReason
from proxy.parse import EventError, Limits, RequestError, parse_body, parse_pixel
from proxy.pipeline import Outcome, Pipeline, RequestInfo, Services
from sinks.base import Sink, SinkError
from sinks.batcher import Backpressure, Batcher
from sinks.clickhouse import ClickHouseSink

log = logging.getLogger("beaconproxy")

JSON_TYPES = frozenset({"application/json", "text/plain"})
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
RETRY_AFTER_SECONDS = 5
MAX_QUERY_BYTES = 64 * 1024
SALT_PURGE_SECONDS = 600


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(status, {"error": message}, headers)


@dataclass
class Runtime:
    settings: Settings
    pipeline: Pipeline
    batcher: Batcher
    sink: Sink
    geo: GeoLookup
    salt: DailySalt
    metrics: Metrics
    limits: Limits
    admin_token: bytes


def build_runtime(settings: Settings, sink: Sink | None = None, geo: GeoLookup | None = None) -> Runtime:
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    if geo is None:
        paths = list(settings.geoip.databases) or find_databases(settings.geoip_dir)
        geo = GeoLookup(paths, with_city=settings.geoip.city, cache_size=settings.geoip.cache_size)
    if sink is None:
        sink = ClickHouseSink(settings.clickhouse_dsn, settings.clickhouse)
    metrics = Metrics()
    salt = DailySalt(data / "salts")
    pseudonymize = Pseudonymizer(
        load_or_create_secret(settings.privacy.pseudonym_secret, data / "pseudonym_secret")
    )
    services = Services(settings, geo, salt, pseudonymize, metrics)
    b = settings.batch
    batcher = Batcher(
        sink,
        max_rows=b.max_rows,
        max_bytes=b.max_bytes,
        max_age_seconds=b.max_age_seconds,
        max_pending_rows=b.max_pending_rows,
    )
    p = settings.privacy
    limits = Limits(
        max_events=settings.server.max_batch_events,
        max_props=p.max_props,
        max_prop_key_length=p.max_prop_key_length,
        max_prop_value_length=p.max_prop_value_length,
        max_string_length=p.max_string_length,
    )
    token = load_or_create_secret(settings.server.admin_token, data / "admin_token")
    return Runtime(settings, Pipeline(services), batcher, sink, geo, salt, metrics, limits, token)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` (header or bytes read)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPError(400, "invalid Content-Length")
        if int(declared) > limit:
            raise HTTPError(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def request_info(request: Request, rt: Runtime) -> RequestInfo:
    h = request.headers
    client = request.client
    return RequestInfo(
        peer=client.host if client else None,
        forwarded=h.get(rt.settings.server.client_ip_header),
        user_agent=h.get("user-agent", ""),
        origin=h.get("origin"),
        accept_language=h.get("accept-language", ""),
        gpc=h.get("sec-gpc", "").strip() == "1",
    )


def cors_headers(origin: str | None, rt: Runtime) -> dict[str, str]:
    if origin and rt.pipeline.services.sites.any_allows_origin(origin):
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {"Vary": "Origin"}


def _all_dropped_for(outcome: Outcome, reason: DropReason, valid: int) -> bool:
    return valid > 0 and not outcome.events and outcome.dropped.get(reason, 0) == valid


def _submit(rt: Runtime, outcome: Outcome) -> None:
    try:
        rt.batcher.submit(outcome.events)
    except Backpressure:
        rt.metrics.rejected_requests[503] += 1
        raise HTTPError(
            503, "temporarily overloaded, retry later", {"Retry-After": str(RETRY_AFTER_SECONDS)}
        ) from None


async def post_events(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    rt.metrics.received["events"] += 1
    origin = request.headers.get("origin")
    headers = cors_headers(origin, rt)
    try:
        ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype not in JSON_TYPES:
            raise HTTPError(415, "Content-Type must be application/json or text/plain")
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            raise HTTPError(415, "Content-Encoding is not supported; send the body uncompressed")
        body = await read_body(request, rt.settings.server.max_body_bytes)
        try:
            beacons = parse_body(body, rt.limits)
        except RequestError as exc:
            raise HTTPError(400, str(exc)) from None
        outcome = rt.pipeline.process(request_info(request, rt), beacons)
        valid = len(beacons) - len(outcome.errors)
        if valid == 0:
            rt.metrics.rejected_requests[400] += 1
            return json_response(
                400,
                {"error": "no valid event", "errors": [{"index": i, "error": m} for i, m in outcome.errors]},
                headers,
            )
        if _all_dropped_for(outcome, DropReason.UNKNOWN_SITE, valid):
            raise HTTPError(404, "unknown site")
        if _all_dropped_for(outcome, DropReason.ORIGIN_NOT_ALLOWED, valid):
            raise HTTPError(403, "origin not allowed for this site")
        _submit(rt, outcome)
    except HTTPError as exc:
        rt.metrics.rejected_requests[exc.status] += 1
        return error_response(exc.status, exc.message, {**headers, **exc.headers})
    body_out: dict[str, Any] = {"accepted": len(outcome.events), "dropped": sum(outcome.dropped.values())}
    if outcome.errors:
        body_out["errors"] = [{"index": i, "error": m} for i, m in outcome.errors]
    return json_response(202, body_out, headers)


async def preflight(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    origin = request.headers.get("origin")
    if not origin or not rt.pipeline.services.sites.any_allows_origin(origin):
        return error_response(403, "origin not allowed", {"Vary": "Origin"})
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": "86400",
            "Vary": "Origin",
        },
    )


async def pixel(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    rt.metrics.received["pixel"] += 1
    try:
        try:
            beacon = parse_pixel(request.query_params, request.headers.get("referer"), rt.limits)
        except EventError as exc:
            raise HTTPError(400, str(exc)) from None
        outcome = rt.pipeline.process(request_info(request, rt), [beacon])
        if _all_dropped_for(outcome, DropReason.UNKNOWN_SITE, 1):
            raise HTTPError(404, "unknown site")
        if _all_dropped_for(outcome, DropReason.ORIGIN_NOT_ALLOWED, 1):
            raise HTTPError(403, "origin not allowed for this site")
        _submit(rt, outcome)
    except HTTPError as exc:
        rt.metrics.rejected_requests[exc.status] += 1
        return error_response(exc.status, exc.message, exc.headers)
    return Response(GIF, media_type="image/gif", headers={"Cache-Control": "no-store, max-age=0"})


async def healthz(request: Request) -> Response:
    return json_response(200, {"status": "ok"})


async def readyz(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    ok = rt.sink.healthy()
    body = {
        "status": "ready" if ok else "degraded",
        "sink": rt.sink.name,
        "sink_healthy": ok,
        "pending_rows": rt.batcher.pending,
    }
    return json_response(200 if ok else 503, body)


def require_admin(request: Request, rt: Runtime) -> None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPError(
            401, "admin endpoints need 'Authorization: Bearer <token>'", {"WWW-Authenticate": "Bearer"}
        )
    if not hmac.compare_digest(token.strip().encode(), rt.admin_token):
        raise HTTPError(403, "invalid admin token")


async def admin_query(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    try:
        require_admin(request, rt)
        if not isinstance(rt.sink, ClickHouseSink):
            raise HTTPError(501, f"sink {rt.sink.name} cannot be queried")
        sql = (await read_body(request, MAX_QUERY_BYTES)).decode("utf-8", "replace").strip()
        if not sql:
            raise HTTPError(400, "body must be the SQL to run")
        sink = rt.sink
        try:
            data = await anyio.to_thread.run_sync(sink.query_json, sql)
        except SinkError as exc:
            raise HTTPError(400, str(exc)) from None
    except HTTPError as exc:
        return error_response(exc.status, exc.message, exc.headers)
    return Response(data, media_type="application/x-ndjson")


async def admin_stats(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    try:
        require_admin(request, rt)
    except HTTPError as exc:
        return error_response(exc.status, exc.message, exc.headers)
    stats = rt.metrics.snapshot()
    stats["batches"] = vars(rt.batcher.stats)
    stats["pending_rows"] = rt.batcher.pending
    return json_response(200, stats)


async def internal_error(request: Request, exc: Exception) -> Response:
    # The exception text may quote request data: log only where it happened.
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else "?"
    log.error("internal error %s at %s on %s", type(exc).__name__, where, request.url.path)
    return error_response(500, "internal error")


def create_app(settings: Settings, *, sink: Sink | None = None, geo: GeoLookup | None = None) -> Starlette:
    rt = build_runtime(settings, sink=sink, geo=geo)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(rt.sink.start)
        rt.batcher.start()
        rt.salt.purge()
        for line in rt.geo.describe() or ["none: country and region stay empty"]:
            log.info("geoip database: %s", line)
        runfile.write(settings, os.getpid())

        async def purge_salts() -> None:
            while True:
                await asyncio.sleep(SALT_PURGE_SECONDS)
                rt.salt.purge()

        purger = asyncio.create_task(purge_salts())
        try:
            yield
        finally:
            purger.cancel()
            runfile.remove(settings, os.getpid())
            await anyio.to_thread.run_sync(rt.batcher.close)
            await anyio.to_thread.run_sync(rt.sink.close)
            rt.geo.close()

    app = Starlette(
        routes=[
            Route("/v1/events", post_events, methods=["POST"]),
            Route("/v1/events", preflight, methods=["OPTIONS"]),
            Route("/v1/pixel.gif", pixel, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/admin/query", admin_query, methods=["POST"]),
            Route("/admin/stats", admin_stats, methods=["GET"]),
        ],
        lifespan=lifespan,
        exception_handlers={Exception: internal_error},
    )
    app.state.rt = rt
    return app
