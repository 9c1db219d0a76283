"""``GET /t.js``: our JavaScript tracker (``proxy/static/t.js``), read and gzip-compressed once at start-up.

Both representations carry a strong ``ETag`` derived from the file's SHA-256 (the gzip one with a
``-gz`` suffix: a strong validator names exact bytes), are cacheable for an hour, and vary on
``Accept-Encoding``. A matching ``If-None-Match`` is answered ``304``.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import Response

MEDIA_TYPE = "application/javascript; charset=utf-8"
CACHE_CONTROL = "public, max-age=3600"


def read_tracker() -> bytes:
    """The packaged tracker source (package data: ``proxy/static/*.js``)."""
    return files("proxy").joinpath("static", "t.js").read_bytes()


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header allows gzip (RFC 9110 12.5.3): listed, or covered by ``*``,
    with a q-value above zero. A missing or empty header means identity only."""
    if not accept_encoding:
        return False
    star: bool | None = None
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        if coding in ("gzip", "x-gzip"):
            return q > 0
        if coding == "*":
            star = q > 0
    return bool(star)


def entity_tags(header: str) -> set[str]:
    """The entity tags of an ``If-None-Match`` header, opaque parts only (weak comparison)."""
    out = set()
    for tag in header.split(","):
        tag = tag.strip()
        out.add(tag[2:] if tag.startswith("W/") else tag)
    return out


@dataclass(frozen=True, slots=True)
class StaticScript:
    """One script in memory: its bytes, gzip-compressed once, and an ETag per representation."""

    body: bytes
    gzipped: bytes
    etag: str
    gzip_etag: str

    @classmethod
    def of(cls, body: bytes) -> StaticScript:
        digest = hashlib.sha256(body).hexdigest()[:32]
        return cls(body, gzip.compress(body, compresslevel=9, mtime=0), f'"{digest}"', f'"{digest}-gz"')

    def response(self, request: Request) -> Response:
        use_gzip = accepts_gzip(request.headers.get("accept-encoding"))
        etag = self.gzip_etag if use_gzip else self.etag
        headers = {
            "ETag": etag,
            "Cache-Control": CACHE_CONTROL,
            "Vary": "Accept-Encoding",
            "X-Content-Type-Options": "nosniff",
            # Loaded by other sites' pages, including ones that require CORP (COEP: require-corp).
            "Cross-Origin-Resource-Policy": "cross-origin",
        }
        if_none_match = request.headers.get("if-none-match")
        if if_none_match is not None and (if_none_match.strip() == "*" or etag in entity_tags(if_none_match)):
            return Response(status_code=304, headers=headers)
        body = self.gzipped if use_gzip else self.body
        if use_gzip:
            headers["Content-Encoding"] = "gzip"
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(body))
            return Response(status_code=200, headers=headers, media_type=MEDIA_TYPE)
        return Response(body, status_code=200, headers=headers, media_type=MEDIA_TYPE)


def tracker_endpoint(source: bytes | None = None) -> Callable[[Request], Awaitable[Response]]:
    """The ``/t.js`` endpoint; the file is read (and compressed) now, when the routes are built."""
    script = StaticScript.of(read_tracker() if source is None else source)

    async def tracker_js(request: Request) -> Response:
        return script.response(request)

    return tracker_js
