"""Per-site Origin allowlists: exact origins, '*', and 'https://*.domain' for subdomains only."""

from __future__ import annotations

import pytest

from config.settings import SiteSettings
from proxy.sites import Site, SiteRegistry


def site(*origins: str, without_consent: str = "anonymous") -> Site:
    return Site.from_settings("demo", SiteSettings(allowed_origins=origins, without_consent=without_consent))


ORIGIN_CASES = [
    # exact origins
    (("https://example.com",), "https://example.com", True),
    (("https://example.com",), "http://example.com", False),  # scheme is part of the origin
    (("https://example.com",), "https://example.com:8443", False),  # so is the port
    (("https://example.com",), "https://www.example.com", False),
    (("https://example.com",), "https://example.com.evil.com", False),
    (("https://example.com",), "https://evil-example.com", False),
    (("https://example.com",), "https://example.co", False),
    (("https://example.com",), "null", False),  # sandboxed iframes and file:// pages
    (("https://example.com",), "", False),
    (("http://localhost:8080",), "http://localhost:8080", True),
    (("http://localhost:8080",), "http://localhost", False),
    (("https://example.com", "https://example.org"), "https://example.org", True),
    (("https://example.com", "https://example.org"), "https://example.net", False),
    # any origin
    (("*",), "https://anything.test", True),
    (("*",), "null", True),
    (("https://example.com", "*"), "http://other.test:1", True),
    # subdomain wildcard
    (("https://*.example.com",), "https://a.example.com", True),
    (("https://*.example.com",), "https://www.example.com", True),
    (("https://*.example.com",), "https://a.b.example.com", True),
    (("https://*.example.com",), "https://example.com", False),  # the apex is not a subdomain
    (("https://*.example.com",), "https://.example.com", False),
    (("https://*.example.com",), "https://example.com.evil.com", False),
    (("https://*.example.com",), "https://a.example.com.evil.com", False),
    (("https://*.example.com",), "https://evilexample.com", False),
    (("https://*.example.com",), "https://a.evilexample.com", False),
    (("https://*.example.com",), "http://a.example.com", False),
    (("https://*.example.com",), "https://a.example.com:8443", False),
    (("https://*.example.com:8443",), "https://a.example.com:8443", True),
    (("https://*.example.com:8443",), "https://a.example.com", False),
    (("https://*.example.com", "https://example.com"), "https://example.com", True),
    (("http://*.example.com",), "https://a.example.com", False),
    # case-insensitive: browsers send lower case, but a client may not
    (("https://example.com",), "HTTPS://EXAMPLE.COM", True),
    (("https://example.com",), "https://Example.Com", True),
    (("https://*.example.com",), "https://WWW.Example.COM", True),
    (("https://*.example.com",), "HTTP://WWW.EXAMPLE.COM", False),
    # nothing listed: only requests without an Origin
    ((), "https://example.com", False),
]


@pytest.mark.parametrize(("origins", "origin", "allowed"), ORIGIN_CASES)
def test_allows_origin(origins: tuple[str, ...], origin: str, allowed: bool) -> None:
    assert site(*origins).allows_origin(origin) is allowed


@pytest.mark.parametrize(
    "origins", [(), ("https://example.com",), ("https://*.example.com",), ("*",)], ids=repr
)
def test_no_origin_header_is_allowed(origins: tuple[str, ...]) -> None:
    """Servers and pixels send no Origin; the CORS check is for browsers only."""
    assert site(*origins).allows_origin(None) is True


@pytest.mark.parametrize(
    ("origins", "any_origin", "exact", "wildcards"),
    [
        ((), False, frozenset(), ()),
        (("*",), True, frozenset(), ()),
        (
            ("https://example.com", "http://localhost:8080"),
            False,
            frozenset({"https://example.com", "http://localhost:8080"}),
            (),
        ),
        (
            ("https://*.example.com", "https://*.example.org:8443", "*"),
            True,
            frozenset(),
            (("https://", ".example.com"), ("https://", ".example.org:8443")),
        ),
    ],
)
def test_from_settings_compiles_the_allowlist(
    origins: tuple[str, ...],
    any_origin: bool,
    exact: frozenset[str],
    wildcards: tuple[tuple[str, str], ...],
) -> None:
    compiled = site(*origins)

    assert compiled.id == "demo"
    assert compiled.any_origin is any_origin
    assert compiled.origins == exact
    assert compiled.wildcard_suffixes == wildcards


@pytest.mark.parametrize(("without_consent", "drop"), [("anonymous", False), ("drop", True)])
def test_without_consent_policy(without_consent: str, drop: bool) -> None:
    assert site(without_consent=without_consent).drop_without_consent is drop


# ------------------------------------------------------------------------------------------------ registry


@pytest.fixture
def registry() -> SiteRegistry:
    return SiteRegistry(
        {
            "shop": SiteSettings(allowed_origins=("https://shop.example.com",)),
            "blog": SiteSettings(allowed_origins=("https://*.blog.example.org",), without_consent="drop"),
            "server-only": SiteSettings(allowed_origins=()),
        }
    )


def test_registry_get_and_contains(registry: SiteRegistry) -> None:
    shop = registry.get("shop")
    blog = registry.get("blog")

    assert shop is not None and shop.id == "shop" and shop.origins == frozenset({"https://shop.example.com"})
    assert blog is not None and blog.drop_without_consent is True
    assert registry.get("unknown") is None
    assert registry.get("SHOP") is None  # site ids are exact
    assert "shop" in registry
    assert "server-only" in registry
    assert "unknown" not in registry
    assert None not in registry


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://shop.example.com", True),
        ("https://en.blog.example.org", True),
        ("HTTPS://EN.BLOG.EXAMPLE.ORG", True),
        ("https://blog.example.org", False),
        ("https://shop.example.com.evil.com", False),
        ("http://shop.example.com", False),
        ("https://evil.test", False),
        ("null", False),
    ],
)
def test_any_allows_origin(registry: SiteRegistry, origin: str, allowed: bool) -> None:
    assert registry.any_allows_origin(origin) is allowed


def test_any_allows_origin_with_a_wildcard_site() -> None:
    registry = SiteRegistry(
        {
            "shop": SiteSettings(allowed_origins=("https://shop.example.com",)),
            "demo": SiteSettings(allowed_origins=("*",)),
        }
    )

    assert registry.any_allows_origin("https://evil.test") is True


def test_empty_registry_allows_no_origin() -> None:
    registry = SiteRegistry({})

    assert registry.any_allows_origin("https://example.com") is False
    assert "demo" not in registry


def test_any_allows_origin_remembers_answers_within_a_bound() -> None:
    registry = SiteRegistry(
        {"shop": SiteSettings(allowed_origins=("https://shop.example.com",)), "blog": SiteSettings()}
    )
    for i in range(3000):  # clients choose the Origin header: the memo must stay bounded
        assert registry.any_allows_origin(f"https://x{i}.example.net") is False
    assert len(registry._any_allows) <= 1024
    assert registry.any_allows_origin("https://shop.example.com") is True
    assert registry.any_allows_origin("https://shop.example.com") is True  # remembered, same answer
