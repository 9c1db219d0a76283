"""Coarse User-Agent facts: browser and OS family + major version, device class, bot flag.

The raw User-Agent string is an input only: it is used here and in the visitor hash, and never stored.
``user_agents.parse`` costs about a millisecond, so results are kept in a bounded LRU cache.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import user_agents

MAX_UA_LENGTH = 1024

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


def _major(version: tuple[int | str, ...]) -> str:
    major = str(version[0]) if version else ""
    return major if _VERSION.fullmatch(major) else ""


def _known(family: str, known: frozenset[str]) -> str:
    if not family or family == "Other":
        return ""
    return family if family in known else "Other"


@lru_cache(maxsize=8192)
def parse_user_agent(ua: str) -> UserAgentInfo:
    """Bounded-cache parse. An empty or oversize User-Agent is treated as a bot."""
    if not ua or len(ua) > MAX_UA_LENGTH or _AUTOMATION.search(ua):
        return BOT
    parsed = user_agents.parse(ua)
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
