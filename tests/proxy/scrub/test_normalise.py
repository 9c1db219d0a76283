"""proxy.scrub.normalise: the layers of encoding and the folding undone before detection."""

from __future__ import annotations

import pytest

from proxy.scrub.normalise import can_decode, decode_once, fold, layers, needs_folding, split_authority


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("jo\u200bhn\u00ad@exa\u2060mple.com", "john@example.com"),
        ("\uff4a\uff4f\uff20\uff45\uff58\uff0e\uff43\uff4f", "jo@ex.co"),
        ("jo\uff20example\u3002com", "jo@example.com"),
        ("\u0661\u0669\u0662.\u0661\u0666\u0668", "192.168"),
        ("\U0001d7cf\U0001d7d0", "12"),
        ("jo [at] example [dot] com", "jo@example.com"),
        ("jo(at)example(dot)com", "jo@example.com"),
        ("write jo at example dot com today", "write jo@example.com today"),
        ("Look at this", "Look at this"),
        ("Café", "Café"),
    ],
)
def test_fold(raw: str, expected: str) -> None:
    assert fold(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("jo%2540x.io", ["jo%40x.io", "jo@x.io"]),
        ("jo&amp;#64;x.io", ["jo&#64;x.io", "jo@x.io"]),
        ("jo\\u0040x.io", ["jo@x.io"]),
        ("jo\\x40x.io \\u{40}", ["jo@x.io @"]),
        ("%25%34%30", ["%40", "@"]),
        ("plain text", []),
        ("\\ud83d stays", []),
    ],
)
def test_layers(raw: str, expected: list[str]) -> None:
    assert layers(raw) == expected


def test_decode_once_and_hints() -> None:
    assert decode_once("a%20b &lt; c") == "a b < c"
    assert can_decode("50%") and can_decode("&#64;") and can_decode("\\u0040")
    assert not can_decode("Terms & Conditions") and not can_decode("C:\\path")
    assert needs_folding("x\u200by") and needs_folding("\uff11") and needs_folding("jo [at] x")
    assert not needs_folding("Привет, café") and not needs_folding("plain")


@pytest.mark.parametrize(
    ("netloc", "expected"),
    [
        ("Example.COM:0443", ("example.com", "443", False)),
        ("u:p@h", ("h", "", False)),
        ("[2001:db8::1]:8080", ("2001:db8::1", "8080", True)),
        ("[::1", None),
        ("h:99999", None),
        ("exa mple.com", None),
    ],
)
def test_split_authority(netloc: str, expected: tuple[str, str, bool] | None) -> None:
    assert split_authority(netloc) == expected
