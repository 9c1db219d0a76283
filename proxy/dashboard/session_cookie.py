"""The dashboard's session cookie, and the same-origin rule for every request that carries it.

The cookie holds the session token (proxy/stats/sessions.py), never the analyst key: ``HttpOnly`` (no script
reads it), ``SameSite=Strict`` (no other site's page makes the browser send it), ``Path=/``, host-only, with
the session's lifetime as ``Max-Age``, and ``Secure`` unless ``server.cookie_secure = false`` or the
dashboard is reached over plain HTTP on a loopback name (``make run``'s http://127.0.0.1:8080). A Secure
cookie is named ``__Host-bp_dashboard``: browsers accept that name only from a secure origin, without a
Domain and with Path=/, so a sibling subdomain cannot plant one.

SameSite=Strict still lets a *sibling subdomain* (same site, other origin) send the cookie, so a request
carrying it must also come from the dashboard's own origin: ``Sec-Fetch-Site`` (set by the browser, never by
a page) must be ``same-origin`` when sent, and ``Origin``, when sent, must name this host (the scheme is not
compared: TLS often ends at a reverse proxy in front, which must pass the ``Host`` header through).
``Origin: null`` (a form post from a ``Referrer-Policy: no-referrer`` page sends it) says nothing, so the
request then needs ``Sec-Fetch-Site: same-origin``; so does one without ``Origin`` (a same-origin GET).
With ``serve --workers N`` the primary answers for the workers, so a worker passes the scheme and host its
client used in :data:`ORIGIN_HEADER`, replacing any sent value.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from starlette.requests import Request

from config.settings import Settings

COOKIE = "bp_dashboard"
SECURE_COOKIE = "__Host-bp_dashboard"
ORIGIN_HEADER = "x-beaconproxy-origin"


def request_origin(request: Request) -> tuple[str, str]:
    """(scheme, host[:port]) the client used, lower-case; through a worker, as the worker saw them."""
    if request.app.state.rt.role == "primary":  # reached only by the workers, over a unix socket
        scheme, _, host = request.headers.get(ORIGIN_HEADER, "").partition("://")
    else:
        scheme, host = request.url.scheme, request.headers.get("host", "")
    return scheme.lower(), host.strip().lower()


def _is_loopback(host: str) -> bool:
    name = urlsplit(f"//{host}").hostname or ""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_secure(request: Request, settings: Settings) -> bool:
    """Whether the cookie is ``Secure`` (and so named ``__Host-…``) for this request."""
    scheme, host = request_origin(request)
    return settings.server.cookie_secure and not (scheme == "http" and _is_loopback(host))


def cookie_name(secure: bool) -> str:
    return SECURE_COOKIE if secure else COOKIE


def set_cookie(token: str, max_age: int, secure: bool) -> str:
    parts = [f"{cookie_name(secure)}={token}", f"Max-Age={max_age}", "Path=/", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def clear_cookie(secure: bool) -> str:
    return set_cookie("", 0, secure)


def read_token(request: Request, settings: Settings) -> str | None:
    """The session token this request carries under the name this request's cookies use, if any."""
    return request.cookies.get(cookie_name(is_secure(request, settings))) or None


def same_origin(request: Request) -> bool:
    """Whether the request comes from a page of this origin (see the module's docstring)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site != "same-origin":
        return False
    origin = request.headers.get("origin")
    if origin is not None and origin.strip() != "null":
        _, host = request_origin(request)
        parts = urlsplit(origin.strip())
        return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == host
    # No usable Origin: absent, or "null", which is what a form post from a page with Referrer-Policy:
    # no-referrer carries (the dashboard's own pages); then the browser's Sec-Fetch-Site must vouch.
    return fetch_site == "same-origin"
