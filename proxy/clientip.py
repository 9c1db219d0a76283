"""Client IP resolution and truncation for the ingestion hot path.

Guarantees:

* The client address comes from the socket peer, and from ``X-Forwarded-For`` / RFC 7239 ``Forwarded``
  only when the peer is a trusted proxy. Hops are walked from the right; the first untrusted hop is the
  client. An unparseable client hop yields ``None``, never the proxy's own address.
* Addresses are handled as packed bytes: 4 bytes for IPv4 (IPv4-mapped IPv6 is always normalised to
  IPv4) and 16 bytes for IPv6. No ``ipaddress`` objects are built per request.
* Functions fed request data never raise for bad input; they return ``None``. Exceptions this module
  raises (``ValueError`` for bad configuration or bad arguments) never contain request-derived text,
  so a full client IP cannot leak into logs through an error message.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from functools import cache
from typing import Literal

__all__ = [
    "TrustedProxies",
    "anonymise",
    "carries_ipv4",
    "client_ip",
    "embedded_ipv4",
    "format_ip",
    "ip_version",
    "parse_ip",
    "truncate",
]

_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_inet_pton = socket.inet_pton
_inet_ntop = socket.inet_ntop

_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"
_ZERO_80 = b"\x00" * 10

# Longest sane textual form: quoted, bracketed IPv6 with embedded IPv4, a zone id and a port is well
# under this. Anything longer is rejected before any parsing work is done.
_MAX_TEXT = 128

_V4_MASKS = tuple(((1 << bits) - 1) << (32 - bits) for bits in range(33))
_V6_MASKS = tuple(((1 << bits) - 1) << (128 - bits) for bits in range(129))

_ZONE_RE = re.compile(r"[A-Za-z0-9._~-]+")
_OBFPORT_RE = re.compile(r"_[A-Za-z0-9._-]+")
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.DOTALL)


def _valid_port(port: str) -> bool:
    """``port`` is the text after the ':' that follows a host: decimal 0-65535 or an RFC 7239 obfport."""
    if port.isascii() and port.isdigit():
        return len(port) <= 5 and int(port) <= 65535
    return _OBFPORT_RE.fullmatch(port) is not None


def _pton4(text: str) -> bytes | None:
    try:
        return _inet_pton(_AF_INET, text)
    except (OSError, ValueError):  # ValueError covers NUL bytes and unencodable surrogates
        return None


def _pton6(text: str) -> bytes | None:
    """Parse bare IPv6 text (optionally with a zone id), normalising IPv4-mapped addresses to 4 bytes."""
    if "%" in text:
        text, _, zone = text.partition("%")
        if _ZONE_RE.fullmatch(zone) is None:
            return None
    try:
        packed = _inet_pton(_AF_INET6, text)
    except (OSError, ValueError):
        return None
    if packed[:12] == _MAPPED_PREFIX:
        return packed[12:]
    return packed


def parse_ip(text: str) -> bytes | None:
    """Parse one textual address into packed bytes, or ``None`` if it is not a usable IP address.

    Accepts surrounding whitespace, a surrounding double-quoted string (RFC 7239 ``for="..."``),
    ``[v6]``, ``[v6]:port``, ``v4:port`` and IPv6 zone ids (stripped). IPv4-mapped IPv6 becomes 4 bytes.
    Obfuscated identifiers (``_hidden``), ``unknown``, empty strings and anything malformed give ``None``.
    """
    if not isinstance(text, str):
        return None
    s = text.strip()
    if not 0 < len(s) <= _MAX_TEXT:
        return None
    if s[0] == '"':
        if len(s) < 2 or s[-1] != '"':
            return None
        s = s[1:-1]
        if "\\" in s:
            s = _QUOTED_PAIR_RE.sub(r"\1", s)
        s = s.strip()
        if not s:
            return None
    if s[0] == "[":
        end = s.find("]")
        if end < 0:
            return None
        rest = s[end + 1 :]
        if rest and (rest[0] != ":" or not _valid_port(rest[1:])):
            return None
        inner = s[1:end]
        if ":" not in inner:  # "[1.2.3.4]" is not a valid bracketed form
            return None
        return _pton6(inner)
    colons = s.count(":")
    if colons == 0:
        return _pton4(s)
    if colons == 1:
        host, _, port = s.partition(":")
        if not _valid_port(port):
            return None
        return _pton4(host)
    return _pton6(s)


def ip_version(packed: bytes) -> int:
    """4 or 6 for a packed address; ``ValueError`` for any other length."""
    n = len(packed)
    if n == 4:
        return 4
    if n == 16:
        return 6
    raise ValueError(f"packed address must be 4 or 16 bytes, got {n}")


def _format_v6_python(packed: bytes) -> str:
    """RFC 5952 text, same as ``ipaddress.IPv6Address.compressed`` (no dotted-quad tail)."""
    words = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, 16, 2)]
    best_start, best_len = -1, 0
    run_start, run_len = -1, 0
    for i, word in enumerate(words):
        if word == 0:
            if run_len == 0:
                run_start = i
            run_len += 1
            if run_len > best_len:
                best_start, best_len = run_start, run_len
        else:
            run_len = 0
    hextets = [f"{w:x}" for w in words]
    if best_len < 2:
        return ":".join(hextets)
    head = ":".join(hextets[:best_start])
    tail = ":".join(hextets[best_start + best_len :])
    return f"{head}::{tail}"


def format_ip(packed: bytes) -> str:
    """Text form of a packed address: dotted quad, or compressed IPv6 exactly like ``ipaddress``."""
    n = len(packed)
    if n == 4:
        return _inet_ntop(_AF_INET, packed)
    if n == 16:
        if packed[:10] == _ZERO_80:
            # libc prints some of these with a dotted-quad tail ("::ffff:1.2.3.4", "::1.2.3.4");
            # ipaddress does not, so format them ourselves.
            return _format_v6_python(packed)
        return _inet_ntop(_AF_INET6, packed)
    raise ValueError(f"packed address must be 4 or 16 bytes, got {n}")


def truncate(packed: bytes, v4_bits: int, v6_bits: int) -> bytes:
    """Keep the first ``v4_bits`` / ``v6_bits`` bits of the address and zero the rest (same length)."""
    if not 0 <= v4_bits <= 32:
        raise ValueError(f"v4_bits must be within 0..32, got {v4_bits}")
    if not 0 <= v6_bits <= 128:
        raise ValueError(f"v6_bits must be within 0..128, got {v6_bits}")
    n = len(packed)
    if n == 4:
        return (int.from_bytes(packed, "big") & _V4_MASKS[v4_bits]).to_bytes(4, "big")
    if n == 16:
        return (int.from_bytes(packed, "big") & _V6_MASKS[v6_bits]).to_bytes(16, "big")
    raise ValueError(f"packed address must be 4 or 16 bytes, got {n}")


# --- IPv4 addresses inside IPv6 ------------------------------------------------------------------------
#
# Where each form keeps the IPv4 address (bit 0 is the first bit of the IPv6 address):
#
#   6to4            2002::/16          bits 16-48: the client's IPv4 (RFC 3056)
#   Teredo          2001:0::/32        bits 32-64: the Teredo server's IPv4; bits 96-128: the client's
#                                      public IPv4, each bit inverted (RFC 4380)
#   NAT64/SIIT      64:ff9b::/96       bits 96-128 (RFC 6052: this well-known prefix is /96 only)
#   local NAT64     64:ff9b:1::/48     RFC 8215: the operator picks /48, /56, /64 or /96 inside it, and
#                                      RFC 6052 puts the IPv4 at a different place for each (bits 64-72,
#                                      "u", are skipped by the first three)
#   IPv4-compatible ::a.b.c.d          bits 96-128 (RFC 4291, deprecated); :: and ::1 are not IPv4
#   IPv4-translated ::ffff:0:a.b.c.d   bits 96-128 (RFC 2765 SIIT)
#   ISATAP          any /64 with interface id 0:5efe:a.b.c.d (or 200:5efe:...), bits 96-128 (RFC 5214)
#   IPv4-mapped     ::ffff:a.b.c.d     normalised to IPv4 when parsed (see parse_ip)
#
# The client's IPv4 is used wherever the form names it unambiguously. A local-use NAT64 address whose
# layout cannot be told apart, and an ISATAP address (whose IPv4 is the host's own, often private, one:
# the IPv6 prefix says more about where the client is), stay IPv6; anonymise() then zeroes every bit
# that could hold IPv4 bits beyond the IPv4 prefix.

_6TO4 = 0x02  # second byte after 0x20
_NAT64_WKP = b"\x00\x64\xff\x9b" + b"\x00" * 8
_NAT64_LOCAL = b"\x00\x64\xff\x9b\x00\x01"
_ZERO_6 = b"\x00" * 6
_ZERO_96 = b"\x00" * 12
_TRANSLATED = b"\x00" * 8 + b"\xff\xff\x00\x00"
_NOT_COMPATIBLE = frozenset({b"\x00\x00\x00\x00", b"\x00\x00\x00\x01"})  # :: and ::1
_ISATAP_IID = b"\x00\x5e\xfe"  # bytes 9-11; byte 8 is 0x00-0x03 (the u and g bits)


def embedded_ipv4(packed: bytes, *, tunnels: bool = True) -> bytes | None:
    """The client's IPv4 address (4 bytes) that a 16-byte address carries, or ``None``.

    Recognised: 6to4 and Teredo (the client's address, de-obfuscated; not the server's) when ``tunnels``
    is true, NAT64/SIIT under ``64:ff9b::/96``, local-use NAT64 under ``64:ff9b:1::/48`` when only the /96
    layout fits (the "u" octet is set, or bits 48-96 are zero), IPv4-compatible ``::a.b.c.d`` (not ``::``
    or ``::1``) and IPv4-translated ``::ffff:0:a.b.c.d``. Anything else, including 4-byte input, gives
    ``None``. Costs one or two byte comparisons for an ordinary IPv6 address.
    """
    if len(packed) != 16:
        return None
    first = packed[0]
    if first == 0x20:
        second = packed[1]
        if not tunnels:
            return None
        if second == _6TO4:
            return packed[2:6]
        if second == 0x01 and packed[2] == 0 and packed[3] == 0:  # Teredo
            return (int.from_bytes(packed[12:], "big") ^ 0xFFFFFFFF).to_bytes(4, "big")
        return None
    if first == 0:
        if packed[:12] == _NAT64_WKP or packed[:12] == _TRANSLATED:
            return packed[12:]
        if packed[:6] == _NAT64_LOCAL:
            # Only the /96 layout has no "u" octet, and the others would read an IPv4 in 0.0.0.0/8.
            return packed[12:] if packed[8] != 0 or packed[6:12] == _ZERO_6 else None
        if packed[:12] == _ZERO_96 and packed[12:] not in _NOT_COMPATIBLE:
            return packed[12:]
    return None


def _local_nat64_positions(prefix_len: int) -> tuple[int, ...]:
    """RFC 6052 section 2.2: where IPv4 bit i sits for a given prefix length (bits 64-72 skipped)."""
    positions = []
    bit = prefix_len
    for _ in range(32):
        if bit == 64 and prefix_len < 96:
            bit = 72
        positions.append(bit)
        bit += 1
    return tuple(positions)


# IPv6 bit positions of IPv4 bits 0..31, for the forms that stay IPv6 (see above).
_LOCAL_NAT64_LAYOUTS = tuple(_local_nat64_positions(n) for n in (48, 56, 64, 96))
_LOW_32 = tuple(range(96, 128))


@cache
def _keep_mask(layouts: tuple[tuple[int, ...], ...], v4_bits: int) -> int:
    """All ones except, in each layout, the bits holding IPv4 bits beyond the first ``v4_bits``."""
    mask = (1 << 128) - 1
    for positions in layouts:
        for position in positions[v4_bits:]:
            mask &= ~(1 << (127 - position))
    return mask


def _ambiguous_layouts(packed: bytes) -> tuple[tuple[int, ...], ...]:
    """The layouts that may hold an IPv4 address in a 16-byte address :func:`embedded_ipv4` declined."""
    local = packed[:6] == _NAT64_LOCAL
    isatap = packed[9:12] == _ISATAP_IID and packed[8] <= 3
    if local and isatap:
        return (*_LOCAL_NAT64_LAYOUTS, _LOW_32)
    if local:
        return _LOCAL_NAT64_LAYOUTS
    if isatap:
        return (_LOW_32,)
    return ()


def carries_ipv4(packed: bytes) -> bool:
    """Whether a 16-byte address holds (or may hold) an IPv4 address in any form listed above."""
    return embedded_ipv4(packed) is not None or bool(_ambiguous_layouts(packed))


def anonymise(packed: bytes, v4_bits: int, v6_bits: int) -> bytes:
    """What may be stored of a client address (4 or 16 bytes; ``ValueError`` for other lengths).

    An address that carries the client's IPv4 (:func:`embedded_ipv4`) becomes that IPv4 address, truncated
    to ``v4_bits``; any other IPv4 is truncated to ``v4_bits`` and IPv6 to ``v6_bits``. In an IPv6 address
    that may hold an IPv4 address at more than one place (local-use NAT64 of unknown layout, ISATAP),
    every bit that could hold an IPv4 bit beyond the first ``v4_bits`` is zeroed as well, so no setting of
    ``v6_bits`` keeps more of an IPv4 address than ``v4_bits`` allows.
    """
    if len(packed) == 16:
        v4 = embedded_ipv4(packed)
        if v4 is not None:
            return truncate(v4, v4_bits, v6_bits)
        out = truncate(packed, v4_bits, v6_bits)
        layouts = _ambiguous_layouts(packed)
        if layouts:
            value = int.from_bytes(out, "big") & _keep_mask(layouts, v4_bits)
            out = value.to_bytes(16, "big")
        return out
    return truncate(packed, v4_bits, v6_bits)


def _parse_trusted_entry(entry: str) -> tuple[int, int, int]:
    """``(version, network_int, prefix_len)`` for one config entry; ``ValueError`` naming it if invalid."""
    addr_text, slash, prefix_text = entry.partition("/")
    addr_text = addr_text.strip()
    prefix_text = prefix_text.strip()
    family = _AF_INET6 if ":" in addr_text else _AF_INET
    try:
        packed = _inet_pton(family, addr_text)
    except (OSError, ValueError):
        raise ValueError(f"invalid trusted proxy entry {entry!r}: not an IP address or CIDR") from None
    width = len(packed) * 8
    if slash:
        if not (prefix_text.isascii() and prefix_text.isdigit() and len(prefix_text) <= 3):
            raise ValueError(f"invalid trusted proxy entry {entry!r}: bad prefix length")
        prefix = int(prefix_text)
        if prefix > width:
            raise ValueError(f"invalid trusted proxy entry {entry!r}: prefix length exceeds {width}")
    else:
        prefix = width
    net = int.from_bytes(packed, "big")
    if width == 128 and packed[:12] == _MAPPED_PREFIX and prefix >= 96:
        # IPv4-mapped entry: peers and hops are normalised to IPv4, so match them as IPv4.
        net &= 0xFFFFFFFF
        prefix -= 96
        width = 32
    masks = _V4_MASKS if width == 32 else _V6_MASKS
    if net & ~masks[prefix] & ((1 << width) - 1):
        raise ValueError(f"invalid trusted proxy entry {entry!r}: host bits set after the prefix")
    return (4 if width == 32 else 6), net, prefix


class TrustedProxies:
    """A fixed set of trusted proxy networks, precomputed for cheap per-request membership tests.

    Entries are IPs or CIDRs (``"10.0.0.0/8"``, ``"::1"``, ``"2001:db8::/32"``); ``"*"`` trusts every peer.
    CIDRs with host bits set (``"10.0.0.1/8"``) are rejected. IPv4-mapped entries with a prefix of at least
    96 (``"::ffff:10.0.0.0/104"``) are stored as IPv4 (``10.0.0.0/8``).

    An IPv4 entry also trusts the same address in the NAT64/SIIT (``64:ff9b::10.0.0.5``, local-use
    ``64:ff9b:1::10.0.0.5``), IPv4-compatible and IPv4-translated forms: a stateless translator maps one
    host's address 1:1, and a TCP peer with such an address could only complete its handshake through
    that host. It does not trust 6to4 (``2002:a00:5::/48``) or Teredo forms: those are tunnels across
    third-party relays, used by clients, never by a proxy of ours.
    """

    __slots__ = ("_entries", "_trust_all", "_v4", "_v6")

    def __init__(self, cidrs: Sequence[str]) -> None:
        if isinstance(cidrs, str):
            raise TypeError("TrustedProxies expects a sequence of entries, not a single string")
        trust_all = False
        v4: dict[int, set[int]] = {}
        v6: dict[int, set[int]] = {}
        for raw in cidrs:
            if not isinstance(raw, str):
                raise ValueError(f"invalid trusted proxy entry {raw!r}: must be a string")
            entry = raw.strip()
            if entry == "*":
                trust_all = True
                continue
            if not entry:
                raise ValueError(f"invalid trusted proxy entry {raw!r}: empty")
            version, net, prefix = _parse_trusted_entry(entry)
            if version == 4:
                v4.setdefault(_V4_MASKS[prefix], set()).add(net)
            else:
                v6.setdefault(_V6_MASKS[prefix], set()).add(net)
        self._entries = tuple(cidrs)
        self._trust_all = trust_all
        # One (mask, networks) pair per distinct prefix length, most specific first: contains() costs one
        # AND and one set lookup per distinct prefix length, however many entries there are.
        self._v4 = tuple((mask, frozenset(nets)) for mask, nets in sorted(v4.items(), reverse=True))
        self._v6 = tuple((mask, frozenset(nets)) for mask, nets in sorted(v6.items(), reverse=True))

    @property
    def trust_all(self) -> bool:
        """True if configured with ``"*"``."""
        return self._trust_all

    def contains(self, packed: bytes) -> bool:
        """Whether a packed address (4 or 16 bytes) is a trusted proxy. Other lengths are never trusted."""
        n = len(packed)
        if n == 4:
            table = self._v4
        elif n == 16:
            if packed[:12] == _MAPPED_PREFIX:
                packed = packed[12:]
                table = self._v4
            else:
                table = self._v6
        else:
            return False
        if self._trust_all:
            return True
        value = int.from_bytes(packed, "big")
        for mask, nets in table:  # a plain loop beats any(<genexpr>) in the hot path
            if value & mask in nets:
                return True
        if n == 16 and self._v4 and table is self._v6:
            # A trusted IPv4 proxy reached through a NAT64/SIIT translator, or written in an
            # IPv4-compatible/translated form, is the same host. 6to4 and Teredo addresses are not: they
            # are tunnels through third-party relays, which a client uses, never one of our proxies.
            v4 = embedded_ipv4(packed, tunnels=False)
            if v4 is not None:
                return self.contains(v4)
        return False

    def __repr__(self) -> str:
        return f"TrustedProxies({list(self._entries)!r})"


def _xff_hops(value: str) -> Sequence[str | None]:
    return [hop for part in value.split(",") if (hop := part.strip())]


def _forwarded_hops(value: str) -> Sequence[str | None]:
    # Deliberately not quote-aware: an attacker-supplied unterminated quote on the left must not be able
    # to swallow the elements our trusted proxies appended on the right. Valid for= values never contain
    # ',' or ';', so plain splitting parses every proxy-appended element correctly.
    hops: list[str | None] = []
    for element in value.split(","):
        found: str | None = None
        duplicate = False
        for pair in element.split(";"):
            name, sep, pair_value = pair.partition("=")
            if sep and name.strip().lower() == "for":
                duplicate = found is not None
                found = pair_value
        if duplicate:
            hops.append(None)  # RFC 7239 forbids repeating a parameter: the element is ambiguous
        elif found is not None:
            hops.append(found)
    return hops


def client_ip(
    peer: str | None,
    header_value: str | None,
    header: Literal["x-forwarded-for", "forwarded"],
    trusted: TrustedProxies,
) -> bytes | None:
    """Resolve the packed client address for one request, or ``None`` if it cannot be determined.

    ``peer`` is the ASGI ``scope["client"][0]``. The header is consulted only when the peer is trusted;
    hops are walked right to left, trusted hops skipped, and the first untrusted hop returned (``None`` if
    it is unparseable). If every hop is trusted the left-most hop is returned. If the header holds no hops
    at all (absent, empty, only empty list items, or ``Forwarded`` elements without ``for=``) the peer is
    returned.
    """
    if header == "x-forwarded-for":
        split = _xff_hops
    elif header == "forwarded":
        split = _forwarded_hops
    else:
        raise ValueError(f"header must be 'x-forwarded-for' or 'forwarded', got {header!r}")
    if peer is None:
        return None
    peer_packed = parse_ip(peer)
    if peer_packed is None or not header_value or not trusted.contains(peer_packed):
        return peer_packed
    if not isinstance(header_value, str):
        raise TypeError("header_value must be str; decode ASGI header bytes as latin-1 first")
    hops = split(header_value)
    if not hops:
        return peer_packed
    packed: bytes | None = None
    for hop in reversed(hops):
        packed = parse_ip(hop) if hop is not None else None
        if packed is None or not trusted.contains(packed):
            return packed
    return packed  # every hop trusted: the left-most one
