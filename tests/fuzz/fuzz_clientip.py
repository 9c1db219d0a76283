"""Fuzz client-IP handling (proxy/clientip.py): parsing and resolving never raise on any text, and what
would be stored of any address keeps no more of an IPv4 address than the IPv4 prefix, whatever its
encoding. The first line is a peer, the second a forwarded header, the rest raw address bytes and
prefix settings. Run: make fuzz FUZZ_TARGETS=clientip."""

from __future__ import annotations

import ipaddress

from proxy.clientip import TrustedProxies, anonymise, client_ip, embedded_ipv4, format_ip, parse_ip, truncate
from tests.fuzz.harness import main

TRUSTED = TrustedProxies(["127.0.0.0/8", "::1", "10.0.0.0/8", "2001:db8::/32"])
LOCAL_NAT64_LAYOUTS = [(6, 7, 9, 10), (7, 9, 10, 11), (9, 10, 11, 12), (12, 13, 14, 15)]


def _stored_ok(address: bytes, v4_bits: int, v6_bits: int) -> None:
    stored = anonymise(address, v4_bits, v6_bits)
    back = ipaddress.ip_address(format_ip(stored)).packed  # what the stored text says
    v4 = embedded_ipv4(address) if len(address) == 16 else address
    if v4 is not None:
        assert back == truncate(v4, v4_bits, 0), "an embedded IPv4 address is stored past its prefix"
        return
    assert len(back) == 16
    assert int.from_bytes(back, "big") & ~int.from_bytes(truncate(address, 0, v6_bits), "big") == 0
    keep = ((1 << v4_bits) - 1) << (32 - v4_bits)
    if address[:6] == bytes.fromhex("0064ff9b0001"):
        for layout in LOCAL_NAT64_LAYOUTS:
            assert int.from_bytes(bytes(back[i] for i in layout), "big") & ~keep == 0
    if address[9:12] == b"\x00\x5e\xfe" and address[8] <= 3:
        assert int.from_bytes(back[12:], "big") & ~keep == 0


def check(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    peer, _, rest = text.partition("\n")
    forwarded, _, _ = rest.partition("\n")
    for header in ("x-forwarded-for", "forwarded"):
        resolved = client_ip(peer, forwarded, header, TRUSTED)  # type: ignore[arg-type]
        assert resolved is None or len(resolved) in (4, 16)
    for candidate in (peer, forwarded):
        parsed = parse_ip(candidate)
        if parsed is not None:
            assert parse_ip(format_ip(parsed)) == parsed
            _stored_ok(parsed, 24, 128)
    raw = data[-18:]
    if len(raw) == 18:
        _stored_ok(raw[2:], raw[0] % 33, raw[1] % 129)


if __name__ == "__main__":
    main(check)
