"""The dashboard's pages: sign-in, sign-out, and one page per site.

* ``GET /dashboard``: the sign-in form (an analyst key), or, with a live session, the first site's page.
* ``POST /dashboard/session`` (``key``, ``next``; a form post from this origin only): checks the key, counts
  one request against its hourly budget, opens a session (proxy/stats/sessions.py) and sets the cookie
  (proxy/dashboard/session_cookie.py); 303 to the page asked for. A wrong key: the form again, 401.
* ``POST /dashboard/session/end``: signs out (the stored session ends, the cookie is cleared).
* ``GET /dashboard/{site}``: the page shell for a site the session's key reads; the script builds every
  panel from the public stats API, which accepts the session cookie. Without a session: the sign-in form,
  which comes back here.

Every page is sent with a strict Content-Security-Policy (nothing but this origin's own script, style sheet
and icon; no inline script or style; no framing; forms post only here), ``no-referrer`` and ``no-store``.
The key is only ever in the sign-in form's body; it is never put in a page, a cookie or a log.
"""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.dashboard import session_cookie
from proxy.dashboard.assets import Assets, assets_endpoint
from proxy.http import HTTPError, read_body
from proxy.runtime import Runtime
from proxy.stats.keys import AnalystKey
from proxy.stats.service import StatsService
from sinks.base import SinkError

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
MAX_FORM_BYTES = 4096
_NEXT = re.compile(r"^/dashboard/([A-Za-z0-9][A-Za-z0-9._-]{0,63})(\?[^\s#\\]*)?$")
WRONG_KEY = "That is not a live analyst key."


def page(status: int, body: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        body,
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers={**SECURITY_HEADERS, **(headers or {})},
    )


def _head(title: str, assets: Assets) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} · Beacon Proxy</title>"
        f'<link rel="icon" type="image/svg+xml" href="{assets.url("icon.svg")}">'
        f'<link rel="stylesheet" href="{assets.url("app.css")}"></head>'
    )


def sign_in_page(assets: Assets, status: int = 200, error: str = "", next_path: str = "") -> Response:
    alert = f'<p class="signin-error" role="alert">{html.escape(error)}</p>' if error else ""
    body = (
        _head("Sign in", assets) + '<body class="signin"><main class="signin-box">'
        "<h1>Beacon Proxy</h1><p>Sign in with an analyst key to see the sites it reads.</p>"
        '<form method="post" action="/dashboard/session">'
        '<label for="key">Analyst key</label>'
        '<input id="key" name="key" type="password" autocomplete="off" spellcheck="false" required '
        'placeholder="bpk_…" autofocus>'
        f'<input type="hidden" name="next" value="{html.escape(next_path)}">'
        f'<button type="submit">Sign in</button>{alert}</form>'
        '<p class="signin-note">Your key is sent once; the browser then holds only a session cookie.</p>'
        "</main></body></html>"
    )
    return page(status, body)


def message_page(assets: Assets | None, status: int, title: str, text: str) -> Response:
    if assets is not None and assets.built:
        head = _head(title, assets)
    else:  # no style sheet to link
        head = (
            f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        )
        head += "</head>"
    body = (
        f'{head}<body class="signin"><main class="signin-box"><h1>{html.escape(title)}</h1>'
        f'<p>{html.escape(text)}</p><p><a href="/dashboard">Dashboard</a></p></main></body></html>'
    )
    return page(status, body)


def site_page(assets: Assets, site: str, key: AnalystKey, service: StatsService) -> Response:
    sites = [s for s in key.sites if s in service.settings.sites]
    data = html.escape(orjson.dumps(sites).decode(), quote=True)
    body = (
        _head(site, assets)
        + f'<body><div id="app" data-site="{html.escape(site, quote=True)}" data-sites="{data}"></div>'
        f'<script src="{assets.url("app.js")}" defer></script>'
        "<noscript>The dashboard needs JavaScript. The stats API (README, For analysts) works without it."
        "</noscript></body></html>"
    )
    return page(200, body)


def _service(request: Request) -> StatsService:
    rt: Runtime = request.app.state.rt
    service = rt.stats_main  # sign-ins and keys live in the main store; figures come through the API
    if service is None:
        raise HTTPError(501, "this process serves no stats")
    return service


async def _session_key(request: Request, service: StatsService) -> AnalystKey | None:
    token = session_cookie.read_token(request, service.settings)
    if token is None:
        return None
    key: AnalystKey | None = await anyio.to_thread.run_sync(service.sessions.resolve, token)
    return key


def _readable(key: AnalystKey, service: StatsService) -> list[str]:
    return [s for s in key.sites if s in service.settings.sites]


def dashboard_routes(assets: Assets | None = None) -> list[Route]:
    """The pages (they need the store: served by a single process or the primary; workers forward them)."""
    built = assets if assets is not None else Assets.load()

    def unbuilt() -> Response:
        return message_page(
            None,
            503,
            "Dashboard not built",
            "Run `make dashboard` (npm ci and esbuild) and restart the proxy.",
        )

    async def signed_in(request: Request) -> Response | tuple[StatsService, AnalystKey | None]:
        """The stats service and the session's key (None: not signed in), or the page that says why not."""
        if not built.built:
            return unbuilt()
        try:
            service = _service(request)
            return service, await _session_key(request, service)
        except (HTTPError, SinkError):
            return message_page(built, 503, "Unavailable", "The store is unavailable; retry shortly.")

    async def home(request: Request) -> Response:
        found = await signed_in(request)
        if isinstance(found, Response):
            return found
        service, key = found
        if key is None:
            return sign_in_page(built)
        sites = _readable(key, service)
        if not sites:
            return message_page(built, 403, "No sites", "This analyst key reads no configured site.")
        return Response(status_code=303, headers={**SECURITY_HEADERS, "Location": f"/dashboard/{sites[0]}"})

    async def site(request: Request) -> Response:
        found = await signed_in(request)
        if isinstance(found, Response):
            return found
        service, key = found
        name = request.path_params["site"]
        if key is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return sign_in_page(built, next_path=target if _NEXT.match(target) else "")
        if name not in _readable(key, service):
            # the same answer whether or not the site exists
            return message_page(built, 404, "Not found", "This key does not read a site of that name.")
        return site_page(built, name, key, service)

    async def sign_in(request: Request) -> Response:
        if not built.built:
            return unbuilt()
        if not session_cookie.same_origin(request):
            return message_page(built, 403, "Refused", "Sign in from the dashboard's own page.")
        if (
            request.headers.get("content-type", "").split(";")[0].strip()
            != "application/x-www-form-urlencoded"
        ):
            return message_page(built, 415, "Refused", "Sign in with the dashboard's form.")
        try:
            service = _service(request)
            form = parse_qs(
                (await read_body(request, MAX_FORM_BYTES)).decode("utf-8", "replace"), max_num_fields=4
            )
            text = (form.get("key") or [""])[0].strip()
            next_path = (form.get("next") or [""])[0]
            key = await anyio.to_thread.run_sync(service.keys.verify, text) if text else None
            if key is None or not _readable(key, service):
                return sign_in_page(built, 401, WRONG_KEY, next_path if _NEXT.match(next_path) else "")
            wait = await anyio.to_thread.run_sync(service.limiter.hit, key.key_id)
            if wait is not None:
                return message_page(
                    built,
                    429,
                    "Too many requests",
                    f"This key has used its hourly budget; retry in {wait} s.",
                )
            token, _ = await anyio.to_thread.run_sync(service.sessions.open, key)
        except HTTPError as exc:
            return message_page(built, exc.status, "Refused", exc.message)
        except SinkError:
            return message_page(built, 503, "Unavailable", "The store is unavailable; retry shortly.")
        sites = _readable(key, service)
        m = _NEXT.match(next_path)
        location = next_path if m and m.group(1) in sites else f"/dashboard/{sites[0]}"
        secure = session_cookie.is_secure(request, service.settings)
        max_age = int(service.sessions.lifetime.total_seconds())
        cookie = session_cookie.set_cookie(token, max_age, secure)
        return Response(
            status_code=303, headers={**SECURITY_HEADERS, "Location": location, "Set-Cookie": cookie}
        )

    async def sign_out(request: Request) -> Response:
        if not built.built:
            return unbuilt()
        if not session_cookie.same_origin(request):
            return message_page(built, 403, "Refused", "Sign out from the dashboard's own page.")
        try:
            service = _service(request)
            token = session_cookie.read_token(request, service.settings)
            if token is not None:
                await anyio.to_thread.run_sync(service.sessions.end, token)
        except (HTTPError, SinkError):
            return message_page(built, 503, "Unavailable", "The store is unavailable; retry shortly.")
        cookie = session_cookie.clear_cookie(session_cookie.is_secure(request, service.settings))
        return Response(
            status_code=303, headers={**SECURITY_HEADERS, "Location": "/dashboard", "Set-Cookie": cookie}
        )

    return [
        Route("/dashboard", home, methods=["GET"]),
        Route("/dashboard/session", sign_in, methods=["POST"]),
        Route("/dashboard/session/end", sign_out, methods=["POST"]),
        Route("/dashboard/{site}", site, methods=["GET"]),
    ]


DASHBOARD_PATHS: tuple[tuple[str, list[str]], ...] = (
    ("/dashboard", ["GET"]),
    ("/dashboard/session", ["POST"]),
    ("/dashboard/session/end", ["POST"]),
    ("/dashboard/{site}", ["GET"]),
)


def asset_routes(assets: Assets | None = None) -> list[Route]:
    """The built files: every process serves them itself (they need no store)."""
    return [Route("/dashboard/assets/{name}", assets_endpoint(assets or Assets.load()), methods=["GET"])]
