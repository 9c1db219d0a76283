"""``GET /t.js``: the packaged tracker, its caching headers, validators and gzip encoding."""

from __future__ import annotations

import gzip
import hashlib
import tomllib
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from proxy.tracker import accepts_gzip, read_tracker, tracker_endpoint

REPO = Path(__file__).resolve().parents[2]
SOURCE = (REPO / "proxy" / "static" / "t.js").read_bytes()
IDENTITY = {"Accept-Encoding": "identity"}
GZIP = {"Accept-Encoding": "gzip, deflate, br"}


def raw_get(
    client: TestClient, headers: dict[str, str], path: str = "/t.js"
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and the body exactly as sent (httpx would otherwise decode gzip for us)."""
    with client.stream("GET", path, headers=headers) as r:
        return r.status_code, dict(r.headers), b"".join(r.iter_raw())


def test_tracker_is_small() -> None:
    """The tracker loads on every page of every site: it stays under 2 KB on the wire."""
    size = len(gzip.compress(SOURCE, compresslevel=9))
    assert size < 2048, f"t.js is {size} bytes gzipped"


def test_tracker_is_package_data() -> None:
    """A wheel (not only the source tree) contains proxy/static/t.js."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["proxy"]
    assert any(Path("static/t.js").match(p) for p in patterns), patterns
    assert read_tracker() == SOURCE


def test_get_serves_the_file_with_caching_headers(client: TestClient) -> None:
    status, headers, body = raw_get(client, IDENTITY)
    assert status == 200
    assert body == SOURCE
    assert headers["content-type"] == "application/javascript; charset=utf-8"
    assert headers["cache-control"] == "public, max-age=3600"
    assert headers["vary"] == "Accept-Encoding"
    assert "content-encoding" not in headers
    assert headers["content-length"] == str(len(SOURCE))
    assert headers["etag"] == '"' + hashlib.sha256(SOURCE).hexdigest()[:32] + '"'  # strong: no W/
    assert headers["cross-origin-resource-policy"] == "cross-origin"


def test_gzip_when_accepted(client: TestClient) -> None:
    _, plain, _ = raw_get(client, IDENTITY)
    status, headers, body = raw_get(client, GZIP)
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(body) == SOURCE
    assert len(body) < len(SOURCE) / 2
    assert headers["content-length"] == str(len(body))
    # Other bytes, so another strong validator; both derived from the same content hash.
    assert headers["etag"] != plain["etag"]
    assert headers["etag"].startswith(plain["etag"][:-1])
    assert not headers["etag"].startswith("W/")


def test_compressed_once_not_per_request(client: TestClient) -> None:
    first = raw_get(client, GZIP)[2]
    second = raw_get(client, GZIP)[2]
    assert first == second  # deterministic bytes (mtime 0): caches and ETags agree across requests


@pytest.mark.parametrize("encoding", [IDENTITY, GZIP])
def test_matching_if_none_match_is_304(client: TestClient, encoding: dict[str, str]) -> None:
    _, headers, _ = raw_get(client, encoding)
    etag = headers["etag"]
    for given in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        status, h304, body = raw_get(client, {**encoding, "If-None-Match": given})
        assert status == 304, given
        assert body == b""
        assert h304["etag"] == etag
        assert h304["cache-control"] == "public, max-age=3600"
        assert h304["vary"] == "Accept-Encoding"


def test_stale_or_other_representation_etag_is_200(client: TestClient) -> None:
    _, gz, _ = raw_get(client, GZIP)
    _, plain, _ = raw_get(client, IDENTITY)
    assert raw_get(client, {**IDENTITY, "If-None-Match": '"0123456789abcdef"'})[0] == 200
    # The client holds the gzip bytes but now asks for identity: it must get the identity bytes.
    status, headers, body = raw_get(client, {**IDENTITY, "If-None-Match": gz["etag"]})
    assert (status, body, headers["etag"]) == (200, SOURCE, plain["etag"])


def test_head_has_headers_and_no_body(client: TestClient) -> None:
    r = client.head("/t.js", headers=IDENTITY)
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["content-length"] == str(len(SOURCE))
    assert r.headers["content-type"] == "application/javascript; charset=utf-8"
    assert r.headers["etag"].startswith('"')


def test_other_methods_are_refused(client: TestClient) -> None:
    assert client.post("/t.js", content=b"x").status_code == 405


def test_source_is_read_when_routes_are_built(tmp_path: Path) -> None:
    """The endpoint keeps the bytes it was built with; nothing is read per request."""
    app = Starlette(routes=[Route("/t.js", tracker_endpoint(b"console.log(1)"), methods=["GET", "HEAD"])])
    with TestClient(app) as c:
        r = c.get("/t.js", headers=IDENTITY)
    assert r.content == b"console.log(1)"
    assert r.headers["etag"] == '"' + hashlib.sha256(b"console.log(1)").hexdigest()[:32] + '"'


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        ("identity", False),
        ("gzip", True),
        ("GZip", True),
        ("x-gzip", True),
        ("deflate, br", False),
        ("br, gzip;q=0.5", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("gzip;q=nonsense", False),
        ("*", True),
        ("*;q=0", False),
        ("deflate, *;q=0.1", True),
        ("gzip;q=0, *", False),  # an explicit refusal is not overridden by the wildcard
        ("*, gzip;q=0", False),
    ],
)
def test_accepts_gzip(header: str | None, expected: bool) -> None:
    assert accepts_gzip(header) is expected
