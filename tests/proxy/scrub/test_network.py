"""proxy.scrub.network: IP addresses in every written form, and host names that carry one."""

from __future__ import annotations

import pytest

from proxy.scrub.network import IP, is_ip_host


def redact(s: str) -> str:
    return IP.redact(s) if IP.could_match(s) else s


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("from 203.0.113.7 today", "from [ip] today"),
        ("Your IP: 203.0.113.77.", "Your IP: [ip]."),
        ("256.1.1.1", "256.1.1.1"),
        ("ip 0xCB.0.0x71.7 here", "ip [ip] here"),
        ("0313.0.0161.07", "[ip]"),
        ("0xCB007107", "[ip]"),
        ("0x7f", "0x7f"),
        ("ip=3405803783", "ip=[ip]"),
        ("addr 3405803783", "addr [ip]"),
        ("order 3405803783", "order 3405803783"),
        ("ip=99", "ip=99"),
        ("203-0-113-7.nip.io", "[ip].nip.io"),
        ("ec2-54-12-34-56.compute-1.amazonaws.com", "ec2-[ip].compute-1.amazonaws.com"),
        ("ip-10-0-0-1", "ip-[ip]"),
        ("size 10-20-30-40 cm", "size 10-20-30-40 cm"),
        ("2024-10-01-12", "2024-10-01-12"),
        ("from 2001:db8::1 and fe80::1", "from [ip] and [ip]"),
        ("fe80::1%eth0 link", "[ip] link"),
        ("[fe80::1%25eth0]:80", "[ip]:80"),
        ("mapped ::ffff:198.51.100.7 end", "mapped [ip] end"),
        ("2001:db8::1.", "[ip]."),
        ("::1 and ::", "::1 and ::"),
        ("12:30:45", "12:30:45"),
        ("std::vector", "std::vector"),
    ],
)
def test_ip_literals(raw: str, expected: str) -> None:
    assert redact(raw) == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("203.0.113.7", True),
        ("3232235777", True),
        ("0x7f.1", True),
        ("10.0.0.1.nip.io", True),
        ("ip10.0.0.1.example", True),
        ("10-0-0-1.sslip.io", True),
        ("ip-10-0-0-1.ec2.internal", True),
        ("www.example.com", False),
        ("my-site-2024-01.example.com", False),
        ("cdn-2.example.net", False),
        ("300-1-1-1.example", False),
    ],
)
def test_ip_hosts(host: str, expected: bool) -> None:
    assert is_ip_host(host) is expected
