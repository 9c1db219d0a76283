"""What the fuzz harnesses share: turning fuzzer bytes into a request, the invariants every parser
keeps, and the atheris entry point.

A harness is a module ``fuzz_<target>.py`` with a ``check(data: bytes) -> None`` that feeds ``data`` to
one parser and raises only when an invariant breaks: an exception other than the parser's documented
ones escapes, or :func:`assert_beacons` fails. ``tests/fuzz/test_corpus.py`` replays every corpus file
(and a few mutations of each) through ``check`` in ``make test``; ``make fuzz`` runs each harness under
atheris (a coverage-guided fuzzer) for ``FUZZ_SECONDS``.

Foreign-format inputs are written like a raw HTTP request, so seeds are readable and mutations hit the
method, path, query, headers and body alike::

    POST /e/?compression=gzip-js
    content-type: text/plain
    <blank line>
    <body bytes>
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from urllib.parse import parse_qsl

from proxy.formats.base import ForeignRequest, Parsed
from proxy.model import Beacon
from proxy.parse import EventError, Limits, UnreadableEvent

LIMITS = Limits()
MAX_DECOMPRESSED = 1 << 20  # small, so a fuzzer's bombs are quick to refuse
KEYS = {"demo": "demo", "example.com": "demo", "phc_demo": "demo"}
# The headers proxy.ingest hands to a format (the rest are never read).
WANTED = frozenset({"content-type", "content-encoding", "authorization", "x-write-key", "user-agent"})


def request(data: bytes, default_path: str) -> ForeignRequest:
    """A foreign request from fuzzer bytes, built the way proxy.ingest builds one from ASGI."""
    head, sep, body = data.partition(b"\n\n")
    if not sep:
        head, body = b"", data
    lines = head.decode("latin-1").split("\n")
    method, _, target = lines[0].partition(" ")
    method = method if method in ("GET", "POST", "HEAD") else "POST"
    target = target.strip() or default_path
    path, _, query_string = target.partition("?")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if colon and name in WANTED and name not in headers:
            headers[name] = value.strip()
    return ForeignRequest(
        method=method,
        path=path if path.startswith("/") else default_path,
        query=dict(parse_qsl(query_string, keep_blank_values=True)),
        headers=headers,
        body=body if method == "POST" else b"",
        max_decompressed=MAX_DECOMPRESSED,
        site_for_key=lambda key: KEYS.get(key, ""),
        limits=LIMITS,
    )


def _encodable(value: object) -> bool:
    """Text the spool can write: UTF-8 without lone surrogates."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True


def assert_beacons(beacons: Sequence[Beacon | EventError]) -> None:
    """Every slot is a valid beacon or an expected per-event error; nothing a later step would choke on."""
    for b in beacons:
        if isinstance(b, EventError):
            assert not isinstance(b, UnreadableEvent), f"a parser failed unexpectedly: {b.__cause__!r}"
            message = str(b)
            assert message.isascii() and len(message) < 200, "an error message quotes input"
            continue
        assert isinstance(b, Beacon), type(b)
        assert b.site and b.type in ("pageview", "event")
        for f in fields(b):
            value = getattr(b, f.name)
            assert _encodable(value), f"field {f.name} holds text the spool cannot encode"
            if isinstance(value, str):
                assert len(value) <= LIMITS.max_string_length, f.name
        for key, value in b.props.items():
            assert _encodable(key) and _encodable(value), "a prop holds text the spool cannot encode"


def assert_parsed(parsed: Parsed) -> None:
    assert isinstance(parsed, Parsed)
    assert_beacons(parsed.beacons)
    assert parsed.user_agent is None or (isinstance(parsed.user_agent, str) and _encodable(parsed.user_agent))


def main(check: Callable[[bytes], None]) -> None:
    """Run ``check`` under atheris with libFuzzer's command line (see ``make fuzz``)."""
    import atheris  # the `fuzz` extra: not needed to replay the corpus

    atheris.instrument_all()
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()
