"""Token-bucket rate limits, per key, in this process's memory.

A key is never an identifier or a full IP address: callers key by a truncated IP prefix (what is stored
anyway) or a site id. Memory is bounded: past ``max_keys`` keys the least recently used bucket is
forgotten, which can only give that key a fresh bucket, never block anyone for longer.

Per process: with ``serve --workers N`` the primary process applies the limits for every worker (they
forward the requests that need them, see proxy/worker.py); several proxies behind one balancer each
apply their own.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["RateLimit"]


class RateLimit:
    """At most ``per_minute`` acquisitions per key per minute on average, in bursts of up to that many."""

    __slots__ = ("_buckets", "_capacity", "_clock", "_max_keys", "_rate")

    def __init__(
        self, per_minute: int, *, max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if per_minute < 1:
            raise ValueError(f"per_minute must be at least 1, got {per_minute}")
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys}")
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0  # tokens per second
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def acquire(self, key: str) -> int:
        """0 if ``key`` may go ahead now (and one token is spent), else the whole seconds to wait."""
        now = self._clock()
        buckets = self._buckets
        state = buckets.get(key)
        if state is None:
            tokens = self._capacity
            if len(buckets) >= self._max_keys:
                buckets.popitem(last=False)
        else:
            tokens = min(self._capacity, state[0] + (now - state[1]) * self._rate)
            buckets.move_to_end(key)
        if tokens >= 1.0:
            buckets[key] = (tokens - 1.0, now)
            return 0
        buckets[key] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self._rate))

    def __len__(self) -> int:
        return len(self._buckets)
