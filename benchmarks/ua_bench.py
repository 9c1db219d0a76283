"""User-Agent parsing: what a cache miss costs and how often one happens, old next to new, in one run.

Absolute numbers depend on the machine and its neighbours; read the ratios.

1. Cost per miss, on distinct browser User-Agents with every cache bypassed: ``user_agents.parse`` (what a
   naive collector calls per request), the proxy's old ``parse_user_agent`` (``user_agents.parse`` and the
   classification) and the new one (ua-parser-rs finds the rules, ``re`` applies them), with its parts.
2. A long-tail day: ``--requests`` lookups drawn Zipf(``--zipf``) from ``--distinct`` User-Agents (the
   benchmark's browser mix, then variants of it: full Chrome versions, Android models, iOS builds,
   in-app browsers), with miss rate and mean cost per lookup of
   * naive: ``user_agents.parse`` per request, behind ua-parser's own 200-entry cache (cleared when full),
   * old proxy: the old ``parse_user_agent`` behind ``lru_cache(8192)``,
   * new proxy: ``parse_user_agent`` behind its ``lru_cache(CACHE_SIZE)``;
   then the miss rate of other LRU bounds, for this distribution and a wider one (``--wide-distinct``).

    .venv/bin/python benchmarks/ua_bench.py [--distinct 5000] [--requests 200000] [--zipf 1.1]
                                            [--miss-sample 300] [--rounds 5] [--wide-distinct 100000]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import random
import re
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import user_agents
from ua_parser import user_agent_parser

import proxy.useragent as useragent
from proxy.useragent import BOT, MAX_UA_LENGTH, UserAgentInfo, parse_user_agent

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import _user_agent_families, make_user_agents

SEED = 20240601
OLD_CACHE_SIZE = 8192
LRU_SIZES = (2048, 4096, 8192, 16384, 32768, 65536)


def old_parse_user_agent(ua: str) -> UserAgentInfo:
    """The proxy's parse_user_agent before ua-parser-rs, without its cache."""
    if not ua or len(ua) > MAX_UA_LENGTH or useragent._AUTOMATION.search(ua):
        return BOT
    return useragent.coarse_info(user_agents.parse(ua))  # the classification both paths share


# --- User-Agents ---------------------------------------------------------------------------------------

ANDROID_MODELS = (
    "SM-A515F", "SM-A525F", "SM-A135F", "SM-G991B", "SM-S911B", "SM-N986B", "SM-X200", "Redmi Note 9 Pro",
    "Redmi Note 11", "M2101K6G", "2201117TY", "23021RAAEG", "CPH2211", "CPH2387", "RMX3085", "RMX3630",
    "V2111", "V2207", "moto g(60)", "moto g stylus 5G", "motorola edge 30", "Pixel 6", "Pixel 7 Pro",
    "Pixel 8a", "ONEPLUS A6013", "CPH2449", "Nokia G21", "TECNO KI5q", "Infinix X6816", "itel S665L",
    "LM-K510", "HUAWEI VOG-L29", "ANE-LX1", "JNY-LX1", "2311DRK48G", "A142", "SO-51C", "SHG07", "KB2003",
)  # fmt: skip
_CHROME_FULL = re.compile(r"\b(Chrome|CriOS|Edg)/(\d+)\.0\.\d+\.\d+")
_ANDROID = re.compile(r"Android (\d+); [^)]+\)")
_IOS_BUILD = re.compile(r"Mobile/15E148")


def _variant(ua: str, rng: random.Random) -> str:
    """Another real-looking User-Agent of the same browser: the long tail that real traffic has."""
    ua = _CHROME_FULL.sub(lambda m: f"{m[1]}/{m[2]}.0.{rng.randint(4000, 7000)}.{rng.randint(0, 250)}", ua)
    if rng.random() < 0.7:
        model = rng.choice(ANDROID_MODELS)
        build = f" Build/{rng.choice('TSUR')}P1A.{rng.randint(220000, 240000)}.0{rng.randint(10, 99)}"
        ua = _ANDROID.sub(lambda m: f"Android {m[1]}; {model}{build if rng.random() < 0.5 else ''})", ua)
    ua = _IOS_BUILD.sub(
        lambda _: f"Mobile/{rng.randint(15, 22)}{rng.choice('ABCDEFGH')}{rng.randint(5, 400)}", ua
    )
    if rng.random() < 0.25:  # in-app browsers carry their own version
        v = f"{rng.randint(380, 470)}.0.0.{rng.randint(10, 60)}.{rng.randint(10, 120)}"
        ua += rng.choice(
            (
                f" [FBAN/FBIOS;FBAV/{v};FBBV/{rng.randint(10**8, 10**9)}]",
                f" [FB_IAB/FB4A;FBAV/{v};]",
                f" Instagram {v}",
            )
        )
    return ua


def make_universe(count: int, seed: int = SEED) -> list[str]:
    """``count`` distinct browser User-Agents, most popular first: throughput.py's mix, then variants."""
    available = sum(len(candidates) for _, candidates in _user_agent_families())
    head = make_user_agents(available)
    rng = random.Random(seed)
    out = dict.fromkeys(head[:count])
    while len(out) < count:
        out[_variant(rng.choice(head), rng)] = None
    return list(out)


def zipf_draws(distinct: int, s: float, count: int, seed: int = SEED) -> list[int]:
    weights = itertools.accumulate(1 / rank**s for rank in range(1, distinct + 1))
    return random.Random(seed).choices(range(distinct), cum_weights=list(weights), k=count)


# --- measuring -----------------------------------------------------------------------------------------


def _legacy_parse_uncached(ua: str) -> Any:
    user_agent_parser._PARSE_CACHE.clear()
    return user_agents.parse(ua)


def per_miss(uas: Sequence[str], rounds: int) -> dict[str, float]:
    """Median over rounds of the mean us per call; the candidates take turns within each round."""
    native = useragent._get_native()
    assert native is not None, "ua-parser-rs is not installed"
    hints = {ua: native.first_rules(ua) for ua in uas}
    new_uncached = parse_user_agent.__wrapped__

    def python_fallback(ua: str) -> UserAgentInfo:
        useragent._built[:] = [None]
        try:
            return new_uncached(ua)
        finally:
            useragent._built[:] = [native]

    candidates: dict[str, Callable[[str], object]] = {
        "user_agents.parse (naive collector)": _legacy_parse_uncached,
        "old parse_user_agent": old_parse_user_agent,
        "new parse_user_agent": new_uncached,
        "  of which _AUTOMATION in re": useragent._AUTOMATION.search,
        "  of which _AUTOMATION native": native.is_automation,
        "  of which locate rules native": native.first_rules,
        "  of which apply rules + classify": lambda ua: useragent._user_agents_view(ua, hints[ua]).is_tablet,
        "new, python fallback (no ua-parser-rs)": python_fallback,
    }
    timings: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            gc.collect()
            start = time.perf_counter_ns()
            for ua in uas:
                fn(ua)
            timings[name].append((time.perf_counter_ns() - start) / len(uas) / 1000)
    return {name: statistics.median(values) for name, values in timings.items()}


def naive_miss_rate(keys: Sequence[int]) -> float:
    """ua-parser's own cache policy (user_agent_parser._lookup): a dict cleared whenever it is full."""
    cache: set[int] = set()
    misses = 0
    for key in keys:
        if key not in cache:
            misses += 1
            if len(cache) >= user_agent_parser.MAX_CACHE_SIZE:
                cache.clear()
            cache.add(key)
    return misses / len(keys)


def lru_miss_rate(keys: Sequence[int], size: int) -> float:
    cached = lru_cache(maxsize=size)(int)
    for key in keys:
        cached(key)
    return cached.cache_info().misses / len(keys)


def timed_us(fn: Callable[[str], object], requests: Sequence[str]) -> float:
    gc.collect()
    start = time.perf_counter_ns()
    for ua in requests:
        fn(ua)
    return (time.perf_counter_ns() - start) / len(requests) / 1000


def bytes_per_entry(uas: Sequence[str]) -> float:
    parse_user_agent.cache_clear()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keys = [ua.encode().decode() for ua in uas]  # fresh strings, as each request brings its own
    for ua in keys:
        parse_user_agent(ua)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    parse_user_agent.cache_clear()
    return used / len(uas)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--distinct", type=int, default=5000, help="distinct User-Agents in the long tail")
    ap.add_argument("--requests", type=int, default=200_000, help="lookups in the long tail")
    ap.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent s of the long tail")
    ap.add_argument("--miss-sample", type=int, default=300, help="distinct User-Agents timed per miss")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of the per-miss timing (median)")
    ap.add_argument("--wide-distinct", type=int, default=100_000, help="distinct keys of the wider tail")
    ap.add_argument("--wide-zipf", type=float, default=1.0, help="Zipf exponent of the wider tail")
    args = ap.parse_args(argv)

    backend = useragent.parser_backend()
    universe = make_universe(args.distinct)
    print(f"python {sys.version.split()[0]}, parser backend: {backend}, new cache: {useragent.CACHE_SIZE}")

    sample = random.Random(SEED).sample(universe, min(args.miss_sample, len(universe)))
    print(
        f"\n1. cost per miss: {len(sample)} distinct browser User-Agents, caches bypassed, "
        f"median of {args.rounds} rounds"
    )
    costs = per_miss(sample, args.rounds)
    baseline = costs["user_agents.parse (naive collector)"]
    print(f"   {'':<40} {'us/call':>9}   {'user_agents.parse / this':>24}")
    for name, us in costs.items():
        ratio = "" if name.startswith(" ") else f"{baseline / us:.1f}x"
        print(f"   {name:<40} {us:9.1f}   {ratio:>24}")

    draws = zipf_draws(len(universe), args.zipf, args.requests)
    requests = [universe[i] for i in draws]
    print(
        f"\n2. long tail: {len(requests)} lookups, Zipf s={args.zipf} over {len(universe)} distinct "
        f"User-Agents ({len(set(draws))} seen; top 10 = {sum(d < 10 for d in draws) / len(draws):.0%} "
        f"of lookups, top 200 = {sum(d < 200 for d in draws) / len(draws):.0%})"
    )
    user_agent_parser._PARSE_CACHE.clear()
    naive_us = timed_us(user_agents.parse, requests)
    old_cached = lru_cache(maxsize=OLD_CACHE_SIZE)(old_parse_user_agent)
    old_us = timed_us(old_cached, requests)
    parse_user_agent.cache_clear()
    new_us = timed_us(parse_user_agent, requests)
    rows = [
        ("naive: user_agents.parse, 200-entry cache", naive_miss_rate(draws), naive_us),
        (f"old proxy: lru_cache({OLD_CACHE_SIZE})", old_cached.cache_info().misses / len(draws), old_us),
        (
            f"new proxy: lru_cache({useragent.CACHE_SIZE})",
            parse_user_agent.cache_info().misses / len(draws),
            new_us,
        ),
    ]
    print(f"   {'':<46} {'miss rate':>9}   {'us/lookup':>9}   {'naive / this':>12}")
    for name, miss, us in rows:
        print(f"   {name:<46} {miss:9.2%}   {us:9.2f}   {naive_us / us:11.1f}x")
    parse_user_agent.cache_clear()
    parse_user_agent(requests[0])
    hit_us = timed_us(parse_user_agent, [requests[0]] * 10_000)
    new_miss_us = costs["new parse_user_agent"]

    wide = zipf_draws(args.wide_distinct, args.wide_zipf, args.requests)
    print(
        f"\n3. LRU bound: miss rate, and mean us/lookup = hit {hit_us:.2f} + miss rate x {new_miss_us:.1f} "
        f"(new miss, above)\n   a: the tail above (s={args.zipf}, {len(universe)} distinct);  "
        f"b: a wider tail (s={args.wide_zipf}, {args.wide_distinct} distinct, {len(set(wide))} seen)"
    )
    for size in LRU_SIZES:
        a, b = lru_miss_rate(draws, size), lru_miss_rate(wide, size)
        mark = "  <- CACHE_SIZE" if size == useragent.CACHE_SIZE else ""
        print(
            f"   lru {size:>6}: a {a:7.2%} {hit_us + a * new_miss_us:6.2f} us   "
            f"b {b:7.2%} {hit_us + b * new_miss_us:6.2f} us{mark}"
        )
    entry = bytes_per_entry(universe[: min(len(universe), 5000)])
    print(
        f"   memory: ~{entry:.0f} bytes per cached entry (key and result), so "
        + ", ".join(f"{size} entries ~{size * entry / 2**20:.1f} MiB" for size in (8192, 16384, 32768))
        + " per worker"
    )


if __name__ == "__main__":
    main()
