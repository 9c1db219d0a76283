"""Endpoints a visitor's browser calls: opt-out and opt-in, the GPC declaration, consent withdrawal."""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import Response

from proxy import clientip
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


def preflight_headers(
    origin: str | None, sites: SiteRegistry, allow_headers: str, methods: str = "POST, GET, OPTIONS"
) -> dict[str, str] | None:
    """A CORS preflight's answer headers for ``origin``, or None when no site allows it (answer 403)."""
    if not origin or not sites.any_allows_origin(origin):
        return None
    return {
        **cors_for_origin(origin, sites),
        "Access-Control-Allow-Methods": methods,
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


# --- consent withdrawal ----------------------------------------------------------------------------------
#
# POST /v1/consent/withdraw deletes rows, so it is held to more than a beacon:
# - an Origin the site allows is required. Browsers send Origin on every POST, same-site or cross-site
#   (fetch, sendBeacon, forms), so a request without one (or with the opaque "null") is not from a page of
#   the site: a server, a script, a sandboxed frame. Operators delete through POST /admin/subjects/delete.
#   Origin only stops other sites' pages in the visitor's browser; any other client can claim any Origin,
#   which is why the endpoint is also rate-limited, and why it takes the client_id, a random UUID that
#   only the visitor's browser holds;
# - at most server.withdraw_per_client_per_minute requests from one client (its truncated IP prefix,
#   counted before the body is read) and withdraw_per_site_per_minute for one site: then 429, with
#   Retry-After readable by the page.
#
# With --workers N the primary process counts for every worker: a worker forwards the request with the
# client prefix it resolved in CLIENT_HEADER (proxy/worker.py), replacing any the client sent.

CLIENT_HEADER = "x-beaconproxy-client"
WITHDRAW_PREFLIGHT_METHODS = "POST, OPTIONS"


def client_prefix(request: Request, rt: Runtime) -> str:
    """The requesting client's address as it would be stored (truncated, IPv4 seen through IPv6 forms),
    resolved through trusted proxies like a beacon's; "unknown" when it cannot be resolved."""
    services = rt.pipeline.services
    header = ", ".join(request.headers.getlist(services.ip_header)) or None
    peer = request.client.host if request.client else None
    ip = clientip.client_ip(peer, header, services.ip_header, services.trusted)
    if ip is None:
        return "unknown"
    return clientip.format_ip(clientip.anonymise(ip, services.v4_bits, services.v6_bits))


def _withdraw_client(request: Request, rt: Runtime) -> str:
    if rt.role == "primary":  # reached only by the workers, over a unix socket
        return request.headers.get(CLIENT_HEADER, "unknown")
    return client_prefix(request, rt)


def _too_many(wait: int) -> HTTPError:
    return HTTPError(
        429,
        "too many withdrawal requests; retry later",
        {"Retry-After": str(wait), "Access-Control-Expose-Headers": "Retry-After"},
    )


async def withdraw_preflight(request: Request) -> Response:
    """The preflight answers as the POST will: for an origin some site allows, never for "null"."""
    rt: Runtime = request.app.state.rt
    origin = request.headers.get("origin")
    sites = rt.pipeline.services.sites
    headers = (
        None
        if origin == "null"
        else preflight_headers(origin, sites, "Content-Type", WITHDRAW_PREFLIGHT_METHODS)
    )
    if headers is None:
        return error_response(403, "origin not allowed", {"Vary": "Origin"})
    return Response(status_code=204, headers=headers)


async def consent_withdraw(request: Request) -> Response:
    """``{"site": …, "client_id": …}`` from the visitor's browser: delete its pseudonymous data."""
    rt: Runtime = request.app.state.rt
    sites = rt.pipeline.services.sites
    origin = request.headers.get("origin")
    headers = {"Vary": "Origin"}
    try:
        per_client, per_site = rt.withdraw_limits
        wait = per_client.acquire(_withdraw_client(request, rt))
        if wait:
            headers = credentialed_cors(request, rt)
            raise _too_many(wait)
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
        entry = sites.get(site)
        if entry is None:
            raise HTTPError(404, "unknown site")
        headers = credentialed_cors(request, rt, site)
        if not origin or origin == "null":
            raise HTTPError(
                403,
                "a withdrawal must come from a page of the site (it needs an Origin header); "
                "operators use POST /admin/subjects/delete",
            )
        if not entry.allows_origin(origin):
            raise HTTPError(403, "origin not allowed for this site")
        wait = per_site.acquire(site)
        if wait:
            raise _too_many(wait)
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
