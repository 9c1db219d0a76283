"""Coarse User-Agent facts only: browser and OS family + major version, device class, bot flag."""

from __future__ import annotations

import dataclasses
import functools
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import user_agents

import proxy.useragent as useragent
from proxy.useragent import BOT, CACHE_SIZE, MAX_UA_LENGTH, UserAgentInfo, parse_user_agent

CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)


def ua(browser: str, version: str, os: str, os_version: str, device: str) -> UserAgentInfo:
    return UserAgentInfo(browser, version, os, os_version, device, is_bot=False)


PEOPLE = [
    pytest.param(CHROME_WIN, ua("Chrome", "124", "Windows", "10", "desktop"), id="chrome-windows"),
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
        ua("Firefox", "125", "Windows", "10", "desktop"),
        id="firefox-windows",
    ),
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
        ua("Edge", "124", "Windows", "10", "desktop"),
        id="edge-windows",
    ),
    pytest.param(
        "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
        ua("IE", "11", "Windows", "7", "desktop"),
        id="ie11-windows7",
    ),
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36 OPR/109.0.0.0",
        ua("Opera", "109", "Windows", "10", "desktop"),
        id="opera-windows",
    ),
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/122.0.0.0 YaBrowser/24.4.0.0 Safari/537.36",
        ua("Yandex Browser", "24", "Windows", "10", "desktop"),
        id="yandex-windows",
    ),
    pytest.param(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        ua("Chrome", "124", "Mac OS X", "10", "desktop"),
        id="chrome-macos",
    ),
    pytest.param(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4.1 Safari/605.1.15",
        ua("Safari", "17", "Mac OS X", "10", "desktop"),
        id="safari-macos",
    ),
    pytest.param(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
        ua("Firefox", "125", "Mac OS X", "14", "desktop"),
        id="firefox-macos",
    ),
    pytest.param(
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        ua("Chrome", "124", "Linux", "", "desktop"),
        id="chrome-linux",
    ),
    pytest.param(
        "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        ua("Firefox", "125", "Linux", "", "desktop"),
        id="firefox-linux",
    ),
    pytest.param(
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        ua("Firefox", "125", "Ubuntu", "", "desktop"),
        id="firefox-ubuntu",
    ),
    pytest.param(
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        ua("Chrome", "124", "Chrome OS", "14541", "desktop"),
        id="chrome-chromeos",
    ),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4.1 Mobile/15E148 Safari/604.1",
        ua("Mobile Safari", "17", "iOS", "17", "mobile"),
        id="safari-iphone",
    ),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
        ua("Chrome Mobile iOS", "124", "iOS", "17", "mobile"),
        id="chrome-iphone",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Mobile Safari/537.36",
        ua("Chrome Mobile", "124", "Android", "14", "mobile"),
        id="chrome-android",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Mobile Safari/537.36",
        ua("Chrome Mobile", "124", "Android", "10", "mobile"),
        id="chrome-android-reduced",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
        ua("Samsung Internet", "24", "Android", "14", "mobile"),
        id="samsung-android",
    ),
    pytest.param(
        "Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0",
        ua("Firefox Mobile", "125", "Android", "14", "mobile"),
        id="firefox-android",
    ),
    pytest.param(
        "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/16.6 Mobile/15E148 Safari/604.1",
        ua("Mobile Safari", "16", "iOS", "16", "tablet"),
        id="safari-ipad",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        ua("Chrome", "124", "Android", "13", "tablet"),
        id="chrome-android-tablet",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Mobile Safari/537.36",
        ua("Chrome Mobile", "124", "Android", "10", "mobile"),
        id="cubot-phone-is-not-a-bot",
    ),
    # an app name that is not a plausible family is stored as "Other", never verbatim
    pytest.param(
        "jo@example.com/3.1 CFNetwork/1410.0.3 Darwin/22.6.0",
        ua("Other", "", "iOS", "16", "mobile"),
        id="cfnetwork-email-app-name",
    ),
    pytest.param(
        "203.0.113.77/3.1 CFNetwork/1410.0.3 Darwin/22.6.0",
        ua("Other", "", "iOS", "16", "mobile"),
        id="cfnetwork-ip-app-name",
    ),
    # exactly at the length limit is still parsed
    pytest.param(
        CHROME_WIN + " " + "x" * (MAX_UA_LENGTH - len(CHROME_WIN) - 1),
        ua("Chrome", "124", "Windows", "10", "desktop"),
        id="1024-chars",
    ),
]


@pytest.mark.parametrize(("user_agent", "expected"), PEOPLE)
def test_browsers(user_agent: str, expected: UserAgentInfo) -> None:
    assert parse_user_agent(user_agent) == expected


BOTS = [
    pytest.param("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", id="googlebot"),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.118 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        id="googlebot-smartphone",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.201 Mobile Safari/537.36 (compatible; Google-InspectionTool/1.0;)",
        id="google-inspectiontool",
    ),
    pytest.param("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", id="bingbot"),
    pytest.param(
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; "
        "+http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
        id="bingbot-evergreen",
    ),
    pytest.param("Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)", id="yandexbot"),
    pytest.param("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", id="ahrefsbot"),
    pytest.param(
        "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
        id="baiduspider",
    ),
    pytest.param(
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
        id="gptbot",
    ),
    pytest.param(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
        id="applebot-desktop",
    ),
    pytest.param(
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Amazonbot/0.1; "
        "+https://developer.amazon.com/support/amazonbot) Chrome/119.0.6045.214 Safari/537.36",
        id="amazonbot",
    ),
    pytest.param("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", id="facebook"),
    pytest.param("curl/8.5.0", id="curl"),
    pytest.param("Wget/1.21.4", id="wget"),
    pytest.param("python-requests/2.31.0", id="python-requests"),
    pytest.param("python-httpx/0.27.0", id="python-httpx"),
    pytest.param("Go-http-client/1.1", id="go"),
    pytest.param("okhttp/4.12.0", id="okhttp"),
    pytest.param("axios/1.6.8", id="axios"),
    pytest.param(
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/124.0.6367.60 Safari/537.36",
        id="headless-chrome",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
        id="lighthouse",
    ),
    pytest.param("", id="empty"),
    pytest.param(CHROME_WIN + " " + "x" * (MAX_UA_LENGTH - len(CHROME_WIN)), id="1025-chars"),
    pytest.param(CHROME_WIN + " " + "x" * (2000 - len(CHROME_WIN) - 1), id="2000-chars"),
]


@pytest.mark.parametrize("user_agent", BOTS)
def test_bots_and_automation(user_agent: str) -> None:
    result = parse_user_agent(user_agent)

    assert result == UserAgentInfo("", "", "", "", "", is_bot=True)
    assert result is BOT


def test_2000_char_string_really_is_2000_chars() -> None:
    long = CHROME_WIN + " " + "x" * (2000 - len(CHROME_WIN) - 1)

    assert len(long) == 2000
    assert parse_user_agent(long) is BOT


PII_USER_AGENTS = [
    "jo@example.com/3.1 CFNetwork/1410.0.3 Darwin/22.6.0",
    "203.0.113.77/3.1 CFNetwork/1410.0.3 Darwin/22.6.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15 jo@example.com/1.0",
    "Tel 4915112345678/1.0 CFNetwork/1410.0.3 Darwin/22.6.0",
    "JohnSmith/1.0 CFNetwork/1410.0.3 Darwin/22.6.0",
    "Mozilla/5.0 (Windows NT 10.0; jo@example.com) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; 203.0.113.77 Build/UQ1A) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; jo@example.com/1.0)",
    "jo@example.com",
]


@pytest.mark.parametrize("user_agent", PII_USER_AGENTS)
def test_nothing_from_the_raw_user_agent_text_is_kept(user_agent: str) -> None:
    """Promise 5: only coarse facts are stored. An e-mail or IP inside the UA must not become a 'browser'."""
    result = parse_user_agent(user_agent)

    for value in dataclasses.astuple(result):
        if isinstance(value, str):
            for secret in ("jo@", "example.com", "203.0.113", "4915112345678", "Smith"):
                assert secret not in value


def test_versions_are_major_only() -> None:
    result = parse_user_agent(
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Mobile Safari/537.36"
    )

    assert (result.browser_version, result.os_version) == ("124", "14")
    assert "." not in result.browser_version + result.os_version


def test_results_are_cached_in_a_bounded_lru() -> None:
    info = parse_user_agent.cache_info()
    assert info.maxsize == CACHE_SIZE == 16384

    parse_user_agent.cache_clear()
    first = parse_user_agent(CHROME_WIN)
    again = parse_user_agent(CHROME_WIN)

    assert again is first
    assert parse_user_agent.cache_info().hits == 1
    assert parse_user_agent.cache_info().misses == 1


def test_cache_never_grows_past_its_bound() -> None:
    parse_user_agent.cache_clear()
    maxsize = parse_user_agent.cache_info().maxsize
    assert maxsize is not None

    for i in range(maxsize + 100):
        parse_user_agent(f"curl/{i}")  # distinct, and cheap: matched before user-agents parses them

    assert parse_user_agent.cache_info().currsize == maxsize
    parse_user_agent.cache_clear()


# --- the fast parser gives exactly what user_agents.parse gives ----------------------------------------


@functools.cache  # shared by the tests below; the reference is slow
def old_parse_user_agent(ua: str) -> UserAgentInfo:
    """The reference: parse_user_agent as it was before ua-parser-rs, on ``user_agents.parse``."""
    if not ua or len(ua) > MAX_UA_LENGTH or useragent._AUTOMATION.search(ua):
        return BOT
    return useragent.coarse_info(user_agents.parse(ua))  # the classification both paths share


# user_agents.parse's rules for browser, OS and device, in its order
RULES: tuple[Sequence[Any], ...] = (useragent._BROWSER_RULES, useragent._OS_RULES, useragent._DEVICE_RULES)


def uncached(ua: str) -> UserAgentInfo:
    return parse_user_agent.__wrapped__(ua)


def facts(parsed: Any) -> tuple[Any, ...]:
    """Everything a user_agents UserAgent knows, parsed fields and derived classification."""
    return (
        parsed.browser,
        parsed.os,
        parsed.device,
        parsed.is_bot,
        parsed.is_tablet,
        parsed.is_mobile,
        parsed.is_pc,
        parsed.is_touch_capable,
        parsed.is_email_client,
        str(parsed),
    )


# A User-Agent where ua-parser-rs names a rule that Python's `re` does not match, one per domain: the rule
# has a bounded repeat (`.{0,100}`, `.{0,200}?`) that ua-parser-rs widens to `.*`, and the text after the
# bound is what that rule looks for. `re` (and user_agents.parse) go on to a later rule.
HINT_TOO_EARLY = [
    pytest.param(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_5) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/45.0.2454.101 Safari/537.36 SWIMGBot",
        2,  # the "Spider" device rule: ^.{0,100}(bot|...|spider|...)
        id="device-bot-token-after-100-chars",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 7.0; SM-G930V Build/NRD90M) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/59.0.3071.125 Mobile Safari/537.36 (compatible; Google-Read-Aloud; "
        "+https://developers.google.com/search/docs/crawling-indexing/overview-google-crawlers)",
        0,  # a crawler browser rule: ^.{0,200}?(... spider|crawl...)
        id="browser-crawl-token-after-200-chars",
    ),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Mobile/15E148 Version/17.4 Safari/604.1 [FBAN/FBIOS;FBAV/450.0] Outlook-iOS-Android/1.0",
        1,  # an OS rule: (CPU[ +]OS|iPhone[ +]OS|...)...{0,100}Outlook-iOS-Android
        id="os-outlook-token-after-100-chars",
    ),
]

# Real-world and historical User-Agents from many corners of ua-parser's rules.
ASSORTED = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_1) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/40.0.2214.111 Safari/537.36 moatbot",
    "Mozilla/5.0 (Windows; U; Windows NT 5.1; en; rv:1.9.0.13) Gecko/2009073022 Firefox/3.5.2 "
    "(.NET CLR 3.5.30729) SurveyBot/2.3 (DomainTools)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/49.0.2623.75 "
    "Safari/537.36 Google Favicon",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/95.0.4638.69 Safari/537.36 Silktide",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 5_1 like Mac OS X) AppleWebKit/534.46 (KHTML, like Gecko) "
    "Version/5.1 Mobile/9B179 Safari/7534.48.3",
    "Mozilla/5.0(iPad; U; CPU iPhone OS 3_2 like Mac OS X; en-us) AppleWebKit/531.21.10 (KHTML, like Gecko) "
    "Version/4.0.4 Mobile/7B314 Safari/531.21.10",
    "Mozilla/5.0 (Linux; U; Android 2.2; en-us; SCH-I800 Build/FROYO) AppleWebKit/533.1 (KHTML, like Gecko) "
    "Version/4.0 Mobile Safari/533.1",
    "Mozilla/5.0 (Macintosh; U; Intel Mac OS X 10_6_3; en-us; Silk/1.1.0-80) AppleWebKit/533.16 "
    "(KHTML, like Gecko) Version/5.0 Safari/533.16 Silk-Accelerated=true",
    "Mozilla/5.0 (PlayBook; U; RIM Tablet OS 2.0.1; en-US) AppleWebKit/535.8+ (KHTML, like Gecko) "
    "Version/7.2.0.1 Safari/535.8+",
    "Mozilla/5.0 (compatible; MSIE 9.0; Windows Phone OS 7.5; Trident/5.0; IEMobile/9.0; SAMSUNG; SGH-i917)",
    "Mozilla/5.0 (BlackBerry; U; BlackBerry 9800; zh-TW) AppleWebKit/534.8+ (KHTML, like Gecko) "
    "Version/6.0.0.448 Mobile Safari/534.8+",
    "BlackBerry9700/5.0.0.862 Profile/MIDP-2.1 Configuration/CLDC-1.1 VendorID/331 UNTRUSTED/1.0 3gpp-gba",
    "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.2; ARM; Trident/6.0)",
    "Opera/9.80 (J2ME/MIDP; Opera Mini/9.80 (J2ME/22.478; U; en) Presto/2.5.25 Version/10.54",
    "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.2; Trident/6.0; Touch)",
    "Mozilla/5.0 (SymbianOS/9.4; Series60/5.0 NokiaN97-1/12.0.024; Profile/MIDP-2.1 Configuration/CLDC-1.1; "
    "en-us) AppleWebKit/525 (KHTML, like Gecko) BrowserNG/7.1.12344",
    "Mozilla/5.0 (X11; Linux x86_64; rv:38.0) Gecko/20100101 Thunderbird/38.2.0 Lightning/4.0.2",
    "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.1; Trident/6.0; Microsoft Outlook 15.0.4420)",
    "Mozilla/5.0 (X11; CrOS i686 0.12.433) AppleWebKit/534.30 (KHTML, like Gecko) Chrome/12.0.742.77 "
    "Safari/534.30",
    "Mozilla/5.0 (Linux; Android 12; HarmonyOS; NOH-AN00; HMSCore 6.11.0.302) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/99.0.4844.88 HuaweiBrowser/14.0.1.300 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/108.5.2 "
    "like Chrome/108.0.5359.220 Safari/537.36",
    "Mozilla/5.0 (Mobile; LYF/F300B/LYF-F300B-001-01-15-130718-i;Android; rv:48.0) Gecko/48.0 Firefox/48.0 "
    "KAIOS/2.5",
    "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) 85.0.4183.93/6.0 TV "
    "Safari/537.36",
    "Mozilla/5.0 (X11; Linux armv7l) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/88.0.4324.187 "
    "Safari/537.36 CrKey/1.56.500000 DeviceType/AndroidTV",
    "HbbTV/1.5.1 (+DRM; Samsung; SmartTV2021:UAU7000; T-KSU2EDEUC-1501.3; KantM2; "
    "urn:samsungtv:familyname:21_KANTM2_UHD_BASIC:2021;) Tizen/6.0 (+TVPLUS+SmartHubLink) Chrome/76 "
    "LaTivu_1.0.1_2021 RVID/8",
    "Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Xbox; Xbox One) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/70.0.3538.102 Safari/537.36 Edge/18.19041",
    "Mozilla/5.0 (Nintendo Switch; WifiWebAuthApplet) AppleWebKit/606.4 (KHTML, like Gecko) NF/6.0.1.15.4 "
    "NintendoBrowser/5.1.0.20393",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 Instagram 327.0.0.30.120 (iPhone14,5; iOS 17_4_1; en_US; en; scale=3.00; 1170x2532; "
    "588235014)",
    "Mozilla/5.0 (Linux; Android 14; SM-S911B Build/UP1A.231005.007; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/124.0.6367.82 Mobile Safari/537.36 "
    "[FB_IAB/FB4A;FBAV/462.0.0.40.86;]",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Slack/4.38.125 "
    "Chrome/124.0.6367.119 Electron/30.0.3 Safari/537.36 AtomShell/30.0.3",
    "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/86.0.4240.198 "
    "Safari/537.36 SE 2.X MetaSr 1.0",
    "Mozilla/5.0 (Linux; U; Android 12; zh-cn; 2201123C Build/SKQ1.211006.001) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/100.0.4896.127 Mobile Safari/537.36 XiaoMi/MiuiBrowser/17.6.60",
    "Dalvik/2.1.0 (Linux; U; Android 13; SM-A536B Build/TP1A.220624.014)",
    "MyApp/5.2.1 (com.example.app; build:5210; iOS 17.4.1) Alamofire/5.8.1",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17531; Pro)",
    "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)",
    "Mozilla/5.0 (Windows; U; Windows NT 5.0; en-US; rv:1.7.12) Gecko/20050915 Firefox/1.0.7",
    "Opera/9.80 (Windows NT 6.1; WOW64) Presto/2.12.388 Version/12.18",
]

# Not a browser's User-Agent, or an odd one: control characters, non-ASCII (where `re` and ua-parser-rs
# disagree on \w, \d and case folding, so only `re` is used), other case, padding, near the length limit.
ODD = [
    " ",
    "-",
    "null",
    "Mozilla/5.0",
    "Mozilla/5.0 ()",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
    "\x00",
    "\t" + CHROME_WIN,
    CHROME_WIN + "\n",
    CHROME_WIN.replace(" ", "\t"),
    CHROME_WIN + "   ",
    CHROME_WIN.upper(),
    CHROME_WIN.lower(),
    CHROME_WIN.swapcase(),
    "Mozilla/5.0 (compatible; Yandex\u00e9AdNet/1.0; +http:v//yandex.com/bots)",
    "Mozilla/5.0 (Linux; Android 6.0; Nexus 5 Build/MRA58N) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/56.0.4329\u0661.1844 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; \u0421\u043c\u0430\u0440\u0442\u0444\u043e\u043d X) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android \u0661\u0664; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/\u0661\u0662\u0664.0.0.0 Mobile Safari/537.36",
    "\u017fcrapy/2.11 (+https://scrapy.org)",  # long s: `re` IGNORECASE folds it to "s"
    "Mozilla/5.0 (compatible; \u212aosmioBot/1.0)",  # Kelvin sign, folds to "k"
    "Mozilla/5.0 (\u0130Phone; CPU \u0130Phone OS 17_4 like Mac OS X) AppleWebKit/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 \U0001f600\u200d\u3000\u65e5\u672c",
    CHROME_WIN + " " + "y" * (MAX_UA_LENGTH - len(CHROME_WIN) - 5) + " bot",
    CHROME_WIN + " " + "Googlebot" * 100,
]


# Tokens of ua-parser's "Spider" device rule (^.{0,100}(bot|...)) and of crawlers it or _AUTOMATION knows,
# placed before and after the rule's 100-character bound.
BOT_TOKENS = [
    "SWIMGBot",
    "360Spider",
    "moatbot",
    "Google Favicon",
    "Silktide",
    "Applebot/0.1",
    "Yeti/1.1",
    "heritrix/3.4.0",
    "WhatsApp/2.23.20",
    "Daum",
    "Yahoo! Slurp",
    "BingPreview/1.0b",
    "Screaming Frog SEO Spider/19.0",
    "Pingdom.com_bot_version_1.4",
]


def bot_user_agents() -> list[str]:
    bases = [CHROME_WIN, *(str(p.values[0]) for p in PEOPLE[5:9]), "Mozilla/5.0 (X11; Linux x86_64)"]
    short = [f"Mozilla/5.0 (compatible; {token})" for token in BOT_TOKENS]
    return (
        short
        + [f"{base} {token}" for base in bases for token in BOT_TOKENS]
        + [f"{token} {base}" for base in bases for token in BOT_TOKENS]
    )


def benchmark_user_agents() -> list[str]:
    """All of benchmarks/throughput.py's User-Agents (desktop and mobile browsers, no bots)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    try:
        import throughput
    finally:
        sys.path.pop(0)
    available = sum(len(candidates) for _, candidates in throughput._user_agent_families())
    return list(throughput.make_user_agents(available))


def mutations(seeds: list[str], count: int) -> list[str]:
    """Deterministic edits of real User-Agents: inserted, deleted, spliced, cut, recased, repeated text,
    including non-ASCII and control characters."""
    rng = random.Random(20240601)
    printable = [chr(c) for c in range(0x20, 0x7F)]
    other = list(
        "\u00e9\u00fc\u00df\u00b2\u00bd\u017f\u212a\u0130\u0131\u0301\u200d\x1c\x1f\t\n\r\x00\u3000\u0661\u65e5"
    )
    out = []
    for _ in range(count):
        text = list(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            op, pos = rng.random(), rng.randrange(len(text) + 1)
            if op < 0.3:
                text.insert(pos, rng.choice(printable))
            elif op < 0.45 and text:
                del text[min(pos, len(text) - 1)]
            elif op < 0.6:
                text[pos:pos] = rng.choice(seeds)[: rng.randint(5, 60)]
            elif op < 0.7:
                text = text[:pos]
            elif op < 0.8:
                text = [c.swapcase() if rng.random() < 0.3 else c for c in text]
            elif op < 0.9:
                text.insert(pos, rng.choice(other))
            else:
                text += text[: rng.randint(0, len(text))]
        out.append("".join(text))
    return out


@functools.cache
def corpus() -> tuple[str, ...]:
    seeds = [
        *benchmark_user_agents(),
        *(str(p.values[0]) for p in (*PEOPLE, *BOTS, *HINT_TOO_EARLY)),
        *PII_USER_AGENTS,
        *ASSORTED,
        *bot_user_agents(),
    ]
    everything = [*seeds, *ODD, *mutations(seeds, 1500)]
    return tuple(dict.fromkeys(everything))


def test_the_corpus_is_large_and_varied() -> None:
    uas = corpus()
    native = useragent._get_native()
    assert native is not None

    assert len(uas) > 2000
    assert sum(old_parse_user_agent(ua).is_bot for ua in uas) > 100
    assert sum(not (ua.isascii() and ua.isprintable()) for ua in uas) > 300  # parsed in `re` only
    assert len({old_parse_user_agent(ua) for ua in uas}) > 150  # distinct results
    hinted_too_early = 0  # the native hint names a rule that `re` does not match (see HINT_TOO_EARLY)
    for ua in uas:
        if ua.isascii() and ua.isprintable():
            for rules, rule in zip(RULES, native.first_rules(ua), strict=True):
                hinted_too_early += rule < len(rules) and rules[rule].Parse(ua)[0] is None
    assert hinted_too_early > 50


def test_same_facts_as_user_agents_parse() -> None:
    """Promise of this module: the fast parser changes no stored field, for any input."""
    assert useragent.parser_backend() == "ua-parser-rs"

    differ = [(ua, old, new) for ua in corpus() if (old := old_parse_user_agent(ua)) != (new := uncached(ua))]

    assert differ == []


def test_same_parse_as_user_agents_parse() -> None:
    """Stricter than the stored facts (which the allow-lists coarsen): the whole user_agents view, families,
    versions, device brand and model, and every classification property, for what we parse."""
    native = useragent._get_native()
    assert native is not None
    differ = []
    for ua in corpus():
        if len(ua) > MAX_UA_LENGTH:
            continue
        first_rules = native.first_rules(ua) if ua.isascii() and ua.isprintable() else (0, 0, 0)
        old, new = facts(user_agents.parse(ua)), facts(useragent._user_agents_view(ua, first_rules))
        if old != new:
            differ.append((ua, old, new))

    assert differ == []


@pytest.mark.parametrize(("user_agent", "domain"), HINT_TOO_EARLY)
def test_a_rule_ua_parser_rs_widened_is_checked_in_re(user_agent: str, domain: int) -> None:
    native = useragent._get_native()
    assert native is not None
    rules = RULES[domain]

    hinted = native.first_rules(user_agent)[domain]
    truly_first = next(i for i, rule in enumerate(rules) if rule.Parse(user_agent)[0])

    assert hinted < truly_first
    assert rules[hinted].Parse(user_agent)[0] is None
    assert facts(useragent._user_agents_view(user_agent, native.first_rules(user_agent))) == facts(
        user_agents.parse(user_agent)
    )
    assert uncached(user_agent) == old_parse_user_agent(user_agent)


def test_without_ua_parser_rs_the_python_loop_gives_the_same_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ua_parser_rs", None)  # import fails
    assert useragent._build_native() is None

    monkeypatch.setattr(useragent, "_built", [None])

    assert useragent.parser_backend() == "python"
    sample = corpus()[::8]
    assert [uncached(ua) for ua in sample] == [old_parse_user_agent(ua) for ua in sample]


def test_the_parser_is_built_once() -> None:
    native = useragent._get_native()

    parse_user_agent.cache_clear()
    parse_user_agent(CHROME_WIN)

    assert useragent._get_native() is native
    assert useragent._built == [native]
