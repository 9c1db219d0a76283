"""What timing every ingestion request costs: the proxy's real ``Ingest`` ASGI handler, in-process,
with and without the per-endpoint latency histogram (``beacon_request_seconds``), in alternating rounds.

    python benchmarks/request_metrics_bench.py [--requests 3000] [--rounds 5]

Each request is a realistic single-event ``POST /v1/events`` run through parsing, the whole pipeline and
a spool append (``spool.fsync = "never"``: the disk is not what is measured). "without" replaces the
handler wrapper by the one before the histogram existed (same error handling, no clock reads). The
direct cost of the added lines (two clock reads, a dict lookup, a bisect and two additions) is also
timed in a tight loop. Read the ratio: the box is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402

from config.settings import load_settings  # noqa: E402
from proxy import ingest  # noqa: E402
from proxy.http import Disconnected, log_internal_error  # noqa: E402
from proxy.metrics import RequestHistogram  # noqa: E402
from proxy.runtime import build_runtime  # noqa: E402

UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)


async def untimed_guarded(
    self: ingest.Ingest,
    endpoint: str,
    handler: Callable[[Any, Any, Any], Awaitable[None]],
    scope: Any,
    receive: Any,
    send: Any,
) -> None:
    """The wrapper as it was before requests were timed."""
    try:
        await handler(scope, receive, send)
    except Disconnected:
        return
    except Exception as exc:
        log_internal_error(ingest.log, exc, scope["path"])
        self.rt.metrics.rejected_requests[500] += 1
        await ingest._send_json(send, 500, {"error": "internal error"}, {})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of each (best kept)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="beacon-reqmetrics-") as tmp:
        settings = load_settings(environ={"BEACONPROXY_DATA_DIR": tmp, "BEACONPROXY_SPOOL__FSYNC": "never"})
        rt = build_runtime(settings, role="worker")  # no store: ingestion into the spool only
        rt.spool.start()

        async def router(scope: Any, receive: Any, send: Any) -> None:
            raise AssertionError("ingestion requests never reach the router")

        app = ingest.Ingest(router, rt)
        bodies = [
            orjson.dumps(
                {
                    "site": "demo",
                    "url": f"https://example.com/p/{i % 50}?utm_source=news",
                    "referrer": "https://www.google.com/",
                    "title": "Pricing",
                    "language": "en-GB",
                    "screen": {"width": 1440, "height": 900},
                }
            )
            for i in range(args.requests)
        ]

        async def one_round() -> float:
            statuses: list[int] = []

            async def send(message: Any) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            t0 = time.perf_counter()
            for i, body in enumerate(bodies):
                scope = {
                    "type": "http",
                    "method": "POST",
                    "path": "/v1/events",
                    "query_string": b"",
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"user-agent", UA.encode()),
                        (b"x-forwarded-for", f"81.2.{i % 200}.{i % 250 + 1}".encode()),
                    ],
                    "client": ("127.0.0.1", 40000),
                }

                async def receive(body: bytes = body) -> Any:
                    return {"type": "http.request", "body": body, "more_body": False}

                await app(scope, receive, send)
            elapsed = time.perf_counter() - t0
            assert statuses == [202] * len(bodies), f"unexpected answers: {set(statuses)}"
            return elapsed / len(bodies)

        async def run() -> tuple[list[float], list[float]]:
            timed: list[float] = []
            untimed: list[float] = []
            original = ingest.Ingest._guarded
            await one_round()  # warm caches (User-Agent, GeoIP, scrubber)
            for _ in range(args.rounds):
                ingest.Ingest._guarded = original  # type: ignore[method-assign]
                timed.append(await one_round())
                ingest.Ingest._guarded = untimed_guarded  # type: ignore[method-assign]
                untimed.append(await one_round())
            ingest.Ingest._guarded = original  # type: ignore[method-assign]
            return timed, untimed

        timed, untimed = asyncio.run(run())
        rt.spool.close()

    # The added lines alone, in a tight loop.
    histograms: dict[str, RequestHistogram] = {"events": RequestHistogram()}
    n = 200_000
    clock = time.perf_counter
    t0 = clock()
    for _ in range(n):
        start = clock()
        histograms["events"].observe(clock() - start)
    direct = (clock() - t0) / n

    best_timed, best_untimed = min(timed), min(untimed)
    print(f"requests per round: {args.requests}, rounds: {args.rounds} each, best round kept")
    print(f"{'variant':<34} {'us per request':>15}")
    print(f"{'without the latency histogram':<34} {best_untimed * 1e6:>15.1f}")
    print(f"{'with it (as shipped)':<34} {best_timed * 1e6:>15.1f}")
    print(f"ratio with/without: {best_timed / best_untimed:.3f}")
    print(
        f"the added lines alone: {direct * 1e9:.0f} ns per request "
        f"({direct / best_untimed * 100:.2f}% of a request)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
