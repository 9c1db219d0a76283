"""The Scrubber: what the pipeline calls for the page URL, the referrer, titles, event names and props.

It takes URLs apart (``normalise``), runs the one scanner (``scanner``) over the parts that can hold
personal data, decides which query parameters and property keys stay, and caches what came back clean.
What it guarantees, for any input whatsoever (the methods never raise; only ``Scrubber()`` rejects a bad
configuration):

* ``url`` returns ``""`` unless the input is an absolute ``http``/``https`` URL with a usable host and a
  valid port (0-65535). Otherwise the result keeps only scheme, host (lower-cased), port (as given,
  leading zeros dropped) and path, plus the query parameters on the allowlist, rebuilt in their original
  order and percent-encoded. It never keeps the fragment or userinfo (``user:pass@``). An empty path
  becomes ``/``.
* Query parameter names match the allowlist case-insensitively; a pattern is an exact name or a prefix
  ending in ``*`` (``utm_*`` by default). For a repeated parameter the first value wins.
* Advertising click ids (``gclid``, ``fbclid``, ...; matched case-insensitively) never stay in the URL or
  in ``params``, even when allow-listed. They are returned in ``click_ids`` under their configured
  lower-case name with the raw (percent-decoded, unredacted) value. The caller keeps them only with
  advertising consent, as pseudonyms.
* ``referrer`` returns only the origin ``scheme://host[:port]``, or ``""`` under the same rules.
* Hosts: an IP address in any form, or a host carrying one (``10.0.0.1.nip.io``, ``10-0-0-1.sslip.io``,
  ``ip-10-0-0-1.ec2.internal``), becomes ``ip.invalid``; a label in which the scanner finds something
  (a token, a long hex or digit run, a phone number...) and every label with a digit in front of a
  wildcard-DNS domain (``c0a80101.nip.io``) becomes ``redacted``. ``.invalid`` never resolves (RFC
  6761), and the URL stays parseable.
* Paths lose session state (``;jsessionid=...``, ``;sid=...``, ``/(S(...))/``) and one-time secrets
  after reset and magic-link segments (``secrets.redact_path``).
* The path, the names and values of kept query parameters, and ``text`` (titles, event names, property
  values and keys) go through the scanner (``scanner``: e-mail addresses, network addresses, secrets and
  tokens, card numbers, IBANs, national ids, phone numbers), which also looks inside their decoded and
  folded forms. When something is found only there, the decoded form is what gets redacted and returned
  (for a path: encoded again, so a ``%2F`` in such a path comes back as ``/``). A path with nothing to
  redact keeps its text; only characters that are unsafe in a path get percent-encoded. Kept query
  parameters are decoded, redacted and re-encoded.
* ``props`` drops a property when its key is sensitive (``propkeys``), and drops click-id keys. Kept keys
  go through ``text`` as well. Values: ``bool`` -> ``"true"``/``"false"``; ``int`` -> decimal; ``float``
  -> JavaScript-style ``String(n)`` (``3.0`` -> ``"3"``, ``1.5`` -> ``"1.5"``, ``"NaN"``,
  ``"Infinity"``); ``str`` -> ``text``. Values of any other type, and integers too large to print, are
  dropped.

Caches: each ``Scrubber`` remembers what it would otherwise work out again, in dicts of at most 4096
entries (emptied when full) with keys of at most 256 characters: text and URL paths that came back
unchanged from the full check (text, and property values apart), ``host[:port]`` per authority,
property-key decisions, query-parameter-name decisions and allow-listed ``name=value`` query fields.
The rule for all of them: **only a string in which nothing was redacted is cached**: text or a path
whose scrubbed form is itself; a property key that ``text`` leaves unchanged (kept or denied); a query
parameter name kept as it is, or, for a dropped parameter, one that no detector could match; a host
that nothing was taken from, from an authority without userinfo; a kept ``name=value`` with nothing
decoded, redacted or escaped. Anything in which something was found, the value of any dropped parameter
and every click-id value live only as long as the call. Results never depend on the caches: a cached
answer is the one the full computation gives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from proxy.scrub import network, normalise, scanner, secrets
from proxy.scrub.detector import REDACTED_IP_HOST, REDACTED_LABEL
from proxy.scrub.propkeys import KeyRules

DEFAULT_QUERY_ALLOWLIST: tuple[str, ...] = ("utm_*",)

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

# Wildcard-DNS services: "<anything>.nip.io" resolves to the address written in <anything>.
WILDCARD_DNS_DOMAINS: tuple[str, ...] = (".nip.io", ".sslip.io", ".xip.io", ".traefik.me", ".nip.direct")

# Entries per cache of a Scrubber (see "Caches" in the module docstring); a full cache is emptied.
_CACHE_MAX_ENTRIES = 4096
# Longer keys are not cached (they rarely repeat), which bounds a cache's memory too.
_CACHE_MAX_KEY_LENGTH = 256


@dataclass(frozen=True, slots=True)
class ScrubbedUrl:
    url: str  # "" when the input is unusable
    params: dict[str, str]  # kept (allow-listed) query params, values already redacted; first value wins
    click_ids: dict[str, str]  # click-id params found (raw values, caller pseudonymises or drops)


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


def scrub_host(host: str, bracketed: bool) -> str:
    """The host as stored: ``ip.invalid`` for an IP host, flagged labels replaced by ``redacted``."""
    if bracketed or network.is_ip_host(host):
        return REDACTED_IP_HOST
    if scanner.nothing_to_redact(host) and not host.endswith(WILDCARD_DNS_DOMAINS):
        return host
    labels = host.split(".")
    wildcard = host.endswith(WILDCARD_DNS_DOMAINS)
    last_two = len(labels) - 2  # a wildcard service's own labels ("nip", "io") stay
    for i, label in enumerate(labels):
        if not label:
            continue
        if (wildcard and i < last_two and any(c.isdigit() for c in label)) or (
            not scanner.nothing_to_redact(label) and scanner.redact_layers(label)[0] != label
        ):
            labels[i] = REDACTED_LABEL
    return ".".join(labels)


def _scrub_path(path: str) -> str:
    if not path:
        return "/"
    # Detectors first, matrix parameters after: ";" also ends an HTML entity ("&#56;S"), and removing a
    # "parameter" there would cut an encoded value apart before the decoder could see it whole.
    redacted, decoded = scanner.redact_layers(path)
    if secrets.could_match_path(redacted):
        redacted = secrets.redact_path(redacted)
    return normalise.quote_path(redacted, decoded)


def _format_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


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
        "_clean_values",
        "_click_ids",
        "_hosts",
        "_kept_fields",
        "_key_rules",
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

        self._allow_exact = frozenset(exact)
        self._allow_prefixes = tuple(prefixes)
        self._click_ids = click_ids
        # Click-id keys are dropped from properties like denylisted keys.
        self._key_rules = KeyRules(
            [("prop_key_denylist", s) for s in prop_key_denylist]
            + [("click_id_params", s) for s in click_id_params]
        )

        # Caches (see "Caches" in the module docstring). The rule for all of them: only a string in which
        # nothing was redacted is ever stored, so a cache never holds personal data the scrubber found.
        # Whatever had something taken out, and the value of any query parameter that is dropped or a
        # click id, live only as long as the call.
        self._clean_texts: _Memo[None] = _Memo()  # text that needed the full check, came back unchanged
        self._clean_values: _Memo[None] = _Memo()  # the same, for property values
        self._clean_paths: _Memo[None] = _Memo()  # URL paths whose scrubbed form is the path itself
        self._hosts: _Memo[str] = _Memo()  # netloc without userinfo -> "host[:port]", nothing taken out
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
        """Free text (title, event name, property value) with personal data and secrets replaced."""
        if not isinstance(s, str):
            return ""
        if scanner.nothing_to_redact(s) or s in self._clean_texts:
            return s
        redacted = scanner.redact_layers(s)[0]
        if redacted == s:  # nothing found: may be cached (never a string that had something redacted)
            self._clean_texts.remember(s, None)
        return redacted

    def props(self, props: Mapping[str, str | int | float | bool]) -> dict[str, str]:
        """Properties without sensitive or click-id keys; values stringified and redacted."""
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
                formatted = self._value(value)
            elif isinstance(value, bool):
                formatted = "true" if value else "false"
            elif isinstance(value, int):
                try:
                    formatted = str(value)
                except ValueError:  # more digits than sys.get_int_max_str_digits() allows
                    continue
                if len(formatted) > 5:  # a card, phone or id number needs six digits or more
                    formatted = self.text(formatted)
            elif isinstance(value, float):
                formatted = _format_float(value)
                if len(formatted) > 5:
                    formatted = self.text(formatted)
            else:
                continue
            out.setdefault(kept_key, formatted)
        return out

    def _value(self, value: str) -> str:
        """``text(value)`` for a property value, with a cache of its own (titles would crowd it out)."""
        if value in self._clean_values:
            return value
        if scanner.nothing_to_redact(value):
            self._clean_values.remember(value, None)  # property values repeat: a lookup is cheaper
            return value
        redacted = scanner.redact_layers(value)[0]
        if redacted == value:
            self._clean_values.remember(value, None)
        return redacted

    def _split(self, raw: str) -> tuple[str, str, str] | None:
        """``(origin, path, query)`` of an absolute http(s) URL with a usable authority, or None."""
        split = normalise.split_url(raw)
        if split is None:
            return None
        scheme, netloc, path, query = split
        hostport = self._hosts.get(netloc)
        if hostport is None:
            authority = normalise.split_authority(netloc)
            if authority is None:
                return None
            host, port, bracketed = authority
            scrubbed = scrub_host(host, bracketed)
            hostport = f"{scrubbed}:{port}" if port else scrubbed
            # Cached only when nothing was taken out: no userinfo, and the host is kept as it is.
            if "@" not in netloc and scrubbed == host and not bracketed:
                self._hosts.remember(netloc, hostport)
        return f"{scheme}://{hostport}", path, query

    def _path(self, path: str) -> str:
        """``_scrub_path(path)``, without the work for a path that is plain and clean or known clean."""
        if not path:
            return "/"
        if (
            normalise.PLAIN_PATH_RE.fullmatch(path)
            and scanner.nothing_to_redact(path)
            and not secrets.could_match_path(path)
        ) or path in self._clean_paths:
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
                click_ids.setdefault(click_id, normalise.unquote_query(raw_value))
            elif kept_name is not None and kept_name not in params:
                if normalise.PLAIN_QUERY_RE.fullmatch(raw_value) and scanner.nothing_to_redact(raw_value):
                    # nothing to decode, redact or escape in the value
                    pair = f"{encoded_name}={raw_value}"
                    if kept_name == raw_name:  # nor in the name: the field is kept as it is
                        kept_fields.remember(field, (kept_name, raw_value, pair))
                    params[kept_name] = raw_value
                    encoded.append(pair)
                else:
                    value = self.text(normalise.unquote_query(raw_value))
                    params[kept_name] = value
                    encoded.append(f"{encoded_name}={normalise.quote_query(value)}")
        return "&".join(encoded)

    def _query_name_rule(self, raw_name: str) -> _QueryNameRule:
        """What to do with a query parameter, from its raw (still percent-encoded) name."""
        name = normalise.unquote_query(raw_name)
        if not name:
            return _DROP_PARAM
        lowered = name.lower()
        click_id = self._click_ids.get(lowered)
        if click_id is not None:
            rule: _QueryNameRule = (click_id, None, "")
            cacheable = name == raw_name
        elif lowered in self._allow_exact or lowered.startswith(self._allow_prefixes):
            kept_name = self.text(name)
            rule = (None, kept_name, normalise.quote_query(kept_name))
            cacheable = kept_name == raw_name
        else:
            rule = _DROP_PARAM
            cacheable = name == raw_name and scanner.nothing_to_redact(name)
        if cacheable:  # nothing decoded from the name, nothing in it redacted or to redact
            self._query_names.remember(raw_name, rule)
        return rule

    def _prop_key(self, key: str) -> str | None:
        """The key as stored (``text(key)``), or None when the property is dropped."""
        denied = self._key_rules.denies(key)
        kept = self.text(key)
        if kept == key:  # nothing redacted: the decision may be cached
            self._prop_keys.remember(key, not denied)
        return None if denied else kept
