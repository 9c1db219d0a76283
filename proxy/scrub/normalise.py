"""URL and text normalisation: the one place that splits URLs and undoes the ways text hides what it holds.

URLs. ``split_url`` gives ``(scheme, netloc, path, query)`` of an absolute http(s) URL the way
``urllib.parse.urlsplit`` does, without the fragment; a URL of the common shape (lower-case
``http://``/``https://``, ASCII netloc without brackets, no tab or line break) is split directly, any
other through ``urlsplit`` called past its ``lru_cache``, so the standard library keeps no raw URL.
``split_authority`` checks ``host[:port]`` as the WHATWG URL Standard does (forbidden host code points,
ports 0-65535, bracketed IPv6).

Text. Detectors look at a string as it stands and at its *layers*: each layer is the previous one with one
round of decoding undone and then *folded*. Decoding undoes percent-encoding, HTML character references
(``&#64;``, ``&commat;``, ``&amp;#64;`` over two layers) and JavaScript escapes (``\\u0040``,
``\\x40``, ``\\u{40}``). Folding removes invisible characters (format characters such as zero-width
spaces, soft hyphens, bidi controls and tag characters), applies Unicode compatibility normalisation
(NFKC: full-width ``\uff20\uff11`` becomes ``@1``), writes every decimal digit of any script as an
ASCII digit, turns look-alikes of ``.`` (``\u3002``, ``\uff65``...) into ``.`` and spelled-out addresses
(``jo [at] example [dot] com``, ``jo at example dot com``) into ``jo@example.com``. ``MAX_LAYERS``
rounds at most.
"""

from __future__ import annotations

import html
import ipaddress
import re
import unicodedata
from collections.abc import Callable
from urllib.parse import SplitResult, quote, unquote, unquote_plus, urlsplit

# --- URLs ----------------------------------------------------------------------------------------------

# Characters left as they are when (re-)encoding. "[" and "]" stay literal so placeholders read well (the
# WHATWG URL Standard leaves them unescaped in paths and queries too).
PATH_SAFE = "-._~!$&'()*+,;=:@/[]"
QUERY_SAFE = "-._~!$'()*,:@/?[]"

# C0 controls and space, stripped from both ends of a URL the way browsers do.
_C0_AND_SPACE = "".join(chr(i) for i in range(0x21))
_PORT_RE = re.compile(r"[0-9]{1,5}")
# Code points that cannot appear in a host (WHATWG forbidden host code points, plus "%").
_FORBIDDEN_HOST_RE = re.compile(r"[\x00-\x20\x7f\"#%/:<>?@\[\\\]^`{|}]")
# Where the authority of "scheme://authority..." ends, as urlsplit finds it.
_AUTHORITY_END_RE = re.compile(r"[/?#]")
_LONE_PERCENT_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Strings that quote() returns unchanged: unreserved characters plus PATH_SAFE ("%" and ";" left out: they
# need a closer look) and plus QUERY_SAFE.
PLAIN_PATH_RE = re.compile(r"[A-Za-z0-9_.~!$&'()*+,=:@/\[\]-]*")
PLAIN_QUERY_RE = re.compile(r"[A-Za-z0-9_.~!$'()*,:@/?\[\]-]*")

# urlsplit keeps its last results in an lru_cache: whole raw URLs, with userinfo, query values and
# fragments. The function underneath gives the same results and keeps nothing.
_urlsplit: Callable[[str], SplitResult] = getattr(urlsplit, "__wrapped__", urlsplit)


def split_plain_http_url(url: str) -> tuple[str, str, str, str] | None:
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


def split_url(raw: str) -> tuple[str, str, str, str] | None:
    """``(scheme, netloc, path, query)`` of an absolute http(s) URL (fragment dropped), or None."""
    if not isinstance(raw, str):
        return None
    url = raw.strip(_C0_AND_SPACE)
    plain = split_plain_http_url(url)
    if plain is not None:
        return plain
    try:
        parts = _urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https"):
        return None
    return parts.scheme, parts.netloc, parts.path, parts.query


def split_authority(netloc: str) -> tuple[str, str, bool] | None:
    """``(host, port, bracketed)`` of a netloc without its userinfo, or None when unusable.

    ``host`` is lower-cased; ``port`` has its leading zeros dropped (``""`` when absent); a bracketed host
    is a valid IPv6 address (zone ids allowed), returned without the brackets.
    """
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
        return host.lower(), port, True
    if not host or _FORBIDDEN_HOST_RE.search(host):
        return None
    return host.lower(), port, False


def quote_path(path: str, decoded: bool) -> str:
    """A scrubbed path, percent-encoded again: all of it when it was decoded, else only what is unsafe."""
    if decoded:
        return quote(path, safe=PATH_SAFE, errors="replace")
    encoded = quote(path, safe=PATH_SAFE + "%", errors="replace")
    return _LONE_PERCENT_RE.sub("%25", encoded)


def quote_query(s: str) -> str:
    """``quote(s, safe=QUERY_SAFE, errors="replace")``, without its overhead when nothing needs escaping."""
    return s if PLAIN_QUERY_RE.fullmatch(s) else quote(s, safe=QUERY_SAFE, errors="replace")


def unquote_query(s: str) -> str:
    """``unquote_plus(s, errors="replace")``, without its overhead when there is no escape to undo."""
    return unquote_plus(s, errors="replace") if "%" in s else s.replace("+", " ")


# --- text ----------------------------------------------------------------------------------------------

MAX_LAYERS = 8

# Look-alikes of "." that NFKC leaves alone (NFKC maps U+FF0E, U+FE52 and U+2024 itself, U+FF61 to
# U+3002).
_DOT_LOOKALIKES = "\u3002\u30fb\uff65\u2e33\u2027\ua4f8\u0701\u0702\u00b7"


def _build_fold_table() -> tuple[dict[int, str | None], str]:
    """The translate table of ``fold`` and a character class of every non-ASCII code point it cares about.

    Deleted: format characters (Unicode category Cf: zero-width spaces and joiners, soft hyphen, bidi
    controls, tag characters...) and variation selectors. Mapped: decimal digits of every script to ASCII,
    dot look-alikes to ".". The class also holds every character whose compatibility form (NFKC) holds an
    ASCII character (full-width forms, circled and superscript digits, mathematical letters, ...): a
    string without any of these folds to nothing a detector would see differently.
    """
    table: dict[int, str | None] = {}
    suspects: list[int] = []
    for cp in [*range(0x80, 0x20000), *range(0xE0000, 0xE1000)]:
        c = chr(cp)
        category = unicodedata.category(c)
        if category in ("Cs", "Cn", "Co"):
            continue
        if category == "Cf" or 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF:
            table[cp] = None
        elif category == "Nd":
            table[cp] = str(unicodedata.digit(c))
        elif c in _DOT_LOOKALIKES:
            table[cp] = "."
        elif unicodedata.decomposition(c).startswith("<"):  # a compatibility mapping: what NFKC uses
            if any(ch.isascii() for ch in unicodedata.normalize("NFKC", c)):
                suspects.append(cp)
            continue
        else:
            continue
        suspects.append(cp)
    ranges: list[str] = []
    start = prev = suspects[0]
    for cp in [*suspects[1:], -1]:
        if cp == prev + 1:
            prev = cp
            continue
        ranges.append(re.escape(chr(start)) + ("-" + re.escape(chr(prev)) if prev != start else ""))
        start = prev = cp
    return table, "[" + "".join(ranges) + "]"


_FOLD_TABLE, _SUSPECT_NON_ASCII_CLASS = _build_fold_table()
_SUSPECT_NON_ASCII_RE = re.compile(_SUSPECT_NON_ASCII_CLASS)

# "jo [at] example [dot] com", "jo(at)example(dot)com", "jo at example dot com".
# (?<!\s): a match starts where a run of spaces starts, so a long run is not rescanned from each space.
_BRACKETED_AT_RE = re.compile(r"(?<!\s)\s*+[\[({<]\s*+at\s*+[\])}>]\s*+", re.IGNORECASE)
_BRACKETED_DOT_RE = re.compile(r"(?<!\s)\s*+[\[({<]\s*+dot\s*+[\])}>]\s*+", re.IGNORECASE)
_SPELLED_ADDRESS_RE = re.compile(
    r"(?<![\w.+-])([\w.+'-]++)\s+at\s+([\w-]++(?:\s+dot\s+[\w-]++)++)(?![\w-])", re.IGNORECASE
)
_SPELLED_DOT_RE = re.compile(r"\s+dot\s+", re.IGNORECASE)
_BRACKETED_HINT_RE = re.compile(r"[\[({<]\s*(?:at|dot)\s*[\])}>]", re.IGNORECASE)

# JavaScript and JSON escapes; a surrogate stays as it was written.
_ESCAPE_RE = re.compile(r"\\(?:u\{([0-9A-Fa-f]{1,6})\}|u([0-9A-Fa-f]{4})|x([0-9A-Fa-f]{2}))")
# An HTML character reference: "&#64;", "&#x40;", "&commat;" (html.unescape also takes some without ";").
_ENTITY_HINT_RE = re.compile(r"&(?:#|[A-Za-z][A-Za-z0-9]*+)")


def _escape_repl(match: re.Match[str]) -> str:
    cp = int(match.group(1) or match.group(2) or match.group(3), 16)
    if 0xD800 <= cp <= 0xDFFF or cp > 0x10FFFF:
        return match.group(0)
    return chr(cp)


def has_obfuscation(s: str) -> bool:
    """True when ``fold`` may write a spelled-out or bracketed address as a plain one."""
    if ("[" in s or "(" in s or "{" in s or "<" in s) and _BRACKETED_HINT_RE.search(s) is not None:
        return True
    return " dot " in s.lower() if (" at " in s or " AT " in s or " At " in s) else False


def needs_folding(s: str) -> bool:
    """False when ``fold(s)`` is sure to be ``s`` as far as any detector can tell."""
    if not s.isascii() and _SUSPECT_NON_ASCII_RE.search(s) is not None:
        return True
    return has_obfuscation(s)


def can_decode(s: str) -> bool:
    """False when one round of decoding is sure to leave ``s`` as it is."""
    return (
        "%" in s
        or ("&" in s and _ENTITY_HINT_RE.search(s) is not None)
        or ("\\" in s and _ESCAPE_RE.search(s) is not None)
    )


def fold(s: str) -> str:
    """``s`` without invisible characters, look-alikes, other scripts' digits or spelled-out addresses."""
    if not s.isascii():
        s = unicodedata.normalize("NFKC", s).translate(_FOLD_TABLE)
    if has_obfuscation(s):
        s = _BRACKETED_AT_RE.sub("@", s)
        s = _BRACKETED_DOT_RE.sub(".", s)
        s = _SPELLED_ADDRESS_RE.sub(_spelled_repl, s)
    return s


def _spelled_repl(match: re.Match[str]) -> str:
    return match.group(1) + "@" + _SPELLED_DOT_RE.sub(".", match.group(2))


def decode_once(s: str) -> str:
    """One round of percent-decoding, HTML character references and JavaScript escapes."""
    if "%" in s:
        s = unquote(s, errors="replace")
    if "&" in s:
        s = html.unescape(s)
    if "\\" in s:
        s = _ESCAPE_RE.sub(_escape_repl, s)
    return s


def layers(s: str) -> list[str]:
    """The decoded and folded forms of ``s``, shallowest first; empty when there is nothing to undo.

    The first layer is ``s`` folded (when folding changes it) or decoded once and folded; each next one
    decodes one more round. It stops when a round changes nothing, or after ``MAX_LAYERS``.
    """
    out: list[str] = []
    current = s
    for _ in range(MAX_LAYERS):
        nxt = fold(decode_once(current)) if (can_decode(current) or needs_folding(current)) else current
        if nxt == current:
            break
        out.append(nxt)
        current = nxt
    return out
