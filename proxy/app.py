"""The ASGI app: routes map parse errors to 4xx, drops to 202 with counts, accepted events to 202.

``create_app(settings)`` builds everything from settings once; nothing here reads the environment.
Responses and logs never carry the client's IP, User-Agent, identifiers or payload values.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from config.settings import Settings
from proxy import admin_listener
from proxy.admin import admin_inventory, admin_query, admin_stats, admin_subject
from proxy.background import JobState, run_periodic
from proxy.dashboard.assets import Assets
from proxy.dashboard.pages import asset_routes, dashboard_routes
from proxy.geo import GeoLookup
from proxy.http import HTTPError, error_response, json_response, log_internal_error, require_admin
from proxy.ingest import Ingest
from proxy.metrics import RuntimeCollector
from proxy.runtime import Role, Runtime, build_runtime
from proxy.stats.routes import analyst_key_routes, stats_routes
from proxy.subjects import SubjectService
from proxy.tracker import tracker_endpoint
from proxy.useragent import parser_backend
from proxy.visitor import (
    consent_withdraw,
    gpc_json,
    opt_in,
    opt_out,
    preflight_headers,
    withdraw_preflight,
)
from sinks.base import Sink, SinkError

log = logging.getLogger("beaconproxy")

SALT_PURGE_SECONDS = 600
ADMIN_STOP_SECONDS = 5.0


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
    """Ready while the spool accepts events (below its limit) and every vital background job (the spool
    writer, the shipper) runs; the sink's state and every job's state are reported."""
    rt: Runtime = request.app.state.rt
    refusal = rt.spool.refusal()  # spool at its limit, free disk below the reserve, a recent failed write
    used, limit = rt.spool.bytes_used(), rt.settings.spool.max_bytes
    spool_ok = refusal is None
    down = rt.vital_jobs_down()
    stats = rt.reader.stats()
    shipping = rt.shipper is None or rt.shipper.job.up
    body: dict[str, Any] = {
        "status": "ready" if spool_ok and not down else "not ready",
        "spool_bytes": used,
        "spool_limit_bytes": limit,
        "spool_segments": stats.segments,
        "oldest_spooled_seconds": round(stats.oldest_age_seconds, 3),
        "sink": rt.sink.name if rt.sink is not None else "shipped by the primary process",
        "sink_healthy": rt.sink.healthy() and shipping if rt.sink is not None else None,
        "background": {job.name: job.snapshot() for job in rt.background()},
    }
    ready = spool_ok and not down
    if rt.upstream_ready is not None:  # a worker: its events ship only while the primary is ready
        primary_ok, primary = await rt.upstream_ready()
        body["primary"] = primary
        ready = ready and primary_ok
    body["status"] = "ready" if ready else "not ready"
    if refusal is not None:
        body["refusing"] = refusal
    if down:
        body["down"] = down
    return json_response(200 if ready else 503, body)


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
        Route("/v1/consent/withdraw", withdraw_preflight, methods=["OPTIONS"]),
        Route("/.well-known/gpc.json", gpc_json, methods=["GET"]),
        Route("/t.js", tracker_endpoint(), methods=["GET", "HEAD"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]


def store_routes(settings: Settings, assets: Assets | None = None) -> list[Route]:
    """What needs the sink and is public: served by a single process or the primary; workers forward
    them. /metrics is here unless ``server.metrics_listener`` moves it to the admin listener."""
    routes = [
        Route("/v1/consent/withdraw", consent_withdraw, methods=["POST"]),
        *stats_routes(),  # the analysts' API (proxy/stats), with its own keys
        *dashboard_routes(assets),  # the analysts' dashboard pages and sign-in (proxy/dashboard)
    ]
    if settings.server.metrics_listener == "public":
        routes.append(Route("/metrics", metrics, methods=["GET"]))
    return routes


def admin_routes(settings: Settings) -> list[Route]:
    """What only the admin listener serves (proxy/admin_listener.py)."""
    routes = [
        Route("/admin/query", admin_query, methods=["POST"]),
        Route("/admin/stats", admin_stats, methods=["GET"]),
        Route("/admin/inventory", admin_inventory, methods=["GET"]),
        Route("/admin/subjects/{action}", admin_subject, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *analyst_key_routes(),  # managing the analysts' keys (proxy/stats)
    ]
    if settings.server.metrics_listener == "admin":
        routes.append(Route("/metrics", metrics, methods=["GET"]))
    return routes


def create_admin_app(rt: Runtime) -> Starlette:
    """The admin listener's app: the same runtime as the public app (whose lifespan runs it)."""
    app = Starlette(routes=admin_routes(rt.settings), exception_handlers={Exception: internal_error})
    app.state.rt = rt
    return app


async def serve_admin(app: Starlette, rt: Runtime) -> Callable[[], Awaitable[None]]:
    """Bind the admin listener and serve ``app`` on it; returns the coroutine function that stops it."""
    sock = admin_listener.bind(rt.admin_address)
    server = admin_listener.admin_server(
        app, log_level=rt.settings.log_level, timeout_graceful_shutdown=ADMIN_STOP_SECONDS
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    log.info("admin listener on %s", rt.admin_address)

    async def stop() -> None:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, ADMIN_STOP_SECONDS + 5)
        except Exception as exc:
            log.warning("admin listener stopped with %s", type(exc).__name__)
        sock.close()
        if rt.admin_address.path is not None:
            with contextlib.suppress(OSError):
                rt.admin_address.path.unlink()

    return stop


@dataclass(frozen=True)
class Periodic:
    """A background task of the app: ``work(rt)`` every ``every`` seconds, supervised (see
    proxy.background.run_periodic); ``final(rt)``, if given, runs once at shutdown."""

    name: str
    every: float
    work: Callable[[Runtime], Awaitable[None]]
    vital: bool = False
    final: Callable[[Runtime], None] | None = None
    first_after: float | None = None  # the first run after this many seconds (default: ``every``)


def start_periodic(rt: Runtime, periodic: Periodic) -> asyncio.Task[None]:
    job = JobState(periodic.name, periodic.vital)
    rt.jobs.append(job)
    return asyncio.create_task(
        run_periodic(job, periodic.every, lambda: periodic.work(rt), first_after=periodic.first_after)
    )


async def _purge_salts(rt: Runtime) -> None:
    rt.salt.purge()


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
        reload = Periodic("suppression_reload", every, lambda _: load_suppressions(subjects))
        tasks.append(start_periodic(rt, reload))
    rt.shipper.start()
    stats = rt.analytics
    if stats is not None:
        # Past days' visits, rebuilt from events into the store (proxy/stats/visit_store.py); a low-priority
        # background job whose failures are logged and retried at the next round.
        async def refresh_visits() -> None:
            await anyio.to_thread.run_sync(stats.visits.refresh)

        every = rt.settings.analytics.visits_refresh_seconds
        # First soon after start-up (not during it), then every `every` seconds.
        rebuild = Periodic("visit_rebuild", every, lambda _: refresh_visits(), first_after=1.0)
        tasks.append(start_periodic(rt, rebuild))


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
    background: Sequence[Periodic] = (),
    admin: bool = False,
) -> Starlette:
    """The proxy. ``role`` is "single" (everything), "primary" (everything, behind workers) or "worker"
    (ingestion only; ``extra_routes`` forward the rest, see proxy/worker.py). ``admin`` serves the admin
    app (``app.state.admin_app``, always built) on ``server.admin_listen`` while the app runs."""
    rt = build_runtime(settings, sink=sink, geo=geo, role=role)
    admin_app = create_admin_app(rt)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = []
        stop_admin = await serve_admin(admin_app, rt) if admin and role != "worker" else None
        if rt.shipper is not None:
            await start_store(rt, tasks)
        rt.spool.start()
        rt.salt.purge()
        for line in rt.geo.describe() or ["none: country and region stay empty"]:
            log.info("geoip database: %s", line)
        # Builds the User-Agent parser now (~0.1 s), not during the first request.
        log.info("user-agent parser: %s", await anyio.to_thread.run_sync(parser_backend))
        for periodic in (*background, Periodic("salt_purge", SALT_PURGE_SECONDS, _purge_salts)):
            tasks.append(start_periodic(rt, periodic))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for periodic in background:
                if periodic.final is not None:
                    with contextlib.suppress(Exception):  # best effort: e.g. a last metrics snapshot
                        periodic.final(rt)
            if stop_admin is not None:
                await stop_admin()
            # Requests in flight are done (the server drained them): seal the open segment.
            await anyio.to_thread.run_sync(rt.spool.close)
            if rt.shipper is not None:
                await stop_store(rt)
            rt.geo.close()

    assets = Assets.load()  # the dashboard's bundle (make dashboard), read once
    if not assets.built and role != "worker":
        log.warning("the dashboard is not built (make dashboard): /dashboard explains, the rest serves")
    routes: list[BaseRoute] = [
        *ingest_routes(),
        *asset_routes(assets),  # every process serves the dashboard's files itself
        *(extra_routes if role == "worker" else store_routes(settings, assets)),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(Ingest, rt=rt)],
        lifespan=lifespan,
        exception_handlers={Exception: internal_error},
    )
    app.state.rt = rt
    app.state.admin_app = admin_app
    if rt.shipper is not None:
        shipper = rt.shipper
        registry = CollectorRegistry(auto_describe=False)  # one per app: nothing global, nothing at import
        registry.register(RuntimeCollector(rt.counters, lambda: shipper.stats, rt.spool_stats))
        app.state.registry = registry
        admin_app.state.registry = registry
    return app
