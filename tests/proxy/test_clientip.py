from __future__ import annotations

import ipaddress
import random
import string
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.clientip import (
    TrustedProxies,
    anonymise,
    client_ip,
    embedded_ipv4,
    format_ip,
    ip_version,
    parse_ip,
    truncate,
)


def packed(text: str) -> bytes:
    """Independent oracle: the stdlib's packed form of a bare address."""
    return ipaddress.ip_address(text).packed


# --------------------------------------------------------------------------------------------- parse_ip

PARSE_VALID = [
    # IPv4
    ("203.0.113.7", "203.0.113.7"),
    ("0.0.0.0", "0.0.0.0"),
    ("255.255.255.255", "255.255.255.255"),
    ("  203.0.113.7\t", "203.0.113.7"),
    ("\n203.0.113.7 \r\n", "203.0.113.7"),
    ("203.0.113.7:8080", "203.0.113.7"),
    ("203.0.113.7:0", "203.0.113.7"),
    ("203.0.113.7:65535", "203.0.113.7"),
    ("203.0.113.7:_obf-port.1", "203.0.113.7"),
    ('"203.0.113.7"', "203.0.113.7"),
    ('"203.0.113.7:4711"', "203.0.113.7"),
    (' " 203.0.113.7 " ', "203.0.113.7"),
    # IPv6
    ("2001:db8::1", "2001:db8::1"),
    ("2001:DB8::A", "2001:db8::a"),
    ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
    ("::1", "::1"),
    ("::", "::"),
    ("[2001:db8::1]", "2001:db8::1"),
    ("[2001:db8::1]:4711", "2001:db8::1"),
    ("[2001:db8::1]:_hidden", "2001:db8::1"),
    (" [2001:db8::1]:4711 ", "2001:db8::1"),
    ('"[2001:db8::1]:4711"', "2001:db8::1"),
    ('"[2001:db8::1]"', "2001:db8::1"),
    ('"\\[2001:db8::1\\]:4711"', "2001:db8::1"),  # RFC 7230 quoted-pairs are unescaped
    ("fe80::1%eth0", "fe80::1"),
    ("fe80::1%3", "fe80::1"),
    ("[fe80::1%25eth0]:443", "fe80::1"),
    ('"[fe80::1%en0.100]:80"', "fe80::1"),
    ("::203.0.113.7", "::cb00:7107"),  # IPv4-compatible (deprecated) is not IPv4-mapped: stays IPv6
    ("64:ff9b::203.0.113.7", "64:ff9b::cb00:7107"),  # NAT64 stays IPv6
    ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
    # IPv4-mapped IPv6 is normalised to IPv4
    ("::ffff:203.0.113.7", "203.0.113.7"),
    ("::FFFF:cb00:7107", "203.0.113.7"),
    ("0:0:0:0:0:ffff:203.0.113.7", "203.0.113.7"),
    ("[::ffff:203.0.113.7]", "203.0.113.7"),
    ("[::ffff:203.0.113.7]:443", "203.0.113.7"),
    ('"[::ffff:10.1.2.3]:4711"', "10.1.2.3"),
    ("::ffff:0.0.0.0", "0.0.0.0"),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_VALID)
def test_parse_ip_valid(text: str, expected: str) -> None:
    result = parse_ip(text)
    assert result == packed(expected)
    assert result is not None
    assert format_ip(result) == expected


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("203.0.113.7", 4),
        ("::ffff:203.0.113.7", 4),
        ("[::ffff:203.0.113.7]:1", 4),
        ("2001:db8::1", 16),
        ("::203.0.113.7", 16),
        ("::ffff:0:0:1", 16),  # ffff in the wrong position: not mapped
    ],
)
def test_parse_ip_length(text: str, length: int) -> None:
    result = parse_ip(text)
    assert result is not None
    assert len(result) == length
    assert ip_version(result) == (4 if length == 4 else 6)


PARSE_INVALID = [
    "",
    "   ",
    "unknown",
    "UNKNOWN",
    "_hidden",
    "_SEVKISEK",
    '"_gazonk"',
    "garbage",
    "localhost",
    "1.2.3",
    "127.1",
    "1.2.3.4.5",
    "256.1.1.1",
    "1.2.3.256",
    "01.2.3.4",
    "1.2.3.04",
    "0x7f.0.0.1",
    "2130706433",
    "1.2.3.4:",
    "1.2.3.4:65536",
    "1.2.3.4:123456",
    "1.2.3.4:port",
    "1.2.3.4:80:80",
    "1.2.3.4:-1",
    "1.2.3.4:_",
    "1.2.3.4%eth0",
    "1.2.3.4/24",
    "[1.2.3.4]",
    "[1.2.3.4]:80",
    "[2001:db8::1",
    "2001:db8::1]",
    "[2001:db8::1]80",
    "[2001:db8::1]:",
    "[2001:db8::1]:abc",
    "[2001:db8::1]:99999",
    "[]",
    "[[2001:db8::1]]",
    "2001:db8:::1",
    "2001:db8::1::2",
    "1:2:3:4:5:6:7:8:9",
    "12345::1",
    "::ffff:1.2.3.256",
    "::ffff:1.2.3",
    "fe80::1%",
    "fe80::1%eth 0",
    "fe80::1%eth0%eth1",
    "g::1",
    '"203.0.113.7',
    '203.0.113.7"',
    '"',
    '""',
    '" "',
    "'203.0.113.7'",
    "1.2.3.4 5.6.7.8",
    "1.2.3.4,5.6.7.8",
    "for=1.2.3.4",
    "\uff11.\uff12.\uff13.\uff14",  # fullwidth digits
    "1.2.3.4\x00",
    "::1\x00",
    "\x00",
    "\udc80",
    "1.2.3.\u0664",  # Arabic-Indic digit four
    "1.2.3.4:\u0668\u0660",  # non-ASCII port digits
    "a" * 200,
    "1" * 10_000,
    "2001:db8::1%" + "a" * 200,
]


@pytest.mark.parametrize("text", PARSE_INVALID)
def test_parse_ip_invalid(text: str) -> None:
    assert parse_ip(text) is None


def test_parse_ip_non_string_is_none() -> None:
    assert parse_ip(b"1.2.3.4") is None  # type: ignore[arg-type]
    assert parse_ip(None) is None  # type: ignore[arg-type]


def test_parse_ip_matches_stdlib_on_random_addresses() -> None:
    rng = random.Random(20240601)
    for _ in range(500):
        v4 = ipaddress.IPv4Address(rng.getrandbits(32))
        assert parse_ip(str(v4)) == v4.packed
        # Bias toward zero runs so '::' compression is exercised in many positions.
        words = [rng.choice([0, 0, 1, 0xFFFF, rng.getrandbits(16)]) for _ in range(8)]
        v6 = ipaddress.IPv6Address(b"".join(w.to_bytes(2, "big") for w in words))
        expected = v6.ipv4_mapped.packed if v6.ipv4_mapped is not None else v6.packed
        assert parse_ip(v6.compressed) == expected
        assert parse_ip(v6.exploded) == expected
        assert parse_ip(f"[{v6.compressed}]:{rng.randrange(65536)}") == expected


# -------------------------------------------------------------------------------------------- format_ip

FORMAT_CASES = [
    ("cb007107", "203.0.113.7"),
    ("00000000", "0.0.0.0"),
    ("ffffffff", "255.255.255.255"),
    ("20010db8000000000000000000000001", "2001:db8::1"),
    ("20010db8000100000000000000000000", "2001:db8:1::"),
    ("00000000000000000000000000000000", "::"),
    ("00000000000000000000000000000001", "::1"),
    ("20010db8000000010000000000000001", "2001:db8:0:1::1"),  # a single zero group is not compressed
    ("20010db8000000000001000000000001", "2001:db8::1:0:0:1"),  # first of two equal runs wins
    ("00010000000000010000000000000000", "1:0:0:1::"),  # longest run wins
    ("ffffffffffffffffffffffffffffffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
    # libc would print these with a dotted-quad tail; ipaddress (3.11) and we do not.
    ("000000000000000000000000cb007107", "::cb00:7107"),
    ("00000000000000000000ffffcb007107", "::ffff:cb00:7107"),
    ("00000000000000000000ffff00000000", "::ffff:0:0"),
    ("00000000000000000000000000020003", "::2:3"),
    ("00000000000000000000000100000000", "::1:0:0"),
]


@pytest.mark.parametrize(("hex_packed", "expected"), FORMAT_CASES)
def test_format_ip(hex_packed: str, expected: str) -> None:
    assert format_ip(bytes.fromhex(hex_packed)) == expected


def test_format_ip_matches_stdlib_compressed() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        v4 = rng.getrandbits(32).to_bytes(4, "big")
        assert format_ip(v4) == str(ipaddress.IPv4Address(v4))
        words = [rng.choice([0, 0, 0, 1, 0xFFFF, rng.getrandbits(16)]) for _ in range(8)]
        v6 = b"".join(w.to_bytes(2, "big") for w in words)
        if ipaddress.IPv6Address(v6).ipv4_mapped is not None:
            continue  # newer Pythons print mapped addresses with a dotted tail; 3.11 does not
        assert format_ip(v6) == ipaddress.IPv6Address(v6).compressed


@pytest.mark.parametrize("bad", [b"", b"\xcb\x00\x71", b"\xcb\x00\x71\x07\x00", b"\x00" * 15, b"\x00" * 17])
def test_format_ip_and_ip_version_reject_bad_length_without_leaking(bad: bytes) -> None:
    with pytest.raises(ValueError, match="4 or 16 bytes") as format_exc:
        format_ip(bad)
    with pytest.raises(ValueError, match="4 or 16 bytes") as version_exc:
        ip_version(bad)
    for exc in (format_exc, version_exc):
        assert "203" not in str(exc.value)
        assert "\\x" not in str(exc.value)


# --------------------------------------------------------------------------------------------- truncate

TRUNCATE_V4 = [
    ("203.0.113.77", 24, "203.0.113.0"),
    ("203.0.113.77", 16, "203.0.0.0"),
    ("203.0.113.77", 32, "203.0.113.77"),
    ("203.0.113.77", 0, "0.0.0.0"),
    ("255.255.255.255", 24, "255.255.255.0"),
    ("255.255.255.255", 16, "255.255.0.0"),
    ("255.255.255.255", 32, "255.255.255.255"),
    ("255.255.255.255", 0, "0.0.0.0"),
    ("255.255.255.255", 20, "255.255.240.0"),
    ("255.255.255.255", 1, "128.0.0.0"),
    ("255.255.255.255", 31, "255.255.255.254"),
    ("10.1.2.3", 8, "10.0.0.0"),
    ("192.168.200.129", 25, "192.168.200.128"),
    ("0.0.0.0", 24, "0.0.0.0"),
]


@pytest.mark.parametrize(("address", "bits", "expected"), TRUNCATE_V4)
def test_truncate_v4(address: str, bits: int, expected: str) -> None:
    result = truncate(packed(address), bits, 48)
    assert len(result) == 4
    assert format_ip(result) == expected


TRUNCATE_V6 = [
    ("2001:db8:1234:5678:9abc:def0:1234:5678", 48, "2001:db8:1234::"),
    ("2001:db8:1234:5678:9abc:def0:1234:5678", 64, "2001:db8:1234:5678::"),
    ("2001:db8:1234:5678:9abc:def0:1234:5678", 128, "2001:db8:1234:5678:9abc:def0:1234:5678"),
    ("2001:db8:1234:5678:9abc:def0:1234:5678", 0, "::"),
    ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 48, "ffff:ffff:ffff::"),
    ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 64, "ffff:ffff:ffff:ffff::"),
    ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 128, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
    ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 0, "::"),
    ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 56, "ffff:ffff:ffff:ff00::"),
    ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 33, "ffff:ffff:8000::"),
    ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 127, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"),
    ("2001:db8::1", 48, "2001:db8::"),
    ("2001:db8::1", 64, "2001:db8::"),
    ("2001:db8::1", 128, "2001:db8::1"),
    ("fe80::1:2:3:4", 64, "fe80::"),
    ("::1", 48, "::"),
]


@pytest.mark.parametrize(("address", "bits", "expected"), TRUNCATE_V6)
def test_truncate_v6(address: str, bits: int, expected: str) -> None:
    result = truncate(packed(address), 24, bits)
    assert len(result) == 16
    assert format_ip(result) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("::ffff:203.0.113.77", "203.0.113.0"),  # mapped input is truncated with the IPv4 prefix
        ("[::ffff:203.0.113.77]:443", "203.0.113.0"),
        ('"[2001:db8:abcd:12::1]:4711"', "2001:db8:abcd::"),
        ("203.0.113.77:8080", "203.0.113.0"),
    ],
)
def test_parse_then_truncate_defaults(text: str, expected: str) -> None:
    parsed = parse_ip(text)
    assert parsed is not None
    assert format_ip(truncate(parsed, 24, 48)) == expected


def test_truncate_matches_stdlib_networks() -> None:
    rng = random.Random(99)
    for _ in range(300):
        v4_bits, v6_bits = rng.randrange(33), rng.randrange(129)
        v4 = ipaddress.IPv4Address(rng.getrandbits(32))
        v6 = ipaddress.IPv6Address(rng.getrandbits(128))
        net4 = ipaddress.ip_network(f"{v4}/{v4_bits}", strict=False)
        net6 = ipaddress.ip_network(f"{v6}/{v6_bits}", strict=False)
        assert truncate(v4.packed, v4_bits, v6_bits) == net4.network_address.packed
        assert truncate(v6.packed, v4_bits, v6_bits) == net6.network_address.packed


@pytest.mark.parametrize(("v4_bits", "v6_bits"), [(-1, 48), (33, 48), (24, -1), (24, 129), (-24, -48)])
def test_truncate_rejects_bad_bits(v4_bits: int, v6_bits: int) -> None:
    with pytest.raises(ValueError, match="bits must be within") as exc:
        truncate(packed("203.0.113.77"), v4_bits, v6_bits)
    assert "203.0.113" not in str(exc.value)


def test_truncate_rejects_bad_length() -> None:
    with pytest.raises(ValueError, match="4 or 16 bytes"):
        truncate(b"\xcb\x00\x71", 24, 48)


# ------------------------------------------------------------------------------------- TrustedProxies

BAD_TRUSTED_ENTRIES = [
    "",
    "   ",
    "localhost",
    "10.0.0",
    "10.0.0.256",
    "10.0.0.0/33",
    "::/129",
    "10.0.0.0/",
    "10.0.0.0/-1",
    "10.0.0.0/+8",
    "10.0.0.0/ab",
    "10.0.0.0/8/8",
    "10.0.0.0/1000",
    "10.0.0.0/255.0.0.0",
    "10.0.0.0/\uff18",  # fullwidth 8
    "10.0.0.1/8",  # host bits set
    "192.168.1.1/24",
    "2001:db8::1/32",
    "::ffff:10.0.0.1/104",
    "[::1]",
    "[::1]:80",
    "10.0.0.1:80",
    "fe80::1%eth0",
    "*.example.com",
    "**",
    "0.0.0.0/0, 10.0.0.0/8",
]


@pytest.mark.parametrize("entry", BAD_TRUSTED_ENTRIES)
def test_trusted_proxies_rejects_bad_entry(entry: str) -> None:
    with pytest.raises(ValueError, match="invalid trusted proxy entry") as exc:
        TrustedProxies(["127.0.0.1", entry])
    assert repr(entry) in str(exc.value)


def test_trusted_proxies_rejects_non_string_entry() -> None:
    with pytest.raises(ValueError, match="invalid trusted proxy entry 8"):
        TrustedProxies(["127.0.0.1", 8])  # type: ignore[list-item]


def test_trusted_proxies_rejects_bare_string() -> None:
    with pytest.raises(TypeError, match="not a single string"):
        TrustedProxies("127.0.0.1")


CONTAINS_CASES = [
    # (entries, address, expected)
    (["127.0.0.0/8"], "127.0.0.1", True),
    (["127.0.0.0/8"], "127.255.255.255", True),
    (["127.0.0.0/8"], "128.0.0.0", False),
    (["127.0.0.0/8"], "126.255.255.255", False),
    (["172.16.0.0/12"], "172.16.0.0", True),
    (["172.16.0.0/12"], "172.31.255.255", True),
    (["172.16.0.0/12"], "172.32.0.0", False),
    (["172.16.0.0/12"], "172.15.255.255", False),
    (["10.0.0.1"], "10.0.0.1", True),
    (["10.0.0.1"], "10.0.0.2", False),
    (["10.0.0.1/32"], "10.0.0.1", True),
    (["  10.0.0.0/8  "], "10.9.9.9", True),
    (["10.0.0.0 / 8"], "10.9.9.9", True),
    (["0.0.0.0/0"], "203.0.113.7", True),
    (["0.0.0.0/0"], "2001:db8::1", False),
    (["::/0"], "2001:db8::1", True),
    (["::/0"], "203.0.113.7", False),  # v6 networks never match (normalised) IPv4 peers
    (["::1"], "::1", True),
    (["::1"], "::2", False),
    (["::1"], "127.0.0.1", False),
    (["2001:db8::/32"], "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", True),
    (["2001:db8::/32"], "2001:db9::", False),
    (["2001:db8::/32"], "2001:db7:ffff::", False),
    (["2001:DB8:0:0::/64"], "2001:db8::abcd", True),
    (["fd00::/8"], "fdff::1", True),
    (["fd00::/8"], "fe00::1", False),
    # IPv4-mapped entries are normalised to IPv4
    (["::ffff:10.0.0.0/104"], "10.200.0.1", True),
    (["::ffff:10.0.0.0/104"], "11.0.0.1", False),
    (["::ffff:192.0.2.1"], "192.0.2.1", True),
    (["::ffff:192.0.2.1"], "192.0.2.2", False),
    (["::ffff:0:0/96"], "203.0.113.7", True),
    (["::ffff:0:0/96"], "2001:db8::1", False),
    # several prefix lengths at once
    (["10.0.0.0/8", "192.168.0.0/16", "203.0.113.7", "::1", "fd00::/8"], "192.168.4.4", True),
    (["10.0.0.0/8", "192.168.0.0/16", "203.0.113.7", "::1", "fd00::/8"], "203.0.113.7", True),
    (["10.0.0.0/8", "192.168.0.0/16", "203.0.113.7", "::1", "fd00::/8"], "203.0.113.8", False),
    (["10.0.0.0/8", "192.168.0.0/16", "203.0.113.7", "::1", "fd00::/8"], "fd12::9", True),
    (["10.0.0.0/8", "192.168.0.0/16", "203.0.113.7", "::1", "fd00::/8"], "2001:db8::1", False),
    ([], "127.0.0.1", False),
    ([], "::1", False),
    (["*"], "203.0.113.7", True),
    (["*"], "2001:db8::1", True),
    (["10.0.0.0/8", " * "], "203.0.113.7", True),
]


@pytest.mark.parametrize(("entries", "address", "expected"), CONTAINS_CASES)
def test_trusted_proxies_contains(entries: list[str], address: str, expected: bool) -> None:
    trusted = TrustedProxies(entries)
    assert trusted.contains(packed(address)) is expected


def test_trusted_proxies_contains_accepts_unnormalised_mapped_bytes() -> None:
    trusted = TrustedProxies(["10.0.0.0/8"])
    assert trusted.contains(bytes.fromhex("00000000000000000000ffff0a010203")) is True
    assert trusted.contains(bytes.fromhex("00000000000000000000ffff0b010203")) is False


@pytest.mark.parametrize("entries", [["*"], ["0.0.0.0/0", "::/0"], ["10.0.0.0/8"]])
@pytest.mark.parametrize("bad", [b"", b"\x0a\x00\x00", b"\x0a\x00\x00\x01\x00", b"\x00" * 15])
def test_trusted_proxies_never_contains_bad_length(entries: list[str], bad: bytes) -> None:
    assert TrustedProxies(entries).contains(bad) is False


def test_trusted_proxies_trust_all_flag() -> None:
    assert TrustedProxies(["*"]).trust_all is True
    assert TrustedProxies(["0.0.0.0/0", "::/0"]).trust_all is False
    assert TrustedProxies([]).trust_all is False


def test_trusted_proxies_matches_stdlib_membership() -> None:
    rng = random.Random(4242)
    for _ in range(200):
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for _ in range(3):
            v4 = ipaddress.IPv4Address(rng.getrandbits(32))
            v6 = ipaddress.IPv6Address(rng.getrandbits(128))
            networks.append(ipaddress.ip_network(f"{v4}/{rng.randrange(8, 33)}", strict=False))
            networks.append(ipaddress.ip_network(f"{v6}/{rng.randrange(16, 129)}", strict=False))
        trusted = TrustedProxies([str(n) for n in networks])
        for net in networks:
            inside = net.network_address + rng.randrange(net.num_addresses)
            assert trusted.contains(inside.packed) is True
        for candidate in (
            ipaddress.IPv4Address(rng.getrandbits(32)),
            ipaddress.IPv6Address(rng.getrandbits(128)),
        ):
            expected = any(candidate in n for n in networks if n.version == candidate.version)
            assert trusted.contains(candidate.packed) is expected


# ------------------------------------------------------------------------------------------- client_ip

TRUSTED = TrustedProxies(["127.0.0.0/8", "10.0.0.0/8", "::1", "fd00::/8"])
TRUST_ALL = TrustedProxies(["*"])

XFF_CASES = [
    # (peer, header value, expected client or None)
    # -- untrusted peer: header ignored, spoofing impossible
    ("203.0.113.9", None, "203.0.113.9"),
    ("203.0.113.9", "198.51.100.66", "203.0.113.9"),
    ("203.0.113.9", "10.0.0.1", "203.0.113.9"),
    ("203.0.113.9", "198.51.100.66, 10.0.0.2", "203.0.113.9"),
    ("203.0.113.9", "garbage", "203.0.113.9"),
    ("2001:db8::9", "198.51.100.66", "2001:db8::9"),
    ("::ffff:203.0.113.9", "198.51.100.66", "203.0.113.9"),
    # -- trusted peer, no usable header: peer
    ("127.0.0.1", None, "127.0.0.1"),
    ("127.0.0.1", "", "127.0.0.1"),
    ("127.0.0.1", "   ", "127.0.0.1"),
    ("127.0.0.1", " , ,, ", "127.0.0.1"),
    ("::1", None, "::1"),
    # -- trusted peer, single hop
    ("127.0.0.1", "203.0.113.7", "203.0.113.7"),
    ("127.0.0.1", "  203.0.113.7  ", "203.0.113.7"),
    ("127.0.0.1", "203.0.113.7:5555", "203.0.113.7"),
    ("127.0.0.1", "2001:db8::7", "2001:db8::7"),
    ("127.0.0.1", "[2001:db8::7]:443", "2001:db8::7"),
    ("127.0.0.1", "::ffff:203.0.113.7", "203.0.113.7"),
    # -- trusted peer, chain through several trusted proxies: right-most untrusted wins
    ("127.0.0.1", "198.51.100.66, 203.0.113.7, 10.0.0.2, 10.0.0.3", "203.0.113.7"),
    ("127.0.0.1", "198.51.100.66,203.0.113.7,10.0.0.2", "203.0.113.7"),  # joined header lines, no spaces
    ("10.0.0.3", "1.1.1.1, 2.2.2.2, 203.0.113.7, 10.0.0.2", "203.0.113.7"),
    ("127.0.0.1", "203.0.113.7:1234, 10.0.0.2:80", "203.0.113.7"),
    ("127.0.0.1", "garbage, 203.0.113.7, 10.0.0.2", "203.0.113.7"),  # junk left of the client is ignored
    ("127.0.0.1", "unknown, 203.0.113.7", "203.0.113.7"),
    ("127.0.0.1", "198.51.100.66, 203.0.113.7, ,10.0.0.2,", "203.0.113.7"),  # empty list items skipped
    ("::1", "2001:db8::66, 2001:db8::7, fd00::2, ::1", "2001:db8::7"),
    ("::1", "198.51.100.66, 2001:db8::7, fd00::2", "2001:db8::7"),
    ("::1", "2001:db8::66, 203.0.113.7, 10.0.0.2", "203.0.113.7"),
    # -- IPv4-mapped peers and hops are normalised before the trust check
    ("::ffff:127.0.0.1", "203.0.113.7", "203.0.113.7"),
    ("::ffff:10.0.0.1", "198.51.100.66, 203.0.113.7, ::ffff:10.0.0.2", "203.0.113.7"),
    ("127.0.0.1", "::ffff:198.51.100.66, ::ffff:203.0.113.7, [::ffff:10.0.0.2]:80", "203.0.113.7"),
    # -- all hops trusted: the left-most hop
    ("127.0.0.1", "10.0.0.5, 10.0.0.2", "10.0.0.5"),
    ("127.0.0.1", "127.0.0.1", "127.0.0.1"),
    ("::1", "::ffff:10.0.0.5, fd00::2", "10.0.0.5"),
    # -- the client hop is unparseable: None, never the proxy
    ("127.0.0.1", "garbage", None),
    ("127.0.0.1", "unknown", None),
    ("127.0.0.1", "203.0.113.7, unknown, 10.0.0.2", None),
    ("127.0.0.1", "203.0.113.7, 10.0.0.2:99999", None),
    ("127.0.0.1", "203.0.113.7 10.0.0.2", None),
    ("127.0.0.1", "for=203.0.113.7", None),  # Forwarded syntax in X-Forwarded-For
    # -- unusable peer
    (None, None, None),
    (None, "203.0.113.7", None),
    ("", "203.0.113.7", None),
    ("garbage", "203.0.113.7", None),
    ("/tmp/beacon.sock", "203.0.113.7", None),
    ("unix:/tmp/beacon.sock", None, None),
]


@pytest.mark.parametrize(("peer", "header_value", "expected"), XFF_CASES)
def test_client_ip_x_forwarded_for(peer: str | None, header_value: str | None, expected: str | None) -> None:
    result = client_ip(peer, header_value, "x-forwarded-for", TRUSTED)
    assert result == (packed(expected) if expected is not None else None)


FORWARDED_CASES = [
    # (peer, header value, expected client or None)
    # -- untrusted peer: header ignored
    ("203.0.113.9", "for=198.51.100.66", "203.0.113.9"),
    ("203.0.113.9", 'for="[2001:db8::66]"', "203.0.113.9"),
    # -- trusted peer, no usable for=: peer
    ("127.0.0.1", None, "127.0.0.1"),
    ("127.0.0.1", "", "127.0.0.1"),
    ("127.0.0.1", "proto=https;by=10.0.0.2", "127.0.0.1"),
    ("127.0.0.1", "by=203.0.113.7", "127.0.0.1"),
    ("127.0.0.1", "host=example.com, proto=https", "127.0.0.1"),
    ("127.0.0.1", " , ", "127.0.0.1"),
    # -- single element, quoting and case
    ("127.0.0.1", "for=203.0.113.7", "203.0.113.7"),
    ("127.0.0.1", 'for="203.0.113.7"', "203.0.113.7"),
    ("127.0.0.1", 'for="203.0.113.7:4711"', "203.0.113.7"),
    ("127.0.0.1", 'for="[2001:db8:cafe::17]:4711"', "2001:db8:cafe::17"),
    ("127.0.0.1", 'for="[2001:db8:cafe::17]"', "2001:db8:cafe::17"),
    ("127.0.0.1", 'For="[2001:db8:cafe::17]"', "2001:db8:cafe::17"),
    ("127.0.0.1", "FOR=203.0.113.7;PROTO=https;BY=10.0.0.2", "203.0.113.7"),
    ("127.0.0.1", "by=10.0.0.2;for=203.0.113.7;proto=https;host=example.com", "203.0.113.7"),
    ("127.0.0.1", 'proto=http;for="[::ffff:203.0.113.7]:80";by=_proxy1', "203.0.113.7"),
    ("127.0.0.1", "for = 203.0.113.7 ; proto=https", "203.0.113.7"),  # tolerated whitespace
    ("127.0.0.1", "for=2001:db8::7", "2001:db8::7"),  # unquoted v6 is tolerated
    # -- several elements: right-most untrusted wins
    ("127.0.0.1", "for=198.51.100.66, for=203.0.113.7;proto=https, for=10.0.0.2;by=10.0.0.3", "203.0.113.7"),
    ("127.0.0.1", "for=198.51.100.66,for=203.0.113.7,for=10.0.0.2", "203.0.113.7"),
    ("127.0.0.1", 'for="_hidden", for=203.0.113.7;by=10.0.0.2', "203.0.113.7"),
    ("127.0.0.1", "for=203.0.113.7, proto=https;by=10.0.0.9", "203.0.113.7"),  # element without for= skipped
    ("127.0.0.1", "for=203.0.113.7, by=198.51.100.1, for=10.0.0.2", "203.0.113.7"),
    ("::1", 'for="[2001:db8::66]", for="[2001:db8::7]:1", for="[fd00::2]"', "2001:db8::7"),
    ("::ffff:10.0.0.1", 'for=198.51.100.66, for=203.0.113.7, for="[::ffff:10.0.0.2]"', "203.0.113.7"),
    # -- an unterminated quote on the attacker's side cannot swallow the proxy-appended element
    ("127.0.0.1", 'for="198.51.100.66, for=203.0.113.7', "203.0.113.7"),
    ("127.0.0.1", 'for="198.51.100.66;x=", for=203.0.113.7;by=10.0.0.2', "203.0.113.7"),
    # -- all trusted: left-most
    ("127.0.0.1", "for=10.0.0.5, for=10.0.0.2", "10.0.0.5"),
    ("127.0.0.1", 'for="[::1]", proto=https', "::1"),
    # -- obfuscated / unknown / invalid client hop: None
    ("127.0.0.1", "for=_hidden", None),
    ("127.0.0.1", 'for="_SEVKISEK"', None),
    ("127.0.0.1", "for=unknown", None),
    ("127.0.0.1", "for=203.0.113.7, for=unknown, for=10.0.0.2", None),
    ("127.0.0.1", "for=_hidden;by=10.0.0.2, for=10.0.0.3", None),
    ("127.0.0.1", "for=", None),
    ("127.0.0.1", 'for=""', None),
    ("127.0.0.1", 'for="[2001:db8::1', None),
    ("127.0.0.1", "for=203.0.113.7;for=198.51.100.1", None),  # repeated for= in one element is ambiguous
    ("127.0.0.1", "203.0.113.7", "127.0.0.1"),  # X-Forwarded-For syntax: no for= pairs at all
    # -- unusable peer
    (None, "for=203.0.113.7", None),
    ("garbage", "for=203.0.113.7", None),
]


@pytest.mark.parametrize(("peer", "header_value", "expected"), FORWARDED_CASES)
def test_client_ip_forwarded(peer: str | None, header_value: str | None, expected: str | None) -> None:
    result = client_ip(peer, header_value, "forwarded", TRUSTED)
    assert result == (packed(expected) if expected is not None else None)


TRUST_ALL_CASES = [
    # (peer, header, header value, expected)
    ("203.0.113.9", "x-forwarded-for", None, "203.0.113.9"),
    ("203.0.113.9", "x-forwarded-for", "", "203.0.113.9"),
    ("203.0.113.9", "x-forwarded-for", "198.51.100.66", "198.51.100.66"),
    ("203.0.113.9", "x-forwarded-for", "198.51.100.66, 203.0.113.7, 10.0.0.2", "198.51.100.66"),
    ("2001:db8::9", "x-forwarded-for", "[2001:db8::66]:1, 203.0.113.7", "2001:db8::66"),
    ("203.0.113.9", "x-forwarded-for", "unknown, 203.0.113.7", None),  # unparseable hops are never trusted
    ("203.0.113.9", "forwarded", "for=198.51.100.66, for=203.0.113.7", "198.51.100.66"),
    ("203.0.113.9", "forwarded", "proto=https", "203.0.113.9"),
    ("203.0.113.9", "forwarded", "for=_hidden, for=203.0.113.7", None),
    ("garbage", "x-forwarded-for", "198.51.100.66", None),
]


@pytest.mark.parametrize(("peer", "header", "header_value", "expected"), TRUST_ALL_CASES)
def test_client_ip_trust_all(
    peer: str, header: Literal["x-forwarded-for", "forwarded"], header_value: str | None, expected: str | None
) -> None:
    result = client_ip(peer, header_value, header, TRUST_ALL)
    assert result == (packed(expected) if expected is not None else None)


def test_client_ip_untrusted_peer_with_empty_trust_list() -> None:
    nobody = TrustedProxies([])
    assert client_ip("127.0.0.1", "203.0.113.7", "x-forwarded-for", nobody) == packed("127.0.0.1")
    assert client_ip("127.0.0.1", "for=203.0.113.7", "forwarded", nobody) == packed("127.0.0.1")


def test_client_ip_rejects_unknown_header_without_leaking() -> None:
    with pytest.raises(ValueError, match="x-real-ip") as exc:
        client_ip("203.0.113.9", "198.51.100.66", "x-real-ip", TRUSTED)  # type: ignore[arg-type]
    assert "203.0.113" not in str(exc.value)
    assert "198.51.100" not in str(exc.value)


def test_client_ip_rejects_undecoded_header_bytes_without_leaking() -> None:
    with pytest.raises(TypeError, match="must be str") as exc:
        client_ip("127.0.0.1", b"198.51.100.66", "x-forwarded-for", TRUSTED)  # type: ignore[arg-type]
    assert "198.51.100" not in str(exc.value)
    # An untrusted peer never looks at the header, so the type mistake cannot change the result there.
    result = client_ip("203.0.113.9", b"198.51.100.66", "x-forwarded-for", TRUSTED)  # type: ignore[arg-type]
    assert result == packed("203.0.113.9")


def test_client_ip_then_truncate() -> None:
    result = client_ip("::ffff:10.0.0.1", "198.51.100.66, 203.0.113.77, 10.0.0.2", "x-forwarded-for", TRUSTED)
    assert result is not None
    assert format_ip(truncate(result, 24, 48)) == "203.0.113.0"
    result = client_ip("::1", 'for="[2001:db8:abcd:12::1]:4711"', "forwarded", TRUSTED)
    assert result is not None
    assert format_ip(truncate(result, 24, 48)) == "2001:db8:abcd::"


# ---------------------------------------------------------------------------------------- garbage input

_FRAGMENTS = [
    "203.0.113.7",
    "10.0.0.2",
    "::ffff:10.0.0.2",
    "2001:db8::1",
    "[2001:db8::1]:4711",
    "fe80::1%eth0",
    "unknown",
    "_hidden",
    "for=",
    "For=",
    "by=",
    "proto=https",
    '"',
    "[",
    "]",
    ":",
    "::",
    "%",
    ",",
    ";",
    "=",
    "\\",
    " ",
    "\t",
    "\x00",
    "\udc80",
    "\u00e9",
    "\uff11",
    "65536",
]


def _garbage(rng: random.Random) -> str:
    kind = rng.randrange(3)
    if kind == 0:  # random printable and odd characters
        alphabet = string.printable + "\x00\u00e9\u0664\uff11\udc80"
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 60)))
    if kind == 1:  # concatenated IP-ish fragments
        return "".join(rng.choice(_FRAGMENTS) for _ in range(rng.randrange(1, 8)))
    # a valid address with a few characters mutated, inserted or deleted
    chars = list(rng.choice(_FRAGMENTS[:6]))
    for _ in range(rng.randrange(1, 4)):
        pos = rng.randrange(len(chars) + 1)
        op = rng.randrange(3)
        if op == 0 and pos < len(chars):
            chars[pos] = rng.choice(string.printable)
        elif op == 1:
            chars.insert(pos, rng.choice(string.hexdigits + ":.[]%\"'"))
        elif chars:
            del chars[min(pos, len(chars) - 1)]
    return "".join(chars)


def _assert_packed_or_none(result: object) -> None:
    assert result is None or (isinstance(result, bytes) and len(result) in (4, 16))


def test_garbage_never_raises() -> None:
    rng = random.Random(1337)
    peers = ["127.0.0.1", "::ffff:10.0.0.1", "::1", "203.0.113.9", "garbage", ""]
    parsed_some = False
    for _ in range(600):
        text = _garbage(rng)
        result = parse_ip(text)
        _assert_packed_or_none(result)
        if result is not None:
            parsed_some = True
            # Whatever parses must round-trip through its canonical text form.
            assert parse_ip(format_ip(result)) == result
            assert len(truncate(result, 24, 48)) == len(result)
        header_value = ", ".join(_garbage(rng) for _ in range(rng.randrange(1, 5)))
        for trusted in (TRUSTED, TRUST_ALL):
            for header in ("x-forwarded-for", "forwarded"):
                _assert_packed_or_none(client_ip(rng.choice(peers), header_value, header, trusted))
                _assert_packed_or_none(client_ip(text, header_value, header, trusted))
    assert parsed_some  # the generator does produce valid addresses too, so the round-trip is exercised


# ------------------------------------------------------------------------- IPv4 addresses inside IPv6
# The encoders below are written from the RFCs' own figures, byte by byte, independently of the
# bit-position tables in proxy.clientip.


def v4bytes(value: int) -> bytes:
    return value.to_bytes(4, "big")


def enc_6to4(v4: bytes, rest: bytes = b"\x00" * 10) -> bytes:  # RFC 3056: 2002:V4ADDR::/48
    return b"\x20\x02" + v4 + rest


def enc_teredo(
    v4: bytes, server: bytes = b"\x41\x36\xe3\x78", flags_port: bytes = b"\x80\x00\x63\xbf"
) -> bytes:
    # RFC 4380: 2001:0000 | server IPv4 | flags (16) | port ^ 0xffff | client IPv4 ^ 0xffffffff
    return b"\x20\x01\x00\x00" + server + flags_port + bytes(b ^ 0xFF for b in v4)


def enc_nat64(v4: bytes) -> bytes:  # RFC 6052 well-known prefix 64:ff9b::/96
    return bytes.fromhex("0064ff9b0000000000000000") + v4


def enc_local_nat64(v4: bytes, prefix_len: int, operator: bytes = b"", suffix: bytes = b"") -> bytes:
    """RFC 8215 local-use 64:ff9b:1::/48 with RFC 6052's layout for ``prefix_len`` (figure 1)."""
    prefix = (bytes.fromhex("0064ff9b0001") + operator + b"\x00" * 16)[: prefix_len // 8]
    if prefix_len == 48:
        body = prefix + v4[:2] + b"\x00" + v4[2:]
    elif prefix_len == 56:
        body = prefix + v4[:1] + b"\x00" + v4[1:]
    elif prefix_len == 64:
        body = prefix + b"\x00" + v4
    else:
        body = prefix + v4
    return (body + suffix + b"\x00" * 16)[:16]


def enc_compatible(v4: bytes) -> bytes:  # RFC 4291 ::a.b.c.d (deprecated)
    return b"\x00" * 12 + v4


def enc_translated(v4: bytes) -> bytes:  # RFC 2765 ::ffff:0:a.b.c.d
    return b"\x00" * 8 + b"\xff\xff\x00\x00" + v4


def enc_isatap(
    v4: bytes, prefix: bytes = bytes.fromhex("20010db800010002"), global_bit: bool = True
) -> bytes:
    return prefix + (b"\x02" if global_bit else b"\x00") + b"\x00\x5e\xfe" + v4


CLIENT = v4bytes(0xCB00714D)  # 203.0.113.77

EMBEDDED = [
    (enc_6to4(CLIENT), "203.0.113.77"),
    (enc_6to4(CLIENT, bytes.fromhex("00010000000000000001")), "203.0.113.77"),  # subnet and host bits
    (enc_teredo(CLIENT), "203.0.113.77"),
    (parse_ip("2001:0:4136:e378:8000:63bf:3fff:fdd2"), "192.0.2.45"),  # RFC 4380's own example
    (enc_nat64(CLIENT), "203.0.113.77"),
    (parse_ip("64:ff9b::203.0.113.77"), "203.0.113.77"),
    (enc_local_nat64(CLIENT, 96), "203.0.113.77"),  # 64:ff9b:1::a.b.c.d: only the /96 layout fits
    (enc_local_nat64(CLIENT, 96, operator=b"\x00\x07\x05\x00\x00\x00"), "203.0.113.77"),  # u octet set
    (enc_compatible(CLIENT), "203.0.113.77"),
    (enc_translated(CLIENT), "203.0.113.77"),
    (parse_ip("::ffff:0:198.51.100.20"), "198.51.100.20"),
    # not (or not unambiguously) an IPv4 client
    (enc_local_nat64(CLIENT, 48), None),
    (enc_local_nat64(CLIENT, 56), None),
    (enc_local_nat64(CLIENT, 64), None),
    (enc_isatap(CLIENT), None),
    (parse_ip("::1"), None),
    (parse_ip("::"), None),
    (parse_ip("2001:db8::cb00:714d"), None),
    (parse_ip("2001:1::1"), None),  # 2001:1::/32 is not Teredo's 2001:0::/32
    (parse_ip("2003::1"), None),
    (parse_ip("64:ff9b:0:0:1::cb00:714d"), None),  # inside 64:ff9b::/32 but not the /96
    (parse_ip("fe80::1"), None),
    (CLIENT, None),  # already IPv4
]


@pytest.mark.parametrize(
    ("address", "expected"), EMBEDDED, ids=lambda v: v.hex() if isinstance(v, bytes) else v
)
def test_embedded_ipv4(address: bytes | None, expected: str | None) -> None:
    assert address is not None
    found = embedded_ipv4(address)
    assert (format_ip(found) if found else None) == expected


@pytest.mark.parametrize(
    ("address", "v4_bits", "v6_bits", "expected"),
    [
        ("203.0.113.77", 24, 48, "203.0.113.0"),
        ("2001:db8:abcd:12::1", 24, 48, "2001:db8:abcd::"),
        ("2001:db8:abcd:12::1", 24, 128, "2001:db8:abcd:12::1"),
        ("2002:cb00:714d::1", 24, 48, "203.0.113.0"),  # 6to4: its /48 is the whole IPv4 address
        ("2002:cb00:714d:1::1", 16, 128, "203.0.0.0"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", 24, 128, "192.0.2.0"),  # Teredo: the client, not the server
        ("64:ff9b::203.0.113.77", 24, 128, "203.0.113.0"),
        ("64:ff9b:1::203.0.113.77", 8, 48, "203.0.0.0"),
        ("::203.0.113.77", 24, 128, "203.0.113.0"),
        ("::ffff:0:203.0.113.77", 24, 128, "203.0.113.0"),
        ("::1", 24, 128, "::1"),
        # local-use NAT64, /48 layout: 64:ff9b:1:cb00:71:4d00:: -- every layout's bits past /24 are zeroed
        ("64:ff9b:1:cb00:71:4d00::", 24, 128, "64:ff9b:1:cb00:71::"),
        ("64:ff9b:1:cb00:71:4d00::", 24, 48, "64:ff9b:1::"),
        ("64:ff9b:1:cb00:71:4d00::", 0, 128, "64:ff9b:1::"),
        # ISATAP: the prefix stays, the host's IPv4 is cut to the IPv4 prefix
        ("2001:db8:1:2:200:5efe:203.0.113.77", 24, 128, "2001:db8:1:2:200:5efe:cb00:7100"),
        ("2001:db8:1:2:200:5efe:203.0.113.77", 24, 64, "2001:db8:1:2::"),
        ("2001:db8:1:2:0:5efe:203.0.113.77", 16, 128, "2001:db8:1:2:0:5efe:cb00:0"),
    ],
)
def test_anonymise(address: str, v4_bits: int, v6_bits: int, expected: str) -> None:
    parsed = parse_ip(address)
    assert parsed is not None
    assert format_ip(anonymise(parsed, v4_bits, v6_bits)) == ipaddress.ip_address(expected).compressed


def test_anonymise_rejects_bad_arguments_without_leaking() -> None:
    with pytest.raises(ValueError) as exc:
        anonymise(enc_6to4(CLIENT), 33, 48)
    assert "203" not in str(exc.value)
    with pytest.raises(ValueError):
        anonymise(b"\x01\x02\x03", 24, 48)


# The property: whatever the encoding and the two prefix settings, parse the stored text back and
# check, bit by bit, that no more of the client's IPv4 address is left than its first v4_bits.

v4_clients = st.integers(0x01000000, 0xFFFFFFFF).map(v4bytes)  # 0.0.0.0/8 is never a source address
prefix_bits = st.tuples(st.integers(0, 32), st.integers(0, 128))


def _v4_mask(bits: int) -> int:
    return ((1 << bits) - 1) << (32 - bits)


def stored_back(stored: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The stored text form, parsed by the standard library (not by the code under test)."""
    return ipaddress.ip_address(format_ip(stored))


@st.composite
def unambiguous_encodings(draw: st.DrawFn) -> tuple[bytes, bytes]:
    v4 = draw(v4_clients)
    kind = draw(
        st.sampled_from(["plain", "mapped", "6to4", "teredo", "nat64", "local96", "compat", "translated"])
    )
    noise = draw(st.binary(min_size=16, max_size=16))
    if kind == "plain":
        return v4, v4
    if kind == "mapped":
        return v4, parse_ip(f"::ffff:{ipaddress.IPv4Address(v4)}") or b""
    if kind == "6to4":
        return v4, enc_6to4(v4, noise[:10])
    if kind == "teredo":
        return v4, enc_teredo(v4, noise[:4], noise[4:8])
    if kind == "nat64":
        return v4, enc_nat64(v4)
    if kind == "local96":
        operator = draw(st.sampled_from([b"\x00" * 6, noise[:2] + bytes([noise[2] | 1]) + noise[3:6]]))
        return v4, enc_local_nat64(v4, 96, operator=operator)
    if kind == "compat":
        return v4, enc_compatible(v4)
    return v4, enc_translated(v4)


@given(unambiguous_encodings(), prefix_bits)
def test_stored_address_keeps_only_the_ipv4_prefix_of_any_encoding(
    case: tuple[bytes, bytes], bits: tuple[int, int]
) -> None:
    v4, address = case
    v4_bits, v6_bits = bits
    back = stored_back(anonymise(address, v4_bits, v6_bits))
    assert back.version == 4  # stored as the truncated IPv4 address, whatever the v6 setting
    assert int(back) == int.from_bytes(v4, "big") & _v4_mask(v4_bits)


LOCAL_LAYOUTS = {  # RFC 6052 figure 1: where each IPv4 byte goes, per prefix length
    48: (6, 7, 9, 10),
    56: (7, 9, 10, 11),
    64: (9, 10, 11, 12),
    96: (12, 13, 14, 15),
}


def _ipv4_at(address: bytes, byte_positions: tuple[int, ...]) -> int:
    return int.from_bytes(bytes(address[p] for p in byte_positions), "big")


@given(v4_clients, st.sampled_from([48, 56, 64]), st.binary(min_size=8, max_size=8), prefix_bits)
def test_ambiguous_local_nat64_keeps_no_ipv4_bits_past_the_prefix_in_any_layout(
    v4: bytes, layout: int, noise: bytes, bits: tuple[int, int]
) -> None:
    v4_bits, v6_bits = bits
    operator = noise[: (layout - 48) // 8]
    suffix = noise[: 16 - (layout // 8 + 5 if layout < 96 else 16)]
    address = enc_local_nat64(v4, layout, operator=operator, suffix=suffix)
    back = stored_back(anonymise(address, v4_bits, v6_bits))
    assert back.version == 6
    stored = back.packed
    for positions in LOCAL_LAYOUTS.values():  # whichever layout the operator really uses
        assert _ipv4_at(stored, positions) & ~_v4_mask(v4_bits) == 0
    true_bits = _ipv4_at(stored, LOCAL_LAYOUTS[layout])
    assert true_bits & ~(int.from_bytes(v4, "big") & _v4_mask(v4_bits)) == 0  # only the real prefix


@given(v4_clients, st.binary(min_size=6, max_size=6), st.booleans(), prefix_bits)
def test_isatap_keeps_no_ipv4_bits_past_the_prefix(
    v4: bytes, site: bytes, global_bit: bool, bits: tuple[int, int]
) -> None:
    v4_bits, v6_bits = bits
    address = enc_isatap(v4, b"\x2a\x00" + site, global_bit)
    back = stored_back(anonymise(address, v4_bits, v6_bits))
    assert back.version == 6
    assert int(back) & 0xFFFFFFFF & ~_v4_mask(v4_bits) == 0
    assert back.packed[:8] == truncate(address, 0, min(v6_bits, 64))[:8]  # the prefix is not touched


@given(st.binary(min_size=16, max_size=16), prefix_bits)
def test_anonymise_any_ipv6_address_keeps_no_ipv4_past_the_prefix(
    address: bytes, bits: tuple[int, int]
) -> None:
    """Arbitrary 16 bytes: whatever embedded_ipv4 finds is cut to the IPv4 prefix; the rest is the IPv6
    prefix with nothing added."""
    v4_bits, v6_bits = bits
    stored = anonymise(address, v4_bits, v6_bits)
    found = embedded_ipv4(address)
    if found is not None:
        assert stored == truncate(found, v4_bits, 0)
    else:
        assert len(stored) == 16
        assert int.from_bytes(stored, "big") & ~int.from_bytes(truncate(address, 0, v6_bits), "big") == 0


@pytest.mark.parametrize(
    ("entries", "address", "expected"),
    [
        (["10.0.0.0/8"], "64:ff9b::10.1.2.3", True),  # through a NAT64/SIIT translator
        (["10.0.0.0/8"], "64:ff9b:1::10.1.2.3", True),
        (["10.0.0.0/8"], "::10.1.2.3", True),
        (["10.0.0.0/8"], "::ffff:0:10.1.2.3", True),
        (["10.0.0.0/8"], "::ffff:10.1.2.3", True),
        (["10.0.0.0/8"], "64:ff9b::11.1.2.3", False),
        (["10.0.0.0/8"], "2002:a01:203::1", False),  # 6to4 of a trusted address: a tunnel, not our proxy
        (["10.0.0.0/8"], format_ip(enc_teredo(v4bytes(0x0A010203))), False),  # Teredo client 10.1.2.3
        (["10.0.0.0/8"], "64:ff9b:1:a01:2:300::", False),  # ambiguous layout: not seen through
        (["2002::/16"], "2002:a01:203::1", True),  # the operator can still list such networks
        (["127.0.0.0/8", "::1"], "::1", True),
        (["127.0.0.0/8"], "::1", False),  # ::1 is IPv6 loopback, not IPv4-compatible 0.0.0.1
    ],
)
def test_trusted_proxies_see_through_translations_not_tunnels(
    entries: list[str], address: str, expected: bool
) -> None:
    parsed = parse_ip(address)
    assert parsed is not None
    assert TrustedProxies(entries).contains(parsed) is expected


def test_client_ip_behind_a_translated_trusted_proxy() -> None:
    trusted = TrustedProxies(["10.0.0.0/8"])
    result = client_ip("64:ff9b::10.0.0.5", "203.0.113.77", "x-forwarded-for", trusted)
    assert result == CLIENT
    spoof = client_ip("2002:a00:5::1", "203.0.113.77", "x-forwarded-for", trusted)
    assert spoof == parse_ip("2002:a00:5::1")  # a 6to4 peer is the client: its header is not read
