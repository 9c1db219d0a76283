"""The one scanner: applies every detector, in a fixed order, to a string and to its decoded layers.

Order (each detector sees what the ones before it left):

1. ``secrets.KNOWN_FORMATS``: JWTs, UUIDs, cloud and bot keys, credentials: exact formats first, before
   their parts look like an e-mail, a phone number or digits;
2. ``contact.EMAIL``, then ``contact.ENCODED_EMAIL``: before network addresses, so that
   ``jo@[203.0.113.7]`` is one address;
3. ``network.IP``;
4. ``idnumbers.IBAN``, ``idnumbers.CARD``, ``idnumbers.NATIONAL_ID``: checksummed numbers before phone
   numbers, whose shapes overlap; an IBAN first, as its digits can hold a valid card number;
5. ``contact.PHONE``;
6. ``secrets.OPAQUE``: whatever long digit, hex or random-looking run is left.

``redact`` repeats the passes while something changes (a removal can expose a neighbour), so its result
is stable under a second scrub. ``redact_layers`` also looks inside the decoded and folded layers
(``normalise.layers``): when something is found only there, the deepest layer with a finding is what is
redacted and returned. ``nothing_to_redact`` is the fast path: a few character tests that prove no
detector could change the string and there is nothing to decode or fold.
"""

from __future__ import annotations

import re

from proxy.scrub import contact, idnumbers, network, normalise, secrets
from proxy.scrub.detector import Detector

DETECTORS: tuple[Detector, ...] = (
    secrets.KNOWN_FORMATS,
    contact.EMAIL,
    contact.ENCODED_EMAIL,
    network.IP,
    idnumbers.IBAN,
    idnumbers.CARD,
    idnumbers.NATIONAL_ID,
    contact.PHONE,
    secrets.OPAQUE,
)

# Passes of the detectors over a string; more than one only when the previous pass found something.
_MAX_PASSES = 4


def redact(s: str) -> str:
    """Every detector's placeholder where it found something in ``s`` as it stands (no decoding)."""
    for _ in range(_MAX_PASSES):
        redacted = s
        for detector in DETECTORS:
            if detector.could_match(redacted):
                redacted = detector.redact(redacted)
        if redacted == s:
            break
        s = redacted
    return s


def redact_layers(s: str) -> tuple[str, bool]:
    """Redact ``s``, also looking inside its decoded and folded layers.

    Returns ``(text, decoded)``: when something is found in a layer, ``text`` is the deepest such layer,
    redacted, and ``decoded`` is True. Otherwise ``text`` is ``s`` redacted as it stands.
    """
    as_is = redact(s)
    if not (normalise.can_decode(s) or normalise.needs_folding(s)):
        return as_is, False
    for layer in reversed(normalise.layers(s)):  # deepest first: it shows what shallower layers show
        redacted = redact(layer)
        if redacted != layer:
            return redacted, True
    return as_is, False


# --- the fast path -------------------------------------------------------------------------------------

# Any ASCII digit, or a character that starts something: "@" an address, "%" "&" "\\" an encoding.
_SUSPECT_CHAR_RE = re.compile(r"[0-9@%&\\]")


def _char_classes() -> bytes:
    """A ``bytes.translate`` table: "S" for a digit, "@", an encoding's "%&\\", ":", "=" (credential
    pairs, IPv6) and brackets ("[at]"); "U" for an upper-case letter; "l" for the other characters of a
    run (lower-case letters, "+/_-"); " " for anything else. "lU" or "UU" is an upper-case letter inside
    a run."""
    table = bytearray(b" " * 256)
    for c in b"0123456789@%&\\:=[({<":
        table[c] = ord("S")
    for c in range(ord("A"), ord("Z") + 1):
        table[c] = ord("U")
    for c in b"abcdefghijklmnopqrstuvwxyz+/_-":
        table[c] = ord("l")
    return bytes(table)


_CHAR_CLASSES = _char_classes()
# An upper-case letter inside a run: camelCase, random tokens, base64 (of an address: see contact), keys.
_INNER_UPPER_RE = re.compile(r"[A-Za-z0-9+/_-][A-Z]")
_UPPER_AFTER_NON_LETTER_RE = re.compile(r"[0-9+/_-][A-Z]")
_DIGIT_RE = re.compile(r"[0-9]")
_SIX_DIGITS_RE = re.compile(r"[0-9](?:[^0-9]{0,3}[0-9]){5}")
_LETTER_DIGIT_RE = re.compile(r"[0-9](?:(?<=[A-Za-z][0-9])|(?=[A-Za-z]))")  # an ASCII digit next to a letter
_DASHED_QUAD_HINT_RE = re.compile(r"[0-9]-[0-9]{1,3}-[0-9]{1,3}-[0-9]")


def nothing_to_redact(s: str) -> bool:
    """True when ``redact_layers(s)`` is sure to be ``(s, False)``; False means "look closer".

    Each test rules out what some detector or decoding needs: a JWT starts with ``eyJ``; a UUID is 36
    characters holding ``-XXXX-XXXX-``; an address needs ``@`` (or a spelled-out or look-alike one, and
    base64 of one an upper-case letter inside a run); an IPv6 address two ``:``; an IPv4 address digits
    and three ``.``, ``0x``, a dashed quad or a 32-bit number; keys and random tokens an upper-case letter
    inside a run or a digit next to a letter; cards, IBANs, national ids and phone numbers six digits
    close together (or a digit next to a letter); long digit runs six digits; encodings ``%``, ``&`` or
    ``\\``; folding a suspicious non-ASCII character.
    """
    if s.isascii():
        if s.isalpha() and s.islower():  # lower-case letters only: nothing any detector looks for
            return True
        classes = s.encode("ascii").translate(_CHAR_CLASSES).decode("ascii")
        if "S" not in classes:
            # No digit, "@", encoding, ":", "=" or bracket: only a UUID of hex letters, an upper-case
            # letter inside a run (camelCase, random or base64 runs, keys) and a spelled-out address
            # are left to look for.
            if "lU" in classes or "UU" in classes:
                return False
            if len(s) >= 36 and "-" in s and secrets.UUID_HINT_RE.search(s) is not None:
                return False
            return "ot " not in s or " dot " not in s.lower() or " at " not in s.lower()
    elif normalise.needs_folding(s):
        return False
    if "eyJ" in s or (len(s) >= 36 and "-" in s and secrets.UUID_HINT_RE.search(s) is not None):
        return False
    if s.count(":") >= 2:
        return False
    if ("=" in s or ":" in s) and secrets.has_secret_pair(s):
        return False
    if _SUSPECT_CHAR_RE.search(s) is None:  # no digit, "@", "%", "&" or "\\"
        return not _has_inner_upper(s) and not normalise.has_obfuscation(s)
    if "@" in s or normalise.can_decode(s) or normalise.has_obfuscation(s):
        return False
    if _has_inner_upper(s) or _SIX_DIGITS_RE.search(s) is not None:
        return False
    if s.count(".") >= 3 and network.IPV4_RE.search(s) is not None:
        return False
    if "0x" in s or "0X" in s:
        return False
    if s.count("-") >= 3 and _DASHED_QUAD_HINT_RE.search(s) is not None:
        return False
    return len(s) < 9 or _LETTER_DIGIT_RE.search(s) is None


def _has_inner_upper(s: str) -> bool:
    """``_INNER_UPPER_RE.search(s)``, answered by ``str`` methods for lower-case and Title Case text."""
    if s.islower():  # no upper-case letter at all
        return False
    if s.istitle():  # every upper-case letter follows a character that is not a letter
        if "-" not in s and "_" not in s and "/" not in s and "+" not in s and _DIGIT_RE.search(s) is None:
            return False
        return _UPPER_AFTER_NON_LETTER_RE.search(s) is not None
    return _INNER_UPPER_RE.search(s) is not None
