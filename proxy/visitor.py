"""Endpoints a visitor's browser calls: opt-out and opt-in, the GPC declaration, consent withdrawal."""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import Response

from proxy.http import HTTPError, error_response, json_response, read_json_object
from proxy.runtime import Runtime
from proxy.sites import SiteRegistry
from proxy.subjects import SubjectError, SubjectUnavailable
from sinks.base import SinkError

OPT_OUT_MAX_AGE = 2 * 365 * 24 * 3600
# https://privacycg.github.io/gpc-spec/: we honour Sec-GPC (it withdraws marketing consent).
GPC_DECLARATION = {"gpc": True, "lastUpdate": "2026-11-22"}


def credentialed_cors(request: Request, rt: Runtime, site: str | None = None) -> dict[str, str]:
    """Echo an allowed Origin with credentials, so cookies flow on cross-origin beacons and calls."""
    return cors_for_origin(request.headers.get("origin"), rt.pipeline.services.sites, site)


def cors_for_origin(origin: str | None, sites: SiteRegistry, site: str | None = None) -> dict[str, str]:
    """The CORS headers for ``origin``: echoed with credentials if ``site`` (or any site) allows it."""
    if origin is None:
        return {}
    entry = sites.get(site) if site else None
    allowed = entry.allows_origin(origin) if entry else sites.any_allows_origin(origin)
    if not allowed:
        return {"Vary": "Origin"}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }


def preflight_headers(origin: str | None, sites: SiteRegistry, allow_headers: str) -> dict[str, str] | None:
    """A CORS preflight's answer headers for ``origin``, or None when no site allows it (answer 403)."""
    if not origin or not sites.any_allows_origin(origin):
        return None
    return {
        **cors_for_origin(origin, sites),
        "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
        "Access-Control-Allow-Headers": allow_headers,
        "Access-Control-Max-Age": "86400",
    }


def _cookie(rt: Runtime, value: str, max_age: int) -> str:
    server = rt.settings.server
    parts = [f"{server.opt_out_cookie}={value}", f"Max-Age={max_age}", "Path=/", "SameSite=Lax", "HttpOnly"]
    if server.cookie_domain:
        parts.append(f"Domain={server.cookie_domain}")
    if server.cookie_secure:
        parts.append("Secure")
    return "; ".join(parts)


async def opt_out(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    headers = {**credentialed_cors(request, rt), "Set-Cookie": _cookie(rt, "1", OPT_OUT_MAX_AGE)}
    headers["Cache-Control"] = "no-store"
    return json_response(200, {"opted_out": True}, headers)


async def opt_in(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    # Re-enabling collection must come from the visitor, not from a link on another site.
    origin = request.headers.get("origin")
    cross_site = request.headers.get("sec-fetch-site") == "cross-site"
    if cross_site and not (origin and rt.pipeline.services.sites.any_allows_origin(origin)):
        return error_response(403, "opt-in must come from a page of a configured site", {"Vary": "Origin"})
    headers = {
        **credentialed_cors(request, rt),
        "Set-Cookie": _cookie(rt, "", 0),
        "Cache-Control": "no-store",
    }
    return json_response(200, {"opted_out": False}, headers)


async def gpc_json(request: Request) -> Response:
    return json_response(200, GPC_DECLARATION, {"Cache-Control": "max-age=86400"})


async def consent_withdraw(request: Request) -> Response:
    """``{"site": …, "client_id": …}`` from the visitor's browser: delete its pseudonymous data."""
    rt: Runtime = request.app.state.rt
    headers = {"Vary": "Origin"}
    try:
        doc = await read_json_object(request, 4096)
        site, client_id = doc.get("site"), doc.get("client_id")
        if isinstance(client_id, int) and not isinstance(client_id, bool):
            client_id = str(client_id)
        if (
            not isinstance(site, str)
            or not isinstance(client_id, str)
            or not client_id
            or len(client_id) > 256
        ):
            raise HTTPError(400, "body must be {'site': string, 'client_id': non-empty string}")
        entry = rt.pipeline.services.sites.get(site)
        if entry is None:
            raise HTTPError(404, "unknown site")
        headers = credentialed_cors(request, rt, site)
        if not entry.allows_origin(request.headers.get("origin")):
            raise HTTPError(403, "origin not allowed for this site")
        if rt.subjects is None:
            raise HTTPError(501, "this process keeps no subject data")
        try:
            result = await anyio.to_thread.run_sync(rt.subjects.withdraw, site, client_id)
        except SubjectError as exc:
            raise HTTPError(400, str(exc)) from None
        except (SubjectUnavailable, SinkError):
            raise HTTPError(
                503, "could not complete the withdrawal; retry shortly", {"Retry-After": "5"}
            ) from None
    except HTTPError as exc:
        return error_response(exc.status, exc.message, {**headers, **exc.headers})
    return json_response(200, {"withdrawn": True, "deleted": result.rows}, headers)
