"""proxy.scrub.scanner: the detectors in order, over a string and its decoded layers, and the fast path."""

from __future__ import annotations

import pytest

from proxy.scrub import scanner


@pytest.mark.parametrize(
    ("raw", "expected", "decoded"),
    [
        ("mail jo@example.com", "mail [email]", False),
        ("jo%2540example.com", "[email]", True),
        ("jo&amp;#64;example.com", "[email]", True),
        ("\uff4a\uff4f\uff20example.com", "[email]", True),
        ("jo\u200b@example.com", "[email]", True),
        ("Save 50% today", "Save 50% today", False),
        ("IBAN FR80 6305 0617 5359 0001 0000 000", "IBAN [iban]", False),  # not read as a card first
        ("jo@[203.0.113.7]", "[email]", False),  # one address, not an address and an IP
        ("2001:db8::110.0.0.1::", "[ip][ip]::", False),  # a second pass finds what the first exposed
        ("550e8400-e29b-41d4-a716-446655440000", "[id]", False),  # not digits and hex runs
    ],
)
def test_redact_layers(raw: str, expected: str, decoded: bool) -> None:
    assert scanner.redact_layers(raw) == (expected, decoded)
    assert scanner.redact(expected) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Analytics Privacy Signup Api | Blog | Example Analytics",
        "/blog/how-to-set-up-nginx",
        "pro",
        "Terms & Conditions",
        "Привет, мир",
        "Page 2 of 10",
    ],
)
def test_the_fast_path_is_taken_for_ordinary_text(text: str) -> None:
    assert scanner.nothing_to_redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "ZkqLvXwRtYpMnBcDeFgHjK",  # letters only, but random
        "am9AZXhhbXBsZS5jb20=",
        "jo [at] example [dot] com",
        "deadbeef-dead-beef-dead-beefdeadbeef",
        "password=hunter",
        "AB 12 34 56 C",
        "ip-10-0-0-1",
    ],
)
def test_the_fast_path_is_not_taken_for_what_may_hide_something(text: str) -> None:
    assert not scanner.nothing_to_redact(text)
    assert scanner.redact_layers(text)[0] != text


def test_detector_names_are_unique() -> None:
    names = [d.name for d in scanner.DETECTORS]
    assert len(names) == len(set(names))
