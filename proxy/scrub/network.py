"""Network addresses: IPv4 and IPv6 literals in text, and host names that are, or carry, an IP address.

Replaced by ``[ip]`` in text:

* IPv4 dotted quads (``203.0.113.7``); quads with hexadecimal or octal parts (``0xCB.0.0x71.7``,
  ``0313.0.0161.07``); the 32-bit hexadecimal form (``0xCB007107``); the decimal 32-bit form only after a
  word that says it is an address (``ip=3405803783``, ``addr 3405803783``): elsewhere a 10-digit number
  is far more often an order number or a timestamp;
* dashed quads of wildcard-DNS and cloud host names (``203-0-113-7.nip.io``, ``ip-10-0-0-1``,
  ``ec2-203-0-113-7.compute-1.amazonaws.com``);
* IPv6 literals (full, compressed, IPv4-mapped, bracketed, with a zone id: ``fe80::1%eth0``,
  ``fe80::1%25eth0``). Forms with fewer than two written groups and no embedded IPv4 (``::``, ``::1``)
  are nobody's address and stay.

``is_ip_host`` says whether a URL's host is an IP address in any form a browser accepts (the WHATWG URL
Standard reads ``3405803783``, ``0xcb.0.0x71.7`` and ``203.7`` as IPv4) or carries one in a label
(``10.0.0.1.nip.io``, ``10-0-0-1.sslip.io``).
"""

from __future__ import annotations

import ipaddress
import re

from proxy.scrub.detector import IP_PLACEHOLDER, Detector

# Longest textual IPv6 address: "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255" (45) plus brackets.
_IPV6_MAX_LEN = 47

IPV4_RE = re.compile(r"(?<![0-9])[0-9]{1,3}+(?:\.[0-9]{1,3}+){3}(?![0-9])")
# Four parts of which at least one is hexadecimal ("0x..") or octal ("0..."), validated in the callback.
_IPV4_BASED_RE = re.compile(
    r"(?<![0-9A-Za-z_.])(?:0[xX][0-9A-Fa-f]{1,8}+|[0-9]{1,11}+)(?:\.(?:0[xX][0-9A-Fa-f]{1,8}+|[0-9]{1,11}+)){3}"
    r"(?![0-9A-Za-z_])"
)
_IPV4_HEX32_RE = re.compile(r"(?<![0-9A-Za-z_])0[xX][0-9A-Fa-f]{8}(?![0-9A-Za-z_])")
_IPV4_DECIMAL32_RE = re.compile(
    r"(?<![0-9A-Za-z])((?:ip|ipv4|ip[-_ ]?addr(?:ess)?|addr|address|remote[-_ ]?addr|host)[\s:=/_-]{1,3})"
    r"([0-9]{8,10})(?![0-9])",
    re.IGNORECASE,
)
# "10-0-0-1.nip.io", "ec2-203-0-113-7.compute-1...": a dashed quad that is (part of) a host label.
_DASHED_QUAD_HOST_RE = re.compile(
    r"(?<![0-9A-Za-z])([0-9]{1,3})-([0-9]{1,3})-([0-9]{1,3})-([0-9]{1,3})(?=\.[A-Za-z])"
)
# "ip-10-0-0-1": AWS's private host names, also without their domain.
_DASHED_QUAD_PREFIXED_RE = re.compile(
    r"(?<![0-9A-Za-z])(ip-|ec2-)([0-9]{1,3})-([0-9]{1,3})-([0-9]{1,3})-([0-9]{1,3})(?![0-9])", re.IGNORECASE
)
_DASHED_QUAD_LABEL_RE = re.compile(r"(?<![0-9])[0-9]{1,3}-[0-9]{1,3}-[0-9]{1,3}-[0-9]{1,3}(?![0-9])")
# A run of hex digits, dots and colons holding a colon, optionally bracketed, with an optional zone id
# ("%eth0", "%25eth0"); the callback validates it with the ipaddress module.
_IPV6_CANDIDATE_RE = re.compile(
    r"(?<![0-9A-Za-z.])\[?[0-9A-Fa-f.]*+:[0-9A-Fa-f:.]*+(?:%(?:25)?[0-9A-Za-z_.~-]++)?\]?"
)
# WHATWG: a host whose last label is a number is parsed as IPv4 ("http://3232235777/", "http://0x7f.1/").
_NUMERIC_LABEL_RE = re.compile(r"[0-9]+|0x[0-9a-f]*")


def _is_ipv4(candidate: str) -> bool:
    return all(int(octet) <= 255 for octet in candidate.split("."))


def _ipv4_repl(match: re.Match[str]) -> str:
    found = match.group(0)
    return IP_PLACEHOLDER if _is_ipv4(found) else found


def _part_value(part: str) -> int | None:
    """A part of a WHATWG IPv4 address: "0x.." hexadecimal, "0.." octal, else decimal; None if invalid."""
    try:
        if part[:2] in ("0x", "0X"):
            return int(part[2:] or "0", 16)
        if len(part) > 1 and part.startswith("0"):
            return int(part, 8)
        return int(part)
    except ValueError:
        return None


def _ipv4_based_repl(match: re.Match[str]) -> str:
    found = match.group(0)
    parts = found.split(".")
    if not any(p[:2] in ("0x", "0X") or (len(p) > 1 and p.startswith("0")) for p in parts):
        return found  # all decimal: IPV4_RE's business
    values = [_part_value(p) for p in parts]
    return IP_PLACEHOLDER if all(v is not None and v <= 255 for v in values) else found


def _decimal32_repl(match: re.Match[str]) -> str:
    return match.group(1) + IP_PLACEHOLDER if 2**24 <= int(match.group(2)) < 2**32 else match.group(0)


def _dashed_quad_repl(match: re.Match[str]) -> str:
    return IP_PLACEHOLDER if all(int(g) <= 255 for g in match.groups()) else match.group(0)


def _prefixed_quad_repl(match: re.Match[str]) -> str:
    octets = match.groups()[1:]
    return match.group(1) + IP_PLACEHOLDER if all(int(g) <= 255 for g in octets) else match.group(0)


def _is_ipv6(candidate: str) -> bool:
    if candidate.count(":") < 2 or len(candidate) > _IPV6_MAX_LEN or candidate == "::":
        return False
    # "::1", "::ffff" and the like are not anybody's address; an embedded IPv4 always counts.
    if "." not in candidate and sum(1 for group in candidate.split(":") if group) < 2:
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def _ipv6_repl(match: re.Match[str]) -> str:
    found = match.group(0)
    lead = "[" if found.startswith("[") else ""
    core = found[len(lead) :]
    trail = "]" if core.endswith("]") else ""
    core = core[: len(core) - len(trail)]
    zone = ""
    percent = core.find("%")
    if percent >= 0:
        core, zone = core[:percent], core[percent:]
    if lead and trail and _is_ipv6(core):
        return IP_PLACEHOLDER
    stripped = core.rstrip(".")
    if stripped != core:  # "2001:db8::1." ends a sentence: the dots are not part of it, nor is a zone after
        trail = core[len(stripped) :] + zone + trail
        core, zone = stripped, ""
    # Try the run as is, then without a stray single ':' at either end ("ip :2001:db8::1:").
    starts = [0, 1] if core.startswith(":") and not core.startswith("::") else [0]
    ends = [len(core), len(core) - 1] if core.endswith(":") and not core.endswith("::") else [len(core)]
    for start in starts:
        for end in ends:
            if _is_ipv6(core[start:end]):
                rest = "" if end == len(core) else core[end:] + zone  # a zone id goes with its address
                return lead + core[:start] + IP_PLACEHOLDER + rest + trail
    return found


def could_match(s: str) -> bool:
    return (
        s.count(":") >= 2
        or s.count(".") >= 3
        or "0x" in s
        or "0X" in s
        or s.count("-") >= 3
        or (len(s) >= 10 and _IPV4_DECIMAL32_RE.search(s) is not None)
    )


def redact(s: str) -> str:
    if s.count(":") >= 2:
        s = _IPV6_CANDIDATE_RE.sub(_ipv6_repl, s)
    if s.count(".") >= 3:
        s = IPV4_RE.sub(_ipv4_repl, s)
        s = _IPV4_BASED_RE.sub(_ipv4_based_repl, s)
    if "0x" in s or "0X" in s:
        s = _IPV4_HEX32_RE.sub(IP_PLACEHOLDER, s)
    if s.count("-") >= 3:
        s = _DASHED_QUAD_HOST_RE.sub(_dashed_quad_repl, s)
        s = _DASHED_QUAD_PREFIXED_RE.sub(_prefixed_quad_repl, s)
    if len(s) >= 10:
        s = _IPV4_DECIMAL32_RE.sub(_decimal32_repl, s)
    return s


IP = Detector("network", could_match, redact)


def is_ip_host(host: str) -> bool:
    """True for a (lower-case, unbracketed) host that is an IPv4 address or carries one in its labels."""
    last_label = host.rstrip(".").rpartition(".")[2]
    if _NUMERIC_LABEL_RE.fullmatch(last_label):
        return True
    if any(_is_ipv4(m.group(0)) for m in IPV4_RE.finditer(host)):
        return True
    labels = host.split(".")
    for i in range(len(labels) - 3):  # four labels in a row that are IPv4 parts, in any base
        values = [_part_value(label) if label else None for label in labels[i : i + 4]]
        if all(v is not None and v <= 255 for v in values):
            return True
    if "-" in host:
        for m in _DASHED_QUAD_LABEL_RE.finditer(host):
            if all(int(octet) <= 255 for octet in m.group(0).split("-")):
                return True
    return False
