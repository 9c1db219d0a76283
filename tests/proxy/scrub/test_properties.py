"""Property-based tests of the scrubber: generated personal data, in generated encodings and positions,
never survives; the fast path never skips a string the scanner would change; caches never change an answer.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from proxy.scrub import DEFAULT_CLICK_ID_PARAMS, DEFAULT_PROP_KEY_DENYLIST, DEFAULT_QUERY_ALLOWLIST, Scrubber
from proxy.scrub.scanner import nothing_to_redact, redact_layers
from tests.proxy.scrub import corpus
from tests.proxy.scrub.strategies import HOSTABLE, planted_cases

S = Scrubber(DEFAULT_QUERY_ALLOWLIST, DEFAULT_PROP_KEY_DENYLIST, DEFAULT_CLICK_ID_PARAMS)
SETTINGS = settings(
    max_examples=int(os.environ.get("SCRUB_EXAMPLES", "800")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@SETTINGS
@given(planted_cases())
def test_generated_pii_never_survives(case: corpus.Case) -> None:
    event(f"{case.kind} in {case.where}")
    stored = corpus.scrub_beacon(S, case.beacon())
    assert not corpus.leaked(case, stored), (case, stored)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted_cases(positions=("host", "referrer"), pii=HOSTABLE))
def test_generated_addresses_and_ids_in_host_names_never_survive(case: corpus.Case) -> None:
    event(f"{case.kind} in {case.where}")
    stored = corpus.scrub_beacon(S, case.beacon())
    assert not corpus.leaked(case, stored), (case, stored)


@SETTINGS
@given(planted_cases())
def test_a_second_scrub_changes_nothing(case: corpus.Case) -> None:
    beacon = case.beacon()
    once = S.url(beacon["url"]).url
    assert S.url(once).url == once
    for field in ("title", "name"):
        if field in beacon:
            text = S.text(beacon[field])
            assert S.text(text) == text


# Strings near every pattern and fast-path test: fragments of what detectors look for, glued at random.
_FRAGMENTS = [
    *["@", "%", "&", "\\", ":", "=", "[", "]", "(", ")", "{", "}", "<", ">", ".", "-", "_", "+", "/", ";"],
    *["#", "?", "'", '"', " "],
    *(
        "0",
        "1",
        "7",
        "12",
        "255",
        "0x",
        "eyJ",
        "at",
        "dot",
        "[at]",
        "(dot)",
        " at ",
        " dot ",
        "AKIA",
        "sk_live_",
    ),
    *("aB", "Zq", "QQ", "ab", "ghp_", "%40", "%25", "&#64;", "&amp;", "\\u0040", "\\x40", "=="),
    *("\u200b", "\u00ad", "\uff20", "\uff11", "\u0661", "\u3002", "\u00e9", "\u0416", "\U0001d7cf"),
    *("550e8400", "-e29b-", "41d4", "deadbeef", "2001:db8", "::", "fe80", "%eth0", "+44", "0151", "4111"),
]
near_misses = st.lists(st.sampled_from(_FRAGMENTS), max_size=14).map("".join) | st.text(max_size=40)


@settings(max_examples=2000, deadline=None, database=None)
@given(near_misses)
@example("Analytics Privacy Signup Api | Blog | Example Analytics")
@example("/blog/how-to-set-up-nginx")
def test_the_fast_path_only_skips_what_has_nothing_to_redact(s: str) -> None:
    if nothing_to_redact(s):
        assert redact_layers(s) == (s, False)


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(near_misses, min_size=1, max_size=6))
def test_cached_answers_equal_fresh_ones(strings: list[str]) -> None:
    warm = Scrubber(DEFAULT_QUERY_ALLOWLIST, DEFAULT_PROP_KEY_DENYLIST, DEFAULT_CLICK_ID_PARAMS)

    def answers(s: Scrubber, raw: str) -> list[object]:
        return [
            s.url("https://example.com/" + raw + "?utm_x=" + raw),
            s.referrer("https://" + raw),
            s.text(raw),
            s.props({raw: raw, "k": raw}),
        ]

    for raw in strings:
        answers(warm, raw)
    for raw in strings:
        cold = Scrubber(DEFAULT_QUERY_ALLOWLIST, DEFAULT_PROP_KEY_DENYLIST, DEFAULT_CLICK_ID_PARAMS)
        assert answers(warm, raw) == answers(cold, raw)
