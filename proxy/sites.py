"""Per-site runtime configuration, compiled once from settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from config.settings import SiteSettings
from proxy.consent import ConsentSignal
from proxy.paths import matches_prefix, normalise_path


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    any_origin: bool
    origins: frozenset[str]
    wildcard_suffixes: tuple[tuple[str, str], ...]  # (scheme + "://", ".domain[:port]")
    drop_without_consent: bool
    settings: SiteSettings
    consent_defaults: ConsentSignal
    children_prefixes: tuple[str, ...]  # normalised (proxy.paths.normalise_path)

    @classmethod
    def from_settings(cls, site_id: str, s: SiteSettings) -> Site:
        exact, wild = set(), []
        for origin in s.allowed_origins:
            if origin == "*":
                continue
            scheme, _, rest = origin.partition("://")
            if rest.startswith("*."):
                wild.append((scheme + "://", rest[1:]))
            else:
                exact.add(origin)
        return cls(
            id=site_id,
            any_origin="*" in s.allowed_origins,
            origins=frozenset(exact),
            wildcard_suffixes=tuple(wild),
            drop_without_consent=s.without_consent == "drop",
            settings=s,
            consent_defaults=ConsentSignal(**s.consent_defaults.model_dump()),
            children_prefixes=tuple(dict.fromkeys(normalise_path(p) for p in s.children_paths)),
        )

    def is_children_path(self, key: str) -> bool:
        """The normalised path ``key`` (``normalise_path``) is one of the children's prefixes or below one."""
        return any(matches_prefix(key, p) for p in self.children_prefixes)

    def allows_origin(self, origin: str | None) -> bool:
        """Browsers send Origin on cross-site POSTs; requests without one (servers, pixels) are allowed."""
        if origin is None or self.any_origin:
            return True
        origin = origin.lower()
        if origin in self.origins:
            return True
        for scheme, suffix in self.wildcard_suffixes:
            if origin.startswith(scheme) and origin.endswith(suffix) and len(origin) > len(scheme + suffix):
                return True
        return False


_MAX_REMEMBERED_ORIGINS = 1024


class SiteRegistry:
    def __init__(self, sites: Mapping[str, SiteSettings]) -> None:
        self._sites = {sid: Site.from_settings(sid, s) for sid, s in sites.items()}
        # Settings guarantee a tracker key names one site only.
        self._by_key = {key: sid for sid, s in sites.items() for key in s.tracker_keys}
        # any_allows_origin runs for every beacon (CORS); an Origin is a site's address, not a visitor's.
        self._any_allows: dict[str, bool] = {}

    def get(self, site_id: str) -> Site | None:
        return self._sites.get(site_id)

    def site_for_key(self, key: str) -> str:
        """The id of the site that lists ``key`` among its tracker keys, or "" (an unknown site)."""
        return self._by_key.get(key, "")

    def __contains__(self, site_id: object) -> bool:
        return site_id in self._sites

    def any_allows_origin(self, origin: str) -> bool:
        allowed = self._any_allows.get(origin)
        if allowed is None:
            allowed = any(site.allows_origin(origin) for site in self._sites.values())
            if len(self._any_allows) >= _MAX_REMEMBERED_ORIGINS:  # bounded: clients choose Origin
                self._any_allows.clear()
            self._any_allows[origin] = allowed
        return allowed
