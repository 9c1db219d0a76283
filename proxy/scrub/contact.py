"""Contact data: e-mail addresses (also base64-encoded) and phone numbers.

* ``EMAIL``: ``local@domain`` where the domain is a dotted name (``example.co.uk``), an IP literal
  (``jo@[203.0.113.7]``, ``jo@[IPv6:2001:db8::1]``) or a single local name starting with a letter
  (``jo@localhost``, ``admin@intranet``) -> ``[email]``. Encodings and look-alikes are undone by
  ``normalise`` before this runs.
* ``ENCODED_EMAIL``: a run of 12 or more base64 or base64url characters that decodes to UTF-8 text holding
  an address (``am9AZXhhbXBsZS5jb20=``, also a path segment of such a run) -> ``[email]``.
* ``PHONE``: candidates found by shape, each confirmed by ``phonenumbers`` (Google's libphonenumber
  metadata) -> ``[phone]``:

  - international: ``+`` or ``00``, then 7 to 15 digits, with spaces, dots, dashes, slashes or
    parentheses between them; kept when libphonenumber finds the country code and a possible length;
  - national, with the trunk prefix 0 (``020 7946 0958``, ``0151 12345678``, ``06 12 34 56 78``,
    ``07700900123``): kept when the number is valid in one of ``TRUNK_ZERO_REGIONS``;
  - North American (``(202) 555-0143``, ``202-555-0143``, ``202.555.0143``): valid in the US or Canada;
  - nine digits in groups of three or two (``612 345 678``, ``612 34 56 78``): valid in Spain, Poland or
    Portugal.

  A run of digits without a prefix or grouping (``4155550143``) is not taken for a phone number: it is as
  likely an order number.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable

import phonenumbers

from proxy.scrub.detector import EMAIL_PLACEHOLDER, PHONE_PLACEHOLDER, Detector

# The local part must start a run (look-behind), so each run is tried once; "++" never gives back.
EMAIL_RE = re.compile(
    r"(?<![\w.%+'-])[\w.%+'-]++@"
    r"(?:\[(?:IPv6:)?[0-9A-Fa-f:.]++\]|[\w-]++(?:\.[\w-]++)++|[^\W\d_][\w-]*+)"
)

# A candidate base64 run: 12+ characters of either alphabet, optional padding. Base64 of text holding an
# "@" always has an upper-case letter after its first character (the "@" byte encodes as "Q", as [EUk0]
# followed by [AB], or as a final "A", whatever its position), so runs without one are skipped.
_B64_RUN_RE = re.compile(r"(?<![A-Za-z0-9+/_=-])[A-Za-z0-9+/_-]{12,}+={0,2}")
_UPPER_AFTER_FIRST_RE = re.compile(r"(?<=.)[A-Z]", re.DOTALL)
_B64_MAX_RUN = 4096


def _decodes_to_email(run: str) -> bool:
    data = run.rstrip("=")
    if len(data) % 4 == 1:
        return False
    padded = data + "=" * (-len(data) % 4)
    for altchars in (b"+/", b"-_"):
        try:
            raw = base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
        if b"@" in raw:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if EMAIL_RE.search(text) is not None:
                return True
    return False


def _b64_repl(match: re.Match[str]) -> str:
    run = match.group(0)
    if len(run) > _B64_MAX_RUN or _UPPER_AFTER_FIRST_RE.search(run) is None:
        return run
    if _decodes_to_email(run):
        return EMAIL_PLACEHOLDER
    if "/" in run:  # a path: each segment may be a base64url run of its own
        pieces = run.split("/")
        if any(len(p) >= 12 and _decodes_to_email(p) for p in pieces):
            return "/".join(EMAIL_PLACEHOLDER if len(p) >= 12 and _decodes_to_email(p) else p for p in pieces)
    return run


def _email_could_match(s: str) -> bool:
    return "@" in s


def _email_redact(s: str) -> str:
    return EMAIL_RE.sub(EMAIL_PLACEHOLDER, s)


def _encoded_could_match(s: str) -> bool:
    return len(s) >= 12 and _UPPER_AFTER_FIRST_RE.search(s) is not None


def _encoded_redact(s: str) -> str:
    return _B64_RUN_RE.sub(_b64_repl, s)


EMAIL = Detector("email", _email_could_match, _email_redact)
ENCODED_EMAIL = Detector("email-base64", _encoded_could_match, _encoded_redact)


# --- phone numbers -------------------------------------------------------------------------------------

# Regions whose national numbers are written with a leading trunk 0 (or, in Italy, start with 0).
TRUNK_ZERO_REGIONS = ("GB", "DE", "FR", "IT", "NL", "BE", "AT", "CH", "SE", "IE", "AU", "NZ", "IN", "TR")
NANP_REGIONS = ("US", "CA")
NINE_DIGIT_REGIONS = ("ES", "PL", "PT")

_SEP = r"[ .\-/]"
_INTERNATIONAL_RE = re.compile(
    r"(?<![\w+])(?:\+|00)\s?\(?[1-9][0-9]{0,3}\)?(?:[ .\-/]?\(?[0-9]{1,6}\)?){1,7}(?![\w])"
)
_TRUNK_ZERO_RE = re.compile(
    rf"(?<![\w.+-])(?:\(0[0-9]{{1,5}}\)\s?[0-9]{{2,8}}|0[1-9][0-9]{{0,4}}){_SEP}?(?:[0-9]{{2,8}}(?:{_SEP}[0-9]{{2,8}}){{0,4}})(?![\w]|[.\-/][0-9])"
)
_NANP_RE = re.compile(
    r"(?<![\w.+-])(?:\(\s?[2-9][0-9]{2}\s?\)\s?|[2-9][0-9]{2}[ .\-])[2-9][0-9]{2}[ .\-][0-9]{4}"
    r"(?![\w]|[.\-/][0-9])"
)
_NINE_DIGIT_RE = re.compile(
    r"(?<![\w.+-])[5-9][0-9]{2}(?: [0-9]{3} [0-9]{3}| [0-9]{2} [0-9]{2} [0-9]{2})(?![\w]|[.\-/][0-9])"
)
_DATE_LIKE_RE = re.compile(r"[0-9]{1,4}[./-][0-9]{1,2}[./-][0-9]{1,4}")
_NON_DIGIT_RE = re.compile(r"[^0-9]")
_SIX_DIGITS_RE = re.compile(r"[0-9](?:[^0-9]{0,3}[0-9]){5}")


def _possible_international(digits: str) -> bool:
    try:
        number = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.is_possible_number(number))


def _valid_in(candidate: str, regions: tuple[str, ...]) -> bool:
    for region in regions:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number_for_region(number, region):
            return True
    return False


def _international_repl(match: re.Match[str]) -> str:
    whole = found = match.group(0)
    digits = _NON_DIGIT_RE.sub("", found)
    if found.startswith("00"):
        digits = digits[2:]
    # The run may have taken in digits that follow the number: try shorter ones, group by group.
    while len(digits) >= 7:
        if len(digits) <= 15 and _possible_international(digits):
            return PHONE_PLACEHOLDER + whole[len(found) :]
        cut = max(found.rfind(c) for c in " .-/(")
        if cut <= 2:
            break
        digits = digits[: len(digits) - len(_NON_DIGIT_RE.sub("", found[cut:]))]
        found = found[:cut].rstrip(" .-/(")
    return whole


def _regional_repl(regions: tuple[str, ...]) -> Callable[[re.Match[str]], str]:
    def repl(match: re.Match[str]) -> str:
        found = match.group(0)
        if _DATE_LIKE_RE.fullmatch(found):
            return found
        digits = _NON_DIGIT_RE.sub("", found)
        if not 7 <= len(digits) <= 13:
            return found
        return PHONE_PLACEHOLDER if _valid_in(found, regions) else found

    return repl


_trunk_zero_repl = _regional_repl(TRUNK_ZERO_REGIONS)
_nanp_repl = _regional_repl(NANP_REGIONS)
_nine_digit_repl = _regional_repl(NINE_DIGIT_REGIONS)


def _phone_could_match(s: str) -> bool:
    return _SIX_DIGITS_RE.search(s) is not None


def _phone_redact(s: str) -> str:
    if "+" in s or "00" in s:
        s = _INTERNATIONAL_RE.sub(_international_repl, s)
    if "0" in s:
        s = _TRUNK_ZERO_RE.sub(_trunk_zero_repl, s)
    s = _NANP_RE.sub(_nanp_repl, s)
    return _NINE_DIGIT_RE.sub(_nine_digit_repl, s)


PHONE = Detector("phone", _phone_could_match, _phone_redact)
