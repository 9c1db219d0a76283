"""Helpers for the format tests: requests as the real clients sent them (payloads/), and a builder."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest

from proxy.formats.base import ForeignRequest, Parsed
from proxy.model import Beacon
from proxy.parse import Limits
from tests.support.proxy_server import RunningProxy, running_proxy

PAYLOADS = Path(__file__).with_name("payloads")
KEYS = {"demo": "demo", "example.com": "shop", "phc_shop": "shop"}


def foreign(
    path: str,
    body: bytes | dict[str, Any] | list[Any] = b"",
    *,
    method: str = "POST",
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    max_decompressed: int = 1 << 20,
) -> ForeignRequest:
    raw = orjson.dumps(body) if isinstance(body, dict | list) else body
    return ForeignRequest(
        method=method,
        path=path,
        query=query or {},
        headers={k.lower(): v for k, v in (headers or {}).items()},
        body=raw,
        max_decompressed=max_decompressed,
        site_for_key=lambda key: KEYS.get(key, ""),
        limits=Limits(),
    )


def only_beacons(parsed: Parsed) -> list[Beacon]:
    """The parsed beacons, asserting that no event of the request was an error."""
    assert all(isinstance(b, Beacon) for b in parsed.beacons), parsed.beacons
    return [b for b in parsed.beacons if isinstance(b, Beacon)]


def captured(client: str) -> list[ForeignRequest]:
    """The requests ``client`` sent, recorded byte for byte (see each file's "captured" note)."""
    doc = orjson.loads((PAYLOADS / f"{client}.json").read_bytes())
    out = []
    for r in doc["requests"]:
        path, _, qs = r["path"].partition("?")
        query = dict(parse_qsl(qs, keep_blank_values=True))
        out.append(
            foreign(
                path,
                base64.b64decode(r["body_base64"]),
                method=r["method"],
                query=query,
                headers=r["headers"],
            )
        )
    return out


# The running proxy the real clients talk to: ``demo`` (no consent: identifiers dropped) and
# ``consented`` (the site's configuration grants analytics consent: identifiers kept as pseudonyms).
CLIENTS_CONFIG = """
[sites.demo]
allowed_origins = ["*"]
tracker_keys = ["demo"]

[sites.consented]
allowed_origins = ["*"]
tracker_keys = ["wk_consented", "consented.example"]
consent_defaults = { analytics = true }
"""


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, geoip_files: tuple[str, str]) -> Iterator[RunningProxy]:
    """One real ``beaconproxy serve`` per test module, configured with :data:`CLIENTS_CONFIG`."""
    with running_proxy(tmp_path_factory.mktemp("clients"), geoip_files, CLIENTS_CONFIG) as p:
        yield p
