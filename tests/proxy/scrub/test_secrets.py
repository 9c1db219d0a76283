"""proxy.scrub.secrets: key formats, credentials, session state in paths, one-time links, opaque runs."""

from __future__ import annotations

import pytest

from proxy.scrub.secrets import KNOWN_FORMATS, OPAQUE, could_match_path, redact_path


def known(s: str) -> str:
    return KNOWN_FORMATS.redact(s) if KNOWN_FORMATS.could_match(s) else s


def opaque(s: str) -> str:
    return OPAQUE.redact(s) if OPAQUE.could_match(s) else s


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("key AKIAIOSFODNN7EXAMPLE", "key [token]"),
        ("AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY", "[token]"),
        ("ghp_16C7e42F292c6912E7710c838347Ae178B4a", "[token]"),
        ("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "[token]"),
        ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "[token]"),
        ("bot 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "bot [token]"),
        ("sk-proj-abcdefghij1234567890klmnop", "[token]"),
        ("550e8400-e29b-41d4-a716-446655440000", "[id]"),
        ("Open https://admin:hunter2@example.com/x", "Open https://[token]@example.com/x"),
        ("Authorization: Bearer abcdef123456.xyz", "Authorization: Bearer [token]"),
        ("password=Hunter2 and token: abc123", "password=[token] and token: [token]"),
        ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG", "aws_secret_access_key=[token]"),
        # not secrets
        ("Basic settings", "Basic settings"),
        ("Use code SAVE20", "Use code SAVE20"),
        ("ratio=1:2", "ratio=1:2"),
        ("sk-abcdefghijklmnopqrstuvwxyz", "sk-abcdefghijklmnopqrstuvwxyz"),
    ],
)
def test_known_formats(raw: str, expected: str) -> None:
    assert known(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a8f5f167f44f4964", "[token]"),
        ("sess_a8f5f167f44f4964e6c998dee827110c", "[token]"),
        ("Zk3_qL9vXw2RtYp8MnB4cD7eFg1HjK0sTu6VoPxWyQa", "[token]"),
        ("ZkqLvXwRtYpMnBcDeFgHjKsTuVoPxWyQa", "[token]"),
        ("1234567890123456789", "[id]"),
        ("deadbeefcafebabe", "deadbeefcafebabe"),
        ("1700000000000", "1700000000000"),
        ("HowToUseJavaScriptEffectively", "HowToUseJavaScriptEffectively"),
        ("getHTMLElementByIDForUser", "getHTMLElementByIDForUser"),
        ("how-to-set-up-nginx-in-2024-and-beyond", "how-to-set-up-nginx-in-2024-and-beyond"),
    ],
)
def test_opaque_runs(raw: str, expected: str) -> None:
    assert opaque(raw) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/cart;jsessionid=1A2B3C/checkout", "/cart/checkout"),
        ("/a;sid=xyz;v=2/b", "/a;v=2/b"),
        ("/a;SESSIONID=q/b", "/a/b"),
        ("/(S(lit3py55t21z5v55vlm25s55))/page.aspx", "/page.aspx"),
        ("/reset-password/abc123", "/reset-password/[token]"),
        ("/password/reset/Zx9", "/password/reset/[token]"),
        ("/verify_email/aaaaaaaaaaaaaaaaaaaaaaa", "/verify_email/[token]"),
        ("/magic-link/k9/", "/magic-link/[token]/"),
        ("/invite/friends", "/invite/friends"),
        ("/confirm/email", "/confirm/email"),
        ("/share/our-story", "/share/our-story"),
    ],
)
def test_paths(path: str, expected: str) -> None:
    got = redact_path(path) if could_match_path(path) else path
    assert got == expected
