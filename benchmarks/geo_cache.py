"""GeoIP: the proxy's prefix-keyed cache next to an uncached full-address lookup, in one run.

The proxy caches answers by the *truncated* address (the prefix it stores anyway), and only when the
database record covers that whole prefix. This script checks, on a sample of addresses, how often
country and region agree with a full-address lookup (expected: always), what share of answers could be
cached, and what a lookup costs per request with realistic reuse (several requests per /24 or /48).
For contrast it also reports how often a naive "look up the truncated address itself" would agree.

    python benchmarks/geo_cache.py [--geoip-dir data/geoip] [--networks 20000] [--requests 200000]

Needs real databases (``make geoip`` puts DB-IP Lite into ./data/geoip).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from proxy.clientip import truncate  # noqa: E402
from proxy.geo import GeoLookup, find_databases  # noqa: E402

V4_BITS, V6_BITS = 24, 48


def random_public_v4(rng: random.Random) -> bytes:
    while True:
        first = rng.randrange(1, 224)
        if first not in (10, 127):  # private and loopback /8s have no location
            return bytes([first, rng.randrange(256), rng.randrange(256), rng.randrange(256)])


def random_v6(rng: random.Random) -> bytes:
    # Global unicast 2000::/3, mostly in the allocated 2001::/16 .. 2a0f::/16 region.
    prefix = rng.choice((0x2001, 0x2003, 0x2400, 0x2600, 0x2800, 0x2A00, 0x2A01, 0x2A02, 0x2C0F))
    return prefix.to_bytes(2, "big") + rng.getrandbits(112).to_bytes(14, "big")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--geoip-dir", type=Path, default=REPO / "data" / "geoip")
    parser.add_argument("--networks", type=int, default=20000, help="distinct /24 or /48 networks sampled")
    parser.add_argument("--requests", type=int, default=200000, help="lookups in the reuse run")
    parser.add_argument("--v6-share", type=float, default=0.2)
    args = parser.parse_args()
    paths = find_databases(args.geoip_dir)
    if not paths:
        print(f"no .mmdb files in {args.geoip_dir}: run `make geoip`", file=sys.stderr)
        return 2
    rng = random.Random(20261201)
    full = GeoLookup(paths, cache_size=0)
    cached = GeoLookup(paths, cache_prefix_bits=(V4_BITS, V6_BITS))

    # 1. Agreement: every address once through each path, then the truncated address for contrast.
    sample = [
        random_v6(rng) if rng.random() < args.v6_share else random_public_v4(rng)
        for _ in range(args.networks)
    ]
    neighbours = [truncate(a, V4_BITS, V6_BITS)[:-1] + bytes([rng.randrange(256)]) for a in sample]
    agree = naive_agree = known = 0
    for address in sample + neighbours:  # neighbours share a prefix: many answers come from the cache
        want = full.lookup(address)
        got = cached.lookup(address)
        naive = full.lookup(truncate(address, V4_BITS, V6_BITS))
        known += bool(want.country)
        agree += (got.country, got.region) == (want.country, want.region)
        naive_agree += (naive.country, naive.region) == (want.country, want.region)
    n = len(sample) * 2
    info = cached.cache_info()
    print(f"databases: {', '.join(p.name for p in paths)}")
    print(
        f"sample: {n:,} addresses ({len(sample):,} random, each with a neighbour in its /24 or /48), "
        f"{known:,} with a known country"
    )
    print(
        f"prefix-keyed cache agrees with full-address lookups (country, region): {agree:,}/{n:,} = "
        f"{100 * agree / n:.3f}%"
    )
    print(
        f"looking up the truncated address instead would agree: {naive_agree:,}/{n:,} = "
        f"{100 * naive_agree / n:.3f}%"
    )
    print(
        f"answers finer than the prefix (looked up every time): {info.uncacheable:,} of {info.misses:,} "
        f"misses = {100 * info.uncacheable / max(1, info.misses):.2f}%"
    )

    # 2. Cost with reuse: requests drawn from the sampled networks with a long tail (Zipf-like).
    weights = [1 / (i + 1) for i in range(len(sample))]
    draws = rng.choices(range(len(sample)), weights=weights, k=args.requests)
    addresses = [truncate(sample[i], V4_BITS, V6_BITS)[:-1] + bytes([rng.randrange(256)]) for i in draws]
    fresh = GeoLookup(paths, cache_prefix_bits=(V4_BITS, V6_BITS))
    for label, lookup in (("uncached full-address lookup", full), ("prefix-keyed cache", fresh)):
        t0 = time.perf_counter()
        for address in addresses:
            lookup.lookup(address)
        us = (time.perf_counter() - t0) / len(addresses) * 1e6
        print(f"{label:<30} {us:6.2f} us per lookup")
    stats = fresh.cache_info()
    print(
        f"prefix-keyed cache over {len(addresses):,} requests: hit rate "
        f"{100 * stats.hits / max(1, stats.hits + stats.misses):.1f}%, {stats.currsize:,} entries "
        f"(bound {stats.maxsize:,})"
    )
    for lookup in (full, cached, fresh):
        lookup.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
