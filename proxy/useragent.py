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
    r"lighthouse|ptst/|pingdom|uptimerobot|facebookexternalhit|preview|(?<!cu)bot\b",  # "Cubot" is a phone
    re.IGNORECASE,
)
# A family or version is stored only if it looks like one. ua-parser copies unknown app names verbatim
# (e.g. "<anything>/1.0 CFNetwork/..."), and a User-Agent is text the client chose: an e-mail or an
# IP address there must not become a "browser".
_SAFE_FAMILY = re.compile(r"[A-Za-z][A-Za-z0-9 ._+()-]{0,39}")
_SAFE_VERSION = re.compile(r"\d{1,6}")
_DOTTED_NUMBER = re.compile(r"\d\.\d")  # part of an IP address


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
    return major if _SAFE_VERSION.fullmatch(major) else ""


def _family(name: str) -> str:
    if not name or name == "Other":
        return ""
    if _SAFE_FAMILY.fullmatch(name) and not _DOTTED_NUMBER.search(name):
        return name
    return "Other"


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
    return UserAgentInfo(
        browser=_family(parsed.browser.family),
        browser_version=_major(parsed.browser.version),
        os=_family(parsed.os.family),
        os_version=_major(parsed.os.version),
        device=device,
    )
