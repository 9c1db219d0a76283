"""``GET /dashboard/assets/{name}``: the dashboard's script, style sheet and icon, as the build made them.

``make dashboard`` bundles ``proxy/dashboard/web`` with esbuild into ``proxy/static/dashboard/`` (package
data; built at install, never committed). The files are read and gzip-compressed once, when the routes are
built. Each has a strong ``ETag``; the page links them as ``?v=<digest>``, and a request naming the current
digest may be cached for a year (a new build changes the link), anything else must revalidate. Every
process serves them itself (they need no store), workers included. When the bundle is missing, the
dashboard pages say how to build it (proxy/dashboard/pages.py); the rest of the proxy is unaffected.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from proxy.http import error_response
from proxy.tracker import accepts_gzip, entity_tags

FILES = {
    "app.js": "application/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "public, no-cache"


def built_dir() -> Path:
    return Path(str(files("proxy").joinpath("static", "dashboard")))


@dataclass(frozen=True, slots=True)
class Asset:
    media_type: str
    body: bytes
    gzipped: bytes
    digest: str

    @classmethod
    def of(cls, media_type: str, body: bytes) -> Asset:
        digest = hashlib.sha256(body).hexdigest()[:20]
        return cls(media_type, body, gzip.compress(body, compresslevel=9, mtime=0), digest)

    def response(self, request: Request) -> Response:
        use_gzip = accepts_gzip(request.headers.get("accept-encoding"))
        etag = f'"{self.digest}-gz"' if use_gzip else f'"{self.digest}"'
        headers = {
            "ETag": etag,
            "Cache-Control": IMMUTABLE if request.query_params.get("v") == self.digest else REVALIDATE,
            "Vary": "Accept-Encoding",
            "X-Content-Type-Options": "nosniff",
            "Cross-Origin-Resource-Policy": "same-origin",
        }
        tags = request.headers.get("if-none-match")
        if tags is not None and (tags.strip() == "*" or etag in entity_tags(tags)):
            return Response(status_code=304, headers=headers)
        if use_gzip:
            headers["Content-Encoding"] = "gzip"
        return Response(self.gzipped if use_gzip else self.body, headers=headers, media_type=self.media_type)


@dataclass(frozen=True, slots=True)
class Assets:
    """The built files by name; empty when the bundle was not built."""

    files: dict[str, Asset]

    @classmethod
    def load(cls, directory: Path | None = None) -> Assets:
        d = directory or built_dir()
        if not all((d / name).is_file() for name in FILES):
            return cls({})
        return cls({name: Asset.of(media, (d / name).read_bytes()) for name, media in FILES.items()})

    @property
    def built(self) -> bool:
        return bool(self.files)

    def url(self, name: str) -> str:
        return f"/dashboard/assets/{name}?v={self.files[name].digest}"


def assets_endpoint(assets: Assets) -> Callable[[Request], Awaitable[Response]]:
    async def asset(request: Request) -> Response:
        found = assets.files.get(request.path_params["name"])
        if found is None:
            return error_response(404, "no such dashboard asset")
        return found.response(request)

    return asset
