"""The "beacon-nospool" target: Beacon Proxy with the durable spool taken out, to price the spool.

Benchmark code only, never a product mode: the same app, settings and pipeline as ``beaconproxy serve``,
but each accepted batch is discarded instead of appended to the spool, and the 202 goes out at once.
Nothing is stored. Set the port, data dir and GeoIP files with the usual ``BEACONPROXY_*`` variables.

    BEACONPROXY_PORT=8102 python benchmarks/beacon_nospool.py
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import uvicorn

from config.settings import load_settings
from proxy.app import create_app
from proxy.cli import _uvicorn_options
from proxy.logs import configure_logging


def discard(records: Sequence[bytes]) -> asyncio.Future[None]:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    app.state.rt.appender.append = discard  # the one change: no spool write, no fsync
    uvicorn.run(app, host=settings.host, port=settings.port, **_uvicorn_options(settings))


if __name__ == "__main__":
    main()
