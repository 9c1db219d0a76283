"""The ASGI app: routes map parse errors to 4xx, drops to 202 with counts, accepted events to 202.

``create_app(settings)`` builds everything from settings once; nothing here reads the environment.
Responses and logs never carry the client's IP, User-Agent, identifiers or payload values.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any

import anyio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from config.settings import Settings
from proxy import runfile
from proxy.admin import admin_inventory, admin_query, admin_stats, admin_subject
from proxy.bodybudget import BodyBudget, BodyBudgetGuard
from proxy.geo import GeoLookup
from proxy.http import HTTPError, error_response, json_response, log_internal_error, require_admin
from proxy.ingest import Ingest
from proxy.metrics import RuntimeCollector
from proxy.runtime import Role, Runtime, build_runtime
from proxy.subjects import SubjectService
from proxy.tracker import tracker_endpoint
from proxy.useragent import parser_backend
from proxy.visitor import consent_withdraw, gpc_json, opt_in, opt_out, preflight_headers
from sinks.base import Sink, SinkError

log = logging.getLogger("beaconproxy")

SALT_PURGE_SECONDS = 600


async def preflight(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    headers = preflight_headers(request.headers.get("origin"), rt.pipeline.services.sites, "Content-Type")
    if headers is None:
        return error_response(403, "origin not allowed", {"Vary": "Origin"})
    return Response(status_code=204, headers=headers)


async def metrics(request: Request) -> Response:
    """Prometheus exposition; counts and sizes only, never an IP, identifier, User-Agent or URL."""
    rt: Runtime = request.app.state.rt
    if rt.settings.server.metrics_require_token:
        try:
            require_admin(request, rt.admin_token)
        except HTTPError as exc:
            return error_response(exc.status, exc.message, exc.headers)
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)


async def healthz(request: Request) -> Response:
    return json_response(200, {"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready while the spool accepts events (below its limit); the sink's state is reported."""
    rt: Runtime = request.app.state.rt
    used, limit = rt.spool.bytes_used(), rt.settings.spool.max_bytes
    spool_ok = rt.spool.state == "running" and used < limit and not rt.spool_refused
    stats = rt.reader.stats()
    body = {
        "status": "ready" if spool_ok else "not ready",
        "spool_bytes": used,
        "spool_limit_bytes": limit,
        "spool_segments": stats.segments,
        "oldest_spooled_seconds": round(stats.oldest_age_seconds, 3),
        "sink": rt.sink.name if rt.sink is not None else "shipped by the primary process",
        "sink_healthy": rt.sink.healthy() if rt.sink is not None else None,
    }
    return json_response(200 if spool_ok else 503, body)


async def internal_error(request: Request, exc: Exception) -> Response:
    log_internal_error(log, exc, request.url.path)
    return error_response(500, "internal error")


async def load_suppressions(subjects: SubjectService) -> None:
    blocked = await anyio.to_thread.run_sync(subjects.store.blocked)
    subjects.suppressions.replace(blocked)


def ingest_routes() -> list[Route]:
    """What every process serves itself besides ingestion: preflight, the visitor's opt-out, health."""
    return [
        # POST /v1/events and GET /v1/pixel.gif are served before routing, by proxy.ingest.Ingest.
        Route("/v1/events", preflight, methods=["OPTIONS"]),
        Route("/v1/opt-out", opt_out, methods=["GET"]),
        Route("/v1/opt-in", opt_in, methods=["GET"]),
        Route("/v1/consent/withdraw", preflight, methods=["OPTIONS"]),
        Route("/.well-known/gpc.json", gpc_json, methods=["GET"]),
        Route("/t.js", tracker_endpoint(), methods=["GET", "HEAD"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]


def store_routes() -> list[Route]:
    """What needs the sink: served by a single process or the primary; workers forward them."""
    return [
        Route("/v1/consent/withdraw", consent_withdraw, methods=["POST"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/admin/query", admin_query, methods=["POST"]),
        Route("/admin/stats", admin_stats, methods=["GET"]),
        Route("/admin/inventory", admin_inventory, methods=["GET"]),
        Route("/admin/subjects/{action}", admin_subject, methods=["POST"]),
    ]


async def _periodic(every: float, job: Callable[[], Awaitable[None]], what: str) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await job()
        except Exception as exc:  # a background job must never die silently, nor kill the server
            log.warning("%s failed: %s", what, type(exc).__name__)


async def start_store(rt: Runtime, tasks: list[asyncio.Task[None]]) -> None:
    """Sink, suppression list and shipper: the single process or the primary."""
    assert rt.shipper is not None and rt.sink is not None
    # The proxy serves (into the spool) even while the sink is down; the shipper keeps trying.
    if not await anyio.to_thread.run_sync(rt.shipper.try_start_sink):
        log.warning("sink %s unavailable at start; events are spooled until it is back", rt.sink.name)
    subjects = rt.subjects
    if subjects is not None:
        try:
            await load_suppressions(subjects)
        except SinkError:
            log.warning("suppression list from the local cache until the store is back")
        log.info("suppression list: %d blocked subjects", len(rt.suppressions))
        every = rt.settings.server.suppression_reload_seconds
        tasks.append(
            asyncio.create_task(_periodic(every, lambda: load_suppressions(subjects), "suppressions"))
        )
    rt.shipper.start()


async def stop_store(rt: Runtime) -> None:
    assert rt.shipper is not None and rt.sink is not None
    # Ship what can be shipped within the grace period; the rest stays spooled for the next start.
    await anyio.to_thread.run_sync(rt.shipper.stop, rt.settings.batch.shutdown_grace_seconds)
    await anyio.to_thread.run_sync(rt.sink.close)


def create_app(
    settings: Settings,
    *,
    sink: Sink | None = None,
    geo: GeoLookup | None = None,
    role: Role = "single",
    extra_routes: Sequence[BaseRoute] = (),
    background: Sequence[Callable[[Runtime], Coroutine[Any, Any, None]]] = (),
) -> Starlette:
    """The proxy. ``role`` is "single" (everything), "primary" (everything, behind workers) or "worker"
    (ingestion only; ``extra_routes`` forward the rest, see proxy/worker.py)."""
    rt = build_runtime(settings, sink=sink, geo=geo, role=role)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = []
        if rt.shipper is not None:
            await start_store(rt, tasks)
        rt.spool.start()
        rt.salt.purge()
        for line in rt.geo.describe() or ["none: country and region stay empty"]:
            log.info("geoip database: %s", line)
        # Builds the User-Agent parser now (~0.1 s), not during the first request.
        log.info("user-agent parser: %s", await anyio.to_thread.run_sync(parser_backend))
        if role != "worker":
            runfile.write(settings, os.getpid())
        for job in background:
            tasks.append(asyncio.create_task(job(rt)))

        async def purge_salts() -> None:
            rt.salt.purge()

        tasks.append(asyncio.create_task(_periodic(SALT_PURGE_SECONDS, purge_salts, "salt purge")))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            if role != "worker":
                runfile.remove(settings, os.getpid())
            # Requests in flight are done (the server drained them): seal the open segment.
            await anyio.to_thread.run_sync(rt.spool.close)
            if rt.shipper is not None:
                await stop_store(rt)
            rt.geo.close()

    routes: list[BaseRoute] = [*ingest_routes(), *(extra_routes if role == "worker" else store_routes())]
    budget = BodyBudget(settings.server.body_budget_bytes, settings.server.max_body_bytes)  # bodies in memory
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(Ingest, rt=rt, budget=budget),  # reserves for its own endpoints
            Middleware(BodyBudgetGuard, budget=budget, rejected=rt.metrics.rejected_requests),
        ],
        lifespan=lifespan,
        exception_handlers={Exception: internal_error},
    )
    app.state.rt = rt
    app.state.body_budget = budget
    if rt.shipper is not None:
        shipper = rt.shipper
        registry = CollectorRegistry(auto_describe=False)  # one per app: nothing global, nothing at import
        registry.register(RuntimeCollector(rt.counters, lambda: shipper.stats, rt.spool_stats))
        app.state.registry = registry
    return app
