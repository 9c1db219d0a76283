"""Fuzz cookie parsing and the consent-cookie decoders (proxy/consent.py): the Cookie header parser and the
JSON, key:value and TCF v2 decoders never raise on any input (the TCF decoder only TCFError), and a
consent cookie's copies always settle to one signal. Run: make fuzz FUZZ_TARGETS=cookies."""

from __future__ import annotations

from config.settings import SiteSettings
from proxy.consent import (
    CATEGORIES,
    ConsentSignal,
    TCFError,
    decode_tcf_v2,
    parse_cookie_header,
    parse_json_cookie,
    parse_kv_cookie,
    tcf_to_signal,
)
from proxy.pipeline import _cookie_signal
from proxy.sites import Site
from tests.fuzz.harness import main

_CONTROL = {chr(c) for c in [*range(0x09), *range(0x0A, 0x20), 0x7F]}
SITES = [
    Site.from_settings("s", SiteSettings(consent_cookie={"name": "cc", "format": fmt}))  # type: ignore[arg-type]
    for fmt in ("json", "kv", "tcf")
]


def _signal_ok(signal: ConsentSignal) -> None:
    assert isinstance(signal, ConsentSignal)
    assert all(getattr(signal, c) in (True, False, None) for c in CATEGORIES)


def check(data: bytes) -> None:
    header = data.decode("latin-1")  # as Starlette and proxy.ingest decode headers
    cookies = parse_cookie_header(header)
    assert sum(len(v) for v in cookies.values()) <= 65
    for name, values in cookies.items():
        assert name and not (_CONTROL & set(name)) and values
        for value in values:
            assert value is None or not (_CONTROL & set(value))
    for value in [header, *(v for vs in cookies.values() for v in vs if v is not None)]:
        _signal_ok(parse_json_cookie(value))
        _signal_ok(parse_kv_cookie(value, {"analytics": "C0002"}))
        try:
            _signal_ok(tcf_to_signal(decode_tcf_v2(value)))
        except TCFError as exc:
            assert str(exc).isascii()
    for site in SITES:
        _signal_ok(_cookie_signal(site, cookies | {"cc": [header, None, *cookies.get("cc", [])]}))


if __name__ == "__main__":
    main(check)
