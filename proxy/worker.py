"""Worker processes for ``beaconproxy serve --workers N``.

chDB lets one process open a data directory, so with several workers one *primary* process owns the
store: it runs the shipper, the admin API and subject requests, listening on a unix socket in
``<data_dir>/run``. Each worker ingests on the public port into its own spool segments (the primary's
shipper drains them all), forwards what needs the store to the primary, re-reads the suppression list
the primary keeps in ``<data_dir>/suppressions.json``, and leaves its counters in
``<data_dir>/run/metrics/<pid>.json`` for the primary's ``/metrics`` to add up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from config.settings import Settings, load_settings
from proxy.app import create_app
from proxy.http import HTTPError, error_response, read_body
from proxy.logs import configure_logging
from proxy.runtime import Runtime, freeze_startup_objects, metrics_dir
from proxy.stats.routes import STATS_PATHS

log = logging.getLogger("beaconproxy")

FORWARDED_PATHS = (
    ("/v1/consent/withdraw", ["POST"]),
    ("/metrics", ["GET"]),
    ("/admin/query", ["POST"]),
    ("/admin/stats", ["GET"]),
    ("/admin/inventory", ["GET"]),
    ("/admin/subjects/{action}", ["POST"]),
    *STATS_PATHS,  # the analysts' API needs the store: the primary answers it
)
# Headers that describe one hop, not the message: never forwarded either way.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}
)
MAX_FORWARD_BYTES = 1024 * 1024
SNAPSHOT_SECONDS = 1.0


def primary_socket(settings: Settings) -> Path:
    return settings.data_dir / "run" / "primary.sock"


class Forwarder:
    """Passes a request to the primary over its unix socket and its answer back, unchanged."""

    def __init__(self, socket: Path) -> None:
        self.client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(socket)), base_url="http://primary", timeout=300
        )

    async def __call__(self, request: Request) -> Response:
        try:
            body = await read_body(request, MAX_FORWARD_BYTES)
        except HTTPError as exc:
            return error_response(exc.status, exc.message, exc.headers)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
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
    every = rt.settings.server.suppression_reload_seconds
    while True:
        await asyncio.sleep(every)
        rt.suppressions.reload_cache()


async def write_metrics_snapshots(rt: Runtime) -> None:
    directory = metrics_dir(rt.settings)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{os.getpid()}.json"

    def write() -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(rt.metrics.to_json())
        os.replace(tmp, path)

    try:
        while True:
            write()
            await asyncio.sleep(SNAPSHOT_SECONDS)
    finally:  # cancelled at shutdown: leave the final counts
        with contextlib.suppress(OSError):
            write()


def create_worker_app(settings: Settings) -> Starlette:
    forwarder = Forwarder(primary_socket(settings))

    async def forward(request: Request) -> Response:  # a function: Starlette treats objects as ASGI apps
        return await forwarder(request)

    routes = [Route(path, forward, methods=methods) for path, methods in FORWARDED_PATHS]
    return create_app(
        settings,
        role="worker",
        extra_routes=routes,
        background=[reload_suppressions, write_metrics_snapshots],
    )


def create_primary_app(settings: Settings, parent: int) -> Starlette:
    """The primary runs in its own session, so a terminal's Ctrl-C or a service manager's group-wide
    SIGTERM stops the workers first and the parent then stops the primary, which ships what the workers
    sealed. If the parent dies without doing so, the primary notices and shuts down by itself."""

    async def watch_parent(rt: Runtime) -> None:
        while os.getppid() == parent:
            await asyncio.sleep(1.0)
        log.warning("the serving process is gone; shutting down")
        os.kill(os.getpid(), signal.SIGTERM)

    return create_app(settings, role="primary", background=[watch_parent])


def create_from_environment() -> Starlette:
    """uvicorn's factory in each spawned worker: the same settings the parent loaded (env and file)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    sys.setswitchinterval(settings.server.gil_switch_interval_ms / 1000)
    app = create_worker_app(settings)
    freeze_startup_objects()
    return app
