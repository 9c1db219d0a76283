"""Coarse User-Agent facts: browser and OS family + major version, device class, bot flag.

The raw User-Agent string is an input only: it is used here and in the visitor hash, and never stored.
The facts are exactly what ``user_agents.parse`` gives (its rules, its classification), but a cache miss
costs ~30 us instead of ~0.6 ms when ua-parser-rs finds the matching rules (see "the parser" below;
``benchmarks/ua_bench.py`` measures it). Results are kept in a bounded LRU cache.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from typing import TYPE_CHECKING, Any, Literal

from ua_parser import user_agent_parser  # the legacy API that user_agents.parse runs
from user_agents.parsers import UserAgent, parse_browser, parse_device, parse_operating_system

if TYPE_CHECKING:
    import ua_parser_rs

MAX_UA_LENGTH = 1024
CACHE_SIZE = 16384

# Automation that user-agents does not flag as a bot, but that never is a person's browser.
_AUTOMATION = re.compile(
    r"headlesschrome|phantomjs|python-requests|python-urllib|python-httpx|aiohttp|go-http-client|"
    r"\bjava/|okhttp|libwww|\bwget|\bcurl/|axios/|node-fetch|undici|scrapy|crawler|spider|"
    r"lighthouse|ptst/|pingdom|uptimerobot|facebookexternalhit|preview|"
    r"applebot|amazonbot|gptbot|claudebot|ccbot|petalbot|bytespider|semrushbot|ahrefsbot|mj12bot|dotbot|"
    r"yandexbot|duckduckbot|twitterbot|linkedinbot|telegrambot|slackbot|discordbot|"
    r"compatible;[^)]*bot|\+https?://",  # crawlers name themselves and link their docs
    re.IGNORECASE,
)


# Families are stored only from these lists, anything else as "Other". ua-parser copies unknown app
# names verbatim (e.g. "<anything>/1.0 CFNetwork/..."), and a User-Agent is text the client chose:
# a name, e-mail, phone number or IP address there must never become a "browser" (PRIVACY.md 5).
def _names(text: str) -> frozenset[str]:
    return frozenset(name.strip() for name in text.split("|"))


KNOWN_BROWSERS = _names(
    """Chrome|Chrome Mobile|Chrome Mobile iOS|Chrome Mobile WebView|Chromium|Firefox|Firefox Mobile|
    Firefox iOS|Firefox Focus|Safari|Mobile Safari|Mobile Safari UI/WKWebView|Edge|Edge Mobile|IE|
    IE Mobile|Opera|Opera Mini|Opera Mobile|Opera GX|Opera Touch|Opera Coast|Samsung Internet|UC Browser|
    Yandex Browser|Brave|Vivaldi|DuckDuckGo Mobile|Silk|MiuiBrowser|HeyTap Browser|Huawei Browser|
    Vivo Browser|QQ Browser|QQ Browser Mobile|Baidu Browser|Sogou Explorer|Whale|Puffin|Pale Moon|
    SeaMonkey|Waterfox|Konqueror|Epiphany|Midori|Falkon|Maxthon|Coc Coc|Avast Secure Browser|
    AVG Secure Browser|Aloha Browser|Ecosia|Qwant|Electron|Facebook|Instagram|Snapchat|Pinterest|
    LinkedIn|Twitter|WeChat|Line|Google|GSA|Amazon Silk|Android|BlackBerry WebKit|Nokia Browser|NetFront|
    Obigo|Kindle|PlayStation|Nintendo Browser|Samsung TV Browser|KaiOS"""
)
KNOWN_OS = _names(
    """Windows|Windows Phone|Windows Mobile|Mac OS X|Mac OS|iOS|iPadOS|Android|Chrome OS|Linux|Ubuntu|Debian|
    Fedora|Red Hat|SUSE|openSUSE|Gentoo|Arch Linux|Mint|FreeBSD|OpenBSD|NetBSD|Solaris|BlackBerry OS|
    BlackBerry Tablet OS|Symbian OS|KaiOS|Tizen|webOS|Firefox OS|Fuchsia|HarmonyOS|tvOS|WatchOS|
    Chromecast Android|Chromecast Fuchsia|Chromecast Linux|PlayStation|Nintendo|Xbox"""
)
_VERSION = re.compile(r"\d{1,6}")


@dataclass(frozen=True, slots=True)
class UserAgentInfo:
    browser: str = ""
    browser_version: str = ""  # major version only
    os: str = ""
    os_version: str = ""  # major version only
    device: str = ""  # desktop | mobile | tablet | other
    is_bot: bool = False


BOT = UserAgentInfo(is_bot=True)

# user_agents.parse's rules, in its order: ua-parser's regexes.yaml, compiled once at import by ua-parser.
_BROWSER_RULES = user_agent_parser.USER_AGENT_PARSERS
_OS_RULES = user_agent_parser.OS_PARSERS
_DEVICE_RULES = user_agent_parser.DEVICE_PARSERS

# --- the parser: user-agents' rules, located natively, built once ----------------------------------
#
# `user_agents.parse` runs ua-parser's legacy API: for each of browser, OS and device it tries ~200-630
# regexes in order in Python's `re` and keeps the first rule that yields a family. That loop is the
# millisecond. ua-parser-rs evaluates the same regex lists natively and tells us which rule matches first;
# we then apply that one rule, the legacy way, so the result is the one `user_agents.parse` gives.
# The native index is a hint that is never later than the true first rule, because ua-parser-rs only
# *widens* regexes: it rewrites bounded repeats such as `.{0,100}` to `.*` (uap-core added those bounds
# only to guard backtracking engines). When the hinted rule does not match in `re` (a bound was exceeded,
# e.g. a "...bot" token after the first 100 characters), the legacy loop goes on from the next rule.
# The _AUTOMATION pre-check runs natively too (in `re`, with IGNORECASE, it costs more than the rest).
# Outside printable ASCII the engines' \w, \d, \s and case folding differ (e.g. `re` takes "é" as \w and
# Arabic digits as \d), so such a User-Agent is checked and parsed wholly in `re`, from the first rule.
# tests/proxy/test_useragent.py holds all of this to user_agents.parse on a few thousand inputs.

Backend = Literal["ua-parser-rs", "python"]


@dataclass(frozen=True, slots=True)
class _Native:
    """ua-parser-rs extractors; each rule's "family" is its own index, so a result names the rule."""

    automation: ua_parser_rs.DeviceExtractor
    browser: ua_parser_rs.UserAgentExtractor
    os: ua_parser_rs.OSExtractor
    device: ua_parser_rs.DeviceExtractor

    def is_automation(self, ua: str) -> bool:
        return self.automation.extract(ua) is not None

    def first_rules(self, ua: str) -> tuple[int, int, int]:
        """For browser, OS and device: the first rule that may match (past the last rule: none can)."""
        browser, os, device = self.browser.extract(ua), self.os.extract(ua), self.device.extract(ua)
        return (
            len(_BROWSER_RULES) if browser is None else int(browser.family),
            len(_OS_RULES) if os is None else int(os.family),
            len(_DEVICE_RULES) if device is None else int(device.family),
        )


def _flag(pattern: re.Pattern[str]) -> Literal["i"] | None:
    return "i" if pattern.flags & re.IGNORECASE else None


def _build_native() -> _Native | None:
    try:
        import ua_parser_rs
    except ImportError:
        return None
    return _Native(
        automation=ua_parser_rs.DeviceExtractor([(_AUTOMATION.pattern, "i", "0", None, None)]),
        browser=ua_parser_rs.UserAgentExtractor(
            (rule.user_agent_re.pattern, str(i), None, None, None, None)
            for i, rule in enumerate(_BROWSER_RULES)
        ),
        os=ua_parser_rs.OSExtractor(
            (rule.user_agent_re.pattern, str(i), None, None, None, None) for i, rule in enumerate(_OS_RULES)
        ),
        device=ua_parser_rs.DeviceExtractor(
            (rule.user_agent_re.pattern, _flag(rule.user_agent_re), str(i), None, None)
            for i, rule in enumerate(_DEVICE_RULES)
        ),
    )


_build_lock = threading.Lock()
_built: list[_Native | None] = []  # empty until built, then [the extractors, or None without ua-parser-rs]


def _get_native() -> _Native | None:
    if not _built:
        with _build_lock:
            if not _built:
                _built.append(_build_native())
    return _built[0]


def parser_backend() -> Backend:
    """Which engine finds the matching rules, for the start-up log: ``"ua-parser-rs"`` (native, ~30 us a
    miss) or ``"python"`` (ua-parser's own loop over ``re``, ~0.6 ms a miss; ua-parser-rs not installed).
    The results are the same. Builds the parser (~0.1 s) if needed, sparing the first request that cost."""
    return "python" if _get_native() is None else "ua-parser-rs"


# The three loops below are user_agent_parser's _ParseUserAgent, _ParseOS and _ParseDevice (ua-parser
# 1.0.2), started at a given rule; their defaults ("Other", versions "or None" for browsers only) are kept.
def _browser(ua: str, start: int) -> Any:
    family = v1 = v2 = v3 = None
    for rule in islice(_BROWSER_RULES, start, None):
        family, v1, v2, v3 = rule.Parse(ua)
        if family:
            break
    return parse_browser(family or "Other", v1 or None, v2 or None, v3 or None)


def _operating_system(ua: str, start: int) -> Any:
    family = v1 = v2 = v3 = v4 = None
    for rule in islice(_OS_RULES, start, None):
        family, v1, v2, v3, v4 = rule.Parse(ua)
        if family:
            break
    return parse_operating_system(family or "Other", v1, v2, v3, v4)


def _device(ua: str, start: int) -> Any:
    family = brand = model = None
    for rule in islice(_DEVICE_RULES, start, None):
        family, brand, model = rule.Parse(ua)
        if family:
            break
    return parse_device("Other" if family is None else family, brand, model)


def _user_agents_view(ua: str, first_rules: tuple[int, int, int] = (0, 0, 0)) -> Any:
    """The ``user_agents.parsers.UserAgent`` that ``user_agents.parse(ua)`` builds, so that its
    classification (``is_bot``, ``is_tablet``, ``is_mobile``, ``is_pc``) is reused unchanged."""
    browser, os, device = first_rules
    parsed = object.__new__(UserAgent)  # its __init__ would run the slow loops
    parsed.ua_string = ua
    parsed.os = _operating_system(ua, os)
    parsed.browser = _browser(ua, browser)
    parsed.device = _device(ua, device)
    return parsed


def _major(version: tuple[int | str, ...]) -> str:
    major = str(version[0]) if version else ""
    return major if _VERSION.fullmatch(major) else ""


def _known(family: str, known: frozenset[str]) -> str:
    if not family or family == "Other":
        return ""
    return family if family in known else "Other"


@lru_cache(maxsize=CACHE_SIZE)
def parse_user_agent(ua: str) -> UserAgentInfo:
    """Bounded-cache parse. An empty or oversize User-Agent is treated as a bot."""
    if not ua or len(ua) > MAX_UA_LENGTH:
        return BOT
    native = _get_native() if ua.isascii() and ua.isprintable() else None  # see "the parser" above
    if native is None:
        if _AUTOMATION.search(ua):
            return BOT
        parsed = _user_agents_view(ua)
    else:
        if native.is_automation(ua):
            return BOT
        parsed = _user_agents_view(ua, native.first_rules(ua))
    return coarse_info(parsed)


def coarse_info(parsed: UserAgent) -> UserAgentInfo:
    """What is kept of a user_agents view: allow-listed families, major versions, a device class."""
    if parsed.is_bot:
        return BOT
    if parsed.is_tablet:
        device = "tablet"
    elif parsed.is_mobile:
        device = "mobile"
    elif parsed.is_pc:
        device = "desktop"
    else:
        device = "other"
    browser = _known(parsed.browser.family, KNOWN_BROWSERS)
    os = _known(parsed.os.family, KNOWN_OS)
    return UserAgentInfo(
        browser=browser,
        browser_version=_major(parsed.browser.version) if browser not in ("", "Other") else "",
        os=os,
        os_version=_major(parsed.os.version) if os not in ("", "Other") else "",
        device=device,
    )
