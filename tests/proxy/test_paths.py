"""Children's-page rules match the page a browser would load, however its URL is spelled.

The property tests build a path from segments (the truth), spell it in generated ways a browser or a
server reads as the same page, and check that it matches a rule exactly when its segments start with
the rule's segments: no spelling escapes a rule, and ``/kidsfoo`` is not under ``/kids``.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.paths import matches_prefix, normalise_path, url_path


def is_children(url: str, rule: str) -> bool:
    return matches_prefix(normalise_path(url_path(url)), normalise_path(rule))


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/kids",
        "https://example.com/kids/",
        "https://example.com/kids/games?x=1#top",
        "https://example.com//kids",
        "https://example.com/kids//games",
        "https://example.com/KIDS",
        "https://example.com/Kids/Games",
        "https://example.com/%6Bids",
        "https://example.com/%6b%69%64%73/",
        "https://example.com/k%49ds",
        "https://example.com/./kids",
        "https://example.com/x/../kids",
        "https://example.com/../../kids",
        "https://example.com/%2e%2e/kids",
        "https://example.com/x/%2E%2E/kids",
        "https://example.com/kids/./games",
        "https://example.com/kids;jsessionid=ABC",
        "https://example.com/kids;a=1/games;b=2",
        "https://example.com/kids%2Fgames",
        "https://example.com/kids%2fgames",
        "https://example.com/adult%2F..%2Fkids",
        "https://example.com/adult/..;x/kids",
        "https://example.com\\kids",
        "https://example.com/kids\\games",
        "https://example.com/ki\tds",
        "https://example.com/ki\nds",
        "HTTPS://EXAMPLE.COM/KIDS",
        "https:/example.com/kids",
        "https:///example.com/kids",
        "https://user@example.com:8443/kids",
        "https://example.com/kids//../games",  # a browser resolves this to /kids/games
        "  https://example.com/kids  ",
        "/kids/relative",
    ],
)
def test_spellings_of_a_childrens_page_match(url: str) -> None:
    assert is_children(url, "/kids")


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/",
        "https://example.com",
        "https://example.com/kidsfoo",
        "https://example.com/kid",
        "https://example.com/kids-store/x",
        "https://example.com/grown-ups/kids",
        "https://example.com/kids/../adults",
        "https://example.com/kids/%2e%2e/adults",
        "https://example.com/kids%2F..%2Fadults",
        "https://example.com/?page=/kids",
        "https://example.com/#/kids",
        "https://example.com/k%2569ds",  # decoded once: "k%69ds", not "kids"
        "https://kids.example.com/",
        "https://example.com/ki ds",
    ],
)
def test_other_pages_do_not_match(url: str) -> None:
    assert not is_children(url, "/kids")


@pytest.mark.parametrize("rule", ["/kids", "/kids/", "/KIDS", "//kids", "/%6Bids", "/x/../kids", "/kids;v=1"])
def test_rules_are_normalised_the_same_way(rule: str) -> None:
    assert is_children("https://example.com/Kids/games", rule)
    assert not is_children("https://example.com/kidsgames", rule)


def test_root_rule_matches_every_page() -> None:
    assert is_children("https://example.com/anything/at/all", "/")
    assert is_children("https://example.com", "/")


def test_non_ascii_paths() -> None:
    kids = "/\u0434\u0435\u0442\u044f\u043c"  # Russian "for children"
    assert is_children("https://example.com/%D0%B4%D0%B5%D1%82%D1%8F%D0%BC/x", kids)
    assert is_children("https://example.com" + kids.upper(), kids)
    assert not is_children("https://example.com" + kids + "x", kids)


@pytest.mark.parametrize(
    "junk", ["", "%", "%zz", "%C3", "\x00", "https://[", "https://", "::::", "/" * 10_000, "/.." * 3000]
)
def test_junk_never_raises(junk: str) -> None:
    assert normalise_path(url_path(junk)).startswith("/")


# --- properties --------------------------------------------------------------------------------------

# Characters a path segment may hold literally. '%' is always written as %25; '/', '\\', ';', '?' and
# '#' are structure. Segments "." and ".." are structure too, so the truth never contains them.
SEGMENT_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,=:@%" + "éßДяİ"
segments = st.text(SEGMENT_CHARS, min_size=1, max_size=8).filter(lambda s: s not in (".", ".."))
paths = st.lists(segments, min_size=0, max_size=5)


def folded(segs: list[str]) -> list[str]:
    return [s.casefold() for s in segs]


@st.composite
def spelled(draw: st.DrawFn, segs: list[str], url: bool = True) -> str:
    """One URL for the page whose path segments are ``segs``, spelled as browsers and servers allow."""
    parts: list[tuple[str, bool]] = []  # (text, whether a browser sees a ".." in it)
    for seg in segs:
        # detours a browser or server resolves: "x/..", ".", "x/%2e%2e", empty segments and ".."
        for _ in range(draw(st.integers(0, 2))):
            detour = draw(
                st.sampled_from(["d/..", ".", "%2e", "d/%2E%2e", "d/.%2e", "d//../..", "d;p/..", "e/..;p"])
            )
            parts.append((detour, "/" in detour and not detour.endswith(";p")))
        chars = []
        for ch in seg:
            how = draw(st.integers(0, 3))
            if ch == "%":
                chars.append("%25")
            elif how == 0:
                chars.append("".join(f"%{b:02X}" for b in ch.encode()))  # percent-encoded
            elif how == 1:
                chars.append(ch.swapcase() if ch.swapcase().casefold() == ch.casefold() else ch)
            else:
                chars.append(ch)
        text = "".join(chars)
        if draw(st.booleans()):
            text += ";" + draw(st.sampled_from(["jsessionid=1", "v=2", "", "a;b"]))  # matrix parameters
        parts.append((text, False))
    path = ""
    for text, browser_dots in parts:
        # A browser resolves ".." before any decoding: "%2F" and "%5C" do not separate segments for it,
        # so they may only stand where no ".." follows; a server decodes them into separators.
        real = ["/", "/", "//", "\\", "/./"]
        path += draw(st.sampled_from(real if browser_dots else [*real, "%2F", "%2f", "%5C"])) + text
    if not path or draw(st.booleans()):
        path += "/"
    if not path.startswith("/"):  # "%2F" first: the URL's own path still starts with "/"
        path = "/" + path
    if not url:
        return path
    tail = draw(st.sampled_from(["", "?q=1", "#frag", "?a=/kids#/x"]))
    host = draw(st.sampled_from(["https://example.com", "http://EXAMPLE.com:8080", "https://u@example.com"]))
    return host + path + tail


@given(st.data(), st.lists(segments, min_size=1, max_size=3), paths)
def test_a_rule_matches_exactly_the_pages_below_it_however_spelled(
    data: st.DataObject, rule: list[str], rest: list[str]
) -> None:
    # Pages near the rule: under it, beside it (a longer or shorter last segment), above it, elsewhere.
    k = data.draw(st.integers(0, len(rule) - 1))
    page = data.draw(
        st.sampled_from(
            [
                rule + rest,
                [*rule[:k], rule[k] + data.draw(segments), *rest],  # /kidsfoo
                [*rule[:k], rule[k][:-1], *rest] if len(rule[k]) > 1 else rule[:k] + rest,  # /kid
                rule[:k],
                rest,
            ]
        )
    )
    truth = folded(page)[: len(rule)] == folded(rule)
    url = data.draw(spelled(page))
    rule_text = data.draw(spelled(rule, url=False))  # the configured rule spelled oddly too
    assert is_children(url, rule_text) is truth, (url, rule_text)


@given(paths, st.data())
def test_every_spelling_has_the_same_key(segs: list[str], data: st.DataObject) -> None:
    first, second = data.draw(spelled(segs)), data.draw(spelled(segs))
    key = normalise_path(url_path(first))
    assert key == normalise_path(url_path(second))
    assert key == "/" + "/".join(folded(segs))


@given(st.text(max_size=200))
def test_any_text_gives_a_clean_key(text: str) -> None:
    key = normalise_path(url_path(text))
    assert key.startswith("/")
    assert ("//" not in key and not key.endswith("/")) or key == "/"
    assert all(seg not in (".", "..") for seg in key.split("/"))
    if "%" not in key:  # decoded once: "/%2541" is the key "/%41", whose own key is "/a"
        assert normalise_path(key) == key
