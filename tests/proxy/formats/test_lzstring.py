from __future__ import annotations

import random

import lzstring  # the reference implementation from PyPI, as an oracle
import pytest

from proxy.formats.lzstring import LZStringError, decompress_from_base64


def test_agrees_with_the_reference_on_random_text() -> None:
    ref = lzstring.LZString()
    rnd = random.Random(7)
    alphabets = ["ab", 'abcdefgh {}":,', "".join(map(chr, range(32, 127))), "éàü€ab"]
    for _ in range(1500):
        text = "".join(rnd.choice(rnd.choice(alphabets)) for _ in range(rnd.randint(0, 300)))
        assert decompress_from_base64(ref.compressToBase64(text), 10**6) == text


def test_posthog_style_payload() -> None:
    doc = '[{"event":"$pageview","properties":{"token":"demo","$current_url":"https://example.com/"}}]'
    packed = lzstring.LZString().compressToBase64(doc)
    assert decompress_from_base64(packed, 10_000) == doc
    assert decompress_from_base64(packed.replace("+", " "), 10_000) == doc  # form-decoded '+'


def test_a_small_input_that_expands_hugely_is_refused() -> None:
    packed = lzstring.LZString().compressToBase64("a" * 1_000_000)
    assert len(packed) < 3000
    with pytest.raises(LZStringError) as err:
        decompress_from_base64(packed, 100_000)
    assert err.value.too_large


@pytest.mark.parametrize("bad", ["%%%", "////", "A"])
def test_garbage_is_an_error_not_a_crash(bad: str) -> None:
    with pytest.raises(LZStringError) as err:
        decompress_from_base64(bad, 1000)
    assert not err.value.too_large


def test_empty() -> None:
    assert decompress_from_base64("", 10) == ""
