"""Consent from several sources, combined so that the most restrictive answer wins.

A visitor's consent can reach the proxy as the beacon's ``consent`` object, as a consent cookie whose name
and format the site configures (JSON, ``key:value`` lists, or an IAB TCF v2 string), and as the site's
defaults. Each source is turned into a :class:`ConsentSignal`: per category ``True`` (granted), ``False``
(refused) or ``None`` (this source says nothing about it). :func:`combine` then settles one
:class:`~proxy.model.Consent`.

Everything here is a pure function over untrusted text: no I/O, bounded work on huge or garbage input, and
no exception for bad input except :class:`TCFError` from :func:`decode_tcf_v2`. The ``keys`` mappings are
site configuration, not input; a bad one raises ``ValueError`` (check it at load time with
:func:`resolve_keys`). Error messages never echo the input.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from proxy.model import Consent

CATEGORIES = ("analytics", "preferences", "marketing", "precise_location")

MAX_VALUE_LENGTH = 8192  # a consent cookie value longer than this says nothing (browsers cap cookies at 4096)
MAX_TC_STRING_LENGTH = 4096  # a whole TC string (all segments) longer than this is rejected


@dataclass(frozen=True, slots=True)
class ConsentSignal:
    """One source's answer; None = this source says nothing about that category."""

    analytics: bool | None = None
    preferences: bool | None = None
    marketing: bool | None = None
    precise_location: bool | None = None

    @classmethod
    def from_consent(cls, c: Consent) -> ConsentSignal:
        """A beacon's explicit ``consent`` object: it states every category (absent ones were refused)."""
        return cls(c.analytics, c.preferences, c.marketing, c.precise_location)


SILENT = ConsentSignal()
"""A source that says nothing: unreadable cookies, cookies without any of our keys."""

DENIED = ConsentSignal(False, False, False, False)
"""A source that refuses everything: an opt-out cookie, or a consent cookie the caller cannot trust."""


# ------------------------------------------------------------------------------------------- cookie header

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # control characters other than tab


Cookies = dict[str, list[str | None]]
"""A ``Cookie`` header as ``{name: [value of each occurrence, in order]}``; ``None`` is an occurrence that
cannot be read. Callers decide what several occurrences mean: for consent, the most restrictive."""


def parse_cookie_header(header: str, *, max_cookies: int = 64, max_length: int = 8192) -> Cookies:
    """Parse a ``Cookie`` request header into ``{name: [values]}``, tolerantly (RFC 6265 section 5.4-ish).

    Pairs are separated by ``;``; each is ``name=value`` with spaces and tabs around either trimmed. One
    pair of surrounding double quotes is removed from a value; nothing is percent-decoded (the format
    parsers below do that). A pair without ``=`` or with an empty name is skipped, and so is a name with
    control characters (it cannot be one we read). Every occurrence of a name is kept, in order: a
    browser sends one per path and domain that matches, and nothing says which the site meant, so a
    repeated name must not let one copy hide another. An occurrence whose value holds control characters
    is kept as ``None`` (present, unreadable).

    Bounded: only the first ``max_length`` characters are read; a pair cut by that limit is ``None`` if
    its name is whole (a truncated consent value could mean something else), else dropped. At most
    ``max_cookies`` pairs are looked at.
    """
    cut_name = ""
    if len(header) > max_length:
        cut = header[:max_length]
        if header[max_length] != ";":  # the last pair runs past the limit: its value is unreadable
            last = cut.rfind(";")
            name, sep, _ = cut[last + 1 :].partition("=")
            cut_name = name.strip(" \t") if sep else ""
            cut = cut[: max(last, 0)]
        header = cut
    out: Cookies = {}
    for part in header.split(";", max_cookies)[:max_cookies]:
        name, sep, value = part.partition("=")
        if not sep:
            continue
        name = name.strip(" \t")
        if not name or _CONTROL.search(name):
            continue
        value = value.strip(" \t")
        values = out.get(name)
        if values is None:
            values = out[name] = []
        if _CONTROL.search(value):
            values.append(None)
            continue
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1]
        values.append(value)
    if cut_name and not _CONTROL.search(cut_name):
        out.setdefault(cut_name, []).append(None)
    return out


# ------------------------------------------------------------------------------- JSON and key:value cookies

_GRANTED = frozenset({"granted", "true", "yes", "1"})
_DENIED = frozenset({"denied", "false", "no", "0"})
_QUOTES = "\"'"


def resolve_keys(keys: Mapping[str, str] | None) -> dict[str, str]:
    """OUR category -> THEIR cookie key, every category present (identity where ``keys`` does not say).

    Raises ``ValueError`` for a category we do not know or a key that is not a non-empty string: call it
    when loading site configuration so that typos fail there and not on the first request.
    """
    out = {c: c for c in CATEGORIES}
    if keys is None:
        return out
    for category, their in keys.items():
        if category not in out:
            raise ValueError(f"unknown consent category {category!r} in cookie key mapping")
        if not isinstance(their, str) or not their:
            raise ValueError(f"cookie key for consent category {category!r} must be a non-empty string")
        out[category] = their
    return out


def _vote(value: object) -> bool | None:
    """One value of the shared vocabulary: true/false, 1/0, granted/denied, true/false, yes/no."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return {1: True, 0: False}.get(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _GRANTED:
            return True
        if word in _DENIED:
            return False
    return None


def _signal(pairs: Sequence[tuple[str, object]], wanted: Mapping[str, str]) -> ConsentSignal:
    """A signal from (their key, value) pairs; a key given twice with different answers counts as refused.

    ``wanted`` is a resolved mapping (see :func:`resolve_keys`).
    """
    answers: dict[str, bool | None] = {}
    for their, raw in pairs:
        vote = _vote(raw)
        if their in answers and answers[their] != vote:
            vote = False  # one source answering twice, differently: the most restrictive reading
        answers[their] = vote
    return ConsentSignal(**{ours: answers.get(their) for ours, their in wanted.items()})


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] == text[0]:
        return text[1:-1].strip()
    return text


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its key/value pairs in order, so that repeated keys stay visible."""


def _json_pairs(text: str) -> list[tuple[str, Any]] | None:
    """The top-level pairs of a strict JSON object, or None when ``text`` is not one."""
    try:
        doc = json.loads(text, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError):  # RecursionError: absurd nesting within the length cap
        return None
    return doc if isinstance(doc, _Pairs) else None


def _loose_pairs(text: str) -> list[tuple[str, str]] | None:
    """A flat JavaScript object literal with unquoted keys and '-quoted strings (Cookiebot's form)."""
    text = text.strip()
    if len(text) < 2 or text[0] != "{" or text[-1] != "}":
        return None
    inner = text[1:-1]
    if any(c in inner for c in "{}[]"):  # nested structures are not ours to guess at
        return None
    pairs = []
    for item in inner.split(","):
        key, sep, value = item.partition(":")
        if sep:
            pairs.append((_unquote(key), _unquote(value)))
    return pairs


def parse_json_cookie(value: str, keys: Mapping[str, str] | None = None) -> ConsentSignal:
    """A consent cookie holding a JSON object, e.g. ``{"analytics": true, "marketing": "denied"}``.

    ``keys`` maps OUR category -> THEIR key (exact, case-sensitive); categories it leaves out are looked up
    under their own name. Accepted values: ``true``/``false``, ``1``/``0``, and the strings
    ``"granted"``/``"denied"``, ``"true"``/``"false"``, ``"yes"``/``"no"``, ``"1"``/``"0"`` (trimmed, any
    case). Anything else (``null``, ``2``, ``1.0``, ``"maybe"``, objects) makes that category ``None``.
    A key repeated with different answers counts as ``False``.

    Decoding: the value is read as JSON as it is; if that fails, it is percent-decoded once (so
    ``%7B%22analytics%22%3Atrue%7D`` works) and read again. If strict JSON still fails, a flat JavaScript
    object literal is accepted: unquoted keys, single- or double-quoted or bare values, ``,`` between pairs,
    no nesting. That is the form of Cookiebot's ``CookieConsent`` cookie
    (``{stamp:'…',necessary:true,preferences:false,statistics:true,marketing:false,…}``, usually with its
    commas and quotes percent-encoded); use ``keys={"analytics": "statistics"}`` for it. Anything that is not
    an object (arrays, numbers, garbage, over :data:`MAX_VALUE_LENGTH` characters) is :data:`SILENT`.
    """
    wanted = resolve_keys(keys)  # config errors surface even for an empty cookie
    if len(value) > MAX_VALUE_LENGTH:
        return SILENT
    text = value.strip()
    pairs: Sequence[tuple[str, object]] | None = _json_pairs(text)
    if pairs is None:
        text = unquote(text).strip()
        pairs = _json_pairs(text)
        if pairs is None:
            pairs = _loose_pairs(text)
    if pairs is None:
        return SILENT
    return _signal(pairs, wanted)


_KV_SEPARATORS = re.compile(r"[,;|&]")
_KV_ASSIGN = re.compile(r"[:=]")


def parse_kv_cookie(value: str, keys: Mapping[str, str] | None = None) -> ConsentSignal:
    """A consent cookie holding ``key:value`` pairs, e.g. ``analytics:1,marketing:0``.

    The value is percent-decoded once first; one pair of enclosing braces is ignored. Pairs are separated
    by ``,``, ``;``, ``|`` or ``&``; key and value by ``:`` or ``=``; spaces and one pair of quotes around
    either are trimmed. When a pair holds several ``:``/``=``, its last key/value is used, so OneTrust's
    ``OptanonConsent`` (``…&groups=C0001:1,C0002:0,…``) works with ``keys={"analytics": "C0002", …}``.
    Keys match exactly (case-sensitive). Values, missing keys and repeated keys as in
    :func:`parse_json_cookie`. Over :data:`MAX_VALUE_LENGTH` characters: :data:`SILENT`.
    """
    wanted = resolve_keys(keys)
    if len(value) > MAX_VALUE_LENGTH:
        return SILENT
    text = unquote(value).strip()
    if len(text) >= 2 and text[0] == "{" and text[-1] == "}":
        text = text[1:-1]
    pairs = []
    for item in _KV_SEPARATORS.split(text):
        parts = _KV_ASSIGN.split(item)
        if len(parts) >= 2:
            pairs.append((_unquote(parts[-2]), _unquote(parts[-1])))
    return _signal(pairs, wanted)


# ------------------------------------------------------------------------------------------------ IAB TCF v2


class TCFError(ValueError):
    """A TC string that cannot be decoded. The message names the problem, never the input."""


@dataclass(frozen=True, slots=True)
class TCString:
    """The core segment of an IAB TCF v2 TC string (vendor sections are checked for shape, not kept)."""

    version: int
    created: datetime  # UTC, deciseconds resolution in the string
    last_updated: datetime
    cmp_id: int
    cmp_version: int
    consent_screen: int
    consent_language: str  # two letters, upper case
    vendor_list_version: int
    policy_version: int
    is_service_specific: bool
    special_feature_opt_ins: frozenset[int]  # 1-based ids, 12 bits
    purpose_consents: frozenset[int]  # 1-based ids, 24 bits
    purpose_legitimate_interests: frozenset[int]
    purpose_one_treatment: bool
    publisher_cc: str


_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _Bits:
    """Big-endian bit reader over bytes; every read is bounds-checked."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0
        self._end = len(data) * 8

    def _advance(self, n: int, field: str) -> int:
        start, end = self._pos, self._pos + n
        if end > self._end:
            raise TCFError(f"TC string is truncated (in {field})")
        self._pos = end
        return start

    def uint(self, n: int, field: str) -> int:
        start = self._advance(n, field)
        end = start + n
        first, last = start >> 3, (end + 7) >> 3
        chunk = int.from_bytes(self._data[first:last], "big")
        return (chunk >> (last * 8 - end)) & ((1 << n) - 1)

    def flag(self, field: str) -> bool:
        return self.uint(1, field) == 1

    def ids(self, n: int, field: str) -> frozenset[int]:
        """A bit field as the set of 1-based ids whose bit is set (leftmost bit = id 1)."""
        bits = self.uint(n, field)
        return frozenset(i + 1 for i in range(n) if bits >> (n - 1 - i) & 1)

    def skip(self, n: int, field: str) -> None:
        self._advance(n, field)

    def time(self, field: str) -> datetime:
        return _EPOCH + timedelta(milliseconds=100 * self.uint(36, field))

    def letters(self, field: str) -> str:
        a, b = self.uint(6, field), self.uint(6, field)
        if a > 25 or b > 25:
            raise TCFError(f"TC string {field} is not two letters")
        return chr(ord("A") + a) + chr(ord("A") + b)


def _skip_ranges(r: _Bits, field: str) -> None:
    for _ in range(r.uint(12, field)):
        is_range = r.flag(field)
        r.skip(32 if is_range else 16, field)


def _skip_vendors(r: _Bits, field: str) -> None:
    max_vendor_id = r.uint(16, field)
    if r.flag(field):
        _skip_ranges(r, field)
    else:
        r.skip(max_vendor_id, field)


def decode_tcf_v2(value: str) -> TCString:
    """Decode the core segment of an IAB TCF v2 TC string (the ``euconsent-v2`` cookie).

    Only the text before the first ``.`` is read; the other segments (disclosed vendors, publisher TC) are
    ignored. It must be base64url (``A-Z a-z 0-9 - _``; trailing ``=`` padding is tolerated) and version 2.
    The vendor consent, vendor legitimate interest and publisher restriction sections are walked to check
    that the string is complete, but not kept. Raises :class:`TCFError` for anything else: empty, over
    :data:`MAX_TC_STRING_LENGTH` characters, not base64url, another version, truncated, or a language or
    country that is not two letters.
    """
    if len(value) > MAX_TC_STRING_LENGTH:
        raise TCFError(f"TC string is longer than {MAX_TC_STRING_LENGTH} characters")
    core = value.partition(".")[0].rstrip("=")
    if not core:
        raise TCFError("TC string is empty")
    if not _BASE64URL.fullmatch(core) or len(core) % 4 == 1:
        raise TCFError("TC string is not base64url")
    r = _Bits(base64.urlsafe_b64decode(core + "=" * (-len(core) % 4)))
    version = r.uint(6, "version")
    if version != 2:
        raise TCFError(f"TC string version {version} is not supported (only version 2)")
    created = r.time("created")
    last_updated = r.time("last updated")
    cmp_id = r.uint(12, "CMP id")
    cmp_version = r.uint(12, "CMP version")
    consent_screen = r.uint(6, "consent screen")
    consent_language = r.letters("consent language")
    vendor_list_version = r.uint(12, "vendor list version")
    policy_version = r.uint(6, "policy version")
    is_service_specific = r.flag("is service specific")
    r.skip(1, "use non-standard texts")
    special_features = r.ids(12, "special feature opt-ins")
    purpose_consents = r.ids(24, "purpose consents")
    purpose_lis = r.ids(24, "purpose legitimate interests")
    purpose_one_treatment = r.flag("purpose one treatment")
    publisher_cc = r.letters("publisher country code")
    _skip_vendors(r, "vendor consents")
    _skip_vendors(r, "vendor legitimate interests")
    for _ in range(r.uint(12, "publisher restrictions")):
        r.skip(8, "publisher restrictions")  # purpose id (6) and restriction type (2)
        _skip_ranges(r, "publisher restrictions")
    return TCString(
        version=version,
        created=created,
        last_updated=last_updated,
        cmp_id=cmp_id,
        cmp_version=cmp_version,
        consent_screen=consent_screen,
        consent_language=consent_language,
        vendor_list_version=vendor_list_version,
        policy_version=policy_version,
        is_service_specific=is_service_specific,
        special_feature_opt_ins=special_features,
        purpose_consents=purpose_consents,
        purpose_legitimate_interests=purpose_lis,
        purpose_one_treatment=purpose_one_treatment,
        publisher_cc=publisher_cc,
    )


TCF_ANALYTICS_PURPOSES = frozenset({1, 8, 9, 10})
TCF_PREFERENCES_PURPOSES = frozenset({1, 5, 6})
TCF_MARKETING_PURPOSES = frozenset({1, 2, 3, 4, 7})
TCF_PRECISE_GEOLOCATION = 1  # special feature 1: use precise geolocation data


def tcf_to_signal(tc: TCString) -> ConsentSignal:
    """Our categories from a TC string's global purpose consents. Every category is stated (no ``None``).

    ====================  ==========================================================================
    category              granted only when the visitor consented to
    ====================  ==========================================================================
    analytics             Purposes 1, 8, 9 and 10
    preferences           Purposes 1, 5 and 6
    marketing             Purposes 1, 2, 3, 4 and 7
    precise_location      Special Feature 1 opt-in, and everything analytics needs
    ====================  ==========================================================================

    * Nothing without Purpose 1 (store and/or access information on a device): every category stores or
      reads identifiers on the device. If Purpose One Treatment is set, Purpose 1 was never put to the
      visitor, so nothing is granted either.
    * analytics = P8 (measure content performance: which pages, how long) + P9 (understand audiences
      through statistics: the country/device/language breakdowns) + P10 (develop and improve services,
      which is what the sites' policies say analytics is for). Analytics data serves all three; a visitor
      who refused any one of them has not agreed to what this category means, so all are required.
    * preferences = P5 + P6 (create and use profiles to personalise content): remembering a visitor's
      choices to tailor what they see. P11 (limited data to select content) is weaker and not enough.
    * marketing = P2, P3, P4 (select ads, incl. personalised) + P7 (measure advertising performance, which is
      what stored click ids are for). Click ids tie a visit to an ad platform's profile of the person, so
      the profile purposes are required too, not only P7.
    * precise_location = Special Feature 1. A special feature is only an opt-in to use precise location
      for purposes the visitor consented to, and the proxy keeps coordinates only on analytics events, so
      the analytics purposes are required as well.
    * Legitimate-interest bits never grant anything: this is consent, and P1 cannot rest on LI anyway.
    * Only the global purpose signals are read, not per-vendor consent or the publisher TC segment.
    """
    granted = frozenset() if tc.purpose_one_treatment else tc.purpose_consents  # each set includes P1
    analytics = granted >= TCF_ANALYTICS_PURPOSES
    return ConsentSignal(
        analytics=analytics,
        preferences=granted >= TCF_PREFERENCES_PURPOSES,
        marketing=granted >= TCF_MARKETING_PURPOSES,
        precise_location=analytics and TCF_PRECISE_GEOLOCATION in tc.special_feature_opt_ins,
    )


# ----------------------------------------------------------------------------------------------- combining


def strictest(signals: Sequence[ConsentSignal]) -> ConsentSignal:
    """One signal from several copies of one source (a repeated cookie): per category ``False`` if any copy
    refuses, else ``True`` if any grants, else ``None``. A lenient copy never outvotes a refusing one."""
    if len(signals) == 1:
        return signals[0]
    out = []
    for category in CATEGORIES:
        answers = [getattr(s, category) for s in signals]
        out.append(False if False in answers else True if True in answers else None)
    return ConsentSignal(*out)


def combine(sources: Sequence[ConsentSignal], defaults: ConsentSignal) -> Consent:
    """Settle consent from several sources: the most restrictive answer wins, per category.

    A category is ``False`` if any source says ``False``; ``True`` if at least one says ``True`` and none
    says ``False``; if no source speaks, the site default applies (a ``None`` default means ``False``).
    Categories are independent of each other. Which sources to pass is the caller's business: e.g. the
    beacon's ``consent`` object only when the beacon actually carried one.
    """
    settled = []
    for category in CATEGORIES:
        answers = [getattr(s, category) for s in sources]
        if False in answers:
            settled.append(False)
        elif True in answers:
            settled.append(True)
        else:
            settled.append(getattr(defaults, category) is True)
    return Consent(*settled)
