"""Remove personal data from what websites send, before anything is stored.

This module enforces PRIVACY.md rows 1, 3 and 5 for the free-form fields of a beacon: the page URL, the
referrer, the page title, event names and custom property keys and values.

Guarantees (for any input whatsoever; the scrubbing methods never raise, only ``Scrubber()`` rejects a bad
configuration):

* ``Scrubber.url`` returns ``""`` unless the input is an absolute ``http``/``https`` URL with a usable
  host and a valid port (0-65535). Otherwise the result keeps only scheme, host (lower-cased), port (as
  given, leading zeros dropped) and path, plus the query parameters on the allowlist, rebuilt in their
  original order and percent-encoded. It never keeps the fragment, userinfo (``user:pass@``) or session
  path parameters (``;jsessionid=...``, ``;phpsessid=...``). An empty path becomes ``/``.
* Query parameter names match the allowlist case-insensitively; a pattern is an exact name or a prefix
  ending in ``*`` (``utm_*`` by default). For a repeated parameter the first value wins.
* Advertising click ids (``gclid``, ``fbclid``, ...; matched case-insensitively) never stay in the URL or
  in ``params``, even when allow-listed. They are returned in ``click_ids`` under their configured
  lower-case name with the raw (percent-decoded, unredacted) value. The caller keeps them only with
  advertising consent, as pseudonyms.
* ``Scrubber.referrer`` returns only the origin ``scheme://host[:port]`` (lower-cased host, no path,
  query, fragment or userinfo), or ``""`` under the same rules as ``url``.
* An IP literal used as the host (IPv4 including WHATWG numeric forms such as ``http://3232235777/``,
  any bracketed IPv6 address, or a host containing a dotted quad such as ``10.0.0.1.nip.io``) becomes
  the host ``ip.invalid`` (``REDACTED_IP_HOST``). ``.invalid`` is reserved and never resolves (RFC
  6761), and the URL stays parseable.
* In the URL path, the names and values of kept query parameters, and in ``text`` (titles, event names,
  property values and keys), these are replaced by a placeholder:

  - e-mail addresses -> ``[email]``
  - IPv4 literals and IPv6 literals (full, compressed, IPv4-mapped, optionally bracketed) -> ``[ip]``;
    IPv6 forms with fewer than two written groups and no embedded IPv4 (``::``, ``::1``) are nobody's
    address and are left alone
  - JWTs (``eyJ...`` header plus two to four dot-separated parts) -> ``[token]``
  - UUIDs (8-4-4-4-12 hex) -> ``[id]``
  - long opaque tokens: runs of 24 or more characters from ``[A-Za-z0-9_-]`` in which some piece
    between ``-``/``_`` separators has at least 10 characters and mixes letters and digits
    -> ``[token]``. Word slugs such as ``how-to-set-up-nginx-in-2024`` are left alone.

  Percent-encoded data is found too (``john%40example.com``, ``%2F`` around it, up to three levels of
  encoding). When a string has percent-escapes and its decoded form holds something to redact, the
  decoded form is what gets redacted and returned (for a path: encoded again, so a ``%2F`` in such a
  path comes back as ``/``). A path with nothing to redact keeps its text; only characters that are
  unsafe in a path get percent-encoded. Kept query parameters are decoded, redacted and re-encoded.
* ``Scrubber.props`` drops a property when its key looks like personal data or a secret, and drops
  click-id keys. A key is normalised (lower-cased, with ``-``, ``_``, ``.`` and whitespace removed) and
  dropped when it contains a stem of five or more characters (``email``, ``password``, ``address``,
  ...). Stems of four characters or fewer (``auth``, ``mail``, ``ip``, ``tel``, ``ssn``, ``pwd``, ...)
  only match a whole word of the key (words are split at separators and camelCase boundaries), so
  ``hotel_stars``, ``title``, ``author``, ``description`` and ``className`` are kept while ``user_tel``,
  ``authToken`` and ``clientIP`` are dropped. Kept keys go through ``text`` as well.
* Property values: ``bool`` -> ``"true"``/``"false"``; ``int`` -> decimal; ``float`` -> JavaScript-style
  ``String(n)`` (integral values below 1e21 print without ``.0``, so ``3.0`` -> ``"3"``;
  ``1.5`` -> ``"1.5"``; NaN/infinity -> ``"NaN"``, ``"Infinity"``, ``"-Infinity"``); ``str`` -> ``text``.
  Values of any other type, and integers too large to print, are dropped.

All patterns are compiled once and linear in the input length (possessive quantifiers plus look-behind
guards: a failed match never rescans its run). Each pattern only runs when a cheap check shows the
input could match (an ``@``, two ``:``, three ``.``, ...), and a string that no pattern can match skips
them all (no ``@``, ``%`` or ``eyJ``, nothing shaped like a UUID or an IPv4 address, fewer than two ``:``
and, from 24 characters on, no ASCII letter next to a digit). A URL of the common shape (lower-case
``http://``/``https://``, ASCII host without brackets, no tab or line break) is split directly, with the
result ``urllib.parse.urlsplit`` would give; any other goes through ``urlsplit``, called past its
``lru_cache`` so that the standard library keeps no raw URL after the call either.

Caches: each ``Scrubber`` remembers what it would otherwise work out again, in dicts of at most 4096
entries (emptied when full) with keys of at most 256 characters: text and URL paths that came back
unchanged from the full check, ``host[:port]`` per authority, property-key decisions, query-parameter-name
decisions and allow-listed ``name=value`` query fields. The rule for all of them: **only a string in which
nothing was redacted is cached**: text or a path whose scrubbed form is itself; a property key that
``text`` leaves unchanged (kept or denied); a query parameter name kept as it is, or, for a dropped
parameter, one that no pattern could match; a host that is not an IP literal, from an authority without
userinfo; a kept ``name=value`` with nothing decoded, redacted or escaped. Anything in which an e-mail,
IP, token, id, userinfo or session parameter was found, the value of any dropped parameter and every
click-id value live only as long as the call. Results never depend on the caches: a cached answer is
the one the full computation gives.

Known limits: detection is pattern-based. Names, street addresses, phone numbers and card numbers in
free text are not recognised (property keys such as ``phone`` or ``address`` are dropped, though). Host
names are only checked for IP literals, not for tokens. Version strings that look like dotted quads
(``1.2.3.4``) and file names such as ``logo@2x.png`` are redacted too.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import SplitResult, quote, unquote, unquote_plus, urlsplit

__all__ = [
    "DEFAULT_CLICK_ID_PARAMS",
    "DEFAULT_PROP_KEY_DENYLIST",
    "DEFAULT_QUERY_ALLOWLIST",
    "EMAIL_PLACEHOLDER",
    "ID_PLACEHOLDER",
    "IP_PLACEHOLDER",
    "REDACTED_IP_HOST",
    "TOKEN_PLACEHOLDER",
    "ScrubbedUrl",
    "Scrubber",
]

EMAIL_PLACEHOLDER = "[email]"
IP_PLACEHOLDER = "[ip]"
ID_PLACEHOLDER = "[id]"
TOKEN_PLACEHOLDER = "[token]"  # noqa: S105 - a placeholder text, not a credential
REDACTED_IP_HOST = "ip.invalid"

DEFAULT_QUERY_ALLOWLIST: tuple[str, ...] = ("utm_*",)

DEFAULT_PROP_KEY_DENYLIST: tuple[str, ...] = (
    # contact details
    "email",
    "mail",
    "phone",
    "mobilenumber",
    "msisdn",
    "tel",
    "fax",
    "address",
    "postcode",
    "postalcode",
    "zipcode",
    # names
    "firstname",
    "lastname",
    "fullname",
    "surname",
    "username",
    # credentials and session state
    "password",
    "passwd",
    "passphrase",
    "passcode",
    "pwd",
    "secret",
    "token",
    "apikey",
    "auth",
    "authoriz",
    "authoris",
    "oauth",
    "credential",
    "bearer",
    "cookie",
    "session",
    # identity documents and payment
    "ssn",
    "socialsecurity",
    "passport",
    "birth",
    "dob",
    "creditcard",
    "cardnumber",
    "ccnumber",
    "cvv",
    "cvc",
    "iban",
    # network address and precise location
    "ipaddr",
    "ip",
    "latitude",
    "longitude",
    "lat",
    "lng",
    "lon",
    # identifiers of people and devices
    "userid",
    "customerid",
    "clientid",
    "deviceid",
    "visitorid",
    "memberid",
    "accountid",
)

DEFAULT_CLICK_ID_PARAMS: tuple[str, ...] = (
    "gclid",
    "gbraid",
    "wbraid",
    "dclid",
    "fbclid",
    "msclkid",
    "ttclid",
    "twclid",
    "li_fat_id",
    "yclid",
    "mc_eid",
    "igshid",
    "epik",
    "rdt_cid",
    "irclickid",
)

# Denylist stems up to this length only match whole words of a property key.
_WORD_STEM_MAX_LEN = 4
# How many levels of percent-encoding are undone when looking for data.
_MAX_DECODE_LAYERS = 3
# Passes of the patterns over a string; more than one only when the previous pass found something.
_MAX_REDACT_PASSES = 4
# Longest textual IPv6 address: "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255" (45) plus brackets.
_IPV6_MAX_LEN = 47
# Entries per cache of a Scrubber (see "Caches" in the module docstring); a full cache is emptied.
_CACHE_MAX_ENTRIES = 4096
# Longer keys are not cached (they rarely repeat), which bounds a cache's memory too.
_CACHE_MAX_KEY_LENGTH = 256

# Characters left as they are when (re-)encoding. "[" and "]" stay literal so placeholders read well (the
# WHATWG URL Standard leaves them unescaped in paths and queries too).
_PATH_SAFE = "-._~!$&'()*+,;=:@/[]"
_QUERY_SAFE = "-._~!$'()*,:@/?[]"

# C0 controls and space, stripped from both ends of a URL the way browsers do.
_C0_AND_SPACE = "".join(chr(i) for i in range(0x21))

_JWT_RE = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{7,}+(?:\.[A-Za-z0-9_-]*+){2,4}")
_UUID_RE = re.compile(
    r"(?<![0-9A-Za-z])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
    r"(?![0-9A-Za-z])"
)
# The local part must start a run (look-behind), so each run is tried once; "++" never gives back.
_EMAIL_RE = re.compile(r"(?<![\w.%+'-])[\w.%+'-]++@[\w-]++(?:\.[\w-]++)++")
# A candidate is a run of hex digits, dots and colons holding at least one colon, optionally bracketed;
# the callback validates it with the ipaddress module.
_IPV6_CANDIDATE_RE = re.compile(r"(?<![0-9A-Za-z.])\[?[0-9A-Fa-f.]*+:[0-9A-Fa-f:.]*+\]?")
_IPV4_RE = re.compile(r"(?<![0-9])[0-9]{1,3}+(?:\.[0-9]{1,3}+){3}(?![0-9])")
# A run starting with the hex digits of a "%XX" escape is skipped here: the decoded text is checked too,
# and the escape's digits would make any word look like a token.
_TOKEN_CANDIDATE_RE = re.compile(r"(?<![A-Za-z0-9_-])(?!(?<=%)[0-9A-Fa-f]{2})[A-Za-z0-9_-]{24,}+")
_TOKEN_SEPARATOR_RE = re.compile(r"[-_]")
_ASCII_DIGIT_RE = re.compile(r"[0-9]")
_ASCII_ALPHA_RE = re.compile(r"[A-Za-z]")

# Servlet/PHP session ids carried as path parameters ("/cart;jsessionid=0A1B...").
_SESSION_PATH_PARAM_RE = re.compile(r";(?:jsessionid|phpsessid)=[^/;]*", re.IGNORECASE)
_LONE_PERCENT_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PORT_RE = re.compile(r"[0-9]{1,5}")
# Code points that cannot appear in a host (WHATWG forbidden host code points, plus "%").
_FORBIDDEN_HOST_RE = re.compile(r"[\x00-\x20\x7f\"#%/:<>?@\[\\\]^`{|}]")
# WHATWG: a host whose last label is a number is parsed as IPv4 ("http://3232235777/", "http://0x7f.1/").
_NUMERIC_LABEL_RE = re.compile(r"[0-9]+|0x[0-9a-f]*")

# Fast-path checks (see _nothing_to_redact, _PLAIN_PATH_RE).
_SUSPECT_CHAR_RE = re.compile(r"[0-9@%:]")
_UUID_HINT_RE = re.compile(r"-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-")  # the 2nd and 3rd groups of any UUID
_LETTER_DIGIT_RE = re.compile(r"[0-9](?:(?<=[A-Za-z][0-9])|(?=[A-Za-z]))")  # an ASCII digit next to a letter
# Strings that quote() returns unchanged: unreserved characters plus _PATH_SAFE ("%" and ";" left out:
# they need a closer look) and plus _QUERY_SAFE.
_PLAIN_PATH_RE = re.compile(r"[A-Za-z0-9_.~!$&'()*+,=:@/\[\]-]*")
_PLAIN_QUERY_RE = re.compile(r"[A-Za-z0-9_.~!$'()*,:@/?\[\]-]*")
# Where the authority of "scheme://authority..." ends, as urlsplit finds it.
_AUTHORITY_END_RE = re.compile(r"[/?#]")

_KEY_STRIP_RE = re.compile(r"[-_.\s]")
_KEY_WORD_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+|[^\x00-\x7f]+")


@dataclass(frozen=True, slots=True)
class ScrubbedUrl:
    url: str  # "" when the input is unusable
    params: dict[str, str]  # kept (allow-listed) query params, values already redacted; first value wins
    click_ids: dict[str, str]  # click-id params found (raw values, caller pseudonymises or drops)


def _is_ipv4(candidate: str) -> bool:
    return all(int(octet) <= 255 for octet in candidate.split("."))


def _ipv4_repl(match: re.Match[str]) -> str:
    found = match.group(0)
    return IP_PLACEHOLDER if _is_ipv4(found) else found


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
    core = found
    lead = trail = ""
    if core.startswith("["):
        if core.endswith("]") and _is_ipv6(core[1:-1]):
            return IP_PLACEHOLDER
        lead, core = "[", core[1:]
    if core.endswith("]"):
        core, trail = core[:-1], "]"
    stripped = core.rstrip(".")
    trail = core[len(stripped) :] + trail
    core = stripped
    # Try the run as is, then without a stray single ':' at either end ("ip :2001:db8::1:").
    starts = [0, 1] if core.startswith(":") and not core.startswith("::") else [0]
    ends = [len(core), len(core) - 1] if core.endswith(":") and not core.endswith("::") else [len(core)]
    for start in starts:
        for end in ends:
            if _is_ipv6(core[start:end]):
                return lead + core[:start] + IP_PLACEHOLDER + core[end:] + trail
    return found


def _is_token(run: str) -> bool:
    for piece in _TOKEN_SEPARATOR_RE.split(run):
        if len(piece) >= 10 and _ASCII_DIGIT_RE.search(piece) and _ASCII_ALPHA_RE.search(piece):
            return True
    return False


def _token_repl(match: re.Match[str]) -> str:
    found = match.group(0)
    return TOKEN_PLACEHOLDER if _is_token(found) else found


def _redact(s: str) -> str:
    """Replace e-mails, IPs, JWTs, UUIDs and opaque tokens in ``s`` as it stands (no decoding).

    Repeats while something changes (a removal can expose a neighbour, e.g. the IPv6 prefix in
    ``2001:db8::110.0.0.1::``), so the result is stable under a second scrub.
    """
    for _ in range(_MAX_REDACT_PASSES):
        redacted = _redact_once(s)
        if redacted == s:
            break
        s = redacted
    return s


def _redact_once(s: str) -> str:
    if "eyJ" in s:
        s = _JWT_RE.sub(TOKEN_PLACEHOLDER, s)
    if "@" in s:
        s = _EMAIL_RE.sub(EMAIL_PLACEHOLDER, s)
    if len(s) >= 36 and "-" in s:
        s = _UUID_RE.sub(ID_PLACEHOLDER, s)
    if s.count(":") >= 2:
        s = _IPV6_CANDIDATE_RE.sub(_ipv6_repl, s)
    if s.count(".") >= 3:
        s = _IPV4_RE.sub(_ipv4_repl, s)
    if len(s) >= 24:
        s = _TOKEN_CANDIDATE_RE.sub(_token_repl, s)
    return s


def _redact_layers(s: str) -> tuple[str, bool]:
    """Redact ``s``, also looking inside its percent-decoded forms.

    Returns ``(text, decoded)``: when something is found only after decoding, ``text`` is the decoded
    form, redacted, and ``decoded`` is True. Otherwise ``text`` is ``s`` redacted as it stands.
    """
    as_is = _redact(s)
    if "%" not in s:
        return as_is, False
    layers: list[str] = []
    current = s
    for _ in range(_MAX_DECODE_LAYERS):
        decoded = unquote(current, errors="replace")
        if decoded == current:
            break
        layers.append(decoded)
        current = decoded
        if "%" not in current:
            break
    for layer in reversed(layers):  # deepest first: it shows everything the shallower layers show
        redacted = _redact(layer)
        if redacted != layer:
            return redacted, True
    return as_is, False


def _nothing_to_redact(s: str) -> bool:
    """True when ``_redact_layers(s)`` is sure to be ``(s, False)``; False means "look closer".

    Each test rules out what a pattern of ``_redact_once`` needs before it can change anything: a JWT
    starts with ``eyJ``; a UUID is 36 characters holding ``-XXXX-XXXX-``; an e-mail has an ``@``; an IPv6
    address two ``:``; an IPv4 address digits and three ``.``; a token a run of 24 in which an ASCII
    letter stands next to a digit; and only a ``%`` makes ``_redact_layers`` decode.
    """
    if "eyJ" in s or (len(s) >= 36 and "-" in s and _UUID_HINT_RE.search(s) is not None):
        return False
    if _SUSPECT_CHAR_RE.search(s) is None:  # no digit, "@", "%" or ":"
        return True
    if "@" in s or "%" in s or s.count(":") >= 2:
        return False
    if s.count(".") >= 3 and _IPV4_RE.search(s) is not None:
        return False
    return len(s) < 24 or _LETTER_DIGIT_RE.search(s) is None


def _unquote_plus(s: str) -> str:
    """``unquote_plus(s, errors="replace")``, without its overhead when there is no escape to undo."""
    return unquote_plus(s, errors="replace") if "%" in s else s.replace("+", " ")


def _quote_query(s: str) -> str:
    """``quote(s, safe=_QUERY_SAFE, errors="replace")``, without its overhead when nothing needs escaping."""
    return s if _PLAIN_QUERY_RE.fullmatch(s) else quote(s, safe=_QUERY_SAFE, errors="replace")


# For a query parameter name: (click id, None, "") for a click id, (None, kept name, kept name
# percent-encoded) for an allow-listed name, _DROP_PARAM for any other.
_QueryNameRule = tuple[str | None, str | None, str]
_DROP_PARAM: _QueryNameRule = (None, None, "")

_V = TypeVar("_V")


class _Memo(dict[str, _V]):
    """A dict of at most ``_CACHE_MAX_ENTRIES`` entries: when full, it is emptied before the next one.

    Callers only ``remember`` what the cache rule allows (see the module docstring).
    """

    __slots__ = ()

    def remember(self, key: str, value: _V) -> None:
        if len(key) > _CACHE_MAX_KEY_LENGTH:
            return
        if len(self) >= _CACHE_MAX_ENTRIES:
            self.clear()
        self[key] = value


def _is_ip_host(host: str) -> bool:
    last_label = host.rstrip(".").rpartition(".")[2]
    if _NUMERIC_LABEL_RE.fullmatch(last_label):
        return True
    return any(_is_ipv4(m.group(0)) for m in _IPV4_RE.finditer(host))


def _split_authority(netloc: str) -> tuple[str, str] | None:
    """``(host, port)`` from a netloc without its userinfo, or None when unusable."""
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return None
        host, rest = hostport[1:end], hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:]
        bracketed = True
    else:
        host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
        bracketed = False
    if port:
        if not _PORT_RE.fullmatch(port) or int(port) > 65535:
            return None
        port = str(int(port))
    if bracketed:
        # urlsplit has already rejected invalid brackets; re-check without relying on that.
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
        return REDACTED_IP_HOST, port
    if not host or _FORBIDDEN_HOST_RE.search(host):
        return None
    host = host.lower()
    if _is_ip_host(host):
        host = REDACTED_IP_HOST
    return host, port


# urlsplit keeps its last results in an lru_cache: whole raw URLs, with userinfo, query values and
# fragments. The function underneath gives the same results and keeps nothing.
_urlsplit: Callable[[str], SplitResult] = getattr(urlsplit, "__wrapped__", urlsplit)


def _split_plain_http_url(url: str) -> tuple[str, str, str, str] | None:
    """``urlsplit(url)``'s scheme, netloc, path and query, found without it for the common shape.

    That shape: ``url`` (already stripped) starts with a lower-case ``http://`` or ``https://``, has no tab
    or line break anywhere (urlsplit deletes those first) and its netloc is ASCII without brackets
    (urlsplit validates those). For anything else this returns None and urlsplit has to decide.
    """
    if url.startswith("https://"):
        start = 8
    elif url.startswith("http://"):
        start = 7
    else:
        return None
    if "\t" in url or "\n" in url or "\r" in url:
        return None
    end_match = _AUTHORITY_END_RE.search(url, start)
    end = len(url) if end_match is None else end_match.start()
    netloc = url[start:end]
    if "[" in netloc or "]" in netloc or not netloc.isascii():
        return None
    path, _, query = url[end:].partition("#")[0].partition("?")
    return url[: start - 3], netloc, path, query


def _parse_http_url(raw: str) -> tuple[str, str, str, str, str] | None:
    """``(scheme, host, port, path, query)`` of an absolute http(s) URL, or None when unusable."""
    if not isinstance(raw, str):
        return None
    try:
        parts = _urlsplit(raw.strip(_C0_AND_SPACE))
    except ValueError:
        return None
    if parts.scheme not in ("http", "https"):
        return None
    authority = _split_authority(parts.netloc)
    if authority is None:
        return None
    host, port = authority
    return parts.scheme, host, port, parts.path, parts.query


def _origin(scheme: str, host: str, port: str) -> str:
    return f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"


def _scrub_path(path: str) -> str:
    if not path:
        return "/"
    if ";" in path:
        path = _SESSION_PATH_PARAM_RE.sub("", path)
    redacted, decoded = _redact_layers(path)
    if decoded:
        return quote(redacted, safe=_PATH_SAFE, errors="replace")
    encoded = quote(redacted, safe=_PATH_SAFE + "%", errors="replace")
    return _LONE_PERCENT_RE.sub("%25", encoded)


def _format_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def _normalise_key(key: str) -> str:
    return _KEY_STRIP_RE.sub("", key.lower())


def _check_sequence(name: str, value: Sequence[str]) -> None:
    if isinstance(value, str):
        raise TypeError(f"{name} must be a sequence of strings, not a single string: {value!r}")
    for entry in value:
        if not isinstance(entry, str):
            raise TypeError(f"{name}: entry {entry!r} is not a string")


class Scrubber:
    """Removes personal data from beacon fields; see the module docstring for what it guarantees."""

    __slots__ = (
        "_allow_exact",
        "_allow_prefixes",
        "_clean_paths",
        "_clean_texts",
        "_click_ids",
        "_hosts",
        "_kept_fields",
        "_key_substring_re",
        "_key_word_stems",
        "_prop_keys",
        "_query_names",
    )

    def __init__(
        self,
        query_allowlist: Sequence[str],
        prop_key_denylist: Sequence[str],
        click_id_params: Sequence[str],
    ) -> None:
        _check_sequence("query_allowlist", query_allowlist)
        _check_sequence("prop_key_denylist", prop_key_denylist)
        _check_sequence("click_id_params", click_id_params)

        exact: set[str] = set()
        prefixes: list[str] = []
        for pattern in query_allowlist:
            if not pattern or pattern.isspace():
                raise ValueError(f"query_allowlist: empty pattern {pattern!r}")
            if any(c.isspace() for c in pattern):
                raise ValueError(f"query_allowlist: pattern {pattern!r} contains whitespace")
            star = pattern.find("*")
            if star == -1:
                exact.add(pattern.lower())
            elif star != len(pattern) - 1:
                raise ValueError(f"query_allowlist: '*' is only allowed at the end, got {pattern!r}")
            elif star == 0:
                raise ValueError(f"query_allowlist: pattern {pattern!r} would keep every query parameter")
            else:
                prefixes.append(pattern[:-1].lower())

        click_ids: dict[str, str] = {}
        for name in click_id_params:
            if not name.strip():
                raise ValueError(f"click_id_params: empty name {name!r}")
            click_ids.setdefault(name.lower(), name.lower())

        word_stems: set[str] = set()
        substring_stems: list[str] = []
        # Click-id keys are dropped from properties like denylisted keys.
        for origin, stem in [("prop_key_denylist", s) for s in prop_key_denylist] + [
            ("click_id_params", s) for s in click_id_params
        ]:
            normalised = _normalise_key(stem)
            if not normalised:
                raise ValueError(f"{origin}: empty stem {stem!r}")
            if len(normalised) <= _WORD_STEM_MAX_LEN:
                word_stems.add(normalised)
            elif normalised not in substring_stems:
                substring_stems.append(normalised)

        self._allow_exact = frozenset(exact)
        self._allow_prefixes = tuple(prefixes)
        self._click_ids = click_ids
        self._key_word_stems = frozenset(word_stems)
        # One alternation instead of a loop over the stems: a key is denied when any stem occurs in it.
        self._key_substring_re = (
            re.compile("|".join(re.escape(stem) for stem in substring_stems)) if substring_stems else None
        )

        # Caches (see "Caches" in the module docstring). The rule for all of them: only a string in which
        # nothing was redacted is ever stored, so a cache never holds personal data the scrubber found.
        # Whatever had an e-mail, IP, token, id, userinfo or session parameter taken out, and the value
        # of any query parameter that is dropped or a click id, live only as long as the call.
        self._clean_texts: _Memo[None] = _Memo()  # text that needed the full check, came back unchanged
        self._clean_paths: _Memo[None] = _Memo()  # URL paths whose scrubbed form is the path itself
        self._hosts: _Memo[str] = _Memo()  # netloc without userinfo -> "host[:port]"; never an IP host
        self._prop_keys: _Memo[bool] = _Memo()  # key for which text(key) == key -> kept (True) or dropped
        # raw query parameter name, nothing decoded or redacted -> _QueryNameRule
        self._query_names: _Memo[_QueryNameRule] = _Memo()
        # "name=value" of an allow-listed parameter, nothing decoded, redacted or escaped in it ->
        # (name, value, "name=value"). Never a field of a parameter that is dropped or a click id.
        self._kept_fields: _Memo[tuple[str, str, str]] = _Memo()

    def url(self, raw: str) -> ScrubbedUrl:
        """Page URL without PII: see the module docstring. ``url`` is ``""`` when unusable."""
        split = self._split(raw)
        if split is None:
            return ScrubbedUrl("", {}, {})
        origin, path, query = split
        params: dict[str, str] = {}
        click_ids: dict[str, str] = {}
        url = origin + self._path(path)
        if query:
            encoded = self._scrub_query(query, params, click_ids)
            if encoded:
                url += "?" + encoded
        return ScrubbedUrl(url, params, click_ids)

    def referrer(self, raw: str) -> str:
        """``scheme://host[:port]`` of an http(s) referrer, or ``""``."""
        split = self._split(raw)
        return "" if split is None else split[0]

    def text(self, s: str) -> str:
        """Free text (title, event name, property value) with e-mails, IPs and tokens replaced."""
        if not isinstance(s, str):
            return ""
        if _nothing_to_redact(s) or s in self._clean_texts:
            return s
        redacted = _redact_layers(s)[0]
        if redacted == s:  # nothing found: may be cached (never a string that had something redacted)
            self._clean_texts.remember(s, None)
        return redacted

    def props(self, props: Mapping[str, str | int | float | bool]) -> dict[str, str]:
        """Properties without denylisted or click-id keys; values stringified and redacted."""
        out: dict[str, str] = {}
        prop_keys = self._prop_keys
        for key, value in props.items():
            if not isinstance(key, str):
                continue
            keep = prop_keys.get(key)
            if keep is None:  # not cached
                kept_key = self._prop_key(key)
                if kept_key is None:
                    continue
            elif keep:
                kept_key = key
            else:
                continue
            if isinstance(value, str):
                formatted = value if _nothing_to_redact(value) else self.text(value)
            elif isinstance(value, bool):
                formatted = "true" if value else "false"
            elif isinstance(value, int):
                try:
                    formatted = str(value)
                except ValueError:  # more digits than sys.get_int_max_str_digits() allows
                    continue
            elif isinstance(value, float):
                formatted = _format_float(value)
            else:
                continue
            out.setdefault(kept_key, formatted)
        return out

    def _split(self, raw: str) -> tuple[str, str, str] | None:
        """``(origin, path, query)`` of an absolute http(s) URL with a usable authority, or None."""
        if not isinstance(raw, str):
            return None
        url = raw.strip(_C0_AND_SPACE)
        plain = _split_plain_http_url(url)
        if plain is None:
            parsed = _parse_http_url(url)
            if parsed is None:
                return None
            scheme, host, port, path, query = parsed
            return _origin(scheme, host, port), path, query
        scheme, netloc, path, query = plain
        hostport = self._hosts.get(netloc)
        if hostport is None:
            authority = _split_authority(netloc)
            if authority is None:
                return None
            host, port = authority
            hostport = f"{host}:{port}" if port else host
            # Cached only when nothing was taken out: no userinfo, and the host is not an IP literal.
            if "@" not in netloc and host != REDACTED_IP_HOST:
                self._hosts.remember(netloc, hostport)
        return f"{scheme}://{hostport}", path, query

    def _path(self, path: str) -> str:
        """``_scrub_path(path)``, without the work for a path that is plain and clean or known clean."""
        if not path:
            return "/"
        if (_PLAIN_PATH_RE.fullmatch(path) and _nothing_to_redact(path)) or path in self._clean_paths:
            return path
        scrubbed = _scrub_path(path)
        if scrubbed == path:  # nothing removed, redacted or escaped: may be cached
            self._clean_paths.remember(path, None)
        return scrubbed

    def _scrub_query(self, query: str, params: dict[str, str], click_ids: dict[str, str]) -> str:
        """Fill ``params`` and ``click_ids`` from a raw query string; return the kept part, encoded."""
        kept_fields = self._kept_fields
        query_names = self._query_names
        encoded: list[str] = []  # "name=value" of each kept parameter, in the order of params
        for field in query.split("&"):
            if not field:
                continue
            kept = kept_fields.get(field)
            if kept is not None:
                name, value, pair = kept
                if name not in params:
                    params[name] = value
                    encoded.append(pair)
                continue
            raw_name, _, raw_value = field.partition("=")
            rule = query_names.get(raw_name)
            if rule is None:
                rule = self._query_name_rule(raw_name)
            click_id, kept_name, encoded_name = rule
            if click_id is not None:
                click_ids.setdefault(click_id, _unquote_plus(raw_value))
            elif kept_name is not None and kept_name not in params:
                if _PLAIN_QUERY_RE.fullmatch(raw_value) and _nothing_to_redact(raw_value):
                    # nothing to decode, redact or escape in the value
                    pair = f"{encoded_name}={raw_value}"
                    if kept_name == raw_name:  # nor in the name: the field is kept as it is
                        kept_fields.remember(field, (kept_name, raw_value, pair))
                    params[kept_name] = raw_value
                    encoded.append(pair)
                else:
                    value = self.text(_unquote_plus(raw_value))
                    params[kept_name] = value
                    encoded.append(f"{encoded_name}={_quote_query(value)}")
        return "&".join(encoded)

    def _query_name_rule(self, raw_name: str) -> _QueryNameRule:
        """What to do with a query parameter, from its raw (still percent-encoded) name."""
        name = _unquote_plus(raw_name)
        if not name:
            return _DROP_PARAM
        lowered = name.lower()
        click_id = self._click_ids.get(lowered)
        if click_id is not None:
            rule: _QueryNameRule = (click_id, None, "")
            cacheable = name == raw_name
        elif lowered in self._allow_exact or lowered.startswith(self._allow_prefixes):
            kept_name = self.text(name)
            rule = (None, kept_name, _quote_query(kept_name))
            cacheable = kept_name == raw_name
        else:
            rule = _DROP_PARAM
            cacheable = name == raw_name and _nothing_to_redact(name)
        if cacheable:  # nothing decoded from the name, nothing in it redacted or to redact
            self._query_names.remember(raw_name, rule)
        return rule

    def _prop_key(self, key: str) -> str | None:
        """The key as stored (``text(key)``), or None when the property is dropped."""
        denied = self._key_is_denied(key)
        kept = self.text(key)
        if kept == key:  # nothing redacted: the decision may be cached
            self._prop_keys.remember(key, not denied)
        return None if denied else kept

    def _key_is_denied(self, key: str) -> bool:
        if self._key_substring_re is not None and self._key_substring_re.search(_normalise_key(key)):
            return True
        if not self._key_word_stems:
            return False
        return any(word.lower() in self._key_word_stems for word in _KEY_WORD_RE.findall(key))
