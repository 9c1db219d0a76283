"""Coarse User-Agent facts only: browser and OS family + major version, device class, bot flag."""

from __future__ import annotations

import dataclasses

import pytest

from proxy.useragent import BOT, MAX_UA_LENGTH, UserAgentInfo, parse_user_agent

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


@pytest.mark.parametrize(
    "user_agent",
    [
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
    ],
)
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
    assert info.maxsize == 8192

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
