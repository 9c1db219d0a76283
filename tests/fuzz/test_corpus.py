"""The fuzz smoke run inside `make test`: every harness replays its whole corpus, then a few hundred
deterministic mutations of it (bit flips, cut, repeated and spliced bytes, interesting values). The
coverage-guided search itself is `make fuzz` (atheris, not needed here)."""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable
from pathlib import Path

import pytest

CORPUS = Path(__file__).with_name("corpus")
TARGETS = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
MUTATIONS = 300
INTERESTING = [b"\x00", b"\xff", b"%", b"%2F", b"\\", b"..", b";", b'"', b"{", b"[", b"\xe2\x82\xac", b"\n\n"]


def harness(target: str) -> Callable[[bytes], None]:
    check: Callable[[bytes], None] = importlib.import_module(f"tests.fuzz.fuzz_{target}").check
    return check


def mutate(rng: random.Random, data: bytes, other: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        at = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(at, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            del b[at : at + rng.randint(1, 16)]
        elif op == 2:
            b[at:at] = rng.choice(INTERESTING)
        elif op == 3 and b:
            start = rng.randrange(len(b))
            b[at:at] = b[start : start + rng.randint(1, 32)] * rng.randint(1, 3)
        elif op == 4:
            b[at:] = other[rng.randrange(len(other) + 1) :]  # splice with another seed
        else:
            b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(b)


def test_every_target_has_a_harness_and_seeds() -> None:
    harnesses = {p.stem.removeprefix("fuzz_") for p in Path(__file__).parent.glob("fuzz_*.py")}
    assert harnesses == set(TARGETS)
    assert all(any((CORPUS / t).iterdir()) for t in TARGETS)


@pytest.mark.parametrize("target", TARGETS)
def test_corpus_replay_and_mutations(target: str) -> None:
    check = harness(target)
    corpus = [p.read_bytes() for p in sorted((CORPUS / target).iterdir())]
    for data in corpus:
        check(data)
    rng = random.Random(f"fuzz-smoke-{target}")
    for _ in range(MUTATIONS):
        check(mutate(rng, rng.choice(corpus), rng.choice(corpus)))
