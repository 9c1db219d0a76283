"""The analysts' HTTP API on the public listener: Plausible's Stats API v2 and v1, CSV, the zip export;
and the admin endpoints that manage analyst keys.

Every stats request: ``Authorization: Bearer <analyst key>``, or the dashboard's session cookie from the
dashboard's own origin (proxy/dashboard/session_cookie.py), standing for the key it was opened with (401
without a live one; 403 for a session cookie sent from another origin) -> the key's hourly
budget (429 with ``Retry-After``) -> the site must be one the key reads (403, the same answer whether or
not the site exists) -> parse (400 naming the field) -> query (on a worker thread) -> answer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.dashboard import session_cookie
from proxy.http import HTTPError, error_response, json_response, read_body, read_json_object, require_admin
from proxy.runtime import Runtime
from proxy.stats import render
from proxy.stats.engine import Result, StatsUnavailable
from proxy.stats.keys import AnalystKey, AnalystKeyError
from proxy.stats.parse import V1Endpoint, parse_v1, parse_v2
from proxy.stats.query import QueryError
from proxy.stats.service import StatsService
from sinks.base import SinkError

MAX_QUERY_BYTES = 64 * 1024
MISSING_KEY = "Missing API key. Please use a valid analyst key as a Bearer Token."
INVALID_KEY = "Invalid API key. Please make sure you're using a live analyst key."
SESSION_ENDED = "Your dashboard session has ended. Please sign in again."
CROSS_ORIGIN = "A dashboard session is accepted only from the dashboard's own pages."
MISSING_SITE = "Missing site ID. Please provide the required site_id parameter with your request."


def _service(request: Request) -> StatsService:
    """The main store's stats service: analyst keys and their rate limit live there."""
    rt: Runtime = request.app.state.rt
    service = rt.stats_main
    if service is None:
        raise HTTPError(501, "this process serves no stats")
    return service


async def _credential(request: Request, service: StatsService) -> AnalystKey:
    """The live analyst key behind the request: its bearer key, else its dashboard session cookie (which
    must come from the dashboard's own origin); 401 (or 403 for a cross-origin cookie) otherwise."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and given.strip():
        key = await anyio.to_thread.run_sync(service.keys.verify, given.strip())
        if key is None:
            raise HTTPError(401, INVALID_KEY, {"WWW-Authenticate": "Bearer"})
        return key
    token = session_cookie.read_token(request, service.settings)
    if token is None:
        raise HTTPError(401, MISSING_KEY, {"WWW-Authenticate": "Bearer"})
    if not session_cookie.same_origin(request):
        raise HTTPError(403, CROSS_ORIGIN)
    key = await anyio.to_thread.run_sync(service.sessions.resolve, token)
    if key is None:
        raise HTTPError(401, SESSION_ENDED, {"WWW-Authenticate": "Bearer"})
    return key


async def _authorize(request: Request, site: Any) -> tuple[StatsService, AnalystKey, str]:
    service = _service(request)
    try:
        key = await _credential(request, service)
        wait = await anyio.to_thread.run_sync(service.limiter.hit, key.key_id)
    except SinkError:
        raise HTTPError(503, "the store is unavailable; retry shortly", {"Retry-After": "5"}) from None
    if wait is not None:
        raise HTTPError(
            429,
            "Too many API requests. Your API key is limited to "
            f"{service.settings.analytics.rate_limit_per_hour} requests per hour.",
            {"Retry-After": str(wait)},
        )
    if not isinstance(site, str) or not site:
        raise HTTPError(400, MISSING_SITE)
    if site not in key.sites or site not in service.settings.sites:
        raise HTTPError(403, "This API key cannot read that site.")
    rt: Runtime = request.app.state.rt
    site_service = rt.stats_for(site)  # the site's own store (sites.<id>.store): read there only
    if site_service is None:
        raise HTTPError(501, "this process serves no stats")
    return site_service, key, site


def _wants_csv(request: Request) -> bool:
    return request.query_params.get("format") == "csv" or "text/csv" in request.headers.get("accept", "")


def _csv(header: list[str], rows: list[list[Any]], result: Result) -> Response:
    w = result.withheld
    headers = {
        "X-Beacon-Rows-Folded": str(w.rows_folded),
        "X-Beacon-Other-Rows-Withheld": str(w.other_withheld),
        "X-Beacon-Min-Visitors": str(w.min_visitors),
    }
    return Response(render.csv_bytes(header, rows), media_type="text/csv; charset=utf-8", headers=headers)


async def _run(service: StatsService, q: Any) -> Result:
    try:
        result: Result = await anyio.to_thread.run_sync(service.engine.run, q)
    except StatsUnavailable:
        raise HTTPError(503, "the store is unavailable; retry shortly", {"Retry-After": "5"}) from None
    return result


async def v2_query(request: Request) -> Response:
    try:
        try:
            doc = orjson.loads(await read_body(request, MAX_QUERY_BYTES))
        except orjson.JSONDecodeError:
            raise HTTPError(400, "Invalid query: the body is not valid JSON.") from None
        service, _, site = await _authorize(request, doc.get("site_id") if isinstance(doc, dict) else None)
        try:
            q = parse_v2(doc, service.engine.context(site, datetime.now(UTC)))
        except QueryError as exc:
            raise HTTPError(400, str(exc)) from None
        result = await _run(service, q)
    except HTTPError as exc:
        return error_response(exc.status, exc.message, exc.headers)
    except QueryError as exc:
        return error_response(400, str(exc))
    if _wants_csv(request):
        return _csv(*render.table(result), result)
    return json_response(200, render.v2(result))


def v1_endpoint(endpoint: V1Endpoint) -> Any:
    async def handler(request: Request) -> Response:
        params = dict(request.query_params)
        try:
            service, _, site = await _authorize(request, params.get("site_id"))
            q = parse_v1(params, endpoint, service.engine.context(site, datetime.now(UTC)))
            result = await _run(service, q)
        except HTTPError as exc:
            return error_response(exc.status, exc.message, exc.headers)
        except QueryError as exc:
            return error_response(400, str(exc))
        if endpoint == "realtime":
            return json_response(200, result.rows[0][1][0] if result.rows else 0)
        if _wants_csv(request):
            return _csv(*render.table(result, v1=True), result)
        body = {
            "aggregate": render.v1_aggregate,
            "breakdown": render.v1_breakdown,
            "timeseries": render.v1_timeseries,
        }[endpoint](result)
        return json_response(200, body)

    return handler


async def export(request: Request) -> Response:
    """``GET /api/v1/export?site_id=…&period=30d`` (or ``period=custom&date=A,B``): a zip of CSVs."""
    params = dict(request.query_params)
    try:
        service, _, site = await _authorize(request, params.get("site_id"))
        period: Any = params.get("period", "30d")
        if period == "custom":
            period = params.get("date", "").split(",")
        try:
            data = await anyio.to_thread.run_sync(service.export, site, period)
        except StatsUnavailable:
            raise HTTPError(503, "the store is unavailable; retry shortly", {"Retry-After": "5"}) from None
    except HTTPError as exc:
        return error_response(exc.status, exc.message, exc.headers)
    except QueryError as exc:
        return error_response(400, str(exc))
    name = f"{site}-{datetime.now(UTC).date().isoformat()}.zip"
    return Response(
        data, media_type="application/zip", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


# --- admin: analyst keys ----------------------------------------------------------------------------------


async def admin_analyst_keys(request: Request) -> Response:
    """``GET``: every key (never the key itself). ``POST {"sites": [...], "label": "…"}``: a new key, shown
    in this answer only."""
    rt: Runtime = request.app.state.rt
    try:
        require_admin(request, rt.admin_token)
        service = _service(request)
        if request.method == "GET":
            keys = await anyio.to_thread.run_sync(service.keys.list)
            return json_response(200, {"keys": [k.public() for k in keys]})
        doc = await read_json_object(request, 4096)
        sites, label = doc.get("sites"), doc.get("label", "")
        if (
            not isinstance(sites, list)
            or not all(isinstance(s, str) for s in sites)
            or not isinstance(label, str)
        ):
            raise HTTPError(400, 'body must be {"sites": [site ids], "label": text}')
        try:
            text, key = await anyio.to_thread.run_sync(service.keys.create, sites, label)
        except AnalystKeyError as exc:
            raise HTTPError(400, str(exc)) from None
    except HTTPError as exc:
        return error_response(exc.status, exc.message, exc.headers)
    except SinkError as exc:
        return error_response(503, str(exc), {"Retry-After": "5"})
    return json_response(201, {**key.public(), "key": text})


async def admin_revoke_key(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    try:
        require_admin(request, rt.admin_token)
        service = _service(request)
        try:
            key = await anyio.to_thread.run_sync(service.keys.revoke, request.path_params["key_id"])
        except AnalystKeyError as exc:
            raise HTTPError(404, str(exc)) from None
    except HTTPError as exc:
        return error_response(exc.status, exc.message, exc.headers)
    except SinkError as exc:
        return error_response(503, str(exc), {"Retry-After": "5"})
    return json_response(200, key.public())


STATS_PATHS: tuple[tuple[str, list[str]], ...] = (
    ("/api/v2/query", ["POST"]),
    ("/api/v1/stats/aggregate", ["GET"]),
    ("/api/v1/stats/breakdown", ["GET"]),
    ("/api/v1/stats/timeseries", ["GET"]),
    ("/api/v1/stats/realtime/visitors", ["GET"]),
    ("/api/v1/export", ["GET"]),
)


def stats_routes() -> list[Route]:
    v1: dict[str, Literal["aggregate", "breakdown", "timeseries", "realtime"]] = {
        "/api/v1/stats/aggregate": "aggregate",
        "/api/v1/stats/breakdown": "breakdown",
        "/api/v1/stats/timeseries": "timeseries",
        "/api/v1/stats/realtime/visitors": "realtime",
    }
    return [
        Route("/api/v2/query", v2_query, methods=["POST"]),
        *(Route(path, v1_endpoint(ep), methods=["GET"]) for path, ep in v1.items()),
        Route("/api/v1/export", export, methods=["GET"]),
    ]


def analyst_key_routes() -> list[Route]:
    """Managing analyst keys: admin only, so served by the admin listener alone (proxy/admin_listener)."""
    return [
        Route("/admin/analyst-keys", admin_analyst_keys, methods=["GET", "POST"]),
        Route("/admin/analyst-keys/{key_id}/revoke", admin_revoke_key, methods=["POST"]),
    ]
