"""Token buckets per key: bursts up to the rate, refilled over the minute, bounded memory."""

from __future__ import annotations

import pytest

from proxy.ratelimit import RateLimit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_up_to_the_rate_then_a_wait_that_refills_one() -> None:
    clock = Clock()
    limit = RateLimit(6, clock=clock)  # one token every 10 s
    assert [limit.acquire("a") for _ in range(6)] == [0] * 6
    assert limit.acquire("a") == 10
    clock.now += 4
    assert limit.acquire("a") == 6  # a refused try spends nothing
    clock.now += 6
    assert limit.acquire("a") == 0
    assert limit.acquire("a") == 10
    assert limit.acquire("b") == 0  # keys are independent


def test_the_bucket_refills_to_the_rate_and_no_further() -> None:
    clock = Clock()
    limit = RateLimit(3, clock=clock)
    for _ in range(3):
        limit.acquire("a")
    clock.now += 3600
    assert [limit.acquire("a") for _ in range(4)] == [0, 0, 0, 20]


def test_memory_is_bounded_and_forgetting_only_frees() -> None:
    clock = Clock()
    limit = RateLimit(1, max_keys=3, clock=clock)
    for key in "abcd":
        assert limit.acquire(key) == 0
    assert len(limit) == 3
    assert limit.acquire("a") == 0  # forgotten (least recently used): a fresh bucket
    assert limit.acquire("d") == 60


@pytest.mark.parametrize(("per_minute", "max_keys"), [(0, 10), (5, 0)])
def test_bad_arguments(per_minute: int, max_keys: int) -> None:
    with pytest.raises(ValueError):
        RateLimit(per_minute, max_keys=max_keys)
