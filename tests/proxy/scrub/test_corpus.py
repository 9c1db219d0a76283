"""The labelled corpus (corpus.py) against the Scrubber: every planted value is caught, every ordinary one
kept, and the known limits are exactly what is missed."""

from __future__ import annotations

import pytest

from proxy.scrub import DEFAULT_CLICK_ID_PARAMS, DEFAULT_PROP_KEY_DENYLIST, DEFAULT_QUERY_ALLOWLIST, Scrubber
from tests.proxy.scrub import corpus

S = Scrubber(DEFAULT_QUERY_ALLOWLIST, DEFAULT_PROP_KEY_DENYLIST, DEFAULT_CLICK_ID_PARAMS)
CASES = list(corpus.cases(limits=False))


def test_the_corpus_covers_every_kind_position_and_encoding() -> None:
    assert len(CASES) > 3000
    assert {c.where for c in CASES} == set(corpus.POSITIONS)
    assert {c.encoding for c in CASES} == set(corpus.ENCODINGS)
    assert {c.kind for c in CASES} == {p.kind for p in corpus.PLANTS}


@pytest.mark.parametrize("where", corpus.POSITIONS)
def test_every_planted_value_is_caught(where: str) -> None:
    missed = []
    for case in CASES:
        if case.where == where:
            stored = corpus.scrub_beacon(S, case.beacon())
            if corpus.leaked(case, stored):
                missed.append((case.id, stored))
    assert not missed, f"{len(missed)} missed, first: {missed[:3]}"


def test_the_oracle_sees_through_every_encoding() -> None:
    """Without scrubbing, every case's needle is found: a 'caught' above is not the oracle's blindness."""
    for case in CASES:
        raw = [str(v) for v in case.beacon().values()] + [
            k + " " + v for k, v in case.beacon().get("props", {}).items()
        ]
        assert corpus.leaked(case, raw), case.id


def test_known_limits_are_what_is_missed() -> None:
    rates = corpus.measure(S)
    assert all(c.limit for c in rates.missed), [c.id for c in rates.missed if not c.limit]
    missed_kinds = {c.kind for c in rates.missed}
    assert missed_kinds == {p.kind for p in corpus.KNOWN_LIMITS}
    assert rates.miss_rate < 0.02


@pytest.mark.parametrize(("where", "value"), corpus.NEGATIVES)
def test_ordinary_values_are_kept(where: str, value: str) -> None:
    assert corpus.negative_output(S, where, value) == value


@pytest.mark.parametrize(("where", "value"), corpus.KNOWN_FALSE_POSITIVES)
def test_known_false_positives_are_still_changed(where: str, value: str) -> None:
    assert corpus.negative_output(S, where, value) != value
