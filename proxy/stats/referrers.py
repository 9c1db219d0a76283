"""Names of well-known referrers for ``visit:source``, from Snowplow's referer-parser data set.

The data is Snowplow's ``referers.yml`` as the ``referer-parser`` distribution on PyPI ships it
(``referer_parser/data/referers.json``: medium -> name -> domains). It is read once at start-up; its code
is never imported. ``analytics.referrer_data`` may point at a newer ``referers.json`` in the same shape.
A host is looked up as Snowplow's parser does, the host itself, then without its leftmost label, but at
most two labels deep (``a.old.reddit.com`` -> ``old.reddit.com`` -> ``reddit.com``): three hash lookups
per visit in SQL rather than a walk over every label. Unknown hosts are shown as themselves, without
``www.``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import orjson

PACKAGE = "referer_parser"


class ReferrerDataError(ValueError):
    """The referrer data set is missing or not in Snowplow's shape."""


def packaged_data() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ReferrerDataError("the referer-parser distribution is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "referers.json"


@dataclass(frozen=True, slots=True)
class Referrers:
    names: dict[str, str]  # host -> name

    @classmethod
    def load(cls, path: str | Path | None = None) -> Referrers:
        file = Path(path) if path else packaged_data()
        try:
            doc = orjson.loads(file.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ReferrerDataError(f"cannot read referrer data {file}: {type(exc).__name__}") from None
        names: dict[str, str] = {}
        try:
            for referrers in doc.values():
                for name, conf in referrers.items():
                    for domain in conf["domains"]:
                        # Entries with a path (www.google.com/products) need the referrer's path, which
                        # is never stored (the referrer is reduced to its origin): skipped.
                        if "/" not in domain:
                            names.setdefault(str(domain).lower(), str(name))
        except (AttributeError, KeyError, TypeError):
            raise ReferrerDataError(f"referrer data {file} is not Snowplow's referers.json shape") from None
        if not names:
            raise ReferrerDataError(f"referrer data {file} names no referrers")
        return cls(names)

    def name(self, host: str) -> str:
        """The source shown for a referrer host (the same rule as :func:`source_sql`)."""
        candidate = host.lower()
        for _ in range(3):
            found = self.names.get(candidate)
            if found:
                return found
            candidate = candidate.partition(".")[2] or candidate
        return host[4:] if host.startswith("www.") else host

    def parameters(self) -> dict[str, list[str]]:
        hosts = sorted(self.names)
        return {"ref_hosts": hosts, "ref_names": [self.names[h] for h in hosts]}


def source_sql(host: str) -> str:
    """ClickHouse expression: the name of referrer host ``host`` (an expression), as :meth:`Referrers.name`.

    The data set travels as the bound arrays ``{ref_hosts:Array(String)}`` / ``{ref_names:Array(String)}``."""
    h1 = f"lower({host})"
    h2 = f"substring({h1}, position({h1}, '.') + 1)"
    h3 = f"substring({h2}, position({h2}, '.') + 1)"
    look = [
        f"transform({h}, {{ref_hosts:Array(String)}}, {{ref_names:Array(String)}}, '')" for h in (h1, h2, h3)
    ]
    found = f"if({look[0]} != '', {look[0]}, if({look[1]} != '', {look[1]}, {look[2]}))"
    return f"if({found} != '', {found}, replaceRegexpOne({host}, '^www\\\\.', ''))"
