"""proxy.scrub.contact: e-mail addresses (also base64-encoded) and phone numbers, confirmed by
libphonenumber."""

from __future__ import annotations

import base64

import pytest

from proxy.scrub.contact import EMAIL, ENCODED_EMAIL, PHONE


def run(detector: object, s: str) -> str:
    d = detector
    return d.redact(s) if d.could_match(s) else s  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("mail jo.doe+x@example.co.uk now", "mail [email] now"),
        ("jane_o'neil@mail.example.org", "[email]"),
        ("jo@[203.0.113.7]", "[email]"),
        ("x@[IPv6:2001:db8::1]", "[email]"),
        ("jo@localhost is local", "[email] is local"),
        ("admin@intranet.", "[email]."),
        ("@john and @ home", "@john and @ home"),
        ("react@18", "react@18"),
    ],
)
def test_email(raw: str, expected: str) -> None:
    assert run(EMAIL, raw) == expected


@pytest.mark.parametrize("address", ["jo@example.com", "alice.smith+news@example.org", "ab@localhost"])
def test_base64_of_an_address(address: str) -> None:
    std = base64.b64encode(address.encode()).decode()
    url = base64.urlsafe_b64encode(address.encode()).decode().rstrip("=")
    assert run(ENCODED_EMAIL, f"u {std} x") == "u [email] x"
    assert run(ENCODED_EMAIL, f"/u/{url}/x") == "/u/[email]/x"


@pytest.mark.parametrize(
    "text", ["HowToUseJavaScriptEffectively", "aGVsbG8gd29ybGQ=", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="]
)
def test_base64_of_other_text_stays(text: str) -> None:
    assert run(ENCODED_EMAIL, text) == text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("call +44 20 7946 0958 now", "call [phone] now"),
        ("tel 0044 20 7946 0958", "tel [phone]"),
        ("+49 (30) 901820-17", "[phone]"),
        ("+1 (415) 555-2671 2024", "[phone] 2024"),
        ("020 7946 0958", "[phone]"),
        ("0151 12345678", "[phone]"),
        ("06 12 34 56 78", "[phone]"),
        ("07700900123", "[phone]"),
        ("(202) 555-0143", "[phone]"),
        ("202.555.0187", "[phone]"),
        ("612 345 678", "[phone]"),
        ("/call/0151-12345678/now", "/call/[phone]/now"),
        # not phone numbers
        ("order 12345678", "order 12345678"),
        ("4155552671", "4155552671"),
        ("on 05.11.2024 at 10:00", "on 05.11.2024 at 10:00"),
        ("2024-10-01", "2024-10-01"),
        ("price 1 299 000", "price 1 299 000"),
        ("ISBN 978-3-16-148410-0", "ISBN 978-3-16-148410-0"),
        ("+12", "+12"),
    ],
)
def test_phone(raw: str, expected: str) -> None:
    assert run(PHONE, raw) == expected
