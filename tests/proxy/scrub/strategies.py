"""Hypothesis strategies: personal data and secrets of every kind the scrubber promises to catch, written
in generated encodings, planted in generated positions of a beacon with generated harmless context.

``planted_cases()`` draws a ``corpus.Case`` (value, encoding, position, needles), so the property tests
and the corpus share one oracle (``corpus.leaked``). Values are generated valid (check digits computed,
phone numbers confirmed valid for their region), never taken from a list.
"""

from __future__ import annotations

import base64
import string
from typing import Any

import phonenumbers
from hypothesis import assume
from hypothesis import strategies as st
from stdnum import iban as stdnum_iban
from stdnum import luhn
from stdnum.es import dni

from tests.proxy.scrub import corpus

LOWER = "abcdefghijklmnoprstuv"  # context uses only "qwxyz" and spaces, so a needle cannot come from it
CONTEXT = st.text(alphabet="qwxyz ", max_size=12)


@st.composite
def emails(draw: st.DrawFn) -> tuple[str, str, tuple[str, ...]]:
    local = draw(st.text(alphabet=LOWER, min_size=4, max_size=10))
    local += draw(st.sampled_from(["", ".", "_", "+", "-"])) + draw(
        st.text(alphabet=LOWER + "0123456789", max_size=6)
    )
    local = local.rstrip(".")
    domain = draw(
        st.one_of(
            st.builds(
                lambda labels, tld: ".".join([*labels, tld]),
                st.lists(
                    st.text(alphabet=LOWER + "0123456789-", min_size=2, max_size=10), min_size=1, max_size=3
                ),
                st.sampled_from(["com", "org", "de", "co.uk", "io", "example"]),
            ),
            st.builds(lambda ip: f"[{ip}]", st.ip_addresses(v=4).map(str)),
            st.sampled_from(["localhost", "intranet", "mailhost"]),
        )
    )
    assume(not domain.startswith("-") and "-." not in domain and ".-" not in domain)
    return "email", f"{local}@{domain}", (local,) if len(local) >= 6 else ()


@st.composite
def ipv4s(draw: st.DrawFn) -> tuple[str, str, tuple[str, ...]]:
    ip = draw(st.ip_addresses(v=4))
    octets = [int(o) for o in str(ip).split(".")]
    form = draw(st.sampled_from(["dotted", "hex32", "dashed-host", "mixed"]))
    if form == "dotted":
        return "ipv4", str(ip), ()
    if form == "hex32":
        return "ipv4", f"0x{int(ip):08X}", ()
    if form == "dashed-host":
        return "ipv4", "-".join(map(str, octets)) + ".nip.io", ("-".join(map(str, octets)),)
    return "ipv4", ".".join(f"0x{o:x}" if i % 2 else str(o) for i, o in enumerate(octets)), ()


@st.composite
def ipv6s(draw: st.DrawFn) -> tuple[str, str, tuple[str, ...]]:
    groups = draw(st.lists(st.integers(1, 0xFFFF), min_size=8, max_size=8))
    groups[0] = 0x2001
    full = ":".join(f"{g:x}" for g in groups)
    import ipaddress

    text = draw(st.sampled_from([full, ipaddress.IPv6Address(full).compressed]))
    zone = draw(st.sampled_from(["", "%eth0", "%25en1"]))
    return "ipv6", text + zone, (":".join(f"{g:x}" for g in groups[-2:]),)


def _luhn_complete(prefix: str, length: int, body: str) -> str:
    partial = (prefix + body)[: length - 1]
    return partial + luhn.calc_check_digit(partial)


_CARD_PREFIXES = [("4", 16), ("4", 13), ("51", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16)]
_CARD_PREFIXES += [("65", 16), ("3530", 16), ("36", 14), ("62", 16)]


@st.composite
def cards(draw: st.DrawFn) -> tuple[str, str, tuple[str, ...]]:
    prefix, length = draw(st.sampled_from(_CARD_PREFIXES))
    digits = _luhn_complete(prefix, length, draw(st.text(alphabet="0123456789", min_size=18, max_size=18)))
    sep = draw(st.sampled_from(["", " ", "-"]))
    written = sep.join(digits[i : i + 4] for i in range(0, len(digits), 4)) if sep else digits
    return "card", written, (digits,)


def _digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


def _letters(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="ABCDEFGHIJ", min_size=n, max_size=n)


# Country -> its BBAN format: DE 18 digits; GB 4 letters, 14 digits; NL 4 letters, 10 digits; FR 23 digits.
_BBANS = {
    "DE": _digits(18),
    "GB": st.builds(str.__add__, _letters(4), _digits(14)),
    "NL": st.builds(str.__add__, _letters(4), _digits(10)),
    "FR": _digits(23),
}


@st.composite
def ibans(draw: st.DrawFn) -> tuple[str, str, tuple[str, ...]]:
    country = draw(st.sampled_from(sorted(_BBANS)))
    bban = draw(_BBANS[country])
    number = country + stdnum_iban.calc_check_digits(country + "00" + bban) + bban
    assume(stdnum_iban.is_valid(number))
    grouped = draw(st.booleans())
    written = " ".join(number[i : i + 4] for i in range(0, len(number), 4)) if grouped else number
    return "iban", written, (bban[-10:],)


# (region, national number shapes): numbers are drawn and kept only when libphonenumber calls them valid.
_PHONE_SHAPES = {
    "GB": ["20{0}{1}", "7700{1}"],
    "DE": ["30{0}{1}", "151{1}{0}"],
    "FR": ["6{0}{1}", "1{0}{1}"],
    "US": ["415{0}{1}", "212{0}{1}"],
    "ES": ["6{0}{1}"],
}


@st.composite
def phones(draw: st.DrawFn) -> tuple[str, str, tuple[str, ...]]:
    region = draw(st.sampled_from(sorted(_PHONE_SHAPES)))
    shape = draw(st.sampled_from(_PHONE_SHAPES[region]))
    national = shape.format(
        draw(st.text(alphabet="23456789", min_size=4, max_size=4)),
        draw(st.text(alphabet="0123456789", min_size=4, max_size=4)),
    )
    number = phonenumbers.parse(national, region)
    assume(phonenumbers.is_valid_number(number))
    fmt = draw(st.sampled_from(["intl", "e164", "national"]))
    if fmt == "intl":
        written = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    elif fmt == "e164":
        written = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    else:
        written = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return "phone", written, (str(number.national_number),)


def _cpf_complete(digits: str) -> str:
    """Nine digits with the two CPF check digits appended (weights 10..2, then 11..2; mod 11)."""
    for _ in range(2):
        total = sum(int(d) * w for d, w in zip(digits, range(len(digits) + 1, 1, -1), strict=True))
        digits += str(total * 10 % 11 % 10)
    return digits


@st.composite
def national_ids(draw: st.DrawFn) -> tuple[str, str, tuple[str, ...]]:
    kind = draw(st.sampled_from(["ssn", "dni", "cpf", "nino"]))
    if kind == "ssn":
        area = draw(st.integers(1, 899).filter(lambda a: a != 666))
        number = f"{area:03d}-{draw(st.integers(1, 99)):02d}-{draw(st.integers(1, 9999)):04d}"
        return "ssn", number, (number.replace("-", ""),)
    if kind == "dni":
        digits = draw(st.text(alphabet="0123456789", min_size=8, max_size=8))
        return "dni", digits + dni.calc_check_digit(digits), (digits,)
    if kind == "cpf":
        digits = draw(st.text(alphabet="0123456789", min_size=9, max_size=9))
        assume(len(set(digits)) > 1)
        full = _cpf_complete(digits)
        return "cpf", f"{full[:3]}.{full[3:6]}.{full[6:9]}-{full[9:]}", (full,)
    first = draw(st.sampled_from("ABCEHJKLMPRSWXY"))
    second = draw(st.sampled_from("ABCEHJKLMPRSTWXY"))
    assume(first + second not in {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})
    digits = draw(st.text(alphabet="0123456789", min_size=6, max_size=6))
    return (
        "nino",
        f"{first}{second} {digits[:2]} {digits[2:4]} {digits[4:]} {draw(st.sampled_from('ABCD'))}",
        (digits,),
    )


@st.composite
def secrets(draw: st.DrawFn) -> tuple[str, str, tuple[str, ...]]:
    kind = draw(st.sampled_from(["jwt", "hex", "aws", "token", "uuid", "digits"]))
    if kind == "jwt":
        header = base64.urlsafe_b64encode(b'{"alg":"HS256"}').decode().rstrip("=")
        body = draw(st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=10, max_size=40))
        sig = draw(st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=20, max_size=43))
        return "jwt", f"{header}.{body}.{sig}", (sig[-16:],) if len(sig) >= 16 else ()
    if kind == "hex":
        token = draw(st.text(alphabet="0123456789abcdef", min_size=16, max_size=64))
        assume(any(c.isdigit() for c in token) and any(c.isalpha() for c in token))
        return "hex", token, ()
    if kind == "aws":
        body = draw(st.text(alphabet=string.ascii_uppercase + string.digits, min_size=16, max_size=16))
        return "aws", "AKIA" + body, ()
    if kind == "token":
        # A letter and a digit among the first characters, drawn so (not filtered): lists of many cases
        # would otherwise be thrown away too often.
        head = draw(st.sampled_from(string.ascii_letters)) + draw(st.sampled_from(string.digits))
        if draw(st.booleans()):
            head = head[::-1]
        rest = draw(st.text(alphabet=string.ascii_letters + string.digits, min_size=22, max_size=46))
        return "token", head + rest, ()
    if kind == "uuid":
        u = draw(st.uuids())
        return "uuid", str(u), (str(u).split("-")[0],)
    digits = draw(st.text(alphabet="0123456789", min_size=20, max_size=30))
    return "digits", digits, ()


PII = st.one_of(emails(), ipv4s(), ipv6s(), cards(), ibans(), phones(), national_ids(), secrets())
# What can stand in a host name.
HOSTABLE = st.one_of(ipv4s(), secrets().filter(lambda p: p[0] in ("hex", "digits", "uuid")))

_ENCODINGS = {
    "email": [*corpus.KIND_ENCODINGS["email"]],
    "digits": [*corpus.KIND_ENCODINGS["digits"]],
    "other": [*corpus.KIND_ENCODINGS["other"]],
}
_DIGIT_KINDS = {"ipv4", "card", "iban", "phone", "ssn", "dni", "cpf", "nino", "digits"}


@st.composite
def planted_cases(
    draw: st.DrawFn, positions: tuple[str, ...] = corpus.POSITIONS, pii: st.SearchStrategy[Any] = PII
) -> corpus.Case:
    kind, value, extra = draw(pii)
    family = "email" if kind == "email" else "digits" if kind in _DIGIT_KINDS else "other"
    # Host names hold only what can stand in one, as it is: IP addresses in host form, hex or digit runs,
    # UUIDs. Property keys are at most 64 characters.
    hostable = kind in ("ipv4", "hex", "digits", "uuid") and all(c.isalnum() or c in "-." for c in value)
    allowed = [p for p in positions if hostable or p not in ("host", "referrer")]
    assume(allowed)
    where = draw(st.sampled_from(allowed))
    encoding = "plain" if where in ("host", "referrer") else draw(st.sampled_from(_ENCODINGS[family]))
    planted = corpus.ENCODINGS[encoding](value)
    if where == "prop_key" and len(planted) > 64:
        where = "prop_value"
    prefix, suffix = draw(CONTEXT), draw(CONTEXT)
    if where in ("title", "name", "prop_value"):
        planted = f"{prefix} {planted} {suffix}".strip()
    digits = "".join(c for c in value if c.isdigit())
    needles = (value, *extra, *((digits,) if kind in _DIGIT_KINDS and len(digits) >= 6 else ()))
    return corpus.Case(kind, value, encoding, where, planted, needles)
