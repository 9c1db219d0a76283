"""Parse cost of each wire-compatible format next to the native format, in one run.

Everything after parsing (pipeline, spool, store) is the same code for every format, so the parse is
what a foreign format adds. Each format gets the same 100-event batches of ``throughput.make_event``
beacons: page views with URL, referrer, title, five props, screen, language and identifiers. They
are written the way that format's clients send them, e.g. PostHog as posthog-js's gzip batch and as
an LZ-String form. Per event it reports microseconds and the ratio to the native parse. Figures are
the best of ``--rounds`` rounds: compare the ratios, not the numbers.

    .venv/bin/python benchmarks/formats_bench.py [--batches 50] [--rounds 7]
"""

from __future__ import annotations

import argparse
import gzip
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))
sys.path.insert(0, str(BENCH_DIR))

import lzstring  # noqa: E402
import orjson  # noqa: E402
import throughput  # noqa: E402

from proxy.formats import plausible, posthog, segment, snowplow, umami  # noqa: E402
from proxy.formats.base import ForeignRequest, Parsed  # noqa: E402
from proxy.parse import Limits, parse_body  # noqa: E402

BATCH = 100
LIMITS = Limits()


def request(path: str, body: bytes, **kw: Any) -> ForeignRequest:
    return ForeignRequest(
        method="POST",
        path=path,
        query=kw.get("query", {}),
        headers=kw.get("headers", {}),
        body=body,
        max_decompressed=8 << 20,
        site_for_key=lambda key: "demo" if key == "demo" else "",
        limits=LIMITS,
    )


def as_posthog(e: dict[str, Any]) -> dict[str, Any]:
    return {
        "event": "$pageview",
        "properties": {
            "token": "demo",
            "distinct_id": e["client_id"],
            "$device_id": e["client_id"],
            "$session_id": e["session_id"],
            "$current_url": e["url"],
            "$referrer": e["referrer"],
            "title": e["title"],
            "$screen_width": e["screen"]["width"],
            "$screen_height": e["screen"]["height"],
            "$browser_language": e["language"],
            "$lib": "web",
            "$lib_version": "1.449.2",
            **e["props"],
        },
        "timestamp": "2026-12-01T15:00:00.000Z",
    }


def as_segment(e: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "page",
        "anonymousId": e["client_id"],
        "properties": {"url": e["url"], "referrer": e["referrer"], "title": e["title"], **e["props"]},
        "context": {"locale": e["language"], "screen": e["screen"], "sessionId": e["session_id"]},
        "timestamp": "2026-12-01T15:00:00.000Z",
    }


def as_snowplow(e: dict[str, Any]) -> dict[str, str]:
    return {
        "e": "pv",
        "aid": "demo",
        "url": e["url"],
        "refr": e["referrer"],
        "page": e["title"],
        "duid": e["client_id"],
        "sid": e["session_id"],
        "lang": e["language"],
        "res": f"{e['screen']['width']}x{e['screen']['height']}",
        "dtm": str(e["ts"]),
    }


def cases(batches: list[list[dict[str, Any]]]) -> dict[str, list[Callable[[], Any]]]:
    lz = lzstring.LZString()
    out: dict[str, list[Callable[[], Any]]] = {k: [] for k in ("native", "posthog json", "posthog gzip")}
    out.update({k: [] for k in ("posthog lz64 form", "segment batch", "snowplow tp2", "plausible", "umami")})
    for batch in batches:
        native = orjson.dumps(batch)
        out["native"].append(lambda b=native: parse_body(b, LIMITS))
        ph = orjson.dumps([as_posthog(e) for e in batch])
        js = request("/e/", ph)
        out["posthog json"].append(lambda r=js: posthog.parse(r))
        gz = request("/e/", gzip.compress(ph), query={"compression": "gzip-js"})
        out["posthog gzip"].append(lambda r=gz: posthog.parse(r))
        form = b"compression=lz64&data=" + lz.compressToBase64(ph.decode()).replace("+", "%2B").encode()
        lz_form = request("/e/", form)
        out["posthog lz64 form"].append(lambda r=lz_form: posthog.parse(r))
        seg = orjson.dumps({"writeKey": "demo", "batch": [as_segment(e) for e in batch]})
        seg_req = request("/v1/batch", seg)
        out["segment batch"].append(lambda r=seg_req: segment.parse(r))
        sp = orjson.dumps({"schema": "iglu:payload_data", "data": [as_snowplow(e) for e in batch]})
        sp_req = request(snowplow.TP2_PATH, sp)
        out["snowplow tp2"].append(lambda r=sp_req: snowplow.parse(r))
        # Plausible and Umami send one event per request.
        pl = [
            orjson.dumps({"n": "pageview", "u": e["url"], "d": "demo", "r": e["referrer"], "p": e["props"]})
            for e in batch
        ]
        out["plausible"].append(lambda bodies=pl: [plausible.parse(request("/api/event", b)) for b in bodies])
        um = [
            orjson.dumps(
                {
                    "type": "event",
                    "payload": {
                        "website": "demo",
                        "url": e["url"],
                        "referrer": e["referrer"],
                        "title": e["title"],
                        "language": e["language"],
                        "screen": "1920x1080",
                    },
                }
            )
            for e in batch
        ]
        out["umami"].append(lambda bodies=um: [umami.parse(request("/api/send", b)) for b in bodies])
        native_single = [orjson.dumps(e) for e in batch]
        out.setdefault("native, one event per request", []).append(
            lambda bodies=native_single: [parse_body(b, LIMITS) for b in bodies]
        )
    return out


def check(results: Any) -> int:
    """Events parsed, to make sure every case parsed all its events without error."""
    if isinstance(results, Parsed):
        assert all(not isinstance(b, Exception) for b in results.beacons), results.beacons[:1]
        return len(results.beacons)
    if isinstance(results, list) and results and isinstance(results[0], Parsed | list):
        return sum(check(r) for r in results)
    assert all(not isinstance(b, Exception) for b in results), results[:1]
    return len(results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(11)
    now_ms = int(time.time() * 1000)
    batches = [[throughput.make_event(rng, now_ms) for _ in range(BATCH)] for _ in range(args.batches)]
    table = cases(batches)
    for name, calls in table.items():
        got = sum(check(c()) for c in calls)
        assert got == BATCH * args.batches, (name, got)
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, calls in table.items():  # interleaved: every case sees the same machine noise
            t0 = time.perf_counter()
            for c in calls:
                c()
            per_event = (time.perf_counter() - t0) / (BATCH * args.batches) * 1e6
            best[name] = min(best.get(name, per_event), per_event)
    base = best["native"]
    print(f"{'format':34} {'us/event':>9} {'x native batch':>15}")
    for name, us in best.items():
        print(f"{name:34} {us:9.2f} {us / base:15.2f}")


if __name__ == "__main__":
    main()
