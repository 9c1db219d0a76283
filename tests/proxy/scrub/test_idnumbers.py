"""proxy.scrub.idnumbers: card numbers, IBANs and national ids by shape, kept only when their check holds."""

from __future__ import annotations

import pytest

from proxy.scrub.idnumbers import CARD, IBAN, NATIONAL_ID, is_card_number


def run(s: str) -> str:
    for d in (CARD, IBAN, NATIONAL_ID):
        if d.could_match(s):
            s = d.redact(s)
    return s


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("card 4111 1111 1111 1111 exp", "card [card] exp"),
        ("4111-1111-1111-1111", "[card]"),
        ("order 2024 4111 1111 1111 1111", "order 2024 [card]"),
        ("378282246310005", "[card]"),
        ("5555555555554444", "[card]"),
        ("6011000990139424", "[card]"),
        ("4111 1111 1111 1112", "4111 1111 1111 1112"),  # Luhn fails
        ("1234567890123", "1234567890123"),  # no issuer
        ("DE89 3704 0044 0532 0130 00 is mine", "[iban] is mine"),
        ("de89370400440532013000", "[iban]"),
        ("GB82WEST12345698765432", "[iban]"),
        ("NL91ABNA0417164300", "[iban]"),
        ("DE89 3704 0044 0532 0130 01", "DE89 3704 0044 0532 0130 01"),  # mod 97 fails
        ("AB12 CDEF GHIJ KLMN", "AB12 CDEF GHIJ KLMN"),
    ],
)
def test_cards_and_ibans(raw: str, expected: str) -> None:
    assert run(raw) == expected


@pytest.mark.parametrize(
    "number",
    [
        "536-22-1234",  # US SSN
        "AB 12 34 56 C",  # UK NINO
        "ab123456c",
        "36574261809",  # DE Steuer-ID
        "36 574 261 809",
        "44051401359",  # PL PESEL
        "390.533.447-05",  # BR CPF
        "2 95 10 99 126 111 93",  # FR NIR
        "54362315K",  # ES DNI
        "X2482300W",  # ES NIE
        "RCCMNL83S18D969H",  # IT codice fiscale
        "811218-9876",  # SE personnummer
        "211062-5629",  # DK CPR
        "131052-308T",  # FI HETU
        "360426199101010071",  # CN resident id
        "2341 2341 2346",  # IN Aadhaar
        "130 692 544",  # CA SIN
        "85.07.30-033.28",  # BE national number
        "943 476 5919",  # UK NHS number
    ],
)
def test_national_ids(number: str) -> None:
    assert run(f"id {number} end") == "id [national-id] end"


@pytest.mark.parametrize(
    "text", ["order 12345678901", "536-22-12345", "000-12-3456", "GB 12 34 56 C", "2024-10-01", "54362315A"]
)
def test_not_national_ids(text: str) -> None:
    assert run(text) == text


def test_card_number_needs_issuer_length_and_luhn() -> None:
    assert is_card_number("4111111111111111")
    assert not is_card_number("4111111111111")  # Visa length 13 but Luhn fails
    assert not is_card_number("9111111111111111")
    assert not is_card_number("34111111111111111")  # Amex is 15 digits
