"""Secrets and tokens: credentials, keys, session ids and opaque identifiers.

``KNOWN_FORMATS`` (exact formats, run first so that their parts are not read as something else):

* JWTs (``eyJ...`` header plus two to four dot-separated parts) -> ``[token]``; UUIDs -> ``[id]``;
* well-known key formats -> ``[token]``: AWS access key ids (``AKIA...``), Google API keys (``AIza...``),
  GitHub (``ghp_...``, ``github_pat_...``), GitLab (``glpat-...``), Slack (``xoxb-...``), Stripe
  (``sk_live_...``), OpenAI (``sk-...``), SendGrid (``SG.x.y``), npm (``npm_...``), Shopify
  (``shpat_...``), Telegram bot tokens (``123456789:AA...``) and Discord bot tokens;
* credentials in a URL written as text (``https://user:secret@host`` -> ``https://[token]@host``), an
  ``Authorization``-style ``Bearer x`` / ``Basic x``, and ``password=x``, ``token: x``, ``api_key=x`` and
  the like (the value becomes ``[token]``, the name stays).

``OPAQUE`` (what is left, run last):

* runs of 24 or more characters from ``[A-Za-z0-9_-]`` in which some piece between ``-``/``_`` separators
  has at least 10 characters and mixes letters and digits -> ``[token]`` (word slugs such as
  ``how-to-set-up-nginx-in-2024`` stay);
* hexadecimal runs of 16 or more holding both a digit and a letter -> ``[token]``;
* runs of 16 or more digits (longer than any card number, order number or timestamp in milliseconds)
  -> ``[id]``;
* letter runs of 16 or more that look random rather than like words or camelCase (at least a quarter
  upper case and a quarter lower case, few vowels, case changing mid-run at least three times)
  -> ``[token]``.

``redact_path`` (URL paths only) removes session state carried in the path: matrix parameters whose name
says session, token or key (``;jsessionid=``, ``;phpsessid=``, ``;sid=``, ``;token=``, ...) and ASP.NET
cookieless session segments (``/(S(x))/``); and replaces the segment after a password-reset, magic-link,
e-mail-verification, invitation or unsubscribe segment (``/reset-password/<x>``, ``/magic-link/<x>``,
``/verify-email/<x>``, ``/invite/<x>``, ``/unsubscribe/<x>``, ...) with ``[token]`` when it holds a
digit or an upper-case letter or is 16 characters or longer.
"""

from __future__ import annotations

import re

from proxy.scrub.detector import ID_PLACEHOLDER, TOKEN_PLACEHOLDER, Detector

_JWT_RE = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{7,}+(?:\.[A-Za-z0-9_-]*+){2,4}")
_UUID_RE = re.compile(
    r"(?<![0-9A-Za-z])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
    r"(?![0-9A-Za-z])"
)
UUID_HINT_RE = re.compile(r"-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-")  # the 2nd and 3rd groups of any UUID

_KEY_FORMATS_RE = re.compile(
    r"(?<![A-Za-z0-9_-])(?:"
    r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}"  # AWS access key ids
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API keys
    r"|gh[pousr]_[A-Za-z0-9]{30,}+|github_pat_[A-Za-z0-9_]{22,}+"  # GitHub
    r"|glpat-[A-Za-z0-9_-]{20,}+"  # GitLab
    r"|xox[abposre]-[A-Za-z0-9-]{10,}+"  # Slack
    r"|(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{10,}+|whsec_[A-Za-z0-9]{20,}+"  # Stripe
    r"|sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}+"  # OpenAI, Anthropic
    r"|SG\.[A-Za-z0-9_-]{16,}+\.[A-Za-z0-9_-]{16,}+"  # SendGrid
    r"|npm_[A-Za-z0-9]{36}"  # npm
    r"|shp(?:at|ss|ca|pa)_[A-Fa-f0-9]{32}"  # Shopify
    r"|[0-9]{8,10}:[A-Za-z0-9_-]{30,40}"  # Telegram bots
    r"|[MNO][A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}"  # Discord bots
    r")(?![A-Za-z0-9_-])"
)
_KEY_HINT_RE = re.compile(
    r"AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA|AIza|gh[pousr]_|github_pat_|glpat-|xox[abposre]-"
    r"|_live_|_test_|whsec_|sk-|SG\.|npm_|shp(?:at|ss|ca|pa)_|[0-9]{8}:|[MNO][A-Za-z0-9_-]{23}\."
)
# "https://user:secret@host" written as text: the credentials go, the rest stays.
_URL_CREDENTIALS_RE = re.compile(r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#@\[\]]*:[^\s/?#@]*@")
_AUTH_SCHEME_RE = re.compile(
    r"(?<![A-Za-z])(bearer|basic|token)(\s+)([A-Za-z0-9._~+/=-]{8,}+)", re.IGNORECASE
)
_SECRET_PAIR_RE = re.compile(
    r"(?<![A-Za-z0-9])("
    r"(?:[A-Za-z0-9]+[-_])*"
    r"(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[-_]?key|access[-_]?key|private[-_]?key|auth"
    r"|session(?:[-_]?id)?|sid|otp|pin|passwort|kennwort|mot[-_]?de[-_]?passe|contrase(?:ñ|n)a)"
    r"(?:[-_][A-Za-z0-9]++)*+"
    r"\s*[:=]\s*)"
    r"(?!\[)[^\s&;,\"'<>]{3,}+",
    re.IGNORECASE,
)
_PAIR_HINT_RE = re.compile(r"[:=]")
_INNER_UPPER_RE = re.compile(r"[A-Za-z0-9+/_-][A-Z]")
_LETTER_NEXT_TO_DIGIT_RE = re.compile(r"[0-9](?:(?<=[A-Za-z][0-9])|(?=[A-Za-z]))")
_SIX_DIGITS_RE = re.compile(r"[0-9](?:[^0-9]{0,3}[0-9]){5}")


def has_entropy(value: str) -> bool:
    """An upper-case letter inside a run, a digit next to a letter, or six digits close together.

    Every key format and credential value must show one of these to be redacted: a random string of their
    length always does, a word or a phrase ("Basic settings") does not, and the scanner's fast path relies
    on it.
    """
    return (
        _INNER_UPPER_RE.search(value) is not None
        or _LETTER_NEXT_TO_DIGIT_RE.search(value) is not None
        or _SIX_DIGITS_RE.search(value) is not None
    )


def has_secret_pair(s: str) -> bool:
    """True when ``s`` holds a ``password=x``-style pair whose value KNOWN_FORMATS would replace."""
    return _SECRET_PAIR_RE.search(s) is not None


def _key_repl(match: re.Match[str]) -> str:
    return TOKEN_PLACEHOLDER if has_entropy(match.group(0)) else match.group(0)


def _auth_repl(match: re.Match[str]) -> str:
    if has_entropy(match.group(3)):
        return match.group(1) + match.group(2) + TOKEN_PLACEHOLDER
    return match.group(0)


def _known_could_match(s: str) -> bool:
    return (
        "eyJ" in s
        or (len(s) >= 36 and "-" in s)
        or ("://" in s and "@" in s)
        or _PAIR_HINT_RE.search(s) is not None
        or _KEY_HINT_RE.search(s) is not None
        or (" " in s and len(s) >= 14)
    )


def _known_redact(s: str) -> str:
    if "eyJ" in s:
        s = _JWT_RE.sub(TOKEN_PLACEHOLDER, s)
    if len(s) >= 36 and "-" in s:
        s = _UUID_RE.sub(ID_PLACEHOLDER, s)
    if _KEY_HINT_RE.search(s) is not None:
        s = _KEY_FORMATS_RE.sub(_key_repl, s)
    if "://" in s and "@" in s:
        s = _URL_CREDENTIALS_RE.sub(r"\1" + TOKEN_PLACEHOLDER + "@", s)
    if " " in s:
        s = _AUTH_SCHEME_RE.sub(_auth_repl, s)
    if ":" in s or "=" in s:
        s = _SECRET_PAIR_RE.sub(r"\1" + TOKEN_PLACEHOLDER, s)
    return s


KNOWN_FORMATS = Detector("secret-formats", _known_could_match, _known_redact)

# --- opaque tokens and ids -----------------------------------------------------------------------------

# A run starting with the hex digits of a "%XX" escape is skipped here: the decoded text is checked too,
# and the escape's digits would make any word look like a token.
_TOKEN_CANDIDATE_RE = re.compile(r"(?<![A-Za-z0-9_-])(?!(?<=%)[0-9A-Fa-f]{2})[A-Za-z0-9_-]{16,}+")
_TOKEN_SEPARATOR_RE = re.compile(r"[-_]")
_ASCII_DIGIT_RE = re.compile(r"[0-9]")
_ASCII_ALPHA_RE = re.compile(r"[A-Za-z]")
_HEX_RUN_RE = re.compile(r"(?<![0-9A-Za-z])(?!(?<=%)[0-9A-Fa-f]{2})[0-9A-Fa-f]{16,}+(?![0-9A-Za-z])")
_DIGIT_RUN_RE = re.compile(r"(?<![0-9A-Za-z])[0-9]{16,}+(?![0-9A-Za-z])")
_LOWER_UPPER_RE = re.compile(r"[a-z][A-Z]")
_UPPER_RE = re.compile(r"[A-Z]")
_LOWER_RE = re.compile(r"[a-z]")
_VOWEL_RE = re.compile(r"[AEIOUaeiou]")
_LETTER_DIGIT_RE = re.compile(r"[0-9](?:(?<=[A-Za-z][0-9])|(?=[A-Za-z]))")  # an ASCII digit next to a letter


def _mixes_letters_and_digits(run: str) -> bool:
    for piece in _TOKEN_SEPARATOR_RE.split(run):
        if len(piece) >= 10 and _ASCII_DIGIT_RE.search(piece) and _ASCII_ALPHA_RE.search(piece):
            return True
    return False


def looks_random(piece: str) -> bool:
    """A letter run that reads like random base64 rather than words or camelCase."""
    n = len(piece)
    if n < 16:
        return False
    upper = len(_UPPER_RE.findall(piece))
    lower = len(_LOWER_RE.findall(piece))
    if upper * 4 < n or lower * 4 < n:
        return False
    if len(_VOWEL_RE.findall(piece)) * 4 >= upper + lower:
        return False
    return len(_LOWER_UPPER_RE.findall(piece)) >= 3


def _token_repl(match: re.Match[str]) -> str:
    run = match.group(0)
    if len(run) >= 24 and _mixes_letters_and_digits(run):
        return TOKEN_PLACEHOLDER
    if any(looks_random(piece) for piece in _TOKEN_SEPARATOR_RE.split(run)):
        return TOKEN_PLACEHOLDER
    return run


def _hex_repl(match: re.Match[str]) -> str:
    run = match.group(0)
    return TOKEN_PLACEHOLDER if _ASCII_DIGIT_RE.search(run) and _ASCII_ALPHA_RE.search(run) else run


def _opaque_could_match(s: str) -> bool:
    return len(s) >= 16


def _opaque_redact(s: str) -> str:
    s = _DIGIT_RUN_RE.sub(ID_PLACEHOLDER, s)
    s = _TOKEN_CANDIDATE_RE.sub(_token_repl, s)
    if _LETTER_DIGIT_RE.search(s) is not None:
        s = _HEX_RUN_RE.sub(_hex_repl, s)
    return s


OPAQUE = Detector("opaque-tokens", _opaque_could_match, _opaque_redact)

# --- URL paths -----------------------------------------------------------------------------------------

# Matrix (path) parameters that carry session state or credentials ("/cart;jsessionid=0A1B...").
_SECRET_MATRIX_PARAM_RE = re.compile(
    r";(?:jsessionid|phpsessid|aspsessionid[a-z]*|sessionid|session|sess|sid|s|cfid|cftoken|token|auth"
    r"|key|apikey|api_key|access_token|jwt|ticket|zenid|oscsid|osCsid)(?:=[^/;]*)?(?=[/;]|$)",
    re.IGNORECASE,
)
# ASP.NET cookieless session state: "/(S(lit3py55t21z5v55vlm25s55))/page.aspx".
_ASPNET_SESSION_RE = re.compile(r"/\([ASFasf]\([A-Za-z0-9_-]*\)\)(?=/|$)")
# A segment after which the next one is a one-time secret (compared lower-cased, without "-" and "_").
_SECRET_LINK_SEGMENTS = frozenset(
    {
        "reset", "resetpassword", "passwordreset", "forgotpassword", "recover", "recovery", "setpassword",
        "newpassword", "magic", "magiclink", "loginlink", "signinlink", "emaillogin", "passwordless",
        "verify", "verifyemail", "verification", "emailverification", "confirm", "confirmemail",
        "confirmation", "activate", "activation", "invite", "invitation", "invitations", "acceptinvite",
        "unsubscribe", "optout", "onetime", "otp", "token", "tokens", "authtoken", "accesstoken", "share",
        "shared",
    }
)  # fmt: skip
_TOKENISH_RE = re.compile(r"[0-9A-Z]")


def _tokenish(segment: str) -> bool:
    return bool(segment) and (len(segment) >= 16 or _TOKENISH_RE.search(segment) is not None)


def _is_secret_link_segment(segment: str) -> bool:
    name = segment.partition(";")[0].lower()
    if "-" in name or "_" in name:
        name = name.replace("-", "").replace("_", "")
    return name in _SECRET_LINK_SEGMENTS


def could_match_path(path: str) -> bool:
    if ";" in path or "(" in path:
        return True
    head = path[: path.rfind("/")]  # every segment but the last: only those can be followed by a secret
    if not head:
        return False
    for segment in head.split("/"):
        name = segment.lower()
        if name in _SECRET_LINK_SEGMENTS:
            return True
        if ("-" in name or "_" in name) and name.replace("-", "").replace("_", "") in _SECRET_LINK_SEGMENTS:
            return True
    return False


def redact_path(path: str) -> str:
    """``path`` without session state, and with one-time secrets after reset/magic-link segments."""
    if ";" in path:
        path = _SECRET_MATRIX_PARAM_RE.sub("", path)
    if "(" in path:
        path = _ASPNET_SESSION_RE.sub("", path)
    segments = path.split("/")
    for i in range(len(segments) - 1):
        if _is_secret_link_segment(segments[i]) and _tokenish(segments[i + 1].partition(";")[0]):
            segments[i + 1] = TOKEN_PLACEHOLDER
    return "/".join(segments)
