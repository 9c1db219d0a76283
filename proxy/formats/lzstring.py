"""LZ-String's ``decompressFromBase64``, the ``lz64`` form older PostHog clients send, with an output cap.

LZ-String (pieroxy, MIT) is a small LZW variant over UTF-16 code units; its base64 form packs 6 bits per
character, most significant bit first. Written from the format's description: the reference
implementations have no output limit, and a few kilobytes of input can describe megabytes of output.
The dictionary holds at most one entry per input symbol, each one character longer than an output
piece, so memory stays within the output cap plus the input size.
"""

from __future__ import annotations

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_VALUE = {c: i for i, c in enumerate(_ALPHABET)}


class LZStringError(ValueError):
    """Not LZ-String base64, or it expands past the limit (``too_large``)."""

    def __init__(self, message: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


# Each symbol's 6 bits, most significant first; "=" (padding) reads as zeros, as in the reference.
_SIX_BITS = [format(i & 63, "06b") for i in range(len(_ALPHABET))]


class _Bits:
    """The input as one string of '0'/'1', read n bits at a time: a code's first bit read is its least
    significant. Slicing the string is several times faster than a Python loop per bit."""

    __slots__ = ("bits", "pos")

    def __init__(self, text: str) -> None:
        try:
            self.bits = "".join([_SIX_BITS[_VALUE[c]] for c in text])
        except KeyError:
            raise LZStringError("not base64") from None
        self.pos = 0

    def read(self, n: int) -> int:
        chunk = self.bits[self.pos : self.pos + n]
        if len(chunk) < n:
            raise LZStringError("truncated")
        self.pos += n
        return int(chunk[::-1], 2)


def decompress_from_base64(text: str, max_chars: int) -> str:
    """The decompressed string; :class:`LZStringError` if ``text`` is not LZ-String base64 or the result
    would exceed ``max_chars`` UTF-16 code units."""
    text = text.strip().replace(" ", "+")  # '+' becomes ' ' when a form value is decoded carelessly
    if not text:
        return ""
    bits = _Bits(text)
    entries: list[str] = ["", "", ""]  # codes 0, 1 and 2 are markers: 8-bit, 16-bit literal, end
    num_bits, enlarge_in = 3, 4
    first = bits.read(2)
    if first == 2:
        return ""
    if first > 2:
        raise LZStringError("bad start")
    w = chr(bits.read(8 if first == 0 else 16))
    entries.append(w)
    out, size = [w], 1
    while True:
        code = bits.read(num_bits)
        if code == 2:
            break
        if code < 2:
            entries.append(chr(bits.read(8 if code == 0 else 16)))
            code = len(entries) - 1
            enlarge_in -= 1
            if enlarge_in == 0:
                enlarge_in, num_bits = 1 << num_bits, num_bits + 1
        if code < len(entries):
            entry = entries[code]
        elif code == len(entries):
            entry = w + w[0]
        else:
            raise LZStringError("bad code")
        size += len(entry)
        if size > max_chars:
            raise LZStringError(f"expands past {max_chars} characters", too_large=True)
        out.append(entry)
        entries.append(w + entry[0])
        enlarge_in -= 1
        w = entry
        if enlarge_in == 0:
            enlarge_in, num_bits = 1 << num_bits, num_bits + 1
    joined = "".join(out)
    try:  # the code units may hold surrogate pairs: make them characters
        return joined.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    except UnicodeError:
        raise LZStringError("not valid UTF-16") from None
