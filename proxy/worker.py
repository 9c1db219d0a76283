"""Worker processes for ``beaconproxy serve --workers N``.

chDB lets one process open a data directory, so with several workers one *primary* process owns the
store: it runs the shipper, subject requests and the admin listener (``server.admin_listen``), and
listens on an internal unix socket in ``<data_dir>/run`` for what workers forward. Each worker ingests
on the public port into its own spool segments (the primary's shipper drains them all), forwards
consent withdrawals (and ``/metrics``) to the primary, re-reads the suppression list
the primary keeps in ``<data_dir>/suppressions.json``, and leaves its counters in
``<data_dir>/run/metrics/<pid>.json`` for the primary's ``/metrics`` to add up.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from config.settings import Settings, load_settings
from proxy.app import Periodic, create_app
from proxy.dashboard.pages import DASHBOARD_PATHS
from proxy.dashboard.session_cookie import ORIGIN_HEADER
from proxy.http import HTTPError, error_response, read_body
from proxy.logs import configure_logging
from proxy.runtime import Runtime, freeze_startup_objects, metrics_dir
from proxy.stats.routes import STATS_PATHS
from proxy.visitor import CLIENT_HEADER, client_prefix

log = logging.getLogger("beaconproxy")

# What a worker passes to the primary (the admin API is served by the primary's admin listener only).
FORWARDED_PATHS = (
    ("/v1/consent/withdraw", ["POST"]),
    *STATS_PATHS,  # the analysts' API needs the store: the primary answers it
    *DASHBOARD_PATHS,  # so do the dashboard's sign-in and pages (its files are served here)
)
# Headers that describe one hop, not the message: never forwarded either way.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}
)
MAX_FORWARD_BYTES = 1024 * 1024
SNAPSHOT_SECONDS = 1.0
PRIMARY_READY_TIMEOUT = 2.0


def primary_socket(settings: Settings) -> Path:
    return settings.data_dir / "run" / "primary.sock"


class Forwarder:
    """Passes a request to the primary over its unix socket and its answer back, unchanged (a
    ``Set-Cookie`` of the dashboard's sign-in included)."""

    def __init__(self, socket: Path) -> None:
        self.client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(socket)), base_url="http://primary", timeout=300
        )

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """The primary's /readyz, summarised: (ready, what it says); unreachable is not ready."""
        try:
            answer = await self.client.get("/readyz", timeout=PRIMARY_READY_TIMEOUT)
            body = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            return False, {"status": "unreachable", "error": type(exc).__name__}
        summary = {k: body.get(k) for k in ("status", "sink_healthy", "down", "refusing") if k in body}
        return answer.status_code == 200, summary

    async def __call__(self, request: Request, client: str) -> Response:
        """``client``: the client's truncated address as this worker resolved it, for the primary's rate
        limits (proxy.visitor.CLIENT_HEADER); a value the client sent in that header is replaced."""
        try:
            body = await read_body(request, MAX_FORWARD_BYTES)
        except HTTPError as exc:
            return error_response(exc.status, exc.message, exc.headers)
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in HOP_BY_HOP and k.lower() not in (CLIENT_HEADER, ORIGIN_HEADER)
        }
        headers[CLIENT_HEADER] = client
        # The origin the client used, for the dashboard's same-origin rule and cookie (the Host header
        # is this hop's): proxy/dashboard/session_cookie.py.
        headers[ORIGIN_HEADER] = f"{request.url.scheme}://{request.headers.get('host', '')}"
        try:
            answer = await self.client.request(
                request.method, request.url.path, params=request.url.query, headers=headers, content=body
            )
        except httpx.HTTPError as exc:
            log.error("primary process unreachable: %s", type(exc).__name__)
            return error_response(
                503, "the primary process is unavailable; retry shortly", {"Retry-After": "5"}
            )
        out_headers = {
            k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP | {"content-encoding"}
        }
        return Response(answer.content, status_code=answer.status_code, headers=out_headers)


async def reload_suppressions(rt: Runtime) -> None:
    rt.suppressions.reload_cache()
    rt.salt.forget()  # the primary may have put the store's salt in place of a provisional one


def write_metrics_snapshot(rt: Runtime) -> None:
    """This worker's counters (and its background jobs' states) for the primary to add up."""
    directory = metrics_dir(rt.settings)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    rt.refresh_job_counters()
    tmp.write_bytes(rt.metrics.to_json())
    os.replace(tmp, path)


async def write_metrics_snapshots(rt: Runtime) -> None:
    write_metrics_snapshot(rt)


def create_worker_app(settings: Settings) -> Starlette:
    forwarder = Forwarder(primary_socket(settings))

    async def forward(request: Request) -> Response:  # a function: Starlette treats objects as ASGI apps
        return await forwarder(request, client_prefix(request, request.app.state.rt))

    forwarded = [*FORWARDED_PATHS]
    if settings.server.metrics_listener == "public":
        forwarded.append(("/metrics", ["GET"]))  # every worker's counters are added up by the primary
    routes = [Route(path, forward, methods=methods) for path, methods in forwarded]
    app = create_app(
        settings,
        role="worker",
        extra_routes=routes,
        background=[
            Periodic("suppression_reload", settings.server.suppression_reload_seconds, reload_suppressions),
            Periodic(
                "metrics_snapshot", SNAPSHOT_SECONDS, write_metrics_snapshots, final=write_metrics_snapshot
            ),
        ],
    )
    app.state.rt.upstream_ready = forwarder.readiness
    return app


def create_primary_app(settings: Settings, parent: int) -> Starlette:
    """The primary runs in its own session, so a terminal's Ctrl-C or a service manager's group-wide
    SIGTERM stops the workers first and the parent then stops the primary, which ships what the workers
    sealed. If the parent dies without doing so, the primary notices and shuts down by itself."""

    async def watch_parent(rt: Runtime) -> None:
        if os.getppid() != parent:
            log.warning("the serving process is gone; shutting down")
            os.kill(os.getpid(), signal.SIGTERM)

    return create_app(
        settings, role="primary", background=[Periodic("parent_watch", 1.0, watch_parent)], admin=True
    )


def create_from_environment() -> Starlette:
    """uvicorn's factory in each spawned worker: the same settings the parent loaded (env and file)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    sys.setswitchinterval(settings.server.gil_switch_interval_ms / 1000)
    app = create_worker_app(settings)
    freeze_startup_objects()
    return app
