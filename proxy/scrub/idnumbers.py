"""Payment and identity numbers: card numbers, IBANs and national identity numbers.

Each is found by its shape and kept only when its check digits hold, so that order numbers, invoice
numbers and other runs of digits survive (about one random number in ten passes a Luhn check, which is
why a card number also needs a known issuer prefix and a length that issuer uses):

* ``CARD``: 12 to 19 digits, optionally in groups separated by single spaces or dashes, with the issuer
  prefix and length of Visa, Mastercard, American Express, Discover, Diners, JCB, UnionPay, Maestro, Mir
  or RuPay, and a valid Luhn check digit -> ``[card]``. (Luhn is computed here, in a few lines: a
  candidate is tried at up to eight lengths per digit group, and this way that stays cheap.)
* ``IBAN``: two letters, two check digits and 10 to 30 letters or digits, optionally in groups, valid for
  its country's length and format and the ISO 7064 mod-97 check (``python-stdnum``) -> ``[iban]``.
* ``NATIONAL_ID``: the numbers below in their usual written form, each validated by ``python-stdnum``
  (check digits, and dates of birth where the number holds one) -> ``[national-id]``.
  US SSN (``536-22-1234``; not as 9 bare digits), UK National Insurance number (prefix rules only: it has
  no check digit), German tax id (Steuer-ID), French NIR, Spanish DNI and NIE, Italian codice fiscale,
  Swedish personnummer, Danish CPR, Finnish HETU, Polish PESEL, Brazilian CPF, Indian Aadhaar (grouped
  ``2341 2341 2346`` only), Chinese resident id, Canadian SIN (grouped), Belgian national number and UK
  NHS number (grouped ``943 476 5919``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from stdnum import iban as stdnum_iban
from stdnum.be import nn as be_nn
from stdnum.br import cpf as br_cpf
from stdnum.ca import sin as ca_sin
from stdnum.cn import ric as cn_ric
from stdnum.de import idnr as de_idnr
from stdnum.dk import cpr as dk_cpr
from stdnum.es import dni as es_dni
from stdnum.es import nie as es_nie
from stdnum.fi import hetu as fi_hetu
from stdnum.fr import nir as fr_nir
from stdnum.gb import nhs as gb_nhs
from stdnum.in_ import aadhaar as in_aadhaar
from stdnum.it import codicefiscale as it_cf
from stdnum.pl import pesel as pl_pesel
from stdnum.se import personnummer as se_personnummer
from stdnum.us import ssn as us_ssn

from proxy.scrub.detector import CARD_PLACEHOLDER, IBAN_PLACEHOLDER, NATIONAL_ID_PLACEHOLDER, Detector

_SIX_DIGITS_RE = re.compile(r"[0-9](?:[^0-9]{0,3}[0-9]){5}")
_DIGIT_GROUP_RE = re.compile(r"[0-9]+")
_NON_DIGIT_RE = re.compile(r"[^0-9]")

# --- cards ---------------------------------------------------------------------------------------------

_CARD_CANDIDATE_RE = re.compile(r"(?<![0-9A-Za-z])[0-9](?:[ -]?[0-9]){11,40}+(?![0-9A-Za-z])")


_ANY_LENGTH: tuple[int, ...] = ()


def _issuer_lengths(d: str) -> tuple[int, ...]:
    """The lengths card numbers starting with ``d`` (six digits or more) have, by issuer; () if none."""
    p2, p3, p4 = int(d[:2]), int(d[:3]), int(d[:4])
    if d[0] == "4":  # Visa
        return (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:  # Mastercard
        return (16,)
    if p2 in (34, 37):  # American Express
        return (15,)
    if 2200 <= p4 <= 2204:  # Mir
        return (16, 17, 18, 19)
    if 300 <= p3 <= 305 or p2 in (36, 38, 39):  # Diners Club
        return (14, 15, 16, 17, 18, 19)
    if 3528 <= p4 <= 3589:  # JCB
        return (16, 17, 18, 19)
    if p4 == 6011 or 644 <= p3 <= 649 or p2 == 65 or p2 == 62 or p2 == 81:  # Discover, UnionPay
        return (16, 17, 18, 19)
    if p2 in (50, 56, 57, 58, 60) or p3 == 508 or d[0] == "6":  # Maestro, RuPay
        return (12, 13, 14, 15, 16, 17, 18, 19)
    return _ANY_LENGTH


def _luhn_valid(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        n = ord(c) - 48
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def is_card_number(digits: str) -> bool:
    """12 to 19 digits with an issuer's prefix and a length that issuer uses, and a valid Luhn digit."""
    return 12 <= len(digits) <= 19 and len(digits) in _issuer_lengths(digits) and _luhn_valid(digits)


def _card_repl(match: re.Match[str]) -> str:
    found = match.group(0)
    groups = list(_DIGIT_GROUP_RE.finditer(found))
    digits = _NON_DIGIT_RE.sub("", found)
    starts = [0]  # starts[i]: digits in the groups before group i
    for g in groups:
        starts.append(starts[-1] + g.end() - g.start())
    # Every run of whole groups with a length the issuer of its first digits uses, longest first from
    # each group (the candidate may have taken in an order number before or a year after the number).
    for first in range(len(groups)):
        lengths = _issuer_lengths(digits[starts[first] : starts[first] + 6])
        if not lengths:
            continue
        for last in range(len(groups) - 1, first - 1, -1):
            n = starts[last + 1] - starts[first]
            if n < 12:
                break
            if n in lengths and _luhn_valid(digits[starts[first] : starts[last + 1]]):
                start, end = groups[first].start(), groups[last].end()
                return found[:start] + CARD_PLACEHOLDER + found[end:]
    return found


def _card_could_match(s: str) -> bool:
    return len(s) >= 12 and _SIX_DIGITS_RE.search(s) is not None


def _card_redact(s: str) -> str:
    return _CARD_CANDIDATE_RE.sub(_card_repl, s)


CARD = Detector("card", _card_could_match, _card_redact)

# --- IBANs ---------------------------------------------------------------------------------------------

_IBAN_CANDIDATE_RE = re.compile(r"(?<![0-9A-Za-z])[A-Za-z]{2}[0-9]{2}(?:[ -]?[0-9A-Za-z]){10,34}+")
_IBAN_HINT_RE = re.compile(r"[A-Za-z]{2}[0-9]{2}")


def _mod97(compact: str) -> bool:
    rearranged = compact[4:] + compact[:4]
    try:
        return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1
    except ValueError:
        return False


def _iban_repl(match: re.Match[str]) -> str:
    found = match.group(0)
    positions = [i for i, c in enumerate(found) if c.isalnum()]
    compact = "".join(found[i] for i in positions).upper()
    # The run may go on into the words after the number: try it shorter, character by character.
    for length in range(len(compact), 13, -1):
        candidate = compact[:length]
        if _mod97(candidate) and stdnum_iban.is_valid(candidate):
            end = positions[length - 1] + 1
            return IBAN_PLACEHOLDER + found[end:]
    return found


def _iban_could_match(s: str) -> bool:
    return len(s) >= 14 and _IBAN_HINT_RE.search(s) is not None


def _iban_redact(s: str) -> str:
    return _IBAN_CANDIDATE_RE.sub(_iban_repl, s)


IBAN = Detector("iban", _iban_could_match, _iban_redact)

# --- national identity numbers -------------------------------------------------------------------------

_B = r"(?<![0-9A-Za-z])"  # a number starts and ends at a word boundary
_E = r"(?![0-9A-Za-z])"
_NINO_BAD_PREFIXES = frozenset({"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"})


def _nino(number: str) -> bool:
    return number.replace(" ", "")[:2].upper() not in _NINO_BAD_PREFIXES


def _any_of(*validators: Callable[[str], bool]) -> Callable[[str], bool]:
    return lambda number: any(v(number) for v in validators)


def _upper(validator: Callable[[str], bool]) -> Callable[[str], bool]:
    return lambda number: validator(number.upper())


# (shape, validator): the shape finds candidates, the validator confirms them.
_NATIONAL_IDS: tuple[tuple[re.Pattern[str], Callable[[str], bool]], ...] = (
    (re.compile(_B + r"[0-9]{3}([- ])[0-9]{2}\1[0-9]{4}" + _E), us_ssn.is_valid),
    (
        re.compile(
            _B + r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]" + _E,
            re.IGNORECASE,
        ),
        _nino,
    ),
    # Steuer-ID, PESEL and CPF are all 11 digits (the Steuer-ID often written 2-3-3-3).
    (
        re.compile(_B + r"[0-9]{2} ?[0-9]{3} ?[0-9]{3} ?[0-9]{3}" + _E),
        _any_of(de_idnr.is_valid, pl_pesel.is_valid, br_cpf.is_valid),
    ),
    (re.compile(_B + r"[0-9]{3}\.[0-9]{3}\.[0-9]{3}-[0-9]{2}" + _E), br_cpf.is_valid),
    (
        re.compile(_B + r"[12] ?[0-9]{2} ?[0-9]{2} ?(?:[0-9]{2}|2[ABab]) ?[0-9]{3} ?[0-9]{3} ?[0-9]{2}" + _E),
        fr_nir.is_valid,
    ),
    (re.compile(_B + r"[0-9]{8}-?[A-Za-z]" + _E), _upper(es_dni.is_valid)),
    (re.compile(_B + r"[XYZxyz]-?[0-9]{7}-?[A-Za-z]" + _E), _upper(es_nie.is_valid)),
    (
        re.compile(
            _B + r"[A-Z]{6}[0-9LMNPQRSTUV]{2}[A-EHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]" + _E,
            re.IGNORECASE,
        ),
        _upper(it_cf.is_valid),
    ),
    (
        re.compile(_B + r"(?:[0-9]{2})?[0-9]{6}[-+][0-9]{4}" + _E),
        _any_of(se_personnummer.is_valid, dk_cpr.is_valid),
    ),
    (re.compile(_B + r"[0-9]{6}[-+A-FU-Y][0-9]{3}[0-9A-Y]" + _E), fi_hetu.is_valid),
    (re.compile(_B + r"[0-9]{17}[0-9Xx]" + _E), _upper(cn_ric.is_valid)),
    (re.compile(_B + r"[2-9][0-9]{3} [0-9]{4} [0-9]{4}" + _E), in_aadhaar.is_valid),
    (re.compile(_B + r"[0-9]{3}([- ])[0-9]{3}\1[0-9]{3}" + _E), ca_sin.is_valid),
    (re.compile(_B + r"[0-9]{2}\.[0-9]{2}\.[0-9]{2}-[0-9]{3}\.[0-9]{2}" + _E), be_nn.is_valid),
    (re.compile(_B + r"[0-9]{3} [0-9]{3} [0-9]{4}" + _E), gb_nhs.is_valid),
)


def _national_repl(validator: Callable[[str], bool]) -> Callable[[re.Match[str]], str]:
    def repl(match: re.Match[str]) -> str:
        found = match.group(0)
        try:
            valid = validator(found)
        except Exception:  # a validator that chokes on a shape it does not expect is a "no"
            valid = False
        return NATIONAL_ID_PLACEHOLDER if valid else found

    return repl


_NATIONAL_ID_PASSES = tuple((shape, _national_repl(validator)) for shape, validator in _NATIONAL_IDS)


def _national_could_match(s: str) -> bool:
    return len(s) >= 9 and _SIX_DIGITS_RE.search(s) is not None


def _national_redact(s: str) -> str:
    for shape, repl in _NATIONAL_ID_PASSES:
        s = shape.sub(repl, s)
    return s


NATIONAL_ID = Detector("national-id", _national_could_match, _national_redact)
