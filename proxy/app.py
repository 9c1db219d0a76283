"""The ASGI app: routes map parse errors to 4xx, drops to 202 with counts, accepted events to 202.

``create_app(settings)`` builds everything from settings once; nothing here reads the environment.
Responses and logs never carry the client's IP, User-Agent, identifiers or payload values.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
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

from config.settings import MAIN_STORE, Settings
from proxy import admin_listener
from proxy.admin import admin_inventory, admin_query, admin_stats, admin_subject
from proxy.background import JobState, run_periodic
from proxy.bodybudget import BodyBudget, BodyBudgetGuard
from proxy.dashboard.assets import Assets
from proxy.dashboard.pages import asset_routes, dashboard_routes
from proxy.geo import GeoLookup
from proxy.http import HTTPError, error_response, json_response, log_internal_error, require_admin
from proxy.ingest import Ingest
from proxy.metrics import RuntimeCollector, scale_out_metrics
from proxy.replicas import SALT_SYNC_SECONDS, SecretMismatch
from proxy.runtime import Role, Runtime, build_runtime
from proxy.stats.routes import analyst_key_routes, stats_routes
from proxy.stats.service import StatsService
from proxy.stores import Store
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
from sinks.clickhouse import ClickHouseSink

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
    """Ready while the main store's spool accepts events (below its limit), every vital background job
    (the spool writers, the shippers) runs and this replica's secrets match the store's; the sink's
    state, every job's, every store's and what this replica knows of the others are reported."""
    rt: Runtime = request.app.state.rt
    refusal = rt.spool.refusal()  # spool at its limit, free disk below the reserve, a recent failed write
    used, limit = rt.spool.bytes_used(), rt.settings.spool.max_bytes
    spool_ok = refusal is None
    down = rt.vital_jobs_down()
    problems = rt.replicas.problems()
    stats = rt.reader.stats()
    body: dict[str, Any] = {
        "status": "ready" if spool_ok and not down else "not ready",
        "spool_bytes": used,
        "spool_limit_bytes": limit,
        "spool_segments": stats.segments,
        "oldest_spooled_seconds": round(stats.oldest_age_seconds, 3),
        "sink": rt.sink.name if rt.sink is not None else "shipped by the primary process",
        "sink_healthy": (rt.shipper.healthy() if rt.shipper else rt.sink.healthy()) if rt.sink else None,
        "background": {job.name: job.snapshot() for job in rt.background()},
        "replica": rt.replicas.summary(),
    }
    if len(rt.stores) > 1:  # each store's own state; only the main one's spool decides readiness
        body["stores"] = {store.name: rt.store_stats(store) for store in rt.stores}
    ready = spool_ok and not down and not problems
    if rt.upstream_ready is not None:  # a worker: its events ship only while the primary is ready
        primary_ok, primary = await rt.upstream_ready()
        body["primary"] = primary
        ready = ready and primary_ok
    body["status"] = "ready" if ready else "not ready"
    if refusal is not None:
        body["refusing"] = refusal
    if down:
        body["down"] = down
    if problems:
        body["problems"] = problems
    return json_response(200 if ready else 503, body)


async def internal_error(request: Request, exc: Exception) -> Response:
    log_internal_error(log, exc, request.url.path)
    return error_response(500, "internal error")


def _started(store: Store) -> bool:
    return store.shipper is not None and store.shipper.stats.sink_started


async def load_suppressions(rt: Runtime) -> None:
    """Every store's blocked subjects (each store keeps its own sites'); a store that is not reachable
    yet keeps what was known of it."""
    several = len(rt.stores) > 1
    failed: SinkError | None = None
    for store in rt.stores:
        if store.subjects is None or (several and not _started(store)):
            continue
        try:
            blocked = await anyio.to_thread.run_sync(store.subjects.blocked)
        except SinkError as exc:
            failed = exc
            continue
        sites = {site for site in rt.settings.sites if rt.stores.store_name(site) == store.name}
        rt.suppressions.replace(blocked, sites if several else None)
    if failed is not None:
        raise failed


async def sync_salts(rt: Runtime) -> None:
    """A remote store: the day's salt (and tomorrow's, from noon) from the store, shared by every replica."""
    main = rt.stores.main
    if main.shared is not None and _started(main):
        await anyio.to_thread.run_sync(rt.replicas.sync_salts, rt.salt, main.shared)


async def heartbeat(rt: Runtime) -> None:
    """This replica's configuration hash and spool state, into every store it reaches; and, now and
    then, whether its secrets still match the store's (after a `migrate --pin-secrets` elsewhere this
    replica becomes not ready)."""
    main = rt.stores.main
    if isinstance(main.sink, ClickHouseSink) and _started(main) and rt.replicas.secrets_check_due():
        with contextlib.suppress(SecretMismatch):  # logged, and reported by /readyz
            await anyio.to_thread.run_sync(rt.replicas.check_secrets, main.sink)
    for store in rt.stores:
        if store.shared is not None and _started(store):
            stats = rt.store_stats(store)
            await anyio.to_thread.run_sync(rt.replicas.heartbeat, store.name, store.shared, stats)


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


class SecretsRefused(RuntimeError):
    """This replica's secrets differ from the ones the shared store was set up with: it must not start."""


async def _start_sink(store: Store) -> None:
    assert store.shipper is not None and store.sink is not None
    # The proxy serves (into the spool) even while a sink is down; its shipper keeps trying.
    if not await anyio.to_thread.run_sync(store.shipper.try_start_sink):
        log.warning("sink %s unavailable at start; events are spooled until it is back", store.sink.name)


async def start_store(rt: Runtime, tasks: list[asyncio.Task[None]]) -> None:
    """Sinks, suppression list, shippers and, with a remote store, the replicas' shared state: the
    single process or the primary."""
    assert rt.shipper is not None and rt.sink is not None
    shared = rt.settings.shared_store
    if shared and isinstance(rt.sink, ClickHouseSink):
        rt.sink.start_checks.append(rt.replicas.check_secrets)
    async with anyio.create_task_group() as group:  # every store at once: one down delays no other
        for store in rt.stores:
            if store.shipper is not None:
                group.start_soon(_start_sink, store)
    if rt.replicas.problems():
        log.error("refusing to start: %s", "; ".join(rt.replicas.problems()))
        raise SecretsRefused("; ".join(rt.replicas.problems()))
    if rt.subjects is not None:
        try:
            await load_suppressions(rt)
        except SinkError:
            log.warning("suppression list from the local cache until the store is back")
        log.info("suppression list: %d blocked subjects", len(rt.suppressions))
        every = rt.settings.server.suppression_reload_seconds
        tasks.append(start_periodic(rt, Periodic("suppression_reload", every, load_suppressions)))
    if shared:
        try:
            await sync_salts(rt)
        except SinkError as exc:
            log.warning("the store's salt for today is not in reach yet: %s", exc)
        tasks.append(start_periodic(rt, Periodic("salt_sync", SALT_SYNC_SECONDS, sync_salts)))
        every = rt.settings.server.replica_heartbeat_seconds
        tasks.append(start_periodic(rt, Periodic("heartbeat", every, heartbeat)))
    for name, stats in rt.analytics.items():
        # Past days' visits, rebuilt from events into each store (proxy/stats/visit_store.py): a
        # low-priority background job, supervised; first soon after start-up, then every `every` s.
        async def refresh_visits(_: Runtime, stats: StatsService = stats) -> None:
            await anyio.to_thread.run_sync(stats.visits.refresh)

        every = rt.settings.analytics.visits_refresh_seconds
        job = "visit_rebuild" if name == MAIN_STORE else f"visit_rebuild_{name}"
        tasks.append(start_periodic(rt, Periodic(job, every, refresh_visits, first_after=1.0)))
    for store in rt.stores:
        if store.shipper is not None:
            store.shipper.start()


async def _stop_shipping(rt: Runtime, store: Store) -> None:
    assert store.shipper is not None and store.sink is not None
    await anyio.to_thread.run_sync(store.shipper.stop, rt.settings.batch.shutdown_grace_seconds)
    if rt.settings.shared_store and store.shared is not None and _started(store):
        # a last heartbeat: whether this replica leaves events behind in its spool
        with contextlib.suppress(SinkError):
            stats = rt.store_stats(store)
            await anyio.to_thread.run_sync(
                functools.partial(rt.replicas.heartbeat, store.name, store.shared, stats, stopped=True)
            )
    await anyio.to_thread.run_sync(store.sink.close)


async def stop_store(rt: Runtime) -> None:
    assert rt.shipper is not None and rt.sink is not None
    # Ship what can be shipped within the grace period; the rest stays spooled for the next start.
    async with anyio.create_task_group() as group:
        for store in rt.stores:
            if store.shipper is not None:
                group.start_soon(_stop_shipping, rt, store)


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
        for store in rt.stores:
            store.spool.start()
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
            # Requests in flight are done (the server drained them): seal the open segments.
            for store in rt.stores:
                await anyio.to_thread.run_sync(store.spool.close)
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
    app.state.admin_app = admin_app
    app.state.body_budget = budget
    if rt.shipper is not None:
        shipper = rt.shipper
        registry = CollectorRegistry(auto_describe=False)  # one per app: nothing global, nothing at import
        registry.register(
            RuntimeCollector(
                rt.counters,
                lambda: shipper.stats,
                rt.spool_stats,
                lambda: scale_out_metrics(
                    {store.name: rt.store_stats(store) for store in rt.stores}, rt.replicas.summary()
                ),
            )
        )
        app.state.registry = registry
        admin_app.state.registry = registry
    return app
