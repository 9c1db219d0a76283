"""The page a URL names, as one string to match page rules (``children_paths``) against.

Two spellings of the same page must give the same string, or a rule written for ``/kids`` is bypassed by
``//Kids``, ``/%6Bids``, ``/x/../kids``, ``/kids;jsessionid=1`` or ``/kids%2Fgames``. So the path is read
the way a browser sends it and a server routes it:

1. the browser's part (WHATWG URL): tabs and newlines are removed, ``\\`` is ``/`` in http(s) URLs, the
   query and fragment are cut, and dot segments (``.``, ``..`` and their ``%2e`` spellings) are removed
   while empty segments still count (``/kids//../x`` is ``/kids/x`` in a browser);
2. the server's part: percent-escapes are decoded once (so ``%2F`` and ``%5C`` separate segments),
   ``;parameters`` are cut from each segment (``/kids;x=1``), repeated slashes collapse, dot segments
   are removed again (``..;x`` and ``%2F..%2F`` are resolved by servers that decode first);
3. for matching only: letters are case-folded and a trailing slash is dropped.

The result starts with ``/`` and has no empty, ``.`` or ``..`` segment. It is a matching key, never
stored. Everything here is a pure function over untrusted text that never raises.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["matches_prefix", "normalise_path", "url_path"]

_REMOVED = str.maketrans("", "", "\t\n\r")  # WHATWG: removed wherever they are in a URL
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_SPECIAL = frozenset({"http", "https", "ws", "wss", "ftp", "file"})
_SINGLE_DOT = frozenset({".", "%2e"})
_DOUBLE_DOT = frozenset({"..", ".%2e", "%2e.", "%2e%2e"})
# A path that every step below leaves as it is, apart from case and a trailing slash: no escapes, no
# ';', no '\\', no empty segment and no segment that starts with a dot.
_PLAIN = re.compile(r"(?:/[A-Za-z0-9_~!$&'()*+,=:@-][A-Za-z0-9._~!$&'()*+,=:@-]*)*/?")
_MAX_LENGTH = 8192  # beacons' URLs are bounded far below this (privacy.max_string_length)


def url_path(url: str) -> str:
    """The path of ``url`` as a browser would request it (before percent-decoding), "/" if none.

    An absolute URL's authority is skipped; text without a scheme is taken as a path.
    """
    text = url[:_MAX_LENGTH].strip(
        "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x10\x11\x12\x13"
        "\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f "
    )
    text = text.translate(_REMOVED)
    scheme = _SCHEME.match(text)
    if scheme is not None:
        special = scheme.group()[:-1].lower() in _SPECIAL
        rest = text[scheme.end() :]
        if special:
            rest = rest.replace("\\", "/")
        end = len(rest)
        for mark in "?#":
            at = rest.find(mark)
            if 0 <= at < end:
                end = at
        rest = rest[:end]
        if special or rest.startswith("//"):
            rest = rest.lstrip("/")  # special URLs ignore any number of slashes before the host
            slash = rest.find("/")
            return rest[slash:] if slash >= 0 else "/"
        return rest or "/"
    end = len(text)
    for mark in "?#":
        at = text.find(mark)
        if 0 <= at < end:
            end = at
    return text[:end].replace("\\", "/") or "/"


def _remove_dots(segments: list[str], browser: bool) -> list[str]:
    """RFC 3986 section 5.2.4 over a path's segments (its leading "/" already split off). The browser
    keeps empty segments and also reads "%2e" as a dot; the server's pass (on decoded text) does not."""
    out: list[str] = []
    last = len(segments) - 1
    keep_empty = browser
    for i, segment in enumerate(segments):
        folded = segment.lower() if browser and "%" in segment else segment
        if folded in _SINGLE_DOT:
            if i == last and keep_empty:
                out.append("")  # "/a/." is "/a/"
            continue
        if folded in _DOUBLE_DOT:
            if out:
                out.pop()
            if i == last and keep_empty:
                out.append("")
            continue
        if segment or keep_empty:
            out.append(segment)
    return out


def normalise_path(path: str) -> str:
    """The matching key of a URL path (see the module's docstring): "/kids/games" for
    "//KIDS/./x/..;a=1/%67ames/?q"."""
    if not path:
        return "/"
    if _PLAIN.fullmatch(path):
        folded = path.casefold()
        return folded[:-1] if len(folded) > 1 and folded.endswith("/") else folded
    path = path[:_MAX_LENGTH].replace("\\", "/")
    # The browser: dot segments, empty segments kept.
    browser = "/".join(_remove_dots(path.split("/")[1:] if path.startswith("/") else path.split("/"), True))
    # The server: decoded once, parameters cut, repeated slashes collapsed, dot segments again.
    decoded = unquote(browser, errors="replace").replace("\\", "/")
    segments = [segment.partition(";")[0] for segment in decoded.split("/")]
    server = _remove_dots(segments, False)
    return "/" + "/".join(server).casefold()


def matches_prefix(key: str, prefix: str) -> bool:
    """Whether the normalised ``key`` is the normalised ``prefix`` or below it ("/kids" is not below
    "/kid"); the root prefix "/" matches every key."""
    if prefix == "/":
        return True
    return key == prefix or (key.startswith(prefix) and key[len(prefix)] == "/")
